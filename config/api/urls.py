"""/api/v1/: every app's endpoints under one prefix."""

from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("brokers.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("risk.api.urls")),
    path("", include("signals_in.api.urls")),
]

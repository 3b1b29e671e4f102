from django.urls import include, path

urlpatterns = [
    path("", include("signals_in.api.strategies")),
    path("", include("signals_in.api.signals")),
]

"""/webhooks/: where outside systems post signals."""

from django.urls import path

from signals_in import views

app_name = "signals_in"

urlpatterns = [
    path("tradingview/<str:token>/", views.tradingview_webhook, name="tradingview-webhook"),
    path("health/", views.webhook_health, name="webhook-health"),
]

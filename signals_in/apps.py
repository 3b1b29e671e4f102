from django.apps import AppConfig


class SignalsInConfig(AppConfig):
    name = "signals_in"
    verbose_name = "Signals in: strategies, webhooks, copier, feeds, automation"

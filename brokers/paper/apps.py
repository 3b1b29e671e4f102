from django.apps import AppConfig


class PaperVenueConfig(AppConfig):
    name = "brokers.paper"
    label = "paper"
    verbose_name = "Paper venue (simulated broker)"

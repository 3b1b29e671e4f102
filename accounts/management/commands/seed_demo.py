"""Create (or refresh) the demo firms, traders, paper accounts and instruments."""

import os

from django.core.management.base import BaseCommand

from accounts.demo import seed_demo


class Command(BaseCommand):
    help = "Seed demo data for the paper broker (idempotent)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument(
            "--web-url",
            default=f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}",
            help="where the web server answers, for the webhook URL shown (default: port WEB_PORT, as make run)",
        )

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        summary = seed_demo()
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"Instruments: {', '.join(summary.instruments)}")
        self.stdout.write(f"Accounts: {'; '.join(summary.accounts)}")
        self.stdout.write("Logins (username / password / API token):")
        for username, password in summary.logins.items():
            self.stdout.write(f"  {username:<6} {password:<16} {summary.tokens[username]}")
        if summary.webhook_path:
            self.stdout.write(
                f"Demo strategy webhook (shown once): POST {options['web_url'].rstrip('/')}{summary.webhook_path} "
                """with e.g. {"ticker": "MES1!", "action": "buy", "quantity": 1}"""
            )

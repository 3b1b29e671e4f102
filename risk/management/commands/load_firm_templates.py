"""Load or update the firm rule templates and the market calendar from JSON (default: the files
shipped in risk/data/)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from risk.templates import (
    DEFAULT_CALENDAR_FILE,
    DEFAULT_TEMPLATE_FILE,
    InvalidFirmTemplate,
    InvalidMarketCalendar,
    load_firm_templates,
    load_market_calendar,
)


class Command(BaseCommand):
    help = "Create or update firms, programs and their rules, and the market calendar, from JSON files (idempotent)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--file", type=Path, default=DEFAULT_TEMPLATE_FILE, help="Firm templates JSON.")
        parser.add_argument("--calendar", type=Path, default=DEFAULT_CALENDAR_FILE, help="Market calendar JSON.")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            loaded = load_firm_templates(path=options["file"])
            closes = load_market_calendar(path=options["calendar"])
        except (InvalidFirmTemplate, InvalidMarketCalendar) as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"Firms: {loaded.firms}.")
        self.stdout.write(f"Programs: {loaded.programs}.")
        for label in loaded.programs.created:
            self.stdout.write(f"  created {label}")
        for label in loaded.programs.updated:
            self.stdout.write(f"  updated {label}")
        self.stdout.write(f"Market closes: {closes}.")

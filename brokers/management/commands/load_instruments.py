"""Load or update instruments from a JSON data file (default: the CME futures shipped with propdesk)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from brokers.services import DEFAULT_INSTRUMENT_FILE, InstrumentDataError, load_instruments, read_instrument_file


class Command(BaseCommand):
    help = 'Create or update instruments from a JSON file of {"instruments": [...]}.'

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_INSTRUMENT_FILE)

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        try:
            loaded = load_instruments(read_instrument_file(options["path"]))
        except InstrumentDataError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{len(loaded)} instruments loaded: {', '.join(i.symbol for i in loaded)}")

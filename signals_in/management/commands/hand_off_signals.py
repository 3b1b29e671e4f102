"""Run the signal hand-off (signals_in.handoff) until stopped: received signals to the fan-out."""

import signal
import threading

from django.core.management.base import BaseCommand

from signals_in.handoff import HandOffLoop


class Command(BaseCommand):
    help = "Hand received webhook signals to the fan-out workers until stopped (SIGTERM or Ctrl-C)."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        loop = HandOffLoop()
        how = "listening for notifications" if loop.listens else f"sweeping every {loop.sweep_every:g} s"
        self.stdout.write(f"Handing received signals to the fan-out ({how}).")
        loop.run(stop)

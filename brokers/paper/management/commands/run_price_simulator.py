"""Run the paper venue's simulated market: a few ticks per second per listed contract."""

import random
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from brokers.paper import feed, venue
from brokers.paper.models import VenueContract
from brokers.paper.simulator import next_price
from risk.trading_day import trade_date_for


class Command(BaseCommand):
    help = "Stream simulated prices to the paper venue and propdesk until stopped."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--ticks-per-second", type=float, default=settings.PAPER_TICKS_PER_SECOND)
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for a repeatable walk.")
        parser.add_argument("--once", action="store_true", help="Publish one round of prices and stop.")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if not settings.PAPER_BROKER_ENABLED:
            raise CommandError("The paper broker is disabled (PAPER_BROKER_ENABLED=false).")
        rate = options["ticks_per_second"]
        if rate <= 0:
            raise CommandError("--ticks-per-second must be above 0.")
        rng = random.Random(options["seed"])
        contracts = list(VenueContract.objects.filter(is_listed=True))
        if not contracts:
            raise CommandError("No contracts are listed on the paper venue: run `python manage.py seed_demo` first.")
        prices = {c.symbol: venue.market_price(c.symbol) or c.start_price for c in contracts}
        self.stdout.write(f"Simulating {len(contracts)} contracts at {rate:g} ticks/s each.")
        trade_date = trade_date_for(timezone.now())
        while True:
            started = time.monotonic()
            for contract in contracts:
                prices[contract.symbol] = next_price(
                    prices[contract.symbol], tick_size=contract.tick_size, anchor=contract.start_price, rng=rng
                )
                feed.publish_price(symbol=contract.symbol, price=prices[contract.symbol])
            if options["once"]:
                return
            today = trade_date_for(timezone.now())
            if today != trade_date:
                expired = venue.expire_day_orders()
                self.stdout.write(f"Trade date {today}: {expired} day orders expired.")
                trade_date = today
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))

"""Position-management plans under a stream of prices: does evaluation keep up, and how soon after
a price change is the stop move on its way to the broker?

Builds its own world (a fresh PostgreSQL database, a flushed Redis database under its own key
prefix, Celery workers as the Procfile runs them: one on the "celery" queue, one on "orders"; as
bench/order_path.py and bench/risk.py do): 500 paper accounts, each with one open position of 1
contract in one of --symbols instruments (half long, half short, entries spread over +-10 ticks),
each managed by a plan (partial exits at the default R multiples, breakeven after 8 ticks, trailing
12 ticks behind after 16, tightening to 8 at 1R). The plans are attached through
orders.plan_service.attach_plan, which gives every position its stop through the order path.
The world is built once every worker answers a ping, and prices start once no reconciliation has
run for a second: the reconciliation each worker runs when it starts is setup, not plan work.

Then prices random-walk one tick at a time, --rate changes per second in total spread over the
symbols, for --seconds. Each price goes where risk.services.apply_price puts it (the last-price
store, then orders.plan_service.request_evaluation, the plans' trigger); the risk monitor's marks
are left out (bench/risk.py measures those; --with-risk runs the whole of apply_price). The paper
venue learns each price as its market but does not work its orders on every tick (its matching
is not what is measured): stops are not hit, they only move.

Figures:
- price change -> stop move asked (PlanEvent TRAIL/BREAKEVEN written, modify committed and its
  send enqueued); price change -> modify sent (our sender's call to the broker, kept as `sent_at`
  in the OrderEvent MODIFIED payload; the issue's target is on this one); price change -> the move
  made at the broker (the venue's own timestamp of the change, carried in its answer and kept as
  `broker_time`); and price change -> that answer booked by us (the OrderEvent's own time),
  p50/p90/p99/max;
- backlog: stop moves asked and not yet answered by the broker, sampled every 0.5 s, the price ->
  asked latency per 5 s window, and how long the work takes to drain once prices stop. "Keeps up"
  means the work drains within 2 s and the moves pending do not grow (the second half's mean under
  twice the first's, or under a quarter second of work at the measured rate). (The Celery queue
  length in Redis is printed too, but a worker holding ETA tasks prefetches everything, so it stays
  near zero even when work piles up in the worker.)
- one evaluation in-process after a jump to a new high, with its queries and a cProfile.

Run from the project root:  .venv/bin/python bench/plans.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's directory comes first on sys.path (bench/risk.py does the same).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import bisect  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

from bench.order_path import (  # noqa: E402
    BenchError,
    CpuMeter,
    OwnStack,
    Series,
    add_stack_arguments,
    fmt,
    join_stack_in_process,
    raise_on_sigterm,
    say,
    spawn_procfile_workers,
)
from bench.risk import profile_table  # noqa: E402

TARGET_P99_MS = 100.0
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
STARTING_BALANCE = Decimal("50000")
PLAN = {
    "initial_stop_ticks": 40,
    "breakeven_after_ticks": 8,
    "breakeven_offset_ticks": 1,
    "trail_after_ticks": 16,
    "trail_ticks": 12,
    "trail_steps": [{"r": "1", "ticks": 8}],
}


# -- The world ------------------------------------------------------------------------------------


def build_world(args: argparse.Namespace) -> dict[str, Any]:
    """Accounts and positions written directly (as bench/risk.py does), then a plan on each
    through the service, which gives each position its stop through the order path."""
    from django.utils import timezone

    from accounts.models import Firm, Program, TradingAccount
    from brokers.market_data import record_last_price
    from brokers.models import BrokerConnection, Instrument
    from brokers.paper import venue
    from brokers.paper.models import VenueAccount, VenuePosition
    from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
    from orders import plan_service
    from orders.models import Position
    from orders.plans import parse_plan_request

    rows = read_instrument_file(DEFAULT_INSTRUMENT_FILE)
    load_instruments(rows)
    venue.list_contracts(rows)
    start_price = {row["symbol"]: Decimal(str(row["paper"]["start_price"])) for row in rows if row.get("paper")}
    instruments = [i for i in Instrument.objects.order_by("pk") if i.symbol in start_price][: args.symbols]
    if len(instruments) < args.symbols:
        raise BenchError(f"Only {len(instruments)} paper instruments; asked for {args.symbols}.")
    for instrument in instruments:
        record_last_price(symbol=instrument.symbol, price=start_price[instrument.symbol])
        venue.set_market_price(symbol=instrument.symbol, price=start_price[instrument.symbol])

    connection = BrokerConnection.objects.create(name="Paper bench", kind="paper")
    program = Program.objects.create(
        firm=Firm.objects.create(name="Bench firm"),
        name="Bench 50K",
        phase="evaluation",
        starting_balance=STARTING_BALANCE,
    )
    accounts = TradingAccount.objects.bulk_create(
        [
            TradingAccount(
                name=f"Bench {i:04d}",
                program=program,
                broker_connection=connection,
                broker_account_id=f"PLAN-{i:04d}",
                starting_balance=STARTING_BALANCE,
                balance=STARTING_BALANCE,
            )
            for i in range(args.positions)
        ]
    )
    venue_accounts = VenueAccount.objects.bulk_create(
        [VenueAccount(ref=a.broker_account_id, stream_key=str(connection.pk), cash=STARTING_BALANCE) for a in accounts]
    )
    now = timezone.now()
    rng = random.Random(args.seed)
    positions, venue_positions = [], []
    for i, (account, venue_account) in enumerate(zip(accounts, venue_accounts, strict=True)):
        instrument = instruments[i % len(instruments)]
        quantity = 1 if (i // len(instruments)) % 2 == 0 else -1
        # Entries spread over +-10 ticks around the start, as positions opened at different times:
        # their plans' levels differ, as on a real desk (not all 50 plans of a symbol at once).
        price = start_price[instrument.symbol] + instrument.tick_size * rng.randint(-10, 10)
        positions.append(
            Position(account=account, instrument=instrument, quantity=quantity, avg_price=price, opened_at=now)
        )
        venue_positions.append(
            VenuePosition(account=venue_account, symbol=instrument.symbol, quantity=quantity, avg_price=price)
        )
    positions = Position.objects.bulk_create(positions)
    VenuePosition.objects.bulk_create(venue_positions)
    request = parse_plan_request(PLAN, now=now)
    t0 = time.perf_counter()
    for position in positions:
        plan_service.attach_plan(position=position, request=request, source="bench")
    return {
        "symbols": [i.symbol for i in instruments],
        "ticks": {i.symbol: i.tick_size for i in instruments},
        "start": {i.symbol: start_price[i.symbol] for i in instruments},
        "attach_s": time.perf_counter() - t0,
    }


def wait_workers_ready(args: argparse.Namespace, expected: int = 3) -> None:
    """Every worker answers a ping before the world exists. Each worker reconciles every account
    when it starts (orders.tasks.reconcile_at_worker_start): with 500 accounts already there,
    that is ~1000 account reconciliations on the plans' worker during the stream (seen in session
    5: 37% of that worker's CPU), which is setup noise, not plan evaluation."""
    from config.celery import app

    deadline = time.monotonic() + args.setup_timeout
    while len(app.control.ping(timeout=1.0)) < expected:
        if time.monotonic() > deadline:
            raise BenchError(f"Not all {expected} workers answered a ping within {args.setup_timeout} s.")
    time.sleep(1.0)  # their startup reconciliation runs now, and finds no accounts


def wait_reconciliations_settled(args: argparse.Namespace) -> None:
    """No account reconciliation ran in the last second (in case one started anyway)."""
    from django.utils import timezone

    from orders.models import ReconciliationRun

    deadline = time.monotonic() + args.setup_timeout
    while ReconciliationRun.objects.filter(finished_at__gte=timezone.now() - timedelta(seconds=1)).exists():
        if time.monotonic() > deadline:
            raise BenchError("Reconciliations still running after the setup timeout.")
        time.sleep(0.5)


def wait_stops_working(args: argparse.Namespace) -> None:
    from orders.domain import OrderRole, OrderStatus
    from orders.models import Order

    deadline = time.monotonic() + args.setup_timeout
    while True:
        working = Order.objects.filter(role=OrderRole.STOP_LOSS, status=OrderStatus.ACCEPTED).count()
        if working >= args.positions:
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"Only {working} of {args.positions} stops working at the venue after {args.setup_timeout} s."
            )
        time.sleep(0.2)


# -- The price stream ----------------------------------------------------------------------------


def queue_length(redis: Any, prefix: str) -> int:
    """Messages waiting in the Celery queues (all priorities) under this run's key prefix."""
    total = 0
    for name in redis.scan_iter(match=f"{prefix}:celery:*", count=500):
        if redis.type(name) == b"list":
            total += redis.llen(name)
    return total


def stream_prices(args: argparse.Namespace, world: dict[str, Any]) -> dict[str, Any]:
    from brokers.market_data import record_last_price
    from brokers.paper import venue
    from config.redis_client import get_redis
    from orders import plan_service
    from risk import services as risk_services

    redis = get_redis()
    rng = random.Random(args.seed)
    prices = dict(world["start"])
    published: dict[str, tuple[list[float], list[Decimal]]] = {s: ([], []) for s in world["symbols"]}
    samples: list[tuple[float, int]] = []
    interval = 1.0 / args.rate
    t_start = time.time()
    next_at = time.perf_counter()
    next_sample = t_start
    count = 0
    late = 0
    while time.time() - t_start < args.seconds:
        symbol = world["symbols"][count % len(world["symbols"])]
        prices[symbol] += world["ticks"][symbol] * rng.choice((-1, 1))
        price = prices[symbol]
        t = time.time()
        if args.with_risk:
            risk_services.apply_price(symbol=symbol, price=price)
        else:
            # What apply_price does for plans: the last price, then the plans' trigger.
            record_last_price(symbol=symbol, price=price)
            plan_service.request_evaluation(symbol, price)
        # The venue's market, without working its orders (not what is measured here).
        redis.hset(venue._prices_key(), symbol, str(price))
        published[symbol][0].append(t)
        published[symbol][1].append(price)
        count += 1
        if t >= next_sample:
            samples.append((t - t_start, queue_length(redis, args.redis_prefix), _pending_changes()))
            next_sample += 0.5
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:
            late += 1
    t_end = time.time()
    drain_deadline = t_end + args.drain_timeout
    while queue_length(redis, args.redis_prefix) > 0 or _pending_changes() > 0:
        if time.time() > drain_deadline:
            break
        time.sleep(0.05)
    return {
        "t_start": t_start,
        "t_end": t_end,
        "published": published,
        "count": count,
        "late": late,
        "samples": samples,
        "drained_s": time.time() - t_end,
        "drained": queue_length(redis, args.redis_prefix) == 0 and _pending_changes() == 0,
    }


def _pending_changes() -> int:
    from orders.models import Order

    return Order.objects.exclude(pending_change={}).count()


def profile_evaluation(args: argparse.Namespace, world: dict[str, Any]) -> dict[str, Any]:
    """One evaluation in this process, after the stream: a symbol jumps to 12 ticks above the best
    price its long plans have seen (their stops all move). Its time, queries and cProfile."""
    import cProfile

    from django.db import connection
    from django.db.models import Max
    from django.test.utils import CaptureQueriesContext

    from brokers.market_data import get_last_price, record_last_price
    from orders import plan_service
    from orders.models import PlanEvent, PositionPlan

    symbol = world["symbols"][0]
    # 12 ticks above the best price any of its long plans has seen: a new high, so they all act.
    best = PositionPlan.objects.filter(instrument__symbol=symbol, side="long", status="active").aggregate(
        best=Max("best_price")
    )["best"]
    price = max(best or Decimal(0), get_last_price(symbol)) + 12 * world["ticks"][symbol]
    record_last_price(symbol=symbol, price=price)
    before = PlanEvent.objects.count()
    profile = cProfile.Profile()
    with CaptureQueriesContext(connection) as queries:
        t0 = time.perf_counter()
        profile.enable()
        plan_service.evaluate_symbol(symbol=symbol)
        profile.disable()
        ms = (time.perf_counter() - t0) * 1000
    return {
        "symbol": symbol,
        "ms": ms,
        "queries": len(queries),
        "events": PlanEvent.objects.count() - before,
        "profile": profile,
    }


# -- Figures -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, stream: dict[str, Any]) -> dict[str, Any]:
    from orders.models import OrderEvent, PlanEvent, PlanEventKind, PositionPlan

    since = datetime.fromtimestamp(stream["t_start"] + args.warmup, UTC)
    moves = list(
        PlanEvent.objects.filter(kind__in=(PlanEventKind.TRAIL, PlanEventKind.BREAKEVEN), occurred_at__gte=since)
        .select_related("plan__instrument")
        .order_by("occurred_at")
    )
    confirmed: dict[int, list[tuple[float, float | None, float | None]]] = {}
    for order_id, created, payload in (
        OrderEvent.objects.filter(order_id__in={m.order_id for m in moves}, type="modified", created_at__gte=since)
        .order_by("created_at")
        .values_list("order_id", "created_at", "payload")
    ):
        # When our sender called the broker with the move (sent_at), and the broker's own time of
        # the change (the venue stamps its answer): when it had reached it. The event's own time is
        # later: when the answer was booked.
        sent, applied = (
            datetime.fromisoformat(value).timestamp() if (value := (payload or {}).get(key)) else None
            for key in ("sent_at", "broker_time")
        )
        confirmed.setdefault(order_id, []).append((created.timestamp(), sent, applied))
    asked = Series("price change -> stop move asked (plan event, modify committed)")
    asked_at: list[tuple[float, float]] = []
    sent_series = Series("price change -> modify sent to the broker (our sender's call)")
    at_broker = Series("price change -> move made at the broker (the venue's time of the change)")
    booked = Series("price change -> the broker's confirmation booked (our OrderEvent MODIFIED)")
    unmatched = 0
    for move in moves:
        times, prices = stream["published"][move.plan.instrument.symbol]
        t_event = move.occurred_at.timestamp()
        # The newest publish of that price at or before the evaluation: the price it read.
        i = bisect.bisect_right(times, t_event) - 1
        while i >= 0 and prices[i] != move.price:
            i -= 1
        if i < 0:
            unmatched += 1
            continue
        asked.add(t_event - times[i])
        asked_at.append((times[i] - stream["t_start"], (t_event - times[i]) * 1000))
        after = confirmed.get(move.order_id, [])
        j = bisect.bisect_left([created for created, _, _ in after], t_event)
        if j < len(after):
            created, sent, applied = after[j]
            booked.add(created - times[i])
            if sent is not None:
                sent_series.add(sent - times[i])
            if applied is not None:
                at_broker.add(applied - times[i])
    refused = PlanEvent.objects.filter(kind=PlanEventKind.FAILED).count()
    return {
        "asked": asked,
        "asked_at": asked_at,
        "sent": sent_series,
        "at_broker": at_broker,
        "booked": booked,
        "moves": len(moves),
        "unmatched": unmatched,
        "refused": refused,
        "exits": PlanEvent.objects.filter(kind=PlanEventKind.PARTIAL_EXIT).count(),
        "finished": PositionPlan.objects.exclude(status="active").count(),
    }


def report(
    args: argparse.Namespace, world: dict[str, Any], stream: dict[str, Any], figures: dict[str, Any], cpu: CpuMeter
) -> bool:
    seconds = stream["t_end"] - stream["t_start"]
    print()
    print(
        f"propdesk plans: {args.positions} positions with plans over {len(world['symbols'])} symbols "
        f"({', '.join(world['symbols'])}); {stream['count']} price changes in {seconds:.1f} s "
        f"({stream['count'] / seconds:.0f}/s, target {args.rate}/s; {stream['late']} published late); "
        f"workers: celery queue {args.workers} + orders queue {args.senders} processes; risk marks"
        f" {'on' if args.with_risk else 'off'}"
    )
    print(f"setup: plans attached (and stops placed) in {world['attach_s']:.1f} s")
    print(f"{'':70}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for series in (figures["asked"], figures["sent"], figures["at_broker"], figures["booked"]):
        s = series.summary()
        print(f"{series.name:70}{s['n']:>6}{fmt(s['p50']):>9}{fmt(s['p90']):>9}{fmt(s['p99']):>9}{fmt(s['max']):>9}")
    print(
        f"stop moves asked after the {args.warmup:.0f} s warm-up: {figures['moves']} "
        f"({figures['moves'] / max(seconds - args.warmup, 1):.0f}/s; {figures['unmatched']} not matched to a price); "
        f"refused: {figures['refused']}; partial exits: {figures['exits']}; plans finished: {figures['finished']}"
    )
    samples = stream["samples"]
    lengths = [n for _, n, _ in samples]
    pending = [p for _, _, p in samples]
    half = len(pending) // 2
    first = statistics.fmean(pending[:half]) if half else float("nan")
    second = statistics.fmean(pending[half:]) if pending[half:] else float("nan")
    print(
        f"stop moves asked and not yet answered (sampled every 0.5 s): max {max(pending, default=0)}, "
        f"mean first half {first:.1f}, second half {second:.1f}; "
        f"all work drained {'in' if stream['drained'] else 'NOT within'} {stream['drained_s']:.2f} s "
        "after the last price"
    )
    print("  pending samples: " + " ".join(str(n) for n in pending))
    print(
        "  Celery queue lengths in Redis (ETA tasks make a worker prefetch, so this under-counts): "
        + " ".join(str(n) for n in lengths)
    )
    asked_by_window: dict[int, list[float]] = {}
    for t_rel, ms in figures["asked_at"]:
        asked_by_window.setdefault(int(t_rel // 5) * 5, []).append(ms)
    print(
        "  price -> asked p50 by 5 s window (a lag that grows is a backlog): "
        + ", ".join(f"{w}s {statistics.median(v):.0f} ms" for w, v in sorted(asked_by_window.items()))
    )
    if cpu.used:
        print(
            f"while streaming: CPUs {cpu.busy_share * 100:.0f}% busy, load {cpu.load[0]:.1f} -> {cpu.load[1]:.1f}; "
            + ", ".join(f"{name} {used:.1f} s CPU" for name, used in cpu.used.items())
        )
    # Growing: the second half holds twice the first's pending moves, and more than a quarter of a
    # second of work at the measured rate (a handful of moves in flight at 100/s is no backlog).
    rate = figures["moves"] / max(seconds - args.warmup, 1)
    keeps_up = stream["drained"] and stream["drained_s"] < 2.0 and not (second > max(5.0, 0.25 * rate, 2 * first))
    p99 = figures["sent"].summary()["p99"]
    print(f"keeps up (no growing backlog, drained within 2 s): {'yes' if keeps_up else 'NO'}")
    print(
        f"target price change -> modify sent p99 <= {TARGET_P99_MS:.0f} ms: "
        f"{'met' if p99 <= TARGET_P99_MS else 'MISSED'} "
        f"({fmt(p99)} ms to sent; {fmt(figures['asked'].summary()['p99'])} ms to asked; "
        f"{fmt(figures['at_broker'].summary()['p99'])} ms to the change made at the broker; "
        f"{fmt(figures['booked'].summary()['p99'])} ms to the confirmation booked)"
    )
    return keeps_up and p99 <= TARGET_P99_MS


# -- Entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Position plans: evaluation under a price stream, price change to stop move latency.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--positions", type=int, default=500, help="positions, each with a plan")
    parser.add_argument("--symbols", type=int, default=10, help="instruments they are spread over")
    parser.add_argument("--rate", type=float, default=200.0, help="price changes per second, all symbols")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long prices stream")
    parser.add_argument("--warmup", type=float, default=3.0, help="first seconds left out of the latency figures")
    parser.add_argument("--seed", type=int, default=7, help="random walk seed")
    parser.add_argument(
        "--with-risk", action="store_true", help="publish through risk.services.apply_price (marks too)"
    )
    parser.add_argument("--setup-timeout", type=float, default=180.0, help="seconds for the stops to be working")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the work to drain")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--workers", type=int, default=2, help="processes of the worker on the celery queue")
    parser.add_argument(
        "--senders", type=int, default=4, help="processes of the worker on the orders queue (as the Procfile)"
    )
    parser.add_argument("--sender-pool", default="prefork", help="pool of the send worker (-P)")
    add_stack_arguments(parser, db_name="propdesk_bench_plans", redis_prefix="propdesk-bench-plans")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    stack = OwnStack(args)
    try:
        say(f"stack: database {args.db_name}, Redis {args.redis_url}, logs in {stack.logs}")
        join_stack_in_process(stack)

        spawn_procfile_workers(stack, workers=args.workers, senders=args.senders, sender_pool=args.sender_pool)
        wait_workers_ready(args)
        say(f"world: {args.positions} positions with plans; attaching")
        world = build_world(args)
        wait_stops_working(args)
        wait_reconciliations_settled(args)
        stack.check_alive()
        say(f"streaming {args.rate:.0f} prices/s for {args.seconds:.0f} s")
        cpu = CpuMeter(groups={name: os.getpgid(p.pid) for name, p in stack.processes})
        cpu.begin()
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        stream = stream_prices(args, world)
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu.end()
        cpu.used["bench (publishing prices)"] = own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime
        stack.check_alive()
        ok = report(args, world, stream, measure(args, stream), cpu)
        profiled = profile_evaluation(args, world)
        print()
        print(
            f"one evaluation of {profiled['symbol']} in-process after a jump to a new high: {profiled['ms']:.0f} ms, "
            f"{profiled['queries']} queries, {profiled['events']} plan events "
            f"({profiled['ms'] / max(profiled['events'], 1):.1f} ms per action); top 20 by cumulative time:"
        )
        print(profile_table(profiled["profile"], "cumulative", 20))
        return 1 if args.check and not ok else 0
    except BenchError as exc:
        say(f"bench failed: {exc}")
        say(stack.log_tail())
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Signal fan-out on a live stack: one signal to N subscribed accounts (default 200), timed from
the signal stored until every account's order is at the paper venue. Target: all within 1 s.

Builds its world in its own PostgreSQL database and Redis database (bulk inserts: accounts, venue
accounts, one strategy with N subscriptions of 1 contract), starts the Celery workers as the
Procfile does (`worker`, `sender` on the orders queue, `stream`), then per round stores a signal
and hands `process_signal_task` to the workers exactly as the hand-off process (signals_in.handoff) would.
Each round is a buy (every account enters 1 MES, pre-trade risk on each) followed by an exit
(every account closes, untimed against the target but printed). Round 0 is a warm-up.

Run from the project root:  .venv/bin/python bench/fanout.py [--accounts 200 --rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's directory comes first on sys.path, and "risk" would be bench/risk.py.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

from bench.order_path import (  # noqa: E402
    BenchError,
    CpuMeter,
    OwnStack,
    Series,
    add_stack_arguments,
    join_stack_in_process,
    raise_on_sigterm,
    say,
    spawn_procfile_workers,
)

TARGET_ALL_AT_VENUE_S = 1.0
SYMBOL = "MESZ6"
START_PRICE = Decimal("5000.25")
STARTING_BALANCE = Decimal("50000")

STEP_SQL = """
SELECT o.account_id, o.created_at, o.submitted_at, vo.created_at,
       (SELECT min(f.created_at) FROM orders_fill f WHERE f.order_id = o.id)
  FROM orders_order o
  JOIN paper_venueorder vo ON vo.client_order_id = o.client_order_id
 WHERE o.client_order_id = ANY(%s)
"""


def build_world(args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from accounts.models import AccountMembership, Firm, Program, TradingAccount
    from brokers.market_data import record_last_price
    from brokers.models import BrokerConnection
    from brokers.paper import venue
    from brokers.paper.models import VenueAccount
    from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
    from risk.models import ProgramRules
    from signals_in.models import Strategy, Subscription

    rows = read_instrument_file(DEFAULT_INSTRUMENT_FILE)
    load_instruments(rows)
    venue.list_contracts(rows)
    connection = BrokerConnection.objects.create(name="Paper bench", kind="paper")
    firm = Firm.objects.create(name="Bench firm")
    program = Program.objects.create(firm=firm, name="Bench 50K", phase="evaluation", starting_balance=STARTING_BALANCE)
    # Real rules, so every order's pre-trade check has work to do (and passes).
    ProgramRules.objects.create(
        program=program,
        drawdown_kind="static",
        drawdown_amount=Decimal("3000"),
        daily_loss_mode="soft",
        daily_loss_limit=Decimal("2000"),
        max_contracts=10,
    )
    accounts = TradingAccount.objects.bulk_create(
        [
            TradingAccount(
                name=f"Follower {i:04d}",
                program=program,
                broker_connection=connection,
                broker_account_id=f"FAN-{i:04d}",
                starting_balance=STARTING_BALANCE,
                balance=STARTING_BALANCE,
            )
            for i in range(args.accounts)
        ]
    )
    VenueAccount.objects.bulk_create(
        [VenueAccount(ref=a.broker_account_id, stream_key=str(connection.pk), cash=STARTING_BALANCE) for a in accounts]
    )
    owner = get_user_model().objects.create_user(username="strategist", password="x")
    AccountMembership.objects.bulk_create([AccountMembership(account=a, user=owner) for a in accounts])
    strategy = Strategy.objects.create(name="Bench trend", owner=owner)
    subscriptions = Subscription.objects.bulk_create(
        [Subscription(strategy=strategy, account=a, fixed_quantity=1) for a in accounts]
    )
    record_last_price(symbol=SYMBOL, price=START_PRICE)
    venue.set_market_price(symbol=SYMBOL, price=START_PRICE)
    return {"strategy": strategy, "subscriptions": subscriptions, "account_ids": [a.pk for a in accounts]}


def run_round(args: argparse.Namespace, world: dict[str, Any], action: str, timeout: float) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from brokers.models import Instrument
    from brokers.paper.models import VenueOrder
    from signals_in.fanout import signal_client_order_id
    from signals_in.models import Signal
    from signals_in.tasks.fanout import process_signal_task

    leg = "entry" if action == "buy" else "exit"
    stored = Signal.objects.create(
        strategy=world["strategy"],
        action=action,
        ticker="MES1!",
        instrument=Instrument.objects.get(symbol=SYMBOL),
        quantity=Decimal(1),
        body_hash=f"bench-{time.time_ns()}",
        received_at=timezone.now(),
    )
    t_stored = stored.received_at.timestamp()
    t_enqueue = time.time()
    process_signal_task.delay(stored.pk)  # what the hand-off process does
    ids = [
        signal_client_order_id(signal_id=stored.pk, subscription_id=s.pk, account_id=s.account_id, leg=leg)
        for s in world["subscriptions"]
    ]
    seen = 0
    while seen < len(ids):
        seen = VenueOrder.objects.filter(client_order_id__in=ids).count()
        if time.time() - t_enqueue > timeout:
            raise BenchError(f"{action}: {seen} of {len(ids)} orders at the venue after {timeout:.0f} s.")
        time.sleep(args.poll_interval_ms / 1000)
    t_seen = time.time()
    deadline = time.time() + timeout
    while True:  # every fill booked in propdesk too
        with connection.cursor() as cursor:
            cursor.execute(STEP_SQL, [ids])
            steps = cursor.fetchall()
        if all(row[4] is not None for row in steps) or time.time() > deadline:
            break
        time.sleep(0.05)
    return {"action": action, "t_stored": t_stored, "t_enqueue": t_enqueue, "t_seen": t_seen, "steps": steps}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    t0 = result["t_stored"]
    created, submitted, at_venue, filled = (Series(n) for n in ("created", "submitted", "venue", "filled"))
    for _, created_at, submitted_at, venue_at, fill_at in result["steps"]:
        created.add(created_at.timestamp() - t0)
        if submitted_at:
            submitted.add(submitted_at.timestamp() - t0)
        at_venue.add(venue_at.timestamp() - t0)
        if fill_at:
            filled.add(fill_at.timestamp() - t0)
    return {
        "action": result["action"],
        "orders": len(result["steps"]),
        "enqueue_ms": (result["t_enqueue"] - t0) * 1000,
        "first_order_ms": min(created.values_ms),
        "last_order_ms": max(created.values_ms),
        "claimed": submitted.summary(),
        "venue": at_venue.summary(),
        "all_at_venue_ms": max(at_venue.values_ms),
        "seen_ms": (result["t_seen"] - t0) * 1000,
        "filled": filled.summary(),
    }


def report(rounds: list[dict[str, Any]], args: argparse.Namespace, cpu: CpuMeter) -> bool:
    print()
    print(
        f"propdesk signal fan-out: 1 signal -> {args.accounts} subscribed accounts (1 MES each, pre-trade risk on "
        f"each), {args.rounds} measured rounds of buy + exit, senders -c {args.senders}"
    )
    print(
        "ms from the signal stored (Signal.received_at) to each step, server timestamps: order stored "
        "(first, last), claimed by a sender, VenueOrder created, fill booked"
    )
    header = (
        f"{'round':>6}{'action':>7}{'orders':>7}{'1st order':>10}{'last order':>11}{'claim p50':>10}"
        f"{'venue p50':>10}{'venue p90':>10}{'ALL at venue':>13}{'all filled':>11}"
    )
    print(header)
    for i, r in enumerate(rounds):
        print(
            f"{i // 2 + 1:>6}{r['action']:>7}{r['orders']:>7}{r['first_order_ms']:>10.0f}{r['last_order_ms']:>11.0f}"
            f"{r['claimed']['p50']:>10.0f}"
            f"{r['venue']['p50']:>10.0f}{r['venue']['p90']:>10.0f}{r['all_at_venue_ms']:>13.0f}"
            f"{r['filled']['max']:>11.0f}"
        )
    entries = sorted(r["all_at_venue_ms"] for r in rounds if r["action"] == "buy")
    worst = entries[-1] if entries else float("nan")
    ok = worst <= TARGET_ALL_AT_VENUE_S * 1000
    print(
        f"all {args.accounts} entry orders at the venue: best {entries[0]:.0f} ms, median "
        f"{entries[len(entries) // 2]:.0f} ms, worst {worst:.0f} ms; target <= {TARGET_ALL_AT_VENUE_S * 1000:.0f} ms: "
        f"{'met' if ok else 'MISSED'}"
    )
    if cpu.used:
        orders = sum(r["orders"] for r in rounds)
        per = ", ".join(f"{name} {1000 * used / orders:.1f} ms" for name, used in cpu.used.items())
        print(
            f"CPU per order while measuring: {per}; all {os.cpu_count()} CPUs {100 * cpu.busy_share:.0f}% busy, "
            f"load average {cpu.load[0]:.1f} -> {cpu.load[1]:.1f}"
        )
    return ok


def wait_flat(world: dict[str, Any], timeout: float) -> None:
    from orders.models import Position

    deadline = time.monotonic() + timeout
    while Position.objects.open().filter(account_id__in=world["account_ids"]).exists():
        if time.monotonic() > deadline:
            raise BenchError(f"positions not flat after {timeout:.0f} s")
        time.sleep(0.05)


def profile_in_process(args: argparse.Namespace, world: dict[str, Any]) -> None:
    """The same fan-out run in this process under cProfile (workers idle): where the time goes."""
    import cProfile
    import io
    import pstats

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from brokers.models import Instrument
    from signals_in import fanout
    from signals_in.models import Signal

    stored = Signal.objects.create(
        strategy=world["strategy"],
        action="buy",
        ticker="MES1!",
        instrument=Instrument.objects.get(symbol=SYMBOL),
        quantity=Decimal(1),
        body_hash=f"bench-profile-{time.time_ns()}",
        received_at=timezone.now(),
    )
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        # The whole fan-out in one chunk, here (process_signal would hand chunks to the workers).
        profile.runcall(
            fanout.process_signal_chunk,
            signal_id=stored.pk,
            subscription_ids=[s.pk for s in world["subscriptions"]],
            expected=len(world["subscriptions"]),
        )
    elapsed = time.perf_counter() - t0
    print()
    print(
        f"process_signal in-process for {args.accounts} accounts: {elapsed * 1000:.0f} ms under cProfile, "
        f"{len(queries) / args.accounts:.1f} queries per account"
    )
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats("cumulative").print_stats(args.profile_lines)
    text = out.getvalue()
    print(text[text.find("   ncalls") :].rstrip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="One signal to N subscribed accounts: time until every order is at the paper venue.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=200, help="subscribed accounts")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (buy + exit), plus one warm-up")
    parser.add_argument("--poll-interval-ms", type=float, default=2.0, help="pause between venue polls")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a round may take")
    parser.add_argument("--workers", type=int, default=2, help="processes of the celery/reconcile worker")
    parser.add_argument("--senders", type=int, default=4, help="concurrency of the send worker (queue orders)")
    parser.add_argument("--sender-pool", default="prefork", help="pool of the send worker (-P)")
    parser.add_argument("--profile", action="store_true", help="also profile one fan-out in this process")
    parser.add_argument("--profile-lines", type=int, default=30, help="rows of the cProfile table")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    add_stack_arguments(parser, db_name="propdesk_bench_fanout", redis_prefix="propdesk-bench-fanout")
    # A Redis database of its own: the other benches flush theirs (order_path 12, risk 11).
    parser.set_defaults(redis_url="redis://127.0.0.1:6379/9")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    stack = OwnStack(args)
    try:
        say(f"stack: database {args.db_name}, Redis {args.redis_url}, logs in {stack.logs}")
        join_stack_in_process(stack)
        t0 = time.perf_counter()
        world = build_world(args)
        say(f"world: {args.accounts} accounts subscribed, built in {time.perf_counter() - t0:.1f} s")
        spawn_procfile_workers(stack, workers=args.workers, senders=args.senders, sender_pool=args.sender_pool)
        rounds = []
        cpu = CpuMeter({name: p.pid for name, p in stack.processes})
        for r in range(args.rounds + 1):
            if r == 1:
                cpu.begin()
            for action in ("buy", "exit"):
                stack.check_alive()
                result = run_round(args, world, action, timeout=args.timeout * (3 if r == 0 else 1))
                if action == "exit":
                    wait_flat(world, args.timeout)
                summary = summarize(result)
                warm = " (warm-up)" if r == 0 else ""
                say(f"  round {r}{warm} {action}: all at venue {summary['all_at_venue_ms']:.0f} ms")
                if r > 0:
                    rounds.append(summary)
            time.sleep(0.5)
        cpu.end()
        ok = report(rounds, args, cpu)
        if args.profile:
            profile_in_process(args, world)
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

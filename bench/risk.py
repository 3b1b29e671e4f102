"""Risk engine at scale: the full sweep over many accounts, and how fast breaches are flattened.

Builds its own world (a fresh PostgreSQL database, a flushed Redis database under its own key
prefix): 2,000 paper accounts with open positions spread over the front contracts of the 14 shipped CME roots.

1. Full sweep: risk.enforcement.monitor_accounts() run in this process N times with nothing
   breached; p50/p90/max, the queries of one sweep, and a cProfile of one sweep.
2. Breach to flatten: a Celery worker (2 prefork processes) runs the risk tasks and the order
   path. Each round, one price move of MNQ (brokers.paper.feed.publish_price, called in this
   process: apply_price enqueues the mark task exactly as a price from the simulator or
   POST /api/v1/sim/prices/ would) breaches exactly 50 accounts; the bench polls the paper venue
   until the 50 RISK close orders are there and times each from the publish. Per-step server
   timestamps show where that time goes.

Run from the project root:  .venv/bin/python bench/risk.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's directory comes first on sys.path, and "risk" would be this
# file instead of the risk app.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

from bench.order_path import (  # noqa: E402
    BenchError,
    OwnStack,
    Series,
    add_stack_arguments,
    fmt,
    join_stack_in_process,
    raise_on_sigterm,
    say,
    spawn_procfile_workers,
)

TARGET_SWEEP_MS = 500.0
TARGET_FLATTEN_P99_MS = 250.0

# The send worker as the Procfile runs it.
SENDERS = 4
SENDER_POOL = "prefork"

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"

BREACH_ROOT_SYMBOL = "MNQZ6"  # the instrument the breaching accounts hold
BREACH_QUANTITY = 10  # MNQ contracts each breaching account holds long ($2 a point: $20 a point each)
STEP_POINTS = Decimal("50")  # each round moves MNQ down this much: $1,000 more loss per breaching account
STARTING_BALANCE = Decimal("50000")


# -- The world ------------------------------------------------------------------------------------


def build_world(args: argparse.Namespace) -> dict[str, Any]:
    """Instruments, programs, accounts, positions (ours and the venue's) and last prices.

    Positions are written directly (bulk_create of Position and VenuePosition rows at the
    instrument's start price), not traded: 6,000 orders through the order path would take minutes
    and add nothing to what is measured. The venue's books match ours, so the closes fill.
    """
    from accounts.models import Firm, Program, TradingAccount
    from brokers.market_data import record_last_price
    from brokers.models import BrokerConnection, Instrument
    from brokers.paper import venue
    from brokers.paper.models import VenueAccount, VenuePosition
    from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
    from orders.models import Position
    from risk.models import ProgramRules

    rows = read_instrument_file(DEFAULT_INSTRUMENT_FILE)
    load_instruments(rows)
    venue.list_contracts(rows)
    # One contract per root, the front one: the world the figures were first taken on (the file
    # has since listed next quarters too).
    instruments = []
    for instrument in Instrument.objects.order_by("root", "expires_on", "pk"):
        if not instruments or instruments[-1].root != instrument.root:
            instruments.append(instrument)
    instruments.sort(key=lambda i: i.pk)
    start_price = {row["symbol"]: Decimal(str(row["paper"]["start_price"])) for row in rows if row.get("paper")}
    if len(instruments) != 14 or BREACH_ROOT_SYMBOL not in start_price:
        raise BenchError(f"Expected the 14 shipped roots with {BREACH_ROOT_SYMBOL}; got {len(instruments)}.")

    connection = BrokerConnection.objects.create(name="Paper bench", kind="paper")
    firm = Firm.objects.create(name="Bench firm")
    main = Program.objects.create(firm=firm, name="Bench 50K", phase="evaluation", starting_balance=STARTING_BALANCE)
    ProgramRules.objects.create(
        program=main,
        drawdown_kind="static",
        drawdown_amount=Decimal("3000"),
        daily_loss_mode="soft",
        daily_loss_limit=Decimal("2000"),
    )
    groups = args.rounds + 2  # group 0 is the warm-up round, the last one is enforced in-process
    tight = []
    for g in range(groups):
        program = Program.objects.create(
            firm=firm, name=f"Bench tight {g}", phase="evaluation", starting_balance=STARTING_BALANCE
        )
        # Round g moves MNQ (g + 1) steps down: a loss of $1,000 (g + 1) per breaching account.
        # This group's floor sits half a step above that, the next group's half a step below.
        ProgramRules.objects.create(
            program=program,
            drawdown_kind="intraday_trailing",
            drawdown_amount=Decimal(1000) * g + Decimal(500),
        )
        tight.append(program)

    n_tight = groups * args.breach
    n_main = args.accounts - n_tight
    if n_main < 1:
        raise BenchError("--accounts must exceed (--rounds + 1) * --breach")
    accounts = [
        TradingAccount(
            name=f"Bench {i:05d}",
            program=main if i < n_main else tight[(i - n_main) // args.breach],
            broker_connection=connection,
            broker_account_id=f"BENCH-{i:05d}",
            starting_balance=STARTING_BALANCE,
            balance=STARTING_BALANCE,
        )
        for i in range(args.accounts)
    ]
    accounts = TradingAccount.objects.bulk_create(accounts, batch_size=1000)
    venue_accounts = VenueAccount.objects.bulk_create(
        [VenueAccount(ref=a.broker_account_id, stream_key=str(connection.pk), cash=STARTING_BALANCE) for a in accounts],
        batch_size=1000,
    )
    venue_by_ref = {v.ref: v for v in venue_accounts}
    mnq = next(i for i in instruments if i.symbol == BREACH_ROOT_SYMBOL)
    now = datetime.now(UTC)
    positions, venue_positions = [], []
    for i, account in enumerate(accounts):
        if i < n_main:
            held = [
                (instruments[(i * args.positions + k) % 14], 1 if (i + k) % 2 == 0 else -1)
                for k in range(args.positions)
            ]
        else:
            held = [(mnq, BREACH_QUANTITY)]
        for instrument, quantity in held:
            price = start_price[instrument.symbol]
            positions.append(
                Position(account=account, instrument=instrument, quantity=quantity, avg_price=price, opened_at=now)
            )
            venue_positions.append(
                VenuePosition(
                    account=venue_by_ref[account.broker_account_id],
                    symbol=instrument.symbol,
                    quantity=quantity,
                    avg_price=price,
                )
            )
    Position.objects.bulk_create(positions, batch_size=2000)
    VenuePosition.objects.bulk_create(venue_positions, batch_size=2000)
    # Prices straight into the stores (no mark tasks yet): propdesk's last price and the venue's market.
    for symbol, price in start_price.items():
        record_last_price(symbol=symbol, price=price)
        venue.set_market_price(symbol=symbol, price=price)
    groups_refs = [
        [a.broker_account_id for a in accounts[n_main + g * args.breach : n_main + (g + 1) * args.breach]]
        for g in range(groups)
    ]
    return {
        "n_main": n_main,
        "positions": len(positions),
        "group_refs": groups_refs,
        "group_ids": [
            [a.pk for a in accounts[n_main + g * args.breach : n_main + (g + 1) * args.breach]] for g in range(groups)
        ],
        "mnq_start": start_price[BREACH_ROOT_SYMBOL],
        "mnq_holders": sum(1 for p in positions if p.instrument_id == mnq.pk),
    }


# -- Figure 1: the full sweep ----------------------------------------------------------------------


def run_sweeps(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from orders.models import Position
    from risk import enforcement
    from risk.models import AccountRiskState

    first = time.perf_counter()
    result = enforcement.monitor_accounts()  # creates the risk states
    first_ms = (time.perf_counter() - first) * 1000
    if result.breached:
        raise BenchError(f"The sweep found breaches in a world that should have none: {result.breached[:10]}")
    sweeps = Series("full sweep (monitor_accounts)")
    for _ in range(args.sweeps):
        t0 = time.perf_counter()
        result = enforcement.monitor_accounts()
        sweeps.add(time.perf_counter() - t0)
    with CaptureQueriesContext(connection) as queries:
        enforcement.monitor_accounts()
    query_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
    profile = cProfile.Profile()
    profile.enable()
    enforcement.monitor_accounts()
    profile.disable()
    # What one price-move mark task does (no breach): assess the MNQ holders, then publish marks.
    from orders.selectors import accounts_exposed_to

    marks = Series("mark_and_monitor(MNQ), no breach")
    mark_monitor = Series("  of which monitor_accounts(MNQ holders)")
    for _ in range(2):
        t0 = time.perf_counter()
        enforcement.mark_and_monitor(symbol=BREACH_ROOT_SYMBOL)
        marks.add(time.perf_counter() - t0)
        t0 = time.perf_counter()
        enforcement.monitor_accounts(accounts_exposed_to(BREACH_ROOT_SYMBOL))
        mark_monitor.add(time.perf_counter() - t0)
    mark_profile = cProfile.Profile()
    mark_profile.enable()
    enforcement.mark_and_monitor(symbol=BREACH_ROOT_SYMBOL)
    mark_profile.disable()
    return {
        "assessed": result.assessed,
        "first_ms": first_ms,
        "sweeps": sweeps,
        "marks": marks,
        "mark_monitor": mark_monitor,
        "mark_profile": mark_profile,
        "queries": queries.captured_queries,
        "query_ms": query_ms,
        "profile": profile,
        "states": AccountRiskState.objects.count(),
        "open_positions": Position.objects.open().count(),
    }


def profile_table(profile: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    # Keep the table, not pstats' preamble.
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text


# -- Figure 2: breach to flatten orders at the venue -----------------------------------------------

STEP_SQL = """
SELECT o.account_id,
       (SELECT min(v.occurred_at) FROM risk_violation v WHERE v.account_id = o.account_id),
       o.created_at,
       o.submitted_at,
       vo.created_at
  FROM orders_order o
  JOIN paper_venueorder vo ON vo.client_order_id = o.client_order_id
 WHERE o.account_id = ANY(%s) AND o.source = 'risk'
"""


def run_round(args: argparse.Namespace, world: dict[str, Any], g: int) -> dict[str, Any]:
    from django.db import connection

    from brokers.paper import feed
    from brokers.paper.models import VenueOrder

    refs = world["group_refs"][g]
    price = world["mnq_start"] - STEP_POINTS * (g + 1)
    timeout = args.first_timeout if g == 0 else args.timeout
    seen: dict[str, float] = {}
    t_pub = time.time()
    feed.publish_price(symbol=BREACH_ROOT_SYMBOL, price=price)
    t_returned = time.time()
    publish_dt = datetime.fromtimestamp(t_pub, UTC)
    while len(seen) < len(refs):
        rows = VenueOrder.objects.filter(account__ref__in=refs, created_at__gte=publish_dt).values_list(
            "client_order_id", flat=True
        )
        now = time.time()
        for coid in rows:
            seen.setdefault(coid, now)
        if now - t_pub > timeout:
            raise BenchError(
                f"Round {g}: {len(seen)} of {len(refs)} flatten orders at the venue after {timeout:.0f} s."
            )
        time.sleep(args.poll_interval_ms / 1000)
    with connection.cursor() as cursor:
        cursor.execute(STEP_SQL, [world["group_ids"][g]])
        steps = cursor.fetchall()
    if len(steps) != len(refs):
        raise BenchError(f"Round {g}: expected {len(refs)} RISK orders, found {len(steps)} (other accounts breached?)")
    return {"t_pub": t_pub, "publish_s": t_returned - t_pub, "seen": seen, "steps": steps, "price": price}


def wait_settled(args: argparse.Namespace, world: dict[str, Any], g: int) -> None:
    """Until the round's closes have filled at the venue and landed in propdesk, then a pause so the
    next move starts a new debounce round (the mark slot is released by the trailing run)."""
    from orders.models import Position

    deadline = time.monotonic() + args.timeout
    while Position.objects.open().filter(account_id__in=world["group_ids"][g]).exists():
        if time.monotonic() > deadline:
            say(f"  (round {g}: positions not flat after {args.timeout:.0f} s; going on)")
            break
        time.sleep(0.05)
    time.sleep(args.pause)


def check_no_collateral(world: dict[str, Any]) -> int:
    """Accounts breached that no round meant to breach (should be none)."""
    from risk.models import Violation

    meant = {pk for ids in world["group_ids"] for pk in ids}
    return Violation.objects.exclude(account_id__in=meant).values("account_id").distinct().count()


def summarize_round(result: dict[str, Any]) -> dict[str, Any]:
    t_pub = result["t_pub"]
    at_venue = Series("publish -> flatten order at venue (VenueOrder.created_at)")
    seen = Series("publish -> seen by the bench poll (committed)")
    for _, _, _, _, venue_at in result["steps"]:
        at_venue.add(venue_at.timestamp() - t_pub)
    for when in result["seen"].values():
        seen.add(when - t_pub)
    step_defs = [
        ("publish -> violation recorded (queue hop, mark task assesses exposed accounts, locks breached)", None, 1),
        ("violation -> RISK close order INSERT (flatten_accounts: all close orders at once)", 1, 2),
        ("close order INSERT -> send task claims it (commit, enqueue, queue hop)", 2, 3),
        ("claim -> venue order INSERT (adapter, venue)", 3, 4),
    ]
    steps = []
    for label, a, b in step_defs:
        series = Series(label)
        for row in result["steps"]:
            start = t_pub if a is None else (row[a].timestamp() if row[a] else None)
            end = row[b].timestamp() if row[b] else None
            if start is not None and end is not None:
                series.add(end - start)
        steps.append(series)
    return {"at_venue": at_venue, "seen": seen, "steps": steps, "publish_ms": result["publish_s"] * 1000}


# -- Report ---------------------------------------------------------------------------------------


def row(series: Series, width: int = 62) -> str:
    s = series.summary()
    return f"{series.name:{width}}{s['n']:>6}{fmt(s['p50']):>9}{fmt(s['p90']):>9}{fmt(s['p99']):>9}{fmt(s['max']):>9}"


def header(width: int = 62) -> str:
    return f"{'':{width}}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"


def report_sweep(sweep: dict[str, Any], world: dict[str, Any], args: argparse.Namespace) -> bool:
    print()
    print(
        f"propdesk risk sweep: {args.accounts} active accounts, {sweep['open_positions']} open positions over 14 "
        f"instruments ({world['mnq_holders']} accounts hold {BREACH_ROOT_SYMBOL}), in-process, nothing breached"
    )
    print(header())
    print(row(sweep["sweeps"]))
    print(row(sweep["marks"]))
    print(row(sweep["mark_monitor"]))
    print(f"first sweep (creates {sweep['states']} risk states): {sweep['first_ms']:.1f} ms")
    queries = sweep["queries"]
    print(f"queries in one sweep: {len(queries)}, {sweep['query_ms']:.1f} ms in the database (as Django times them)")
    for q in queries:
        print(f"  {float(q['time']) * 1000:7.1f} ms  {q['sql'][:150]}")
    s = sweep["sweeps"].summary()
    ok = s["p50"] <= TARGET_SWEEP_MS and s["max"] <= TARGET_SWEEP_MS
    print(
        f"target full sweep <= {TARGET_SWEEP_MS:.0f} ms: {'met' if ok else 'MISSED'} "
        f"(p50 {fmt(s['p50'])} ms, max {fmt(s['max'])} ms)"
    )
    print()
    print(f"where one sweep's time goes (cProfile, top {args.profile_lines} by own time):")
    print(profile_table(sweep["profile"], "tottime", args.profile_lines))
    print()
    print(f"the same sweep, top {args.profile_lines} by cumulative time:")
    print(profile_table(sweep["profile"], "cumulative", args.profile_lines))
    print()
    print(f"one mark_and_monitor({BREACH_ROOT_SYMBOL}) with no breach, top {args.profile_lines} by cumulative time:")
    print(profile_table(sweep["mark_profile"], "cumulative", args.profile_lines))
    return ok


def profile_enforcement(args: argparse.Namespace, world: dict[str, Any]) -> dict[str, Any]:
    """The last group breached in this process: monitor_accounts over its accounts, profiled.
    The price goes straight into the stores (no mark task); the worker still sends the closes."""
    from brokers.market_data import record_last_price
    from brokers.paper import venue
    from risk import enforcement

    g = len(world["group_ids"]) - 1
    price = world["mnq_start"] - STEP_POINTS * (g + 1)
    record_last_price(symbol=BREACH_ROOT_SYMBOL, price=price)
    venue.set_market_price(symbol=BREACH_ROOT_SYMBOL, price=price)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    time.sleep(args.pause * 2)  # let the worker finish the last round's mark tasks
    profile = cProfile.Profile()
    with CaptureQueriesContext(connection) as queries:
        t0 = time.perf_counter()
        profile.enable()
        result = enforcement.monitor_accounts(world["group_ids"][g])
        profile.disable()
        ms = (time.perf_counter() - t0) * 1000
    return {"ms": ms, "breached": len(result.breached), "profile": profile, "queries": len(queries)}


def report_flatten(rounds: list[dict[str, Any]], args: argparse.Namespace, collateral: int) -> bool:
    print()
    print(
        f"breach -> flatten: {len(rounds)} rounds (+1 warm-up), each one {BREACH_ROOT_SYMBOL} move of "
        f"-{STEP_POINTS} points breaching {args.breach} accounts; risk worker with {args.workers} prefork "
        f"processes, send worker {args.sender_pool} x {args.senders}; price published in-process with "
        "feed.publish_price"
    )
    all_venue = Series("all rounds: publish -> flatten order at venue")
    lasts = Series("all rounds: publish -> last of the round at venue")
    for r in rounds:
        all_venue.values_ms.extend(r["at_venue"].values_ms)
        lasts.values_ms.append(max(r["at_venue"].values_ms))
    print(header())
    for i, r in enumerate(rounds, start=1):
        print(f"round {i} (publish_price returned in {r['publish_ms']:.1f} ms)")
        print(row(r["at_venue"]))
        print(row(r["seen"]))
    print(row(all_venue))
    print(row(lasts))
    print()
    print("where the time goes (server timestamps, all rounds; per order, steps in sequence):")
    print(header(96))
    merged = [Series(s.name) for s in rounds[0]["steps"]]
    for r in rounds:
        for m, s in zip(merged, r["steps"], strict=True):
            m.values_ms.extend(s.values_ms)
    for m in merged:
        print(row(m, 96))
    if collateral:
        print(f"WARNING: {collateral} accounts outside the breaching groups were breached too.")
    p99 = all_venue.summary()["p99"]
    ok = p99 <= TARGET_FLATTEN_P99_MS
    print(f"target flatten p99 <= {TARGET_FLATTEN_P99_MS:.0f} ms: {'met' if ok else 'MISSED'} ({fmt(p99)} ms)")
    return ok


# -- Entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Risk engine: full sweep time and breach-to-flatten latency on a bench world.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=2000, help="active accounts in all")
    parser.add_argument("--positions", type=int, default=3, help="open positions per ordinary account (of 14)")
    parser.add_argument("--breach", type=int, default=50, help="accounts one price move breaches")
    parser.add_argument("--sweeps", type=int, default=20, help="timed full sweeps")
    parser.add_argument("--rounds", type=int, default=5, help="measured breach rounds (plus one warm-up)")
    parser.add_argument("--no-flatten", action="store_true", help="only the sweep (no worker)")
    parser.add_argument("--poll-interval-ms", type=float, default=2.0, help="pause between venue polls")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a round may take")
    parser.add_argument("--first-timeout", type=float, default=90.0, help="the same for the warm-up round")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds between rounds, after they settle")
    parser.add_argument("--profile-lines", type=int, default=25, help="rows of each cProfile table")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--workers", type=int, default=2, help="processes of the risk worker (prefork, queue celery)")
    parser.add_argument("--senders", type=int, default=SENDERS, help="concurrency of the send worker (queue orders)")
    parser.add_argument("--sender-pool", default=SENDER_POOL, help="pool of the send worker (-P)")
    add_stack_arguments(parser, db_name="propdesk_bench_risk", redis_prefix="propdesk-bench-risk")
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
        say(
            f"world: {args.accounts} accounts, {world['positions']} positions, built in "
            f"{time.perf_counter() - t0:.1f} s; sweeping"
        )
        sweep = run_sweeps(args)
        sweep_ok = report_sweep(sweep, world, args)
        flatten_ok = True
        if not args.no_flatten:
            spawn_procfile_workers(stack, workers=args.workers, senders=args.senders, sender_pool=args.sender_pool)
            rounds = []
            for g in range(args.rounds + 1):  # the last group is left for profile_enforcement
                stack.check_alive()
                say(f"  round {g}{' (warm-up)' if g == 0 else ''}")
                result = run_round(args, world, g)
                wait_settled(args, world, g)
                if g > 0:
                    rounds.append(summarize_round(result))
            enforced = profile_enforcement(args, world)
            flatten_ok = report_flatten(rounds, args, check_no_collateral(world))
            print()
            print(
                f"enforcing {enforced['breached']} breached accounts in-process (monitor_accounts over them): "
                f"{enforced['ms']:.0f} ms, {enforced['ms'] / max(1, enforced['breached']):.1f} ms and "
                f"{enforced['queries'] / max(1, enforced['breached']):.0f} queries per account; "
                f"top {args.profile_lines} by cumulative time:"
            )
            print(profile_table(enforced["profile"], "cumulative", args.profile_lines))
            print(f"the same, top {args.profile_lines} by own time:")
            print(profile_table(enforced["profile"], "tottime", args.profile_lines))
        return 1 if args.check and not (sweep_ok and flatten_ok) else 0
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

"""Order-to-fill latency on a live stack, next to the framework floor.

Sends market orders of 1 MES one at a time through the REST API, alternating buy and sell on one
account so the position flips between +1 and 0, and times each from the POST until the fill is
visible in GET /api/v1/positions/ (polled tightly on a keep-alive connection). In the same run it
times GET /api/v1/me/, the cheapest authenticated DRF endpoint on the same server: the floor any
request pays. It prints p50/p90/p99/max of both, their ratio and whether the targets hold.

By default it starts its own stack: a fresh PostgreSQL database (propdesk_bench), migrate and
seed_demo, a flushed Redis database (12) under its own key prefix, daphne (one process) and a
Celery worker with 2 prefork processes, DEBUG off. No price simulator: the MES price is set once
through the staff endpoint. Everything it started is terminated at the end, also on error or
Ctrl-C. With --url it runs against a stack that is already up instead (see --help).

Run from the project root:  .venv/bin/python bench/order_path.py --orders 500
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
_HERE_BIN = Path(sys.executable).parent
BIN = _HERE_BIN if (_HERE_BIN / "daphne").exists() else ROOT / ".venv" / "bin"

TARGET_P50_MS = 30.0
TARGET_P99_MS = 100.0

DEFAULT_PG = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"


class BenchError(RuntimeError):
    pass


# -- Statistics ---------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Series:
    name: str
    values_ms: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values_ms.append(seconds * 1000)

    def summary(self) -> dict[str, float]:
        values = sorted(self.values_ms)
        return {
            "n": len(values),
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "p99": percentile(values, 99),
            "max": values[-1] if values else math.nan,
            "mean": statistics.fmean(values) if values else math.nan,
        }


# -- CPU accounting (Linux /proc; silently absent elsewhere) --------------------------------------------


def group_cpu_seconds(pgids: Sequence[int]) -> dict[int, float]:
    """User+system CPU seconds of the live processes in each process group (a stack process and
    its children: we start each in its own session)."""
    out = dict.fromkeys(pgids, 0.0)
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgrp = int(fields[2])
        if pgrp in out:
            out[pgrp] += (int(fields[11]) + int(fields[12])) / ticks
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class CpuMeter:
    groups: dict[str, int]  # name -> process group id
    start: dict[int, float] = field(default_factory=dict)
    busy0: tuple[float, float] = (0.0, 0.0)
    load0: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    busy_share: float = math.nan
    load: tuple[float, float] = (math.nan, math.nan)

    def begin(self) -> None:
        try:
            self.start = group_cpu_seconds(list(self.groups.values()))
            self.busy0 = machine_busy()
            self.load0 = os.getloadavg()[0]
        except (OSError, ValueError, IndexError):
            self.busy0 = (math.nan, math.nan)

    def end(self) -> None:
        try:
            now = group_cpu_seconds(list(self.groups.values()))
            busy1 = machine_busy()
            self.used = {name: now[pg] - self.start.get(pg, 0.0) for name, pg in self.groups.items()}
            self.busy_share = (busy1[0] - self.busy0[0]) / (busy1[1] - self.busy0[1])
            self.load = (self.load0, os.getloadavg()[0])
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            pass


# -- The stack this script starts -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Target:
    base_url: str
    token: str
    staff_token: str | None
    account: int | None
    database_url: str | None  # for the per-step breakdown (server timestamps); None skips it


class OwnStack:
    """PostgreSQL database + Redis database + daphne + Celery worker, all private to this run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs = Path(args.logs_dir or tempfile.mkdtemp(prefix="propdesk-bench-"))
        self.logs.mkdir(parents=True, exist_ok=True)
        self.database_url = f"{args.pg_url.rstrip('/')}/{args.db_name}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": args.settings,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": args.redis_url,
            "REDIS_KEY_PREFIX": args.redis_prefix,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": "http://127.0.0.1,http://localhost",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "PAPER_BROKER_ENABLED": "1",
            # No beat runs in a bench stack to keep reconciliations fresh: no gate on them.
            "RECONCILIATION_MAX_AGE_SECONDS": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }

    # Setup steps ---------------------------------------------------------------------------

    def reset_database(self) -> None:
        import psycopg
        from psycopg import sql

        admin_url = f"{self.args.pg_url.rstrip('/')}/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            name = sql.Identifier(self.args.db_name)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))

    def reset_redis(self) -> None:
        import redis

        redis.Redis.from_url(self.args.redis_url).flushdb()

    def manage(self, *command: str) -> str:
        result = subprocess.run(
            [str(BIN / "python") if (BIN / "python").exists() else sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(f"manage.py {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(  # its own session: Ctrl-C reaches only us, we stop it ourselves
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes.append((name, process))

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(self.logs.glob("*.log"))
        )

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise BenchError(f"{name} exited with {process.returncode}.\n{self.log_tail()}")

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> Target:
        say(f"stack: database {self.args.db_name}, Redis {self.args.redis_url}, logs in {self.logs}")
        self.reset_database()
        self.reset_redis()
        self.manage("migrate", "--noinput")
        tokens = dict(re.findall(r"^\s+(\w+)\s+\S+\s+([0-9a-f]{40})\s*$", self.manage("seed_demo"), re.MULTILINE))
        if not {"alice", "staff"} <= tokens.keys():
            raise BenchError(f"Could not read the demo tokens from seed_demo's output: {tokens}")
        port = free_port()
        self.spawn("daphne", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"])
        self.spawn(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "config",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(self.args.workers),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
        )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            self.check_alive()
            try:
                answer = httpx.get(f"{base_url}/api/v1/me/", headers=auth(tokens["alice"]), timeout=2)
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"daphne did not answer within 60 s.\n{self.log_tail()}")
            time.sleep(0.1)
        # The worker has no "ready" line at WARNING; the first warm-up order waits for it instead.
        return Target(
            base_url=base_url,
            token=tokens["alice"],
            staff_token=tokens["staff"],
            account=None,
            database_url=self.database_url,
        )

    def stop(self) -> None:
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # celery: warm shutdown of the pool; daphne: exit
        deadline = time.monotonic() + 15
        for _, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Anything left in the session we created for it (pool children) goes too.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.processes.clear()


# -- Talking to the API ---------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise BenchError(f"{what}: HTTP {response.status_code} (expected {status}): {response.text[:500]}")
    return response.json()


def pick_account(api: httpx.Client) -> int:
    accounts = expect(api.get("/api/v1/accounts/"), 200, "GET /api/v1/accounts/")["results"]
    for account in accounts:
        if account["trading_state"] == "active" and account["status"] not in ("breached", "closed"):
            return int(account["id"])
    raise BenchError("The token's user has no active account to trade; pass --account.")


def front_symbol(api: httpx.Client, root: str) -> str:
    instruments = expect(api.get("/api/v1/instruments/", params={"root": root}), 200, "GET /api/v1/instruments/")
    rows = instruments["results"] if isinstance(instruments, dict) else instruments
    if not rows:
        raise BenchError(f"No tradable {root} contract.")
    return rows[0]["symbol"]


def position_quantity(api: httpx.Client, account: int, symbol: str) -> int:
    response = api.get("/api/v1/positions/", params={"account": account, "include_closed": "true"})
    if response.status_code != 200:
        raise BenchError(f"GET /api/v1/positions/: HTTP {response.status_code}: {response.text[:300]}")
    for row in response.json()["results"]:
        if row["symbol"] == symbol and row["account"] == account:
            return int(row["quantity"])
    return 0


@dataclass
class OrderSample:
    order_id: int
    wall_start: float  # time.time() just before the POST (server timestamps are comparable)
    post_s: float
    fill_s: float
    wall_seen: float
    polls: int


@dataclass
class Results:
    fills: Series = field(default_factory=lambda: Series("order -> fill visible"))
    posts: Series = field(default_factory=lambda: Series("  POST /orders/ answered"))
    polls: Series = field(default_factory=lambda: Series("  GET /positions/ (each poll)"))
    floor: Series = field(default_factory=lambda: Series("floor: GET /me/"))
    samples: list[OrderSample] = field(default_factory=list)
    cpu: CpuMeter | None = None


def run_order(
    api: httpx.Client,
    *,
    account: int,
    symbol: str,
    root: str,
    quantity_now: int,
    poll_interval: float,
    timeout: float,
    poll_series: Series | None,
) -> tuple[OrderSample, int]:
    side = "buy" if quantity_now <= 0 else "sell"
    target = quantity_now + (1 if side == "buy" else -1)
    body = {"account": account, "symbol": root, "side": side, "quantity": 1, "type": "market"}
    wall_start = time.time()
    t0 = time.perf_counter()
    response = api.post("/api/v1/orders/", json=body)
    t_post = time.perf_counter()
    order = expect(response, 201, "POST /api/v1/orders/")
    order_id = int(order["id"])
    polls = 0
    while True:
        p0 = time.perf_counter()
        quantity = position_quantity(api, account, symbol)
        p1 = time.perf_counter()
        polls += 1
        if poll_series is not None:
            poll_series.add(p1 - p0)
        if quantity == target:
            return OrderSample(order_id, wall_start, t_post - t0, p1 - t0, time.time(), polls), quantity
        if p1 - t0 > timeout:
            detail = api.get(f"/api/v1/orders/{order_id}/").json()
            raise BenchError(
                f"Order {order_id} ({side}) not visible as a fill after {timeout:.0f} s: position {quantity}, "
                f"expected {target}; order status {detail.get('status')!r} {detail.get('reason', '')!r}"
            )
        if polls % 500 == 0:  # fail fast on an order that will never fill
            status = api.get(f"/api/v1/orders/{order_id}/").json().get("status")
            if status in ("rejected", "denied", "canceled", "expired"):
                raise BenchError(f"Order {order_id} ended {status}; see the order's events.")
        if poll_interval > 0:
            time.sleep(poll_interval)


def run(target: Target, args: argparse.Namespace, stack: OwnStack | None) -> Results:
    results = Results()
    with httpx.Client(base_url=target.base_url, headers=auth(target.token), timeout=15) as api:
        if target.staff_token:
            with httpx.Client(base_url=target.base_url, headers=auth(target.staff_token), timeout=15) as staff:
                expect(
                    staff.post("/api/v1/sim/prices/", json={"symbol": args.root, "price": args.price}),
                    200,
                    "POST /api/v1/sim/prices/",
                )
        account = target.account or pick_account(api)
        symbol = front_symbol(api, args.root)
        quantity = position_quantity(api, account, symbol)
        say(
            f"account {account}, {symbol}, position {quantity}; {args.warmup} warm-up + {args.orders} measured "
            f"orders, polling every {args.poll_interval_ms} ms"
        )
        total = args.warmup + args.orders
        results.cpu = CpuMeter({name: p.pid for name, p in stack.processes} if stack is not None else {})
        for i in range(total):
            measured = i >= args.warmup
            if i == args.warmup:
                results.cpu.begin()
            sample, quantity = run_order(
                api,
                account=account,
                symbol=symbol,
                root=args.root,
                quantity_now=quantity,
                poll_interval=args.poll_interval_ms / 1000,
                # The first order also waits for the Celery worker to come up.
                timeout=args.first_timeout if i == 0 else args.timeout,
                poll_series=results.polls if measured else None,
            )
            if stack is not None and i % 50 == 0:
                stack.check_alive()
            if measured:
                results.fills.add(sample.fill_s)
                results.posts.add(sample.post_s)
                results.samples.append(sample)
            if (i + 1) % 100 == 0:
                say(f"  {i + 1}/{total} orders")

        results.cpu.end()
        # The floor, on the same server and connection, once the order path is quiet.
        time.sleep(0.5)
        floor_n = args.floor_samples if args.floor_samples is not None else args.orders
        for i in range(args.warmup + floor_n):
            t0 = time.perf_counter()
            expect(api.get("/api/v1/me/"), 200, "GET /api/v1/me/")
            if i >= args.warmup:
                results.floor.add(time.perf_counter() - t0)
    return results


# -- Where the time goes: server-side timestamps of each step ------------------------------------------

BREAKDOWN_SQL = """
SELECT o.id,
       o.created_at,
       o.submitted_at,
       (SELECT min(e.created_at) FROM orders_orderevent e WHERE e.order_id = o.id AND e.type = 'created'),
       (SELECT min(e.created_at) FROM orders_orderevent e WHERE e.order_id = o.id AND e.type = 'submitted'),
       vo.created_at,
       (SELECT min(vf.executed_at) FROM paper_venuefill vf WHERE vf.order_id = vo.id),
       (SELECT min(e.created_at) FROM orders_orderevent e WHERE e.order_id = o.id AND e.type = 'accepted'),
       (SELECT min(f.created_at) FROM orders_fill f WHERE f.order_id = o.id),
       (SELECT min(e.created_at) FROM orders_orderevent e WHERE e.order_id = o.id AND e.type = 'fill')
  FROM orders_order o
  LEFT JOIN paper_venueorder vo ON vo.client_order_id = o.client_order_id
 WHERE o.id = ANY(%s)
"""

STEPS = [
    # (label, from, to): columns are indexes into the breakdown row; "post" / "seen" are the client's clock
    ("client POST -> order row INSERT (HTTP, auth, validation, pre-trade)", "post", 1),
    ("order INSERT -> POST answered at client (commit, publish, enqueue, re-read)", 1, "answered"),
    ("order INSERT -> worker claims it (commit, on-commit publish+enqueue, queue hop 1)", 1, 2),
    ("claim -> venue order INSERT (claim tx, publish, adapter)", 2, 5),
    ("venue order INSERT -> venue fill", 5, 6),
    ("venue fill -> 'accepted' event (send task applies the ack)", 6, 7),
    ("venue fill -> propdesk Fill INSERT (venue commit, push, queue hop 2, ingest)", 6, 8),
    ("propdesk Fill INSERT -> 'fill' event INSERT (rest of apply_fill)", 8, 9),
    ("'fill' event INSERT -> client sees position (commit + poll detection)", 9, "seen"),
]


def breakdown(database_url: str, samples: list[OrderSample]) -> list[tuple[str, dict[str, float]]]:
    import psycopg

    by_id = {s.order_id: s for s in samples}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(BREAKDOWN_SQL, (list(by_id),)).fetchall()
    out = []
    for label, start, end in STEPS:
        series = Series(label)
        for row in rows:
            sample = by_id[row[0]]

            def at(col: str | int, row: tuple[Any, ...] = row, sample: OrderSample = sample) -> float | None:
                if col == "post":
                    return sample.wall_start
                if col == "answered":
                    return sample.wall_start + sample.post_s
                if col == "seen":
                    return sample.wall_seen
                value: datetime | None = row[col]  # type: ignore[index]
                return value.timestamp() if value is not None else None

            a, b = at(start), at(end)
            if a is not None and b is not None:
                series.add(b - a)
        out.append((label, series.summary()))
    return out


# -- Report --------------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def report(results: Results, args: argparse.Namespace, steps: list[tuple[str, dict[str, float]]] | None) -> bool:
    fills, floor = results.fills.summary(), results.floor.summary()
    polls_per_order = sorted(s.polls for s in results.samples)
    print()
    print(
        f"propdesk order path: {args.orders} market orders of 1 {args.root} (+{args.warmup} warm-up), "
        f"sequential, {args.workers} Celery worker processes, poll interval {args.poll_interval_ms} ms"
    )
    print(f"{'':34}{'samples':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for series in (results.fills, results.posts, results.polls, results.floor):
        s = series.summary()
        print(f"{series.name:34}{s['n']:>8}{fmt(s['p50']):>9}{fmt(s['p90']):>9}{fmt(s['p99']):>9}{fmt(s['max']):>9}")
    print(
        f"polls per order: p50 {percentile(polls_per_order, 50)}, max {polls_per_order[-1] if polls_per_order else '-'}"
    )
    ratio = fills["p50"] / floor["p50"] if floor["p50"] else math.nan
    print(f"ratio order->fill p50 / floor p50: {ratio:.1f}x")
    p50_ok, p99_ok = fills["p50"] <= TARGET_P50_MS, fills["p99"] <= TARGET_P99_MS
    print(f"target p50 <= {TARGET_P50_MS:.0f} ms: {'met' if p50_ok else 'MISSED'} ({fmt(fills['p50'])} ms)")
    print(f"target p99 <= {TARGET_P99_MS:.0f} ms: {'met' if p99_ok else 'MISSED'} ({fmt(fills['p99'])} ms)")
    cpu = results.cpu
    if cpu is not None and not math.isnan(cpu.busy_share):
        per_order = ", ".join(f"{name} {1000 * used / args.orders:.1f} ms" for name, used in cpu.used.items())
        print(
            f"while measuring: all {os.cpu_count()} CPUs {100 * cpu.busy_share:.0f}% busy, load average "
            f"{cpu.load[0]:.1f} -> {cpu.load[1]:.1f}" + (f"; CPU per order: {per_order}" if per_order else "")
        )
    if steps:
        print()
        print("where the time goes (server timestamps of the measured orders; steps overlap, so they do not add up):")
        print(f"{'':82}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}")
        for label, s in steps:
            print(f"{label:82}{fmt(s['p50']):>8}{fmt(s['p90']):>8}{fmt(s['p99']):>8}")
    return p50_ok and p99_ok


# -- Entry point ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Order-to-fill latency (POST -> fill visible in /positions/) vs. the GET /me/ floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--orders", type=int, default=500, help="measured orders")
    parser.add_argument("--warmup", type=int, default=20, help="orders (and floor requests) left out of the figures")
    parser.add_argument("--floor-samples", type=int, default=None, help="GET /me/ samples (None: as many as --orders)")
    parser.add_argument("--poll-interval-ms", type=float, default=1.0, help="pause between position polls")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds an order may take to show its fill")
    parser.add_argument("--first-timeout", type=float, default=60.0, help="the same for the first order")
    parser.add_argument("--root", default="MES", help="contract root to trade (front month)")
    parser.add_argument("--price", default="5000.25", help="price set once through /api/v1/sim/prices/")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-step table (needs the database)")

    own = parser.add_argument_group("own stack (default)")
    own.add_argument("--workers", type=int, default=2, help="Celery worker processes (prefork)")
    add_stack_arguments(own, db_name="propdesk_bench", redis_prefix="propdesk-bench")

    external = parser.add_argument_group("already running stack")
    external.add_argument("--url", help="base URL, e.g. http://127.0.0.1:8000; skips starting a stack")
    external.add_argument("--token", help="API token of a trader who may trade --account")
    external.add_argument("--staff-token", help="staff API token, to set the price first (optional)")
    external.add_argument("--account", type=int, help="account id to trade (default: the trader's first active one)")
    external.add_argument("--database-url", help="the stack's database, for the per-step table (optional)")
    args = parser.parse_args(argv)
    if args.url and not args.token:
        parser.error("--url needs --token")
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    return args


def raise_on_sigterm(signum: int, frame: Any) -> None:
    """Tear the stack down on SIGTERM as on Ctrl-C."""
    say("terminated")
    raise SystemExit(128 + signum)


def add_stack_arguments(group: Any, *, db_name: str, redis_prefix: str) -> None:
    """Where a bench's own stack lives: its database, its Redis database and prefix, its logs."""
    group.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server (a superuser) for the bench database")
    group.add_argument("--db-name", default=db_name, help="database dropped and created for the run")
    group.add_argument("--redis-url", default=DEFAULT_REDIS, help="Redis database flushed and used by the run")
    group.add_argument("--redis-prefix", default=redis_prefix, help="REDIS_KEY_PREFIX of the run")
    group.add_argument(
        "--settings",
        default="config.settings.base",
        help="DJANGO_SETTINGS_MODULE of the stack (a variant on PYTHONPATH lets you try a settings change)",
    )
    group.add_argument("--logs-dir", default=None, help="where the processes' logs go (None: a new temp dir)")


def join_stack_in_process(stack: OwnStack) -> None:
    """A fresh database and Redis for `stack`, migrated; then this process runs Django on them
    too (same settings and secrets), to build the bench's world through the ORM."""
    stack.reset_database()
    stack.reset_redis()
    stack.manage("migrate", "--noinput")
    os.environ.update(stack.env)
    import django

    django.setup()
    import config  # noqa: F401  (binds the shared tasks to the Celery app)


def spawn_procfile_workers(stack: OwnStack, *, workers: int, senders: int, sender_pool: str = "prefork") -> None:
    """The Celery workers as the Procfile runs them: one on the "celery" and "reconcile" queues
    (risk, plans, everything else), one on "orders" (sends, cancels, modifies), one on "events"
    (what the broker pushes)."""
    celery = str(Path(sys.executable).parent / "celery")
    common = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
    for name, queues, pool, concurrency in (
        ("worker", "celery,reconcile", "prefork", workers),
        ("sender", "orders", sender_pool, senders),
        ("stream", "events", "prefork", 2),
    ):
        stack.spawn(
            name,
            [
                celery,
                "-A",
                "config",
                "worker",
                "-Q",
                queues,
                "-n",
                f"{name}@%h",
                "-P",
                pool,
                "-c",
                str(concurrency),
                *common,
            ],
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    stack: OwnStack | None = None
    try:
        if args.url:
            target = Target(args.url.rstrip("/"), args.token, args.staff_token, args.account, args.database_url)
        else:
            stack = OwnStack(args)
            target = stack.start()
        if args.account:
            target.account = args.account
        try:
            results = run(target, args, stack)
        except BenchError:
            if stack is not None:
                say(stack.log_tail())
            raise
        steps = None
        if target.database_url and not args.no_breakdown:
            try:
                steps = breakdown(target.database_url, results.samples)
            except Exception as exc:  # the figures stand without it
                say(f"(no per-step breakdown: {exc})")
        met = report(results, args, steps)
        return 1 if args.check and not met else 0
    except BenchError as exc:
        say(f"bench failed: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if stack is not None:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())

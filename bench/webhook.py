"""Webhook intake under load, next to a trivial endpoint on the same server in the same run.

Drives POST /webhooks/tradingview/<token>/ at --rate requests/s (distinct bodies, no `id`) and
GET /webhooks/health/ (no database, no session) at the same rate, interleaved, open
loop (requests leave on schedule whether or not earlier ones have answered), for --duration
seconds after --warmup seconds. Latency is measured from each request's scheduled start, so a
server that falls behind shows it (no coordinated omission); the client's own lag is printed too.

It starts its own stack: a fresh PostgreSQL database (propdesk_bench_webhook), migrate, a flushed
Redis database (10) under its own key prefix, and the web tier as the Procfile starts it
(config/web.py: --web-processes daphne processes on one socket, 2 by default), DEBUG off. The strategy
and its token are made in this process through the services. No Celery worker by default: the
fan-out of each signal is enqueued (on commit, to Redis) but not run, so the figures are the
intake's own (the publish happens after the answer, in the web process); --worker starts one.
Everything it started is stopped at the end.

Run from the project root:  .venv/bin/python bench/webhook.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's directory comes first on sys.path and bench/risk.py would shadow
# the risk app (bench/plans.py does the same).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.order_path import (  # noqa: E402
    BIN,
    BenchError,
    CpuMeter,
    OwnStack,
    Series,
    add_stack_arguments,
    fmt,
    free_port,
    join_stack_in_process,
    percentile,
    raise_on_sigterm,
    say,
)
from config.web import DEFAULT_PROCESSES  # noqa: E402

TARGET_P99_MS = 25.0
# What the Procfile's web line passes to daphne (through config/web.py).
PROCFILE_DAPHNE_FLAGS = ["--access-log", "/dev/null"]
TARGET_RATIO = 2.0


def build_world() -> str:
    """A trader, a strategy whose rate limit the run stays under, one webhook token; returns the path."""
    from django.contrib.auth import get_user_model

    from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
    from signals_in.strategies import create_strategy, issue_webhook_token

    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    owner = get_user_model().objects.create_user(username="bench-trader", password=None)
    strategy = create_strategy(name="Bench webhook", owner=owner, rate_limit_per_minute=1_000_000)
    return issue_webhook_token(strategy=strategy, label="bench").path


def start_daphne(stack: OwnStack, *, worker: bool, processes: int, profile: bool = False) -> str:
    """The web tier as the Procfile starts it (config/web.py: `processes` daphne processes on one
    listening socket), with the Procfile's daphne flags."""
    port = free_port()
    launcher = [str(BIN / "python"), "-m", "config.web", "--processes", str(processes), "-p", str(port)]
    if profile:
        launcher += ["--profile-dir", str(stack.logs)]
    stack.spawn("web", [*launcher, "--", *PROCFILE_DAPHNE_FLAGS])
    if worker:
        stack.spawn(
            "worker",
            [str(BIN / "celery"), "-A", "config", "worker", "-Q", "orders,celery", "-c", "2", "-l", "WARNING"],
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        stack.check_alive()
        try:
            if httpx.get(f"{base_url}/webhooks/health/", timeout=2).status_code == 200:
                return base_url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"daphne did not answer within 60 s.\n{stack.log_tail()}")
        time.sleep(0.1)


def webhook_body(run: str, n: int) -> bytes:
    # What a TradingView strategy alert sends (as text/plain). No `id`, as most alerts: duplicates
    # are then found by body (the advisory-lock path); the comment makes each body distinct.
    return json.dumps(
        {
            "ticker": "MNQ1!",
            "action": "buy" if n % 2 == 0 else "sell",
            "sentiment": "long" if n % 2 == 0 else "flat",
            "quantity": "1",
            "price": "21000.25",
            "time": "2026-11-20T15:02:00Z",
            "comment": f"bench {run} {n}",
        }
    ).encode()


class Load:
    def __init__(self, name: str) -> None:
        self.latency = Series(name)
        self.lag = Series(f"{name} client lag")
        self.errors: list[str] = []
        self.sent = 0


class Connections:
    """Keep-alive HTTP/1.1 connections to the server, written and read by hand.

    httpx costs ~1.6 ms of client CPU per request here: at 600 requests/s the client alone would
    take a core of the 2-core machine from the server it measures. This pool costs a few tens of
    microseconds per request (pre-encoded requests, status line + Content-Length parsing only)."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)
        self.opened = 0

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.opened += 1
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
            except BaseException:
                writer.close()
                raise
            self.idle.append((reader, writer))
            return status, body

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


def encode_request(method: str, path: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
    if body is not None:
        head += f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def one(connections: Connections, load: Load | None, scheduled: float, raw: bytes, check: Any) -> None:
    started = time.perf_counter()
    try:
        status, body = await asyncio.wait_for(connections.request(raw), timeout=10)
        done = time.perf_counter()
        problem = check(status, body)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
        done, problem = time.perf_counter(), f"{type(exc).__name__}: {exc}"
    if load is None:
        return
    load.sent += 1
    load.latency.add(done - scheduled)
    load.lag.add(started - scheduled)
    if problem:
        load.errors.append(problem)


def check_webhook(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if json.loads(body).get("duplicate") is not False:
        return f"unexpected duplicate: {body[:200]!r}"
    return None


def check_health(status: int, body: bytes) -> str | None:
    return None if status == 200 else f"HTTP {status}"


async def drive(base_url: str, webhook_path: str, args: argparse.Namespace) -> tuple[Load, Load]:
    webhook, health = Load("POST webhook"), Load("GET health (floor)")
    run = str(int(time.time()))
    interval = 1 / args.rate
    total = int((args.warmup + args.duration) * args.rate)
    measured_from = int(args.warmup * args.rate)
    host, port = base_url.removeprefix("http://").split(":")
    connections = Connections(host, int(port), args.connections)
    health_request = encode_request("GET", "/webhooks/health/")
    tasks = []
    start = time.perf_counter() + 0.2
    for n in range(total):
        measured = n >= measured_from
        for offset, load, raw, check in (
            (0.0, webhook, encode_request("POST", webhook_path, webhook_body(run, n)), check_webhook),
            (interval / 2, health, health_request, check_health),
        ):
            scheduled = start + n * interval + offset
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(connections, load if measured else None, scheduled, raw, check)))
        if n == measured_from:
            say(f"  warm-up done, measuring {args.duration:.0f} s")
    await asyncio.gather(*tasks)
    connections.close()
    say(f"  {connections.opened} connections opened")
    return webhook, health


def stored_signals() -> dict[str, int]:
    from signals_in.models import Signal

    return {
        status: Signal.objects.filter(status=status).count()
        for status in ("received", "rejected", "processed", "failed")
    }


def report(webhook: Load, health: Load, args: argparse.Namespace, stored: dict[str, int], cpu: CpuMeter) -> bool:
    print()
    print(
        f"propdesk webhook intake: {args.rate:.0f} req/s to the webhook and {args.rate:.0f} req/s to a trivial "
        f"endpoint, interleaved, open loop, {args.duration:.0f} s measured (+{args.warmup:.0f} s warm-up), "
        f"{args.web_processes} daphne process(es) (config/web.py), "
        f"{'a Celery worker' if args.worker else 'no Celery worker'}"
    )
    print(f"{'':34}{'sent':>7}{'errors':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for load in (webhook, health):
        s = load.latency.summary()
        print(
            f"{load.latency.name:34}{load.sent:>7}{len(load.errors):>8}{fmt(s['p50']):>9}{fmt(s['p90']):>9}"
            f"{fmt(s['p99']):>9}{fmt(s['max']):>9}"
        )
    for load in (webhook, health):
        lag = sorted(load.lag.values_ms)
        print(f"  {load.lag.name}: p50 {fmt(percentile(lag, 50))} ms, p99 {fmt(percentile(lag, 99))} ms")
    for load in (webhook, health):
        for problem in sorted(set(load.errors))[:5]:
            print(f"  {load.latency.name} error: {problem}")
    print(f"signals stored: {stored}")
    w, h = webhook.latency.summary(), health.latency.summary()
    ratio = w["p99"] / h["p99"] if h["p99"] else math.nan
    print(f"ratio webhook p99 / trivial p99: {ratio:.2f}x (p50: {w['p50'] / h['p50']:.2f}x)")
    errors = len(webhook.errors) + len(health.errors)
    checks = [
        (f"zero errors: {errors}", errors == 0),
        (f"webhook p99 <= {TARGET_P99_MS:.0f} ms: {fmt(w['p99'])} ms", w["p99"] <= TARGET_P99_MS),
        (f"webhook p99 <= {TARGET_RATIO:.0f}x trivial p99: {ratio:.2f}x", ratio <= TARGET_RATIO),
    ]
    for label, ok in checks:
        print(f"target {label}: {'met' if ok else 'MISSED'}")
    if not math.isnan(cpu.busy_share):
        requests = (webhook.sent + health.sent) / (args.duration / (args.duration + args.warmup))
        used = ", ".join(
            f"{name} {seconds:.1f} s ({1000 * seconds / requests:.2f} ms per request)"
            for name, seconds in [*cpu.used.items(), ("this client", getattr(cpu, "used_by_client", math.nan))]
        )
        print(
            f"while measuring: all CPUs {100 * cpu.busy_share:.0f}% busy, load average "
            f"{cpu.load[0]:.1f} -> {cpu.load[1]:.1f}; CPU used: {used}"
        )
    return all(ok for _, ok in checks)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Webhook intake latency at a fixed rate, against a trivial endpoint on the same server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second to each endpoint")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at the rate before measuring")
    parser.add_argument("--connections", type=int, default=64, help="client keep-alive connections at most")
    parser.add_argument("--worker", action="store_true", help="also run a Celery worker (the fan-out)")
    parser.add_argument(
        "--web-processes",
        type=int,
        default=DEFAULT_PROCESSES,
        help="daphne processes sharing the port (config/web.py; the Procfile's default)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--profile-server",
        action="store_true",
        help="run each daphne under cProfile (daphne-<n>.prof in the logs dir; main thread only)",
    )
    own = parser.add_argument_group("own stack")
    own.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    add_stack_arguments(own, db_name="propdesk_bench_webhook", redis_prefix="propdesk-bench-webhook")
    args = parser.parse_args(argv)
    if args.redis_url.endswith("/12"):
        args.redis_url = args.redis_url[:-3] + "/10"  # not order_path's database
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    stack = OwnStack(args)
    try:
        say(f"stack: database {args.db_name}, Redis {args.redis_url}, logs in {stack.logs}")
        join_stack_in_process(stack)
        webhook_path = build_world()
        base_url = start_daphne(stack, worker=args.worker, processes=args.web_processes, profile=args.profile_server)
        cpu = CpuMeter({name: p.pid for name, p in stack.processes})
        say(f"driving {args.rate:.0f} req/s to each endpoint for {args.warmup + args.duration:.0f} s")
        cpu.begin()
        client_cpu = time.process_time()
        webhook, health = asyncio.run(drive(base_url, webhook_path, args))
        cpu.used_by_client = time.process_time() - client_cpu  # type: ignore[attr-defined]
        cpu.end()
        stack.check_alive()
        met = report(webhook, health, args, stored_signals(), cpu)
        return 1 if args.check and not met else 0
    except BenchError as exc:
        say(f"bench failed: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())

"""POST /webhooks/tradingview/<token>/ over HTTP: answers and codes, and generated bodies that
never get a 5xx and never leave anything half stored."""

import json
import os

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
from signals_in.models import TRADINGVIEW_IPS, Signal, SignalStatus
from signals_in.strategies import create_strategy, issue_webhook_token
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def strategy(alice):  # type: ignore[no-untyped-def]
    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    return create_strategy(name="Webhook view", owner=alice, rate_limit_per_minute=0)


@pytest.fixture
def url(strategy) -> str:  # type: ignore[no-untyped-def]
    return issue_webhook_token(strategy=strategy).path


def post(url: str, body: bytes | str, content_type: str = "text/plain", **extra: str):  # type: ignore[no-untyped-def]
    # TradingView sends no cookies and no CSRF token: neither may be needed.
    return Client(enforce_csrf_checks=True).post(
        url, data=body, content_type=content_type, REMOTE_ADDR=TRADINGVIEW_IPS[0], **extra
    )


def test_a_good_signal_answers_200_with_its_id(url, processed, commit):
    with commit():
        response = post(url, '{"ticker": "MNQ1!", "action": "buy", "quantity": "2"}', "application/json")

    assert response.status_code == 200
    body = response.json()
    assert body == {"signal_id": body["signal_id"], "duplicate": False, "status": "received"}
    assert Signal.objects.get(pk=body["signal_id"]).quantity == 2
    assert processed == []  # handed to the fan-out by the hand-off process, not by the web


def test_bad_input_answers_400_with_code_sentence_and_the_stored_id(url):
    response = post(url, '{"ticker": "MNQ1!", "action": "short it"}')

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["field"], body["status"]) == ("unknown_action", "action", "rejected")
    assert Signal.objects.get(pk=body["signal_id"]).reject_reason == body["detail"]


def test_unknown_token_is_404(strategy):
    response = post("/webhooks/tradingview/not-a-real-token-at-all-0000/", '{"ticker": "NQ1!", "action": "buy"}')

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert Signal.objects.count() == 0


def test_over_the_rate_limit_is_429(url, strategy, processed):
    strategy.rate_limit_per_minute = 1
    strategy.save()

    codes = [post(url, f'{{"ticker": "NQ1!", "action": "buy", "comment": "{n}"}}').status_code for n in range(2)]

    assert codes == [200, 429]
    assert Signal.objects.count() == 1


def test_a_source_outside_the_allowlist_is_403(url, strategy):
    strategy.allowed_ips = ["52.89.214.238"]
    strategy.save()

    response = Client().post(url, data="action=buy\nticker=NQ1!", content_type="text/plain", REMOTE_ADDR="198.51.100.7")

    assert (response.status_code, response.json()["code"]) == (403, "source_not_allowed")
    assert Signal.objects.get().reject_code == "source_not_allowed"


def test_a_large_body_answers_400_body_too_large(url):
    response = post(url, "ticker=NQ1!\naction=buy\ncomment=" + "y" * 70_000)

    assert (response.status_code, response.json()["code"]) == (400, "body_too_large")
    assert Signal.objects.get().status == SignalStatus.REJECTED


def test_get_is_not_allowed(url):
    response = Client().get(url)

    assert response.status_code == 405
    assert Signal.objects.count() == 0


def test_the_health_endpoint_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/webhooks/health/")
    assert response.json() == {"ok": True}


# -- Generated bodies ------------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from(
    [
        "ticker",
        "action",
        "sentiment",
        "quantity",
        "orderType",
        "limitPrice",
        "stopPrice",
        "trailAmount",
        "price",
        "signalPrice",
        "time",
        "id",
        "passphrase",
        "stopLoss",
        "takeProfit",
        "comment",
        "extras",
        "qty",
        "symbol",
        "data",
    ]
)
SCALARS = st.one_of(
    st.sampled_from(
        [
            "buy",
            "sell",
            "exit",
            "add",
            "cancel",
            "NQ1!",
            "MNQZ2026",
            "MES 12-26",
            "CME_MINI:ES1!",
            "ZZ1!",
            "NaN",
            "{{close}}",
            "2026-11-20T14:30:00Z",
            "0",
            "-1",
            "1e400",
            "limit",
            "stop_limit",
            "flat",
            "bullish",
        ]
    ),
    st.text(max_size=30),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELD_NAMES | st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def as_json(fields: dict) -> bytes:  # type: ignore[type-arg]
    return json.dumps(fields).encode()


def as_lines(fields: dict) -> bytes:  # type: ignore[type-arg]
    return "\n".join(f"{k}={v}" for k, v in fields.items()).encode()


def as_crosstrade(fields: dict) -> bytes:  # type: ignore[type-arg]
    return "".join(f"{k}={v};" for k, v in fields.items()).encode()


# Mostly right: a ticker and an action we know, plus whatever else, so many are accepted.
PLAUSIBLE = st.builds(
    lambda render, ticker, action, extra: render({"ticker": ticker, "action": action, **extra}),
    st.sampled_from([as_json, as_lines, as_crosstrade]),
    st.sampled_from(["NQ1!", "CME_MINI:MNQ1!", "MNQZ2026", "MES 12-26", "ES"]),
    st.sampled_from(["buy", "sell", "exit", "add", "cancel", "close"]),
    st.dictionaries(FIELD_NAMES.filter(lambda f: f not in ("ticker", "action", "symbol", "data")), VALUES, max_size=4),
)
BODIES = st.one_of(
    PLAUSIBLE,
    st.builds(
        lambda render, fields: render(fields),
        st.sampled_from([as_json, as_lines, as_crosstrade]),
        st.dictionaries(FIELD_NAMES, VALUES, max_size=8),
    ),
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_generated_bodies_never_get_a_5xx_and_are_stored_once_or_not_at_all(url, processed, body, content_type):
    before = Signal.objects.count()

    response = post(url, body, content_type)

    assert response.status_code < 500
    answer = response.json()
    after = Signal.objects.count()
    if answer.get("duplicate"):
        assert after == before
        assert Signal.objects.filter(pk=answer["signal_id"]).exists()
        return
    assert after == before + 1
    signal = Signal.objects.get(pk=answer["signal_id"])
    if response.status_code == 200:
        assert signal.status == SignalStatus.RECEIVED and signal.instrument_id is not None
        assert answer == {"signal_id": signal.pk, "duplicate": False, "status": "received"}
    else:
        assert response.status_code == 400
        assert (signal.status, signal.reject_code, signal.reject_reason) == (
            SignalStatus.REJECTED,
            answer["code"],
            answer["detail"],
        )
        assert signal.reject_code != "unreadable", signal.reject_reason  # no body trips over our own bugs


# -- The ASGI fast path (what daphne serves) --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_asgi_fast_path_stores_answers_and_notifies_like_the_view():
    import asyncio

    import httpx
    import psycopg

    from config.asgi import application
    from config.postgres import psycopg_params
    from signals_in import intake_io
    from signals_in.intake import SIGNAL_RECEIVED_CHANNEL

    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    strategy = create_strategy(name="Fast path", owner=UserFactory(), rate_limit_per_minute=5)
    path = issue_webhook_token(strategy=strategy).path

    async def exchange() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=application, client=("52.89.214.238", 4321))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return [
                    await client.post(path, content=b'{"ticker": "MNQ1!", "action": "buy"}'),
                    await client.post(path, content=b'{"ticker": "MNQ1!", "action": "buy"}'),
                    await client.post(path, content=b"action=hold\nticker=NQ1!"),
                    await client.post("/webhooks/tradingview/no-such-token-0000000000/", content=b"{}"),
                    await client.get("/webhooks/health/"),
                    await client.get(path),  # not POST: Django's view answers
                ]
        finally:
            await intake_io.close_connections()

    with psycopg.connect(**psycopg_params(), autocommit=True) as listener:
        listener.execute(f"LISTEN {SIGNAL_RECEIVED_CHANNEL}")
        accepted, duplicate, rejected, unknown, health, get = asyncio.run(exchange())
        notified = [n.payload for n in listener.notifies(timeout=0.5)]

    assert accepted.status_code == 200 and accepted.json()["duplicate"] is False
    assert duplicate.json() == {**accepted.json(), "duplicate": True}
    assert (rejected.status_code, rejected.json()["code"]) == (400, "unknown_action")
    assert unknown.status_code == 404
    assert (health.status_code, health.json()) == (200, {"ok": True})
    assert get.status_code == 405
    signal = Signal.objects.get(pk=accepted.json()["signal_id"])
    # (Its status may have moved on: an end-to-end stack of this session hands off what it is told of.)
    assert (signal.source_ip, signal.instrument.root, signal.reject_code) == ("52.89.214.238", "MNQ", "")
    assert Signal.objects.count() == 2
    assert notified == [str(signal.pk)]  # the received one, once; the rejected one is not fanned out


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_survives_its_kept_connections_dying():
    import asyncio

    import httpx
    from django.db import connection

    from config.asgi import application
    from signals_in import intake_io

    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    path = issue_webhook_token(strategy=create_strategy(name="Restart", owner=UserFactory())).path

    def end_intake_connections() -> int:  # what a PostgreSQL restart does to them
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                [intake_io.application_name()],  # this process's only (an end-to-end stack may have its own)
            )
            return cursor.fetchone()[0]

    async def exchange() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=application, client=("52.89.214.238", 4321))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                before = await client.post(path, content=b'{"ticker": "MNQ1!", "action": "buy"}')
                assert await asyncio.to_thread(end_intake_connections) == 1  # the one kept
                after = await client.post(path, content=b'{"ticker": "MNQ1!", "action": "sell"}')
                return [before, after]
        finally:
            await intake_io.close_connections()

    before, after = asyncio.run(exchange())

    assert (before.status_code, after.status_code) == (200, 200)
    assert after.json()["duplicate"] is False
    assert Signal.objects.get(pk=after.json()["signal_id"]).action == "sell"


# -- The web tier as the Procfile starts it (config/web.py) ----------------------------------------


def test_the_web_launcher_serves_and_stops_every_process_when_one_dies():
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "config.web", "--processes", "2", "-p", str(port), "--", "--access-log", "/dev/null"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        children = [int(pid) for pid in launcher.stdout.readline().split("(pids ")[1].rstrip(")\n").split(", ")]  # type: ignore[union-attr]
        assert len(children) == 2
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/webhooks/health/", timeout=2).json() == {"ok": True}:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the web tier never answered"
                time.sleep(0.2)

        # Each process has its own SO_REUSEPORT socket: the kernel spreads connections over them
        # (one shared socket left nearly every connection to whichever process woke first).
        clients = []
        for _ in range(16):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /webhooks/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
            clients.append(client)
        served = {pid: _established_connections(pid, port) for pid in children}
        for client in clients:
            client.close()
        assert all(served.values()) and sum(served.values()) == 16, served

        os.kill(children[0], signal.SIGKILL)
        assert launcher.wait(timeout=30) == 128 + signal.SIGKILL
        for pid in children[1:]:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # stopped, and reaped by the launcher
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            launcher.wait(timeout=30)


def _established_connections(pid: int, port: int) -> int:
    """Connections to `port` that process `pid` has accepted (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
                count += local_port == port and state == "01" and inode in inodes
    return count

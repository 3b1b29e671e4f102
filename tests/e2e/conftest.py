"""The real stack for end-to-end tests: daphne and a Celery worker as subprocesses, on the test
database and a Redis database of their own. Tests create data through the ORM (committed, via
`transactional_db`) and then talk to the stack only through HTTP and WebSocket."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
STACK_REDIS_URL = "redis://127.0.0.1:6379/13"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_environment() -> dict[str, str]:
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEY": settings.FIELD_ENCRYPTION_KEY,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": STACK_REDIS_URL,
        "REDIS_KEY_PREFIX": f"propdesk-e2e-{os.getpid()}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CSRF_TRUSTED_ORIGINS": "http://127.0.0.1,http://localhost",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "LOG_LEVEL": "WARNING",
    }


@dataclass
class Stack:
    base_url: str
    ws_url: str
    logs: Path

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.logs.glob("*.log")))


def _wait_for(predicate, timeout: float, what: str, stack_logs: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    logs = "\n".join(p.read_text()[-2000:] for p in stack_logs.glob("*.log"))
    raise RuntimeError(f"Timed out waiting for {what}.\n{logs}")


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    logs = tmp_path_factory.mktemp("stack")
    env = stack_environment()
    port = free_port()
    bin_dir = Path(sys.executable).parent
    processes = [
        subprocess.Popen(
            [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=(logs / "daphne.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                str(bin_dir / "celery"),
                "-A",
                "config",
                "worker",
                "-c",
                "2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=(logs / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
        # Received webhook signals reach the fan-out through the hand-off process, as in the Procfile.
        subprocess.Popen(
            [sys.executable, "manage.py", "hand_off_signals"],
            cwd=ROOT,
            env=env,
            stdout=(logs / "handoff.log").open("w"),
            stderr=subprocess.STDOUT,
        ),
    ]
    base_url = f"http://127.0.0.1:{port}"

    def web_ready() -> bool:
        try:
            return httpx.get(f"{base_url}/login/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_for(web_ready, 30, "daphne", logs)
        _wait_for(lambda: " ready." in (logs / "worker.log").read_text(), 30, "the Celery worker", logs)
        yield Stack(base_url=base_url, ws_url=f"ws://127.0.0.1:{port}", logs=logs)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        stack_redis = redis.Redis.from_url(STACK_REDIS_URL)
        keys = list(stack_redis.scan_iter(match=f"{env['REDIS_KEY_PREFIX']}*", count=1000))
        if keys:
            stack_redis.delete(*keys)


# Celery's queues of the stack, under its key prefix (config/settings: global_keyprefix).
STACK_QUEUES = ("celery", "orders", "events", "reconcile")


@pytest.fixture(autouse=True)
def _stack_quiet_before_flush(request):  # type: ignore[no-untyped-def]
    """After a test on the live stack its workers may still be running tasks the test started;
    the flush that follows (TRUNCATE of every table) then deadlocked with one of their queries.
    Torn down before pytest-django's flush: waits for the stack's queues to empty, and a moment."""
    yield
    if "live_stack" not in request.fixturenames:
        return
    stack_redis = redis.Redis.from_url(STACK_REDIS_URL)
    prefix = f"{stack_environment()['REDIS_KEY_PREFIX']}:celery:"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(stack_redis.llen(prefix + queue) for queue in STACK_QUEUES):
        time.sleep(0.1)
    time.sleep(0.5)  # the task taken last is likely still running


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    """Committed data the stack can see: the CME instruments on the paper venue, alice and bob
    with an account each (on one paper connection), and a staff user."""
    from accounts.services import grant_account_access, open_trading_account
    from brokers.adapters.paper import PaperBroker
    from tests.conftest import load_cme_instruments
    from tests.factories import BrokerConnectionFactory, ProgramFactory, StaffFactory, UserFactory

    load_cme_instruments()
    connection = BrokerConnectionFactory(name="Paper e2e")
    alice, bob, staff = UserFactory(username="alice"), UserFactory(username="bob"), StaffFactory(username="staff")
    accounts = {}
    for user, ref in ((alice, "PAPER-E2E-A"), (bob, "PAPER-E2E-B")):
        account = open_trading_account(
            name=f"{user.username} 50K", program=ProgramFactory(), broker_connection=connection, broker_account_id=ref
        )
        PaperBroker(connection).open_account(account_ref=ref, cash=account.starting_balance)
        grant_account_access(user=user, account=account)
        accounts[user.username] = account
    return {"alice": alice, "bob": bob, "staff": staff, "accounts": accounts}


def wait_for(predicate: Callable[[], bool], what: str, logs: Callable[[], str], timeout: float = 20.0) -> None:
    """Poll `predicate` (the stack works asynchronously); on timeout fail with the stack's logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"Timed out waiting for {what}.\n{logs()}")

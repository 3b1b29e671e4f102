"""Project-wide fixtures: a clean Redis per test, a paper world, personas and API clients.

Personas (healthchecks style): alice trades her account; bob has his own; charlie has none;
staff sees everything.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import TradingAccount
from accounts.services import grant_account_access, open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.models import BrokerConnection, Instrument
from brokers.paper import feed, venue
from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
from config.redis_client import get_redis
from tests.factories import BrokerConnectionFactory, ProgramFactory, StaffFactory, UserFactory


def delete_own_redis_keys() -> None:
    redis = get_redis()
    keys = list(redis.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}*", count=1000))
    if keys:
        redis.delete(*keys)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    """Each test starts with none of this session's Redis keys (its own prefix, database 14)."""
    delete_own_redis_keys()
    yield


@pytest.fixture(autouse=True, scope="session")
def _remove_session_redis_keys() -> Iterator[None]:
    yield
    delete_own_redis_keys()


@pytest.fixture
def commit(django_capture_on_commit_callbacks) -> Callable[[], AbstractContextManager]:  # type: ignore[no-untyped-def]
    """`with commit(): ...` runs what waits for a commit (task enqueues, publishes) at the end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@dataclass
class PaperWorld:
    connection: BrokerConnection
    mes: Instrument
    es: Instrument

    def open_account(self, name: str, *, ref: str, cash: Decimal = Decimal("50000")) -> TradingAccount:
        account = open_trading_account(
            name=name,
            program=ProgramFactory(),
            broker_connection=self.connection,
            broker_account_id=ref,
            starting_balance=cash,
        )
        PaperBroker(self.connection).open_account(account_ref=ref, cash=cash)
        return account

    def price(self, symbol: str, price: str) -> None:
        feed.publish_price(symbol=symbol, price=Decimal(price))


def load_cme_instruments() -> None:
    """The shipped CME instruments, also listed on the paper venue."""
    rows = read_instrument_file(DEFAULT_INSTRUMENT_FILE)
    load_instruments(rows)
    venue.list_contracts(rows)


@pytest.fixture
def paper(db, commit) -> PaperWorld:  # type: ignore[no-untyped-def]
    """The shipped CME instruments listed on the paper venue, one paper connection, MES at 5000."""
    load_cme_instruments()
    world = PaperWorld(
        connection=BrokerConnectionFactory(name="Paper test"),
        mes=Instrument.objects.get(symbol="MESZ6"),
        es=Instrument.objects.get(symbol="ESZ6"),
    )
    with commit():
        world.price("MESZ6", "5000.00")
        world.price("ESZ6", "5000.00")
    return world


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="bob")


@pytest.fixture
def charlie(db):  # type: ignore[no-untyped-def]
    return UserFactory(username="charlie")


@pytest.fixture
def staff(db):  # type: ignore[no-untyped-def]
    return StaffFactory(username="staff")


@pytest.fixture
def alice_account(paper, alice, commit) -> TradingAccount:  # type: ignore[no-untyped-def]
    account = paper.open_account("Alice 50K", ref="PAPER-A1")
    with commit():
        grant_account_access(user=alice, account=account)
    return account


@pytest.fixture
def bob_account(paper, bob, commit) -> TradingAccount:  # type: ignore[no-untyped-def]
    account = paper.open_account("Bob 50K", ref="PAPER-B1")
    with commit():
        grant_account_access(user=bob, account=account)
    return account


def token_for(user) -> str:  # type: ignore[no-untyped-def]
    return Token.objects.get_or_create(user=user)[0].key


def client_for(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


@pytest.fixture
def alice_api(alice) -> APIClient:  # type: ignore[no-untyped-def]
    return client_for(alice)


@pytest.fixture
def bob_api(bob) -> APIClient:  # type: ignore[no-untyped-def]
    return client_for(bob)


@pytest.fixture
def staff_api(staff) -> APIClient:  # type: ignore[no-untyped-def]
    return client_for(staff)


# -- Admin ---------------------------------------------------------------------------------


@pytest.fixture
def superuser(db):  # type: ignore[no-untyped-def]
    return StaffFactory(username="root", is_superuser=True)


@pytest.fixture
def staff_client(superuser) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(superuser)
    return client


def admin_url(model, view: str, *args) -> str:  # type: ignore[no-untyped-def]
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)

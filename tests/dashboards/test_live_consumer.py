"""/ws/live/ through the real ASGI application and the Redis channel layer: who hears what."""

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import AccountMembership
from accounts.services import revoke_account_access
from config.asgi import application
from orders import services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderType
from tests.conftest import token_for

pytestmark = pytest.mark.django_db(transaction=True)


def token_path(user) -> str:  # type: ignore[no-untyped-def]
    return f"/ws/live/?token={token_for(user)}"


def place(account, quantity: int = 1) -> None:  # type: ignore[no-untyped-def]
    services.submit_order(
        account=account,
        intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET),
        source=OrderSource.API,
    )


async def connected(path: str, headers=None) -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    ok, _ = await communicator.connect(timeout=5)
    assert ok
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "hello"
    return communicator


async def receive_until(communicator, predicate, timeout: float = 5.0) -> list[dict]:  # type: ignore[no-untyped-def]
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            message = await communicator.receive_json_from(timeout=timeout)
            seen.append(message)
            if predicate(message):
                return seen


async def received_within(communicator, seconds: float) -> list[dict]:  # type: ignore[no-untyped-def]
    """Everything that arrives in the next `seconds` (receive_nothing never cancels the app)."""
    seen = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if not await communicator.receive_nothing(timeout=0.05):
            seen.append(await communicator.receive_json_from())
    return seen


def test_trader_hears_her_account_and_never_another(alice, alice_account, bob_account):
    path = token_path(alice)

    async def scenario() -> None:
        alice_ws = await connected(path)
        await sync_to_async(place)(bob_account)
        await sync_to_async(place)(alice_account, 2)
        messages = await receive_until(
            alice_ws, lambda m: m["type"] == "position.updated" and m["data"]["quantity"] == 2
        )
        assert {m["account"] for m in messages} == {alice_account.pk}
        assert {"order.updated", "position.updated"} <= {m["type"] for m in messages}
        filled = [m["data"] for m in messages if m["type"] == "order.updated" and m["data"]["status"] == "filled"]
        assert filled and filled[0]["quantity"] == 2
        rest = await received_within(alice_ws, 0.3)
        assert all(m.get("account") == alice_account.pk for m in rest)
        await alice_ws.disconnect()

    async_to_sync(scenario)()


def test_staff_hear_every_account(staff, alice_account, bob_account):
    path = token_path(staff)

    async def scenario() -> None:
        staff_ws = await connected(path)
        await sync_to_async(place)(bob_account)
        messages = await receive_until(staff_ws, lambda m: m["type"] == "account.updated")
        assert messages[-1]["account"] == bob_account.pk
        assert Decimal(messages[-1]["data"]["balance"]) == Decimal("49999.63")  # one MES fee
        await staff_ws.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("path", ["/ws/live/", "/ws/live/?token=not-a-token"])
def test_connections_without_valid_credentials_are_closed(path, db):
    async def scenario() -> None:
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver")])
        ok, code = await communicator.connect(timeout=5)
        assert (ok, code) == (False, 4401)

    async_to_sync(scenario)()


def test_session_connection_must_come_from_an_allowed_origin(alice, alice_account):
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        good = await connected("/ws/live/", headers=[(b"cookie", cookie), (b"origin", b"http://testserver")])
        await good.disconnect()
        evil = WebsocketCommunicator(
            application, "/ws/live/", headers=[(b"cookie", cookie), (b"origin", b"http://evil.example")]
        )
        ok, _ = await evil.connect(timeout=5)
        assert not ok

    async_to_sync(scenario)()


def test_quote_subscription_delivers_prices_of_known_symbols(alice, alice_account, paper):
    path = token_path(alice)

    async def scenario() -> None:
        ws = await connected(path)
        await ws.send_json_to({"action": "subscribe_quotes", "symbols": ["MESZ6", "NOPE"]})
        assert await ws.receive_json_from(timeout=5) == {"type": "subscribed", "data": {"symbols": ["MESZ6"]}}
        await sync_to_async(paper.price)("MESZ6", "5003.25")
        quote = (await receive_until(ws, lambda m: m["type"] == "quote"))[-1]
        assert quote["data"]["symbol"] == "MESZ6" and quote["data"]["price"] == "5003.25"
        await ws.send_json_to({"action": "dance"})
        error = await ws.receive_json_from(timeout=5)
        assert error["type"] == "error" and error["data"]["code"] == "unknown_action"
        await ws.disconnect()

    async_to_sync(scenario)()


def test_revoked_access_stops_events_on_an_open_connection(alice, alice_account):
    path = token_path(alice)

    async def scenario() -> None:
        ws = await connected(path)
        membership = await sync_to_async(AccountMembership.objects.get)(user=alice, account=alice_account)
        await sync_to_async(revoke_account_access)(membership=membership)
        hello = (await receive_until(ws, lambda m: m["type"] == "hello"))[-1]
        assert hello["data"]["accounts"] == []
        await sync_to_async(place)(alice_account)
        assert [m for m in await received_within(ws, 0.5) if m.get("account") == alice_account.pk] == []
        await ws.disconnect()

    async_to_sync(scenario)()

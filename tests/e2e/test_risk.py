"""End to end on the real stack (daphne, a Celery worker, Redis): a price move takes an account
through its drawdown floor and the monitor fails it and flattens it at the paper venue; a soft
daily loss limit blocks new risk until the next trade date and then lifts."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone
from websockets.sync.client import connect

from accounts.services import grant_account_access, open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.paper.models import VenueOrder, VenuePosition
from orders.models import Fill, Order
from risk import enforcement
from risk.models import AccountRiskState, ProgramRules, Violation
from risk.trading_day import trade_date_for
from tests.conftest import load_cme_instruments, token_for
from tests.e2e.test_order_path import receive_until
from tests.factories import BrokerConnectionFactory, ProgramFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def eventually(predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def trader_world():  # type: ignore[no-untyped-def]
    load_cme_instruments()
    connection = BrokerConnectionFactory(name="Paper risk e2e")
    trader, staff = UserFactory(username="trader"), StaffFactory(username="desk")

    def account_with(ref: str, **rules: object):  # type: ignore[no-untyped-def]
        program = ProgramFactory()
        ProgramRules.objects.create(program=program, **rules)
        account = open_trading_account(
            name=f"Risk {ref}", program=program, broker_connection=connection, broker_account_id=ref
        )
        PaperBroker(connection).open_account(account_ref=ref, cash=account.starting_balance)
        grant_account_access(user=trader, account=account)
        return account

    return {"trader": trader, "staff": staff, "account_with": account_with}


def clients(live_stack, world):  # type: ignore[no-untyped-def]
    def client(user):  # type: ignore[no-untyped-def]
        return httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(user)}"})

    return client(world["trader"]), client(world["staff"])


def test_price_through_drawdown_floor_fails_and_flattens_account(live_stack, trader_world):
    account = trader_world["account_with"]("PAPER-RISK-DD", drawdown_kind="static", drawdown_amount=Decimal("300"))
    api, staff_api = clients(live_stack, trader_world)
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.00"}).status_code == 200

    with connect(f"{live_stack.ws_url}/ws/live/?token={token_for(trader_world['trader'])}") as ws:
        json.loads(ws.recv(timeout=5))  # hello
        bought = api.post(
            "/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 4}
        )
        assert bought.status_code == 201, bought.text
        resting = api.post(
            "/api/v1/orders/",
            json={
                "account": account.pk,
                "symbol": "MES",
                "side": "buy",
                "quantity": 1,
                "type": "limit",
                "limit_price": "4900.00",
            },
        ).json()
        receive_until(ws, lambda m: m["type"] == "position.updated" and m["data"]["quantity"] == 4)
        eventually(lambda: api.get(f"/api/v1/orders/{resting['id']}/").json()["status"] == "accepted")
        room = api.get(f"/api/v1/accounts/{account.pk}/risk/").json()
        assert next(h for h in room["headroom"] if h["rule"] == "drawdown")["limit"] == "49700.0000"

        # -15 points on 4 MES = -300 (plus fees): through the 49,700 floor.
        staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "4985.00"})
        violation = receive_until(ws, lambda m: m["type"] == "risk.violation", timeout=20)[-1]["data"]
        assert violation["rule"] == "drawdown" and violation["action"] == "breached"
        assert any(h["rule"] == "drawdown" and h["breached"] for h in violation["headroom"])

    listed = api.get("/api/v1/violations/", params={"account": account.pk}).json()["results"]
    assert [(v["rule"], v["severity"]) for v in listed] == [("drawdown", "hard")]
    eventually(lambda: VenuePosition.objects.filter(account__ref="PAPER-RISK-DD", quantity=0).exists())
    assert eventually(lambda: api.get("/api/v1/positions/", params={"account": account.pk}).json()["results"] == [])
    assert eventually(lambda: api.get(f"/api/v1/orders/{resting['id']}/").json()["status"] == "canceled")
    close = Order.objects.get(account=account, source="risk")
    assert VenueOrder.objects.filter(client_order_id=close.client_order_id).count() == 1
    detail = api.get(f"/api/v1/accounts/{account.pk}/").json()
    assert (detail["status"], detail["trading_state"]) == ("breached", "halted")
    again = api.post("/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 1})
    assert again.status_code == 409 and again.json()["code"] == "account_halted"


def test_soft_daily_limit_blocks_until_the_next_trade_date(live_stack, trader_world):
    account = trader_world["account_with"]("PAPER-RISK-DLL", daily_loss_mode="soft", daily_loss_limit=Decimal("100"))
    api, staff_api = clients(live_stack, trader_world)
    staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.00"})
    assert (
        api.post(
            "/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 2}
        ).status_code
        == 201
    )
    eventually(lambda: VenuePosition.objects.filter(account__ref="PAPER-RISK-DLL", quantity=2).exists())

    staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "4989.00"})  # -110 on the day
    listed = eventually(lambda: api.get("/api/v1/violations/", params={"account": account.pk}).json()["results"])
    assert [(v["rule"], v["severity"], v["action"]) for v in listed] == [("daily_loss", "soft", "blocked")]
    eventually(lambda: VenuePosition.objects.filter(account__ref="PAPER-RISK-DLL", quantity=0).exists())
    blocked = api.post("/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 1})
    assert blocked.status_code == 422
    assert blocked.json()["denials"][0]["code"] == "daily_loss_blocked"
    risk = api.get(f"/api/v1/accounts/{account.pk}/risk/").json()
    assert risk["status"] == "active" and risk["blocked_until"]

    # The trade date closes (17:00 Chicago). The stack's clock cannot jump, so what happened
    # today is relabelled as yesterday's trade date, ending a minute ago; the rollover then
    # closes that day and lifts the block.
    today = trade_date_for(timezone.now())
    yesterday = today - timedelta(days=3 if today.weekday() == 0 else 1)
    Fill.objects.filter(account=account).update(trade_date=yesterday)
    Violation.objects.filter(account=account).update(trade_date=yesterday)
    AccountRiskState.objects.filter(account=account).update(
        trade_date=yesterday, blocked_until=timezone.now() - timedelta(minutes=1)
    )
    assert enforcement.roll_trade_date() >= 1
    assert not Violation.objects.get(account=account).is_active
    assert AccountRiskState.objects.get(account=account).blocked_until is None
    lifted = api.post("/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 1})
    assert lifted.status_code == 201, lifted.text
    eventually(lambda: VenuePosition.objects.filter(account__ref="PAPER-RISK-DLL", quantity=1).exists())

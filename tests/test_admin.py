"""The staff admin: every page renders, credentials stay write-only, account actions call the services."""

import json
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection as db
from django.test import RequestFactory

from accounts.domain import TradingState
from accounts.models import AccountMembership, TradingAccount
from brokers.models import BrokerConnection
from brokers.paper.models import VenueOrder, VenuePosition
from orders import services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order, Position
from tests.conftest import admin_url as url
from tests.factories import ProgramFactory

pytestmark = pytest.mark.django_db

SECRET = "sk-admin-9d1f-DO-NOT-SHOW"


@pytest.fixture
def filled_order(alice_account, commit) -> Order:  # type: ignore[no-untyped-def]
    intent = OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=2, order_type=OrderType.MARKET)
    with commit():
        outcome = services.submit_order(account=alice_account, intent=intent, source=OrderSource.API)
    order = Order.objects.get(pk=outcome.order.pk)
    assert order.status == OrderStatus.FILLED
    return order


def raw_credentials(pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT credentials FROM brokers_brokerconnection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_every_registered_model_changelist_add_and_change_page_renders(staff_client, superuser, filled_order):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    failures, visited = [], 0
    for model, model_admin in admin.site._registry.items():
        changelist = staff_client.get(url(model, "changelist"))
        visited += 1
        if changelist.status_code != 200:
            failures.append(f"{model._meta.label} changelist: {changelist.status_code}")
        elif changelist.context["cl"].result_count != model_admin.get_queryset(request).count():
            failures.append(f"{model._meta.label} changelist lists {changelist.context['cl'].result_count} rows")
        pages = []
        if model_admin.has_add_permission(request):
            pages.append(url(model, "add"))
        first = model_admin.get_queryset(request).first()
        if first is not None:
            pages.append(url(model, "change", first.pk))
        for page in pages:
            response = staff_client.get(page)
            visited += 1
            if response.status_code != 200:
                failures.append(f"{page}: {response.status_code}")

    assert failures == []
    assert visited >= 2 * len(admin.site._registry)  # with data, each model has at least two pages


def test_changelists_list_the_trading_records(staff_client, filled_order):
    orders = staff_client.get(url(Order, "changelist"))
    accounts = staff_client.get(url(TradingAccount, "changelist"))

    assert list(orders.context["cl"].result_list) == [filled_order]
    assert list(accounts.context["cl"].result_list) == [filled_order.account]
    assert "Alice 50K" in accounts.content.decode()


def test_broker_connection_change_page_never_shows_the_secret(staff_client, paper):
    connection = paper.connection
    connection.credentials = {"api_key": SECRET}
    connection.save()

    for page in (url(BrokerConnection, "change", connection.pk), url(BrokerConnection, "changelist")):
        body = staff_client.get(page).content.decode()
        assert SECRET not in body
        assert raw_credentials(connection.pk) not in body  # nor the ciphertext
    assert connection.name in body


def test_broker_connection_add_stores_posted_credentials_encrypted(staff_client):
    credentials = {"username": "desk", "api_key": SECRET}

    response = staff_client.post(
        url(BrokerConnection, "add"),
        {
            "name": "Tradovate desk",
            "kind": "tradovate",
            "environment": "demo",
            "is_enabled": "on",
            "new_credentials": json.dumps(credentials),
        },
    )

    assert response.status_code == 302
    connection = BrokerConnection.objects.get(name="Tradovate desk")
    assert (connection.kind, connection.environment, connection.is_enabled) == ("tradovate", "demo", True)
    assert connection.credentials == credentials
    raw = raw_credentials(connection.pk)
    assert SECRET not in raw and raw.startswith("gAAAA")


def test_broker_connection_change_with_empty_credentials_keeps_the_old_ones(staff_client, paper):
    connection = paper.connection
    connection.credentials = {"api_key": SECRET}
    connection.save()

    response = staff_client.post(
        url(BrokerConnection, "change", connection.pk),
        {"name": "Paper renamed", "kind": "paper", "environment": "demo", "is_enabled": "on", "new_credentials": ""},
    )

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Paper renamed"
    assert connection.credentials == {"api_key": SECRET}


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ('{"api_key": ', "Not valid JSON"),
        ('["a", "list"]', "Credentials must be a JSON object"),
    ],
)
def test_broker_connection_add_with_invalid_json_shows_an_error_and_stores_nothing(staff_client, posted, message):
    response = staff_client.post(
        url(BrokerConnection, "add"),
        {"name": "Broken", "kind": "paper", "environment": "demo", "is_enabled": "on", "new_credentials": posted},
    )

    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors["new_credentials"][0]
    assert message in response.content.decode()
    assert not BrokerConnection.objects.filter(name="Broken").exists()


def test_flatten_action_closes_the_open_position_after_commit(
    staff_client, superuser, alice_account, filled_order, commit
):
    resting = OrderIntent(
        symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.LIMIT, limit_price=Decimal("4900.00")
    )
    with commit():
        working = services.submit_order(account=alice_account, intent=resting, source=OrderSource.API).order
    with commit():
        response = staff_client.post(
            url(TradingAccount, "changelist"),
            {"action": "flatten_selected", "_selected_action": [alice_account.pk]},
        )

    assert response.status_code == 302
    working.refresh_from_db()
    assert working.status == OrderStatus.CANCELED
    assert VenueOrder.objects.get(client_order_id=working.client_order_id).status == "canceled"
    closing = Order.objects.exclude(pk__in=[filled_order.pk, working.pk]).get(account=alice_account)
    assert (closing.source, closing.side, closing.quantity) == (OrderSource.FLATTEN, OrderSide.SELL, 2)
    assert closing.created_by == superuser
    assert closing.status == OrderStatus.FILLED
    assert Position.objects.get(account=alice_account).quantity == 0
    assert VenuePosition.objects.get(account__ref=alice_account.broker_account_id).quantity == 0
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50000") - 4 * Decimal("0.37")


def test_halt_action_halts_and_history_records_the_staff_user(staff_client, superuser, alice_account, commit):
    with commit():
        response = staff_client.post(
            url(TradingAccount, "changelist"), {"action": "halt_selected", "_selected_action": [alice_account.pk]}
        )

    assert response.status_code == 302
    alice_account.refresh_from_db()
    assert alice_account.trading_state == TradingState.HALTED
    assert alice_account.trading_state_reason == "Halted by root."
    latest = alice_account.history.order_by("-history_date", "-history_id").first()
    assert latest.trading_state == TradingState.HALTED
    assert latest.history_user == superuser


def test_resume_action_resumes_a_halted_account(staff_client, superuser, alice_account, commit):
    for action in ("halt_selected", "resume_selected"):
        with commit():
            staff_client.post(
                url(TradingAccount, "changelist"), {"action": action, "_selected_action": [alice_account.pk]}
            )

    alice_account.refresh_from_db()
    assert (alice_account.trading_state, alice_account.trading_state_reason) == (
        TradingState.ACTIVE,
        "Resumed by staff.",
    )
    states = list(alice_account.history.order_by("history_date", "history_id").values_list("trading_state", flat=True))
    assert states[-2:] == [TradingState.HALTED, TradingState.ACTIVE]
    assert alice_account.history.order_by("-history_date", "-history_id").first().history_user == superuser


def test_order_change_page_shows_its_events_read_only(staff_client, filled_order):
    response = staff_client.get(url(Order, "change", filled_order.pk))

    assert response.status_code == 200
    body = response.content.decode()
    events = list(filled_order.events.all())
    assert [e.type for e in events] == ["created", "submitted", "accepted", "fill"]
    for label in ("Created", "Sent to broker", "Accepted by broker", "Fill"):
        assert label in body
    [event_formset] = [f for f in response.context["inline_admin_formsets"] if f.opts.model.__name__ == "OrderEvent"]
    assert len(list(event_formset)) == len(events)
    assert not event_formset.has_add_permission and not event_formset.has_change_permission
    assert 'name="events-0-type"' not in body  # shown, not editable
    assert 'name="_save"' not in body
    # Posting to the read-only page changes nothing.
    assert staff_client.post(url(Order, "change", filled_order.pk), {"status": "canceled"}).status_code == 403
    filled_order.refresh_from_db()
    assert filled_order.status == OrderStatus.FILLED


def test_membership_admin_add_creates_the_row(staff_client, alice_account, charlie, commit):
    with commit():
        response = staff_client.post(
            url(AccountMembership, "add"),
            {"user": charlie.pk, "account": alice_account.pk},  # can_trade unticked
        )

    assert response.status_code == 302
    membership = AccountMembership.objects.get(user=charlie, account=alice_account)
    assert membership.can_trade is False
    assert TradingAccount.objects.visible_to(charlie).get() == alice_account


def test_trading_account_add_sets_the_balance_from_the_starting_balance(staff_client, paper):
    """Balance moves only through fills (TradingAccountAdmin): a new account opens at its starting balance."""
    program = ProgramFactory()

    response = staff_client.post(
        url(TradingAccount, "add"),
        {
            "name": "Admin 50K",
            "program": program.pk,
            "broker_connection": paper.connection.pk,
            "broker_account_id": "PAPER-ADM1",
            "starting_balance": "50000",
            "status": "active",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "rule_override-TOTAL_FORMS": "0",
            "rule_override-INITIAL_FORMS": "0",
            "rule_override-MIN_NUM_FORMS": "0",
            "rule_override-MAX_NUM_FORMS": "1",
        },
    )

    errors = response.context["adminform"].form.errors if response.status_code == 200 else {}
    assert response.status_code == 302, errors
    account = TradingAccount.objects.get(name="Admin 50K")
    assert account.balance == account.starting_balance == Decimal("50000")

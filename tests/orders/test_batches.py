"""Orders submitted and sent in batches (a signal fanned out, a mass flatten): each order gets
what it would get alone, one account's refusal never stops the others, and the venue is called
once per batch, with every order at it exactly once."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers.paper import venue
from brokers.paper.models import VenueOrder
from config.errors import DomainError
from orders import booking, services
from orders.domain import OrderEventType, OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order, Position
from orders.services import OrderToSubmit
from risk import services as risk_services
from risk.models import ProgramRules

pytestmark = pytest.mark.django_db


def buy(quantity: int = 1, symbol: str = "MES") -> OrderIntent:
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET)


@pytest.fixture
def accounts(paper):  # type: ignore[no-untyped-def]
    return [paper.open_account(f"Batch {i}", ref=f"PAPER-B{i}") for i in range(4)]


@pytest.fixture
def venue_calls(monkeypatch):  # type: ignore[no-untyped-def]
    """How many orders each call to the venue carried."""
    calls: list[int] = []
    real = venue.place_orders

    def counting(tickets):  # type: ignore[no-untyped-def]
        calls.append(len(tickets))
        return real(tickets)

    monkeypatch.setattr(venue, "place_orders", counting)
    return calls


@pytest.fixture
def queued_tasks():  # type: ignore[no-untyped-def]
    """Celery stops running tasks inline: they go to Redis and wait, as when no worker is up."""
    from config.celery import app

    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


def held(account) -> int:  # type: ignore[no-untyped-def]
    return Position.objects.filter(account=account).values_list("quantity", flat=True).first() or 0


def test_a_batch_answers_each_order_in_turn_and_the_venue_gets_the_sent_ones_in_one_call(accounts, commit, venue_calls):
    first, halted, unknown, replayed = accounts
    risk_services.halt_account(account=halted, reason="Breach")
    with commit():
        earlier = services.submit_order(
            account=replayed, intent=buy(), source=OrderSource.WEBHOOK, client_order_id="again"
        ).order
    venue_calls.clear()

    with commit():
        results = services.submit_orders(
            [
                OrderToSubmit(first, buy(2), "b-first"),
                OrderToSubmit(halted, buy(), "b-halted"),
                OrderToSubmit(unknown, buy(symbol="ZZZ"), "b-unknown"),
                OrderToSubmit(replayed, buy(), "again"),
            ],
            source=OrderSource.WEBHOOK,
        )

    placed, denied, refused, replay = results
    assert placed.created and Order.objects.get(pk=placed.order.pk).status == OrderStatus.FILLED
    assert held(first) == 2
    assert denied.created and denied.order.status == OrderStatus.DENIED
    assert "halted" in denied.order.reason.lower()
    assert isinstance(refused, DomainError) and refused.code == "unknown_symbol"
    assert not Order.objects.filter(account=unknown).exists()
    assert (replay.created, replay.order.pk) == (False, earlier.pk)
    # Only the order that passed went out, in one call; the replay's order is not sent again.
    assert venue_calls == [1]
    assert VenueOrder.objects.filter(client_order_id="again").count() == 1
    assert not VenueOrder.objects.filter(client_order_id="b-halted").exists()
    assert held(replayed) == 1


def test_orders_of_one_account_in_a_batch_are_checked_one_after_the_other(accounts, commit):
    account = accounts[0]
    ProgramRules.objects.update_or_create(program=account.program, defaults={"max_contracts": 3})

    with commit():
        first, second = services.submit_orders(
            [OrderToSubmit(account, buy(2), "same-1"), OrderToSubmit(account, buy(2), "same-2")],
            source=OrderSource.API,
        )

    # Alone, each would pass; the second sees the first (2 + 2 > 3).
    assert Order.objects.get(pk=first.order.pk).status == OrderStatus.FILLED
    assert second.order.status == OrderStatus.DENIED
    assert held(account) == 2


def test_a_batch_costs_the_same_queries_for_two_accounts_or_ten(paper, commit, queued_tasks):
    many = [paper.open_account(f"Many {i}", ref=f"PAPER-M{i}") for i in range(10)]

    def submission(accounts, tag):  # type: ignore[no-untyped-def]
        with CaptureQueriesContext(connection) as queries, commit():
            results = services.submit_orders(
                [OrderToSubmit(a, buy(), f"{tag}-{a.pk}") for a in accounts], source=OrderSource.WEBHOOK
            )
        assert all(not isinstance(r, DomainError) and r.order.status == OrderStatus.NEW for r in results)
        return len(queries)

    two, ten = submission(many[:2], "two"), submission(many[2:], "ten")

    assert ten == two  # checked and stored together: no query per order
    assert Order.objects.filter(status=OrderStatus.NEW).count() == 10


def test_a_lost_batch_answer_leaves_every_order_unknown_until_reconciled_once(accounts, commit, queued_tasks):
    with commit():
        results = services.submit_orders(
            [OrderToSubmit(a, buy(), f"lost-{a.pk}") for a in accounts], source=OrderSource.WEBHOOK
        )
    ids = [r.order.pk for r in results]
    venue.inject_fault("lose_response")

    services.send_orders_to_broker(order_ids=ids)

    orders = Order.objects.filter(pk__in=ids)
    assert {o.status for o in orders} == {OrderStatus.SUBMITTED}
    for order in orders:
        assert order.events.filter(type=OrderEventType.OUTCOME_UNKNOWN).count() == 1
    # The venue did take them; asking by client id books each once, and a second send is a no-op.
    services.send_orders_to_broker(order_ids=ids)
    for order_id in ids:
        services.reconcile_order(order_id=order_id)
    assert {o.status for o in Order.objects.filter(pk__in=ids)} == {OrderStatus.FILLED}
    assert VenueOrder.objects.filter(client_order_id__startswith="lost-").count() == 4
    assert [held(a) for a in accounts] == [1, 1, 1, 1]


def test_an_unreachable_venue_is_tried_again_for_the_whole_batch_which_then_goes_once(
    accounts, commit, monkeypatch, venue_calls
):
    monkeypatch.setattr(services, "SEND_RETRY_DELAYS", (0.0, 0.0, 0.0))
    venue.inject_fault("unavailable")

    with commit():
        results = services.submit_orders(
            [OrderToSubmit(a, buy(), f"retry-{a.pk}") for a in accounts], source=OrderSource.WEBHOOK
        )

    assert venue_calls == [4]  # the first call never reached the venue
    for result in results:
        order = Order.objects.get(pk=result.order.pk)
        assert order.status == OrderStatus.FILLED
        assert order.events.filter(type=OrderEventType.BROKER_UNAVAILABLE).count() == 1
    assert VenueOrder.objects.count() == 4


def test_a_flatten_of_many_accounts_closes_them_in_one_venue_call(accounts, commit, venue_calls):
    with commit():
        services.submit_orders([OrderToSubmit(a, buy(2)) for a in accounts], source=OrderSource.API)
    venue_calls.clear()

    with commit():
        result = services.flatten_accounts(accounts=accounts, source=OrderSource.FLATTEN)

    assert venue_calls == [4]
    assert [held(a) for a in accounts] == [0, 0, 0, 0]
    assert all(len(result[a.pk].closing) == 1 for a in accounts)


def test_the_sender_leaves_the_answers_to_the_events_workers(accounts, commit, monkeypatch, queued_tasks):
    with commit():
        results = services.submit_orders(
            [OrderToSubmit(a, buy(), f"later-{a.pk}") for a in accounts[:2]], source=OrderSource.WEBHOOK
        )
    ids = [r.order.pk for r in results]
    handed: list[tuple] = []
    monkeypatch.setattr(services.tasks.book_broker_reports_task, "delay", lambda *args: handed.append(args))

    services.send_orders_to_broker(order_ids=ids)

    # At the venue, not yet in our books: the answers travel as JSON to the events queue.
    assert VenueOrder.objects.filter(client_order_id__startswith="later-").count() == 2
    assert {o.status for o in Order.objects.filter(pk__in=ids)} == {OrderStatus.SUBMITTED}
    ((connection_id, reports, bands),) = handed
    assert [r["client_order_id"] for r in reports] == [f"later-{a.pk}" for a in accounts[:2]]
    booking.book_broker_reports(connection_id=connection_id, reports=reports, bands_to_drop=bands or [])
    assert {o.status for o in Order.objects.filter(pk__in=ids)} == {OrderStatus.ACCEPTED}
    assert all(o.broker_order_id for o in Order.objects.filter(pk__in=ids))

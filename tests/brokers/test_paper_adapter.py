"""PaperBroker against the adapter contract: requests reach the venue, answers come back as Decimal DTOs,
and venue errors and simulated network faults map onto the broker error taxonomy."""

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from brokers.adapters.paper import PaperBroker
from brokers.errors import BrokerError, BrokerRejected, BrokerUnavailable, OutcomeUnknown
from brokers.interface import (
    Balance,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    Capability,
    OrderRequest,
    ReportedStatus,
    report_from_json,
    report_to_json,
)
from brokers.paper import venue
from brokers.paper.models import VenueAccount, VenueContract, VenueFill, VenueOrder
from tests.factories import BrokerConnectionFactory

pytestmark = pytest.mark.django_db

REF = "PAPER-AD1"


@pytest.fixture
def broker(paper) -> PaperBroker:  # type: ignore[no-untyped-def]
    adapter = PaperBroker(paper.connection)
    adapter.open_account(account_ref=REF, cash=Decimal("50000"))
    return adapter


def request(client_order_id: str, **fields) -> OrderRequest:  # type: ignore[no-untyped-def]
    values = {
        "account_ref": REF,
        "client_order_id": client_order_id,
        "symbol": "MESZ6",
        "side": "buy",
        "quantity": 1,
        "order_type": "market",
        "time_in_force": "day",
    }
    values.update(fields)
    return OrderRequest(**values)


def submit(broker: PaperBroker, order: OrderRequest) -> BrokerOrder:
    """One order through the batch call, its refusal raised."""
    (answer,) = broker.submit_orders([order])
    if isinstance(answer, BrokerError):
        raise answer
    return answer


def modify(broker: PaperBroker, **change) -> BrokerOrder:  # type: ignore[no-untyped-def]
    fields = {"quantity": None, "limit_price": None, "stop_price": None, **change}
    (answer,) = broker.modify_orders([fields])
    if isinstance(answer, BrokerError):
        raise answer
    return answer


def limit(client_order_id: str, price: str = "4990.00", **fields) -> OrderRequest:  # type: ignore[no-untyped-def]
    return request(client_order_id, order_type="limit", limit_price=Decimal(price), **fields)


def test_open_account_streams_to_the_connection(broker, paper):
    account = VenueAccount.objects.get(ref=REF)
    assert account.stream_key == str(paper.connection.pk)
    assert account.cash == Decimal("50000")


def test_submit_market_order_returns_a_filled_report_with_decimal_prices(broker):
    order = submit(broker, request("pd-1", quantity=2))

    assert isinstance(order, BrokerOrder)
    assert order.status == ReportedStatus.FILLED
    assert (order.account_ref, order.client_order_id, order.symbol, order.side) == (REF, "pd-1", "MESZ6", "buy")
    assert (order.quantity, order.filled_quantity) == (2, 2)
    assert isinstance(order.avg_fill_price, Decimal)
    assert order.avg_fill_price == Decimal("5000.00")
    assert order.limit_price is None and order.stop_price is None
    assert order.broker_order_id == str(VenueOrder.objects.get(client_order_id="pd-1").pk)
    assert isinstance(order.occurred_at, datetime) and order.occurred_at.tzinfo is not None


def test_submit_limit_order_reports_working_with_its_prices(broker):
    order = submit(
        broker, request("pd-sl", order_type="stop_limit", stop_price=Decimal("5010.00"), limit_price=Decimal("5010.25"))
    )

    assert order.status == ReportedStatus.WORKING
    assert order.filled_quantity == 0
    assert order.avg_fill_price is None
    assert (order.stop_price, order.limit_price) == (Decimal("5010.00"), Decimal("5010.25"))
    assert isinstance(order.limit_price, Decimal)


def test_venue_rejection_raises_broker_rejected_with_the_reason(broker):
    with pytest.raises(BrokerRejected, match="No market in NQZ6"):
        submit(broker, request("pd-nq", symbol="NQZ6"))
    # The venue keeps its rejected record; nothing traded.
    assert VenueOrder.objects.get(client_order_id="pd-nq").status == "rejected"
    assert not VenueFill.objects.exists()


def test_simulated_rejection_raises_broker_rejected(broker):
    venue.inject_fault("reject_next_order")

    with pytest.raises(BrokerRejected, match="simulated rejection"):
        submit(broker, request("pd-r"))
    assert submit(broker, request("pd-ok")).status == ReportedStatus.FILLED


def test_unknown_account_raises_broker_rejected(broker):
    with pytest.raises(BrokerRejected, match="Unknown account"):
        submit(broker, request("pd-x", account_ref="NOPE"))


def test_unavailable_raises_and_nothing_reaches_the_venue(broker):
    venue.inject_fault("unavailable")

    with pytest.raises(BrokerUnavailable):
        submit(broker, request("pd-u"))

    assert not VenueOrder.objects.exists()
    assert VenueAccount.objects.get(ref=REF).cash == Decimal("50000")
    # The fault was spent: a retry goes through, exactly once.
    assert submit(broker, request("pd-u")).status == ReportedStatus.FILLED
    assert VenueOrder.objects.filter(client_order_id="pd-u").count() == 1


def test_lost_response_raises_outcome_unknown_but_the_venue_has_the_order(broker):
    venue.inject_fault("lose_response")

    with pytest.raises(OutcomeUnknown):
        submit(broker, request("pd-lost", quantity=2))

    found = broker.get_order(account_ref=REF, client_order_id="pd-lost")
    assert found is not None
    assert (found.status, found.filled_quantity) == (ReportedStatus.FILLED, 2)
    assert VenueAccount.objects.get(ref=REF).cash == Decimal("50000") - 2 * Decimal("0.37")
    # A resend with the same client id gets the same order back, never a second one.
    again = submit(broker, request("pd-lost", quantity=2))
    assert again.broker_order_id == found.broker_order_id
    assert VenueOrder.objects.filter(client_order_id="pd-lost").count() == 1
    assert VenueFill.objects.count() == 1


def test_lost_response_on_cancel_still_cancels_at_the_venue(broker):
    submit(broker, limit("pd-c"))
    venue.inject_fault("lose_response")

    with pytest.raises(OutcomeUnknown):
        broker.cancel_order(account_ref=REF, client_order_id="pd-c")

    assert broker.get_order(account_ref=REF, client_order_id="pd-c").status == ReportedStatus.CANCELED


def test_cancel_order_reports_canceled_and_a_second_cancel_is_rejected(broker):
    submit(broker, limit("pd-c"))

    report = broker.cancel_order(account_ref=REF, client_order_id="pd-c")

    assert report.status == ReportedStatus.CANCELED
    assert VenueOrder.objects.get(client_order_id="pd-c").status == "canceled"
    with pytest.raises(BrokerRejected, match="not working"):
        broker.cancel_order(account_ref=REF, client_order_id="pd-c")


def test_cancel_of_a_filled_order_is_rejected(broker):
    submit(broker, request("pd-f"))

    with pytest.raises(BrokerRejected, match="filled"):
        broker.cancel_order(account_ref=REF, client_order_id="pd-f")
    assert VenueOrder.objects.get(client_order_id="pd-f").status == "filled"


def test_modify_order_changes_price_and_quantity(broker):
    submit(broker, limit("pd-m", quantity=2))

    report = modify(broker, account_ref=REF, client_order_id="pd-m", quantity=4, limit_price=Decimal("4995.50"))

    assert (report.status, report.quantity, report.limit_price) == (ReportedStatus.WORKING, 4, Decimal("4995.50"))
    row = VenueOrder.objects.get(client_order_id="pd-m")
    assert (row.quantity, row.limit_price) == (4, Decimal("4995.50"))


def test_modify_to_a_marketable_price_reports_filled(broker):
    submit(broker, limit("pd-m"))

    report = modify(broker, account_ref=REF, client_order_id="pd-m", limit_price=Decimal("5000.00"))

    assert (report.status, report.avg_fill_price) == (ReportedStatus.FILLED, Decimal("5000.00"))


def test_invalid_modify_is_rejected_and_changes_nothing(broker):
    submit(broker, limit("pd-m"))

    with pytest.raises(BrokerRejected, match="not a valid price"):
        modify(broker, account_ref=REF, client_order_id="pd-m", limit_price=Decimal("4995.10"))
    assert VenueOrder.objects.get(client_order_id="pd-m").limit_price == Decimal("4990.00")


def test_get_order_of_an_unknown_client_id_is_none(broker):
    assert broker.get_order(account_ref=REF, client_order_id="pd-never") is None


def test_partially_filled_working_order_reports_partially_filled(broker):
    VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=1)

    report = submit(broker, limit("pd-p", price="5000.00", quantity=3))

    assert (report.status, report.filled_quantity) == (ReportedStatus.PARTIALLY_FILLED, 1)
    [open_order] = broker.list_open_orders(account_ref=REF)
    assert (open_order.client_order_id, open_order.status) == ("pd-p", ReportedStatus.PARTIALLY_FILLED)


def test_list_open_orders_lists_only_working_orders(broker):
    submit(broker, request("pd-f"))
    submit(broker, limit("pd-w1"))
    submit(broker, limit("pd-w2", price="4980.00"))
    submit(broker, limit("pd-c"))
    broker.cancel_order(account_ref=REF, client_order_id="pd-c")

    orders = broker.list_open_orders(account_ref=REF)

    assert [o.client_order_id for o in orders] == ["pd-w1", "pd-w2"]
    assert all(o.status == ReportedStatus.WORKING for o in orders)


def test_list_fills_returns_fills_since_the_given_time(broker):
    submit(broker, request("pd-1"))
    since = timezone.now()
    submit(broker, request("pd-2", side="sell", quantity=2))

    fills = broker.list_fills(account_ref=REF, since=since)

    assert [f.client_order_id for f in fills] == ["pd-2"]
    [fill] = fills
    assert isinstance(fill, BrokerFill)
    assert (fill.side, fill.quantity, fill.price, fill.fee) == ("sell", 2, Decimal("5000.00"), Decimal("0.74"))
    assert isinstance(fill.price, Decimal) and isinstance(fill.fee, Decimal)
    assert fill.fill_id == VenueFill.objects.get(order__client_order_id="pd-2").fill_id
    assert len(broker.list_fills(account_ref=REF, since=since.replace(year=2000))) == 2


def test_get_positions_are_signed_with_decimal_average(broker, paper):
    submit(broker, request("pd-l", quantity=2))
    submit(broker, request("pd-s", symbol="ESZ6", side="sell", quantity=3))

    positions = broker.get_positions(account_ref=REF)

    assert positions == [
        BrokerPosition(account_ref=REF, symbol="ESZ6", quantity=-3, avg_price=Decimal("5000")),
        BrokerPosition(account_ref=REF, symbol="MESZ6", quantity=2, avg_price=Decimal("5000")),
    ]
    assert all(isinstance(p.avg_price, Decimal) for p in positions)


def test_get_balances_reports_cash_after_fees(broker):
    submit(broker, request("pd-1", quantity=2))  # 2 * 0.37
    submit(broker, request("pd-2", symbol="ESZ6"))  # 1 * 1.40

    assert broker.get_balances(account_ref=REF) == [
        Balance(account_ref=REF, currency="USD", cash=Decimal("50000") - Decimal("0.74") - Decimal("1.40"))
    ]


def test_close_position_full_and_partial(broker):
    submit(broker, request("pd-open", quantity=3))

    partial = broker.close_position(account_ref=REF, symbol="MESZ6", quantity=1)
    assert (partial.client_order_id, partial.side, partial.quantity) == (None, "sell", 1)
    assert partial.status == ReportedStatus.FILLED
    assert broker.get_positions(account_ref=REF)[0].quantity == 2

    full = broker.close_position(account_ref=REF, symbol="MESZ6")
    assert (full.quantity, full.status) == (2, ReportedStatus.FILLED)
    assert broker.get_positions(account_ref=REF) == []


def test_close_position_when_flat_is_rejected(broker):
    with pytest.raises(BrokerRejected, match="No open position"):
        broker.close_position(account_ref=REF, symbol="MESZ6")


def test_get_quotes_returns_last_prices_for_symbols_with_a_market(broker, paper):
    paper.price("ESZ6", "5001.25")

    quotes = broker.get_quotes(["MESZ6", "ESZ6", "NQZ6"])

    assert [(q.symbol, q.last) for q in quotes] == [("MESZ6", Decimal("5000.00")), ("ESZ6", Decimal("5001.25"))]
    assert all(isinstance(q.last, Decimal) and q.occurred_at.tzinfo is not None for q in quotes)


def test_health_reports_listed_contracts(broker):
    report = broker.health()

    assert report.ok is True
    assert report.detail == f"{VenueContract.objects.filter(is_listed=True).count()} contracts listed"
    assert report.detail == "22 contracts listed"  # every contract in brokers/data/cme_futures.json


def test_capabilities_declare_modify_and_partial_close():
    assert {Capability.MODIFY, Capability.PARTIAL_CLOSE, Capability.FUTURES} <= PaperBroker.capabilities
    assert Capability.OPTIONS not in PaperBroker.capabilities


def test_parse_events_maps_wire_dicts_and_ignores_unknown_types(broker):
    submit(broker, request("pd-e", quantity=2))
    order_wire = venue.get_order(account_ref=REF, client_order_id="pd-e")
    [fill_wire] = venue.list_fills(account_ref=REF, since=timezone.now().replace(year=2000))

    reports = broker.parse_events(
        [{"type": "heartbeat"}, order_wire, {"type": "position", "symbol": "MESZ6"}, fill_wire, {"no": "type"}]
    )

    assert [type(r) for r in reports] == [BrokerOrder, BrokerFill]
    order, fill = reports
    assert (order.client_order_id, order.status, order.avg_fill_price) == ("pd-e", ReportedStatus.FILLED, Decimal(5000))
    assert fill == BrokerFill(
        account_ref=REF,
        fill_id=fill_wire["fillId"],
        broker_order_id=order_wire["orderId"],
        client_order_id="pd-e",
        symbol="MESZ6",
        side="buy",
        quantity=2,
        price=Decimal("5000"),
        fee=Decimal("0.74"),
        occurred_at=datetime.fromisoformat(fill_wire["timestamp"]),
    )


def test_parse_events_reports_partial_fill_status_and_keeps_missing_client_id():
    wire = {
        "type": "order",
        "accountId": REF,
        "orderId": "77",
        "clientOrderId": None,
        "symbol": "MESZ6",
        "side": "sell",
        "quantity": 5,
        "orderType": "limit",
        "timeInForce": "gtc",
        "limitPrice": "5001.25",
        "stopPrice": None,
        "status": "working",
        "filledQuantity": 2,
        "avgFillPrice": "5001.5",
        "reason": "",
        "timestamp": "2026-01-02T15:04:05.123456+00:00",
    }
    unsaved = PaperBroker(BrokerConnectionFactory.build())  # parsing needs no database

    [order] = unsaved.parse_events([wire])

    assert order.status == ReportedStatus.PARTIALLY_FILLED
    assert order.client_order_id is None
    assert (order.limit_price, order.avg_fill_price, order.stop_price) == (Decimal("5001.25"), Decimal("5001.5"), None)
    assert order.occurred_at == datetime.fromisoformat("2026-01-02T15:04:05.123456+00:00")
    for venue_status, reported in [
        ("filled", ReportedStatus.FILLED),
        ("canceled", ReportedStatus.CANCELED),
        ("rejected", ReportedStatus.REJECTED),
        ("expired", ReportedStatus.EXPIRED),
    ]:
        [parsed] = unsaved.parse_events([{**wire, "status": venue_status}])
        assert parsed.status == reported
    [fresh] = unsaved.parse_events([{**wire, "filledQuantity": 0, "avgFillPrice": None}])
    assert (fresh.status, fresh.avg_fill_price) == (ReportedStatus.WORKING, None)


def test_submit_orders_answers_each_request_and_refuses_only_the_bad_one(broker):
    answers = broker.submit_orders([request("pd-b1", quantity=2), request("pd-b2", symbol="NQZ6"), limit("pd-b3")])

    assert [type(a) for a in answers] == [BrokerOrder, BrokerRejected, BrokerOrder]
    assert answers[0].status == ReportedStatus.FILLED and answers[2].status == ReportedStatus.WORKING
    assert "No market in NQZ6" in answers[1].message
    assert VenueOrder.objects.filter(client_order_id__in=["pd-b1", "pd-b3"]).count() == 2


def test_submit_orders_raises_for_the_whole_batch_when_it_never_arrived(broker):
    venue.inject_fault("unavailable")

    with pytest.raises(BrokerUnavailable):
        broker.submit_orders([request("pd-u1"), request("pd-u2")])
    assert not VenueOrder.objects.exists()


def test_reports_cross_a_task_boundary_as_json_unchanged(broker):
    order = submit(broker, request("pd-json", quantity=2))
    (fill,) = broker.list_fills(account_ref=REF, since=timezone.now() - timedelta(minutes=1))
    for report in (order, fill):
        assert report_from_json(json.loads(json.dumps(report_to_json(report)))) == report

"""The paper venue on its own: its API, its books (venue tables) and what it pushes after commit.

Pushes are pointed at `capture_push` (configuration, through the `settings` fixture), so nothing
here reaches propdesk's books.
"""

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from brokers.paper import venue
from brokers.paper.models import VenueAccount, VenueContract, VenueFill, VenueOrder, VenuePosition
from brokers.paper.venue import VenueError

pytestmark = pytest.mark.django_db

PUSHED: list[tuple[str, list[dict[str, Any]]]] = []
REF = "VENUE-T1"
STREAM = "stream-7"
MES_FEE = Decimal("0.37")

ORDER_WIRE_KEYS = {
    "type",
    "trailAmount",
    "ocoGroup",
    "accountId",
    "orderId",
    "clientOrderId",
    "symbol",
    "side",
    "quantity",
    "orderType",
    "timeInForce",
    "limitPrice",
    "stopPrice",
    "status",
    "filledQuantity",
    "avgFillPrice",
    "reason",
    "timestamp",
}
FILL_WIRE_KEYS = {
    "type",
    "accountId",
    "fillId",
    "orderId",
    "clientOrderId",
    "symbol",
    "side",
    "quantity",
    "price",
    "fee",
    "timestamp",
}


def capture_push(stream_key: str, events: list[dict[str, Any]]) -> None:
    PUSHED.append((stream_key, events))


@pytest.fixture(autouse=True)
def pushed(settings) -> Any:  # type: ignore[no-untyped-def]
    settings.PAPER_VENUE_PUSH = "tests.brokers.test_paper_venue.capture_push"
    venue._push_target.cache_clear()
    PUSHED.clear()
    yield PUSHED
    PUSHED.clear()
    venue._push_target.cache_clear()


@pytest.fixture
def account(paper) -> VenueAccount:  # type: ignore[no-untyped-def]
    return venue.open_account(ref=REF, stream_key=STREAM, cash=Decimal("50000"))


def place(**kwargs: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "account_ref": REF,
        "client_order_id": None,
        "symbol": "MESZ6",
        "side": "buy",
        "quantity": 1,
        "order_type": "market",
    }
    request.update(kwargs)
    return venue.place_order(**request)


def price(value: str, symbol: str = "MESZ6") -> None:
    venue.set_market_price(symbol=symbol, price=Decimal(value))


def cash() -> Decimal:
    return VenueAccount.objects.get(ref=REF).cash


def position(symbol: str = "MESZ6") -> tuple[int, Decimal]:
    row = VenuePosition.objects.filter(account__ref=REF, symbol=symbol).first()
    return (0, Decimal(0)) if row is None else (row.quantity, row.avg_price)


def set_contract(symbol: str = "MESZ6", **fields: Any) -> None:
    VenueContract.objects.filter(symbol=symbol).update(**fields)


# -- Market orders -----------------------------------------------------------------------------


def test_market_order_fills_at_last_price_and_charges_fee_per_contract(account):
    wire = place(client_order_id="c-1", quantity=2)

    assert wire["status"] == "filled"
    assert wire["filledQuantity"] == 2
    assert Decimal(wire["avgFillPrice"]) == Decimal("5000.00")
    fill = VenueFill.objects.get(order__client_order_id="c-1")
    assert (fill.quantity, fill.price, fill.fee) == (2, Decimal("5000.00"), 2 * MES_FEE)
    assert position() == (2, Decimal("5000.00"))
    assert cash() == Decimal("50000") - 2 * MES_FEE


def test_market_orders_pay_slippage_ticks_in_each_direction(account):
    set_contract(slippage_ticks=2)

    bought = place(client_order_id="buy", side="buy")
    sold = place(client_order_id="sell", side="sell")

    assert Decimal(bought["avgFillPrice"]) == Decimal("5000.50")
    assert Decimal(sold["avgFillPrice"]) == Decimal("4999.50")
    assert position() == (0, Decimal(0))
    # Round trip lost 4 ticks of $1.25 plus two fees.
    assert cash() == Decimal("50000") - Decimal("5.00") - 2 * MES_FEE


def test_cash_changes_by_realized_pnl_minus_fees(account):
    place(client_order_id="open", quantity=2)
    price("5002.50")  # +10 ticks
    place(client_order_id="close", side="sell", quantity=2)

    assert position() == (0, Decimal(0))
    assert cash() == Decimal("50000") + Decimal("25.00") - 4 * MES_FEE


def test_short_position_is_negative_and_averages_its_entries(account):
    place(client_order_id="s1", side="sell")
    price("4999.00")
    place(client_order_id="s2", side="sell")

    assert position() == (-2, Decimal("4999.50"))
    assert cash() == Decimal("50000") - 2 * MES_FEE


def test_market_order_is_stored_rejected_when_there_is_no_price(account):
    # NQZ6 is listed in the paper world but has never had a price.
    wire = place(client_order_id="no-market", symbol="NQZ6")

    assert wire["status"] == "rejected"
    assert wire["reason"] == "No market in NQZ6 right now."
    order = VenueOrder.objects.get(client_order_id="no-market")
    assert (order.status, order.filled_quantity) == ("rejected", 0)
    assert not VenueFill.objects.exists()
    assert cash() == Decimal("50000")


@pytest.mark.parametrize(
    ("request_fields", "reason"),
    [
        ({"symbol": "XXZ9"}, "XXZ9 is not listed on this venue."),
        ({"side": "hold"}, "Unknown side 'hold'."),
        ({"order_type": "iceberg"}, "Unknown order type 'iceberg'."),
        ({"quantity": 0}, "Quantity must be at least 1."),
        ({"order_type": "limit"}, "Limit price required."),
        ({"order_type": "stop"}, "Stop price required."),
        ({"order_type": "limit", "limit_price": Decimal("5000.10")}, "Price 5000.10 is not a valid price for MESZ6."),
    ],
)
def test_invalid_order_is_stored_rejected_with_its_reason(account, request_fields, reason):
    wire = place(client_order_id="bad", **request_fields)

    assert (wire["status"], wire["reason"]) == ("rejected", reason)
    assert VenueOrder.objects.get(client_order_id="bad").status == "rejected"
    assert not VenueFill.objects.exists()


def test_unknown_account_raises_and_stores_nothing(account):
    with pytest.raises(VenueError, match="Unknown account"):
        place(account_ref="NOPE", client_order_id="x")
    assert not VenueOrder.objects.exists()


def test_duplicate_client_order_id_returns_the_original_order(account):
    first = place(client_order_id="dup", quantity=2)
    price("5010.00")
    again = place(client_order_id="dup", quantity=5, side="sell")

    assert again["orderId"] == first["orderId"]
    assert (again["side"], again["quantity"], again["avgFillPrice"]) == ("buy", 2, first["avgFillPrice"])
    assert VenueOrder.objects.filter(client_order_id="dup").count() == 1
    assert VenueFill.objects.count() == 1
    assert position() == (2, Decimal("5000.00"))


def test_same_client_order_id_in_two_accounts_is_two_orders(account):
    venue.open_account(ref="VENUE-T2", stream_key=STREAM, cash=Decimal("50000"))

    first = place(client_order_id="shared")
    second = place(account_ref="VENUE-T2", client_order_id="shared")

    assert first["orderId"] != second["orderId"]
    assert VenueOrder.objects.filter(client_order_id="shared").count() == 2


# -- Limit, stop and stop-limit orders ----------------------------------------------------------


def test_limit_buy_works_until_the_price_crosses_then_fills_at_market(account):
    wire = place(client_order_id="lim", order_type="limit", limit_price=Decimal("4999.00"))
    assert (wire["status"], wire["filledQuantity"]) == ("working", 0)

    price("4999.25")
    assert VenueOrder.objects.get(client_order_id="lim").status == "working"

    price("4998.50")  # through the limit: trades at the (better) market
    order = VenueOrder.objects.get(client_order_id="lim")
    assert (order.status, order.avg_fill_price) == ("filled", Decimal("4998.50"))
    assert position() == (1, Decimal("4998.50"))


def test_marketable_limit_fills_at_once_at_the_better_market_price(account):
    wire = place(client_order_id="lim", side="sell", order_type="limit", limit_price=Decimal("4990.00"))

    assert wire["status"] == "filled"
    assert Decimal(wire["avgFillPrice"]) == Decimal("5000.00")
    assert position() == (-1, Decimal("5000.00"))


def test_limit_orders_pay_no_slippage(account):
    set_contract(slippage_ticks=3)

    wire = place(client_order_id="lim", order_type="limit", limit_price=Decimal("5000.00"))

    assert Decimal(wire["avgFillPrice"]) == Decimal("5000.00")


def test_stop_buy_fills_like_a_market_order_once_touched(account):
    set_contract(slippage_ticks=1)
    place(client_order_id="stop", order_type="stop", stop_price=Decimal("5001.00"))

    price("5000.75")
    assert VenueOrder.objects.get(client_order_id="stop").status == "working"

    price("5001.00")
    order = VenueOrder.objects.get(client_order_id="stop")
    assert order.status == "filled"
    assert order.avg_fill_price == Decimal("5001.25")  # touched price plus one tick of slippage
    assert order.triggered


def test_stop_sell_triggers_when_price_falls_to_it(account):
    place(client_order_id="stop", side="sell", quantity=2, order_type="stop", stop_price=Decimal("4995.00"))
    price("4996.00")
    assert VenueOrder.objects.get(client_order_id="stop").status == "working"

    price("4994.50")

    order = VenueOrder.objects.get(client_order_id="stop")
    assert (order.status, order.filled_quantity, order.avg_fill_price) == ("filled", 2, Decimal("4994.50"))
    assert position() == (-2, Decimal("4994.50"))


def test_stop_limit_triggers_then_waits_for_its_limit(account):
    place(
        client_order_id="sl",
        order_type="stop_limit",
        stop_price=Decimal("5001.00"),
        limit_price=Decimal("5001.50"),
    )

    price("5002.00")  # stop touched, but above the limit: armed, not filled
    order = VenueOrder.objects.get(client_order_id="sl")
    assert (order.status, order.triggered, order.filled_quantity) == ("working", True, 0)

    price("5000.75")  # below the stop again; the armed limit still trades
    order.refresh_from_db()
    assert (order.status, order.avg_fill_price) == ("filled", Decimal("5000.75"))


def test_stop_limit_does_nothing_before_its_stop_is_touched(account):
    place(
        client_order_id="sl",
        side="sell",
        order_type="stop_limit",
        stop_price=Decimal("4990.00"),
        limit_price=Decimal("4989.00"),
    )

    price("4995.00")  # would satisfy the limit, but the stop is not touched

    order = VenueOrder.objects.get(client_order_id="sl")
    assert (order.status, order.triggered, order.filled_quantity) == ("working", False, 0)
    assert not VenueFill.objects.exists()


# -- Partial fills ----------------------------------------------------------------------------------


def test_max_fill_size_fills_limit_orders_in_slices_with_distinct_fill_ids(account):
    set_contract(max_fill_size=2)

    wire = place(client_order_id="big", quantity=5, order_type="limit", limit_price=Decimal("5000.00"))
    assert (wire["status"], wire["filledQuantity"]) == ("working", 2)

    price("5000.00")
    assert VenueOrder.objects.get(client_order_id="big").filled_quantity == 4
    price("4999.75")

    order = VenueOrder.objects.get(client_order_id="big")
    assert (order.status, order.filled_quantity) == ("filled", 5)
    fills = list(order.fills.order_by("pk"))
    assert [f.quantity for f in fills] == [2, 2, 1]
    assert len({f.fill_id for f in fills}) == 3
    assert order.avg_fill_price == Decimal("4999.95")  # (4 * 5000.00 + 4999.75) / 5
    assert cash() == Decimal("50000") - 5 * MES_FEE
    assert position() == (5, Decimal("4999.95"))


def test_market_orders_sweep_regardless_of_max_fill_size(account):
    set_contract(max_fill_size=2)

    wire = place(client_order_id="mkt", quantity=5)

    assert (wire["status"], wire["filledQuantity"]) == ("filled", 5)
    assert VenueFill.objects.get().quantity == 5


# -- Cancel and modify ------------------------------------------------------------------------------


def test_cancel_moves_a_working_order_to_canceled(account):
    place(client_order_id="lim", order_type="limit", limit_price=Decimal("4990.00"))

    wire = venue.cancel_order(account_ref=REF, client_order_id="lim")

    assert (wire["status"], wire["reason"]) == ("canceled", "Canceled by request.")
    assert VenueOrder.objects.get(client_order_id="lim").status == "canceled"
    price("4980.00")  # a canceled order no longer trades
    assert not VenueFill.objects.exists()


def test_cancelling_a_filled_order_raises_and_changes_nothing(account):
    place(client_order_id="mkt")

    with pytest.raises(VenueError, match="is filled, not working"):
        venue.cancel_order(account_ref=REF, client_order_id="mkt")
    assert VenueOrder.objects.get(client_order_id="mkt").status == "filled"


def test_cancelling_an_unknown_or_already_canceled_order_raises(account):
    place(client_order_id="lim", order_type="limit", limit_price=Decimal("4990.00"))
    venue.cancel_order(account_ref=REF, client_order_id="lim")

    with pytest.raises(VenueError, match="is canceled"):
        venue.cancel_order(account_ref=REF, client_order_id="lim")
    with pytest.raises(VenueError, match="No order with client id"):
        venue.cancel_order(account_ref=REF, client_order_id="missing")


def test_modify_quantity_must_stay_above_what_is_filled(account):
    set_contract(max_fill_size=2)
    place(client_order_id="big", quantity=5, order_type="limit", limit_price=Decimal("5000.00"))
    price("5000.25")  # out of reach: 2 filled, 3 left working

    for too_small in (1, 2):
        with pytest.raises(VenueError, match="not above the 2 already filled"):
            venue.modify_order(account_ref=REF, client_order_id="big", quantity=too_small)
    wire = venue.modify_order(account_ref=REF, client_order_id="big", quantity=3)

    assert (wire["status"], wire["quantity"], wire["filledQuantity"]) == ("working", 3, 2)
    assert VenueOrder.objects.get(client_order_id="big").quantity == 3


def test_modify_price_must_be_on_tick_and_fit_the_order_type(account):
    place(client_order_id="lim", order_type="limit", limit_price=Decimal("4990.00"))

    with pytest.raises(VenueError, match="not a valid price"):
        venue.modify_order(account_ref=REF, client_order_id="lim", limit_price=Decimal("4990.10"))
    with pytest.raises(VenueError, match="Only stop and stop-limit"):
        venue.modify_order(account_ref=REF, client_order_id="lim", stop_price=Decimal("4990.00"))
    wire = venue.modify_order(account_ref=REF, client_order_id="lim", limit_price=Decimal("4995.25"))

    assert (wire["status"], wire["limitPrice"]) == ("working", "4995.25")
    assert VenueOrder.objects.get(client_order_id="lim").limit_price == Decimal("4995.25")


def test_modify_to_a_marketable_price_fills_at_once(account):
    place(client_order_id="lim", quantity=2, order_type="limit", limit_price=Decimal("4990.00"))

    wire = venue.modify_order(account_ref=REF, client_order_id="lim", limit_price=Decimal("5001.00"))

    assert (wire["status"], wire["filledQuantity"]) == ("filled", 2)
    assert Decimal(wire["avgFillPrice"]) == Decimal("5000.00")
    assert position() == (2, Decimal("5000.00"))


def test_modifying_a_filled_order_raises(account):
    place(client_order_id="mkt")

    with pytest.raises(VenueError, match="not working"):
        venue.modify_order(account_ref=REF, client_order_id="mkt", quantity=3)
    assert VenueOrder.objects.get(client_order_id="mkt").quantity == 1


# -- Closing positions and day orders -------------------------------------------------------------


def test_close_position_sends_a_market_order_without_client_id_for_the_whole_position(account):
    place(client_order_id="open", quantity=3)

    wire = venue.close_position(account_ref=REF, symbol="MESZ6")

    assert wire["clientOrderId"] is None
    assert (wire["side"], wire["quantity"], wire["orderType"], wire["status"]) == ("sell", 3, "market", "filled")
    assert position() == (0, Decimal(0))
    assert venue.positions(account_ref=REF) == []


def test_close_position_partially_and_for_a_short(account):
    place(client_order_id="open", side="sell", quantity=3)

    wire = venue.close_position(account_ref=REF, symbol="MESZ6", quantity=1)

    assert (wire["side"], wire["quantity"]) == ("buy", 1)
    assert position() == (-2, Decimal("5000.00"))
    # Two closes without client ids are two separate orders.
    venue.close_position(account_ref=REF, symbol="MESZ6", quantity=1)
    assert VenueOrder.objects.filter(client_order_id__isnull=True).count() == 2
    assert position()[0] == -1


def test_close_position_refuses_a_flat_position_or_too_large_a_quantity(account):
    with pytest.raises(VenueError, match="No open position"):
        venue.close_position(account_ref=REF, symbol="MESZ6")
    place(client_order_id="open", quantity=2)

    for quantity in (0, 3):
        with pytest.raises(VenueError, match="between 1 and 2"):
            venue.close_position(account_ref=REF, symbol="MESZ6", quantity=quantity)
    assert position() == (2, Decimal("5000.00"))
    assert VenueOrder.objects.count() == 1


def test_expire_day_orders_expires_only_working_day_orders(account):
    place(client_order_id="day", order_type="limit", limit_price=Decimal("4990.00"))
    place(client_order_id="gtc", order_type="limit", limit_price=Decimal("4990.00"), time_in_force="gtc")
    place(client_order_id="done")

    assert venue.expire_day_orders() == 1

    statuses = dict(VenueOrder.objects.values_list("client_order_id", "status"))
    assert statuses == {"day": "expired", "gtc": "working", "done": "filled"}
    assert VenueOrder.objects.get(client_order_id="day").reason.startswith("Day order expired")
    assert venue.expire_day_orders() == 0


# -- Pushed events --------------------------------------------------------------------------------


def test_fill_pushes_order_and_fill_events_with_wire_fields_after_commit(account, commit, pushed):
    with commit():
        place(client_order_id="c-9", quantity=2)
        assert pushed == []  # nothing leaves the venue before its transaction commits

    assert len(pushed) == 1
    stream_key, events = pushed[0]
    assert stream_key == STREAM
    assert [(e["type"], e.get("status")) for e in events] == [("order", "working"), ("fill", None), ("order", "filled")]
    order_event, fill_event = events[2], events[1]
    assert set(order_event) == ORDER_WIRE_KEYS
    assert set(fill_event) == FILL_WIRE_KEYS
    venue_order = VenueOrder.objects.get(client_order_id="c-9")
    venue_fill = VenueFill.objects.get()
    assert order_event == {
        "type": "order",
        "accountId": REF,
        "orderId": str(venue_order.pk),
        "clientOrderId": "c-9",
        "symbol": "MESZ6",
        "side": "buy",
        "quantity": 2,
        "orderType": "market",
        "timeInForce": "day",
        "limitPrice": None,
        "stopPrice": None,
        "trailAmount": None,
        "ocoGroup": None,
        "status": "filled",
        "filledQuantity": 2,
        "avgFillPrice": "5000",
        "reason": "",
        "timestamp": venue_order.updated_at.isoformat(),
    }
    assert fill_event == {
        "type": "fill",
        "accountId": REF,
        "fillId": venue_fill.fill_id,
        "orderId": str(venue_order.pk),
        "clientOrderId": "c-9",
        "symbol": "MESZ6",
        "side": "buy",
        "quantity": 2,
        "price": "5000",
        "fee": "0.74",
        "timestamp": venue_fill.executed_at.isoformat(),
    }


def test_price_event_pushes_the_fills_it_causes(account, commit, pushed):
    place(client_order_id="lim", order_type="limit", limit_price=Decimal("4999.00"))  # never committed: not pushed
    with commit():
        price("4999.00")

    assert len(pushed) == 1
    assert [(e["type"], e["clientOrderId"]) for e in pushed[0][1]] == [("fill", "lim"), ("order", "lim")]
    assert pushed[0][1][1]["status"] == "filled"


def test_rejection_and_cancel_are_pushed_too(account, commit, pushed):
    with commit():
        place(client_order_id="bad", symbol="NQZ6")
        place(client_order_id="lim", order_type="limit", limit_price=Decimal("4990.00"))
        venue.cancel_order(account_ref=REF, client_order_id="lim")

    statuses = [(e["clientOrderId"], e["status"]) for _, events in pushed for e in events]
    assert statuses == [("bad", "rejected"), ("lim", "working"), ("lim", "canceled")]
    assert pushed[0][1][0]["reason"] == "No market in NQZ6 right now."


def test_nothing_is_pushed_when_the_callers_transaction_rolls_back(account, commit, pushed):
    with commit():
        with pytest.raises(RuntimeError), transaction.atomic():
            place(client_order_id="gone")
            raise RuntimeError("caller failed after the venue answered")

    assert pushed == []
    assert not VenueOrder.objects.exists()


def test_no_push_when_nothing_happened(account, commit, pushed):
    place(client_order_id="lim", order_type="limit", limit_price=Decimal("4990.00"))
    with commit():
        price("4995.00")  # the limit at 4990.00 is not reached

    assert pushed == []


# -- Faults -----------------------------------------------------------------------------------------


def test_reject_next_order_rejects_exactly_one_order(account):
    venue.inject_fault("reject_next_order")

    rejected = place(client_order_id="r1")
    accepted = place(client_order_id="r2")

    assert (rejected["status"], rejected["reason"]) == ("rejected", "Rejected by the venue (simulated rejection).")
    assert accepted["status"] == "filled"
    assert VenueFill.objects.get().order.client_order_id == "r2"


def test_reject_next_order_can_be_set_for_several_orders(account):
    venue.inject_fault("reject_next_order", times=2)

    statuses = [place(client_order_id=f"r{n}")["status"] for n in range(3)]

    assert statuses == ["rejected", "rejected", "filled"]


def test_reject_fault_is_not_spent_on_an_order_refused_for_another_reason(account):
    venue.inject_fault("reject_next_order")

    place(client_order_id="bad", quantity=0)
    second = place(client_order_id="next")

    assert second["status"] == "rejected"
    assert second["reason"] == "Rejected by the venue (simulated rejection)."


def test_unknown_fault_name_raises(account):
    with pytest.raises(VenueError, match="Unknown fault"):
        venue.inject_fault("meteor")


def test_clear_faults_drops_pending_faults(account):
    venue.inject_fault("reject_next_order", times=3)
    venue.clear_faults()

    assert place(client_order_id="ok")["status"] == "filled"


# -- Queries -----------------------------------------------------------------------------------------


def test_queries_answer_in_wire_format(account):
    place(client_order_id="mkt", quantity=2)
    place(client_order_id="lim", order_type="limit", limit_price=Decimal("4990.00"))

    assert [o["clientOrderId"] for o in venue.list_orders(account_ref=REF)] == ["lim"]
    assert [o["clientOrderId"] for o in venue.list_orders(account_ref=REF, working_only=False)] == ["mkt", "lim"]
    assert venue.get_order(account_ref=REF, client_order_id="mkt")["status"] == "filled"
    assert venue.get_order(account_ref=REF, client_order_id="nope") is None
    assert venue.positions(account_ref=REF) == [
        {"accountId": REF, "symbol": "MESZ6", "quantity": 2, "avgPrice": "5000"}
    ]
    assert venue.balance(account_ref=REF) == {"accountId": REF, "currency": "USD", "cash": "49999.26"}
    assert venue.health() == {"ok": True, "listed": VenueContract.objects.filter(is_listed=True).count()}
    with pytest.raises(VenueError):
        venue.balance(account_ref="NOPE")


# -- Batches ---------------------------------------------------------------------------------------


def ticket(ref: str, client_order_id: str | None, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "account_ref": ref,
        "client_order_id": client_order_id,
        "symbol": "MESZ6",
        "side": "buy",
        "quantity": 1,
        "order_type": "market",
    }
    values.update(fields)
    return values


def test_a_batch_places_every_ticket_answers_in_order_and_pushes_once_per_stream(account, commit):
    venue.open_account(ref="VENUE-T2", stream_key=STREAM, cash=Decimal("50000"))
    venue.open_account(ref="VENUE-T3", stream_key="stream-8", cash=Decimal("50000"))
    with commit():
        answers = venue.place_orders(
            [
                ticket(REF, "b-1", quantity=2),
                ticket("VENUE-T2", "b-2", side="sell"),
                ticket("VENUE-T3", "b-3", order_type="limit", limit_price=Decimal("4990.00")),
                ticket(REF, "b-4", symbol="NQZ6"),  # no market: refused, the others still trade
            ]
        )
        assert not PUSHED  # nothing leaves before the batch commits

    assert [a["clientOrderId"] for a in answers] == ["b-1", "b-2", "b-3", "b-4"]
    assert [a["status"] for a in answers] == ["filled", "filled", "working", "rejected"]
    assert position() == (2, Decimal("5000.00"))
    assert VenuePosition.objects.get(account__ref="VENUE-T2").quantity == -1
    assert VenueFill.objects.count() == 2
    # One push per stream, holding every account's events on it.
    assert sorted(key for key, _ in PUSHED) == ["stream-7", "stream-8"]
    stream7 = next(events for key, events in PUSHED if key == STREAM)
    assert {e["accountId"] for e in stream7} == {REF, "VENUE-T2"}
    assert [e["type"] for e in stream7 if e["clientOrderId"] == "b-1"] == ["order", "fill", "order"]


def test_a_batch_answers_an_unknown_account_with_an_error_and_places_the_rest(account):
    answers = venue.place_orders([ticket("NOPE", "u-1"), ticket(REF, "u-2")])

    assert isinstance(answers[0], VenueError) and "Unknown account" in str(answers[0])
    assert answers[1]["status"] == "filled"
    assert list(VenueOrder.objects.values_list("client_order_id", flat=True)) == ["u-2"]


def test_a_batch_repeating_client_ids_places_each_order_once(account):
    first = place(client_order_id="r-1")
    answers = venue.place_orders([ticket(REF, "r-1"), ticket(REF, "r-2"), ticket(REF, "r-2")])

    assert answers[0]["orderId"] == first["orderId"]
    assert answers[1]["orderId"] == answers[2]["orderId"]
    assert VenueOrder.objects.count() == 2
    assert position() == (2, Decimal("5000.00"))

"""Publishing order, position and account updates to live clients (called after commit).

Payloads are built when the publish runs, from committed rows, in the same shapes the REST
API returns, so a page can render an event and an API answer with the same code.
"""

from typing import Any

from accounts.realtime import on_commit, publish_account_event
from config.representation import represent
from orders.models import Order, Position
from orders.selectors import AccountValuation, mark_positions
from orders.serializers import AccountSerializer, OrderSerializer, PositionSerializer
from risk.selectors import RiskAssessment, accounts_for_assessment, assess_account, assess_accounts


def publish_order_updated(order: Order) -> None:
    """Publish an order as saved (call after commit, with instrument and created_by loaded)."""
    publish_account_event(order.account_id, "order.updated", represent(OrderSerializer, order))


def _account_update(account_id: int) -> tuple[AccountValuation, dict[str, Any]]:
    """The account as the API shows it, plus the room left under each risk rule."""
    assessment = assess_account(accounts_for_assessment().get(pk=account_id))
    return assessment.valuation, _account_payload(assessment)


def _account_payload(assessment: RiskAssessment) -> dict[str, Any]:
    return {**represent(AccountSerializer, assessment.valuation), "headroom": assessment.headroom_dicts()}


def publish_marks(assessment: RiskAssessment, *, symbol: str) -> None:
    """Fresh unrealized P&L after a price change, from the risk monitor's assessment (no queries):
    the positions in `symbol`, then the account with its headroom."""
    account_id = assessment.account.pk
    for mark in assessment.valuation.positions:
        if mark.position.instrument.symbol == symbol:
            publish_account_event(account_id, "position.updated", represent(PositionSerializer, mark))
    publish_account_event(account_id, "account.updated", _account_payload(assessment))


def publish_account_updated(account_id: int) -> None:
    _, data = _account_update(account_id)
    publish_account_event(account_id, "account.updated", data)


def publish_order_on_commit(order: Order) -> None:
    """After commit, publish the order in the state it was saved in."""
    on_commit(lambda: publish_order_updated(order))


def publish_fills_on_commit(booked: list[tuple[Order, Position]]) -> None:
    """After commit, for fills just booked (each filled order with its position): per account,
    the orders, the positions and the account, from one valuation of all the accounts together
    (a fan-out books fills on hundreds at once)."""
    if not booked:
        return

    def publish() -> None:
        by_account: dict[int, tuple[dict[int, Order], dict[int, Position]]] = {}
        for order, position in booked:  # the last state of each order and position wins
            orders, positions = by_account.setdefault(order.account_id, ({}, {}))
            orders[order.pk], positions[position.pk] = order, position
        accounts = list(accounts_for_assessment().filter(pk__in=list(by_account)).order_by("pk"))
        for assessment in assess_accounts(accounts):
            account_id = assessment.account.pk
            orders, positions = by_account[account_id]
            for order in orders.values():
                publish_order_updated(order)
            marks = {m.position.pk: m for m in assessment.valuation.positions}
            for position in positions.values():
                mark = marks.get(position.pk) or mark_positions([position])[0]  # flat: not in the valuation
                publish_account_event(account_id, "position.updated", represent(PositionSerializer, mark))
            publish_account_event(account_id, "account.updated", _account_payload(assessment))

    on_commit(publish)


def publish_account_on_commit(account_id: int) -> None:
    on_commit(lambda: publish_account_updated(account_id))

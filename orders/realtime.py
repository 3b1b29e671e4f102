"""Publishing order, position and account updates to live clients (called after commit).

Payloads are built when the publish runs, from committed rows, in the same shapes the REST
API returns, so a page can render an event and an API answer with the same code.
"""

from typing import Any

from accounts.models import TradingAccount
from accounts.realtime import on_commit, publish_account_event
from config.representation import represent
from orders.models import Order, Position
from orders.selectors import AccountValuation, mark_positions
from orders.serializers import AccountSerializer, OrderSerializer, PositionSerializer
from risk.selectors import RiskAssessment, assess_account


def publish_order_updated(order: Order) -> None:
    """Publish an order as saved (call after commit, with instrument and created_by loaded)."""
    publish_account_event(order.account_id, "order.updated", represent(OrderSerializer, order))


def _load_account(account_id: int) -> TradingAccount:
    return (
        TradingAccount.objects.select_related("program__firm", "broker_connection")
        .defer("broker_connection__credentials")  # no need to decrypt secrets for a summary
        .get(pk=account_id)
    )


def _account_update(account_id: int) -> tuple[AccountValuation, dict[str, Any]]:
    """The account as the API shows it, plus the room left under each risk rule."""
    assessment = assess_account(_load_account(account_id))
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


def publish_fill_on_commit(*, order: Order, position: Position, account_id: int) -> None:
    """After commit: the order, the position and the account, from one valuation of the account."""

    def publish() -> None:
        publish_order_updated(order)
        valuation, data = _account_update(account_id)
        (mark,) = [m for m in valuation.positions if m.position.pk == position.pk] or mark_positions([position])
        publish_account_event(account_id, "position.updated", represent(PositionSerializer, mark))
        publish_account_event(account_id, "account.updated", data)

    on_commit(publish)


def publish_account_on_commit(account_id: int) -> None:
    on_commit(lambda: publish_account_updated(account_id))

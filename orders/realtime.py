"""Publishing order, position and account updates to live clients (called after commit).

Payloads are built when the publish runs, from committed rows, in the same shapes the REST
API returns, so a page can render an event and an API answer with the same code.
"""

from accounts.models import TradingAccount
from accounts.realtime import on_commit, publish_account_event
from orders.models import Order, Position
from orders.selectors import mark_positions, value_account
from orders.serializers import AccountSerializer, OrderSerializer, PositionSerializer


def publish_order_updated(order_id: int) -> None:
    order = Order.objects.select_related("instrument", "created_by").get(pk=order_id)
    publish_account_event(order.account_id, "order.updated", OrderSerializer(order).data)


def publish_position_updated(position_id: int) -> None:
    position = Position.objects.select_related("instrument").get(pk=position_id)
    (mark,) = mark_positions([position])
    publish_account_event(position.account_id, "position.updated", PositionSerializer(mark).data)


def publish_account_updated(account_id: int) -> None:
    account = TradingAccount.objects.select_related("program__firm", "broker_connection").get(pk=account_id)
    publish_account_event(account_id, "account.updated", AccountSerializer(value_account(account)).data)


def publish_order_on_commit(order_id: int) -> None:
    on_commit(lambda: publish_order_updated(order_id))


def publish_fill_on_commit(*, order_id: int, position_id: int, account_id: int) -> None:
    def publish() -> None:
        publish_order_updated(order_id)
        publish_position_updated(position_id)
        publish_account_updated(account_id)

    on_commit(publish)


def publish_account_on_commit(account_id: int) -> None:
    on_commit(lambda: publish_account_updated(account_id))

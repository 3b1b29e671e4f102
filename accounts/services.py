"""Opening trading accounts and deciding who may see and trade them."""

from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from accounts.models import AccountMembership, Program, TradingAccount
from accounts.realtime import on_commit, publish_access_changed
from brokers.models import BrokerConnection


@transaction.atomic
def grant_account_access(
    *, user: AbstractBaseUser, account: TradingAccount, can_trade: bool = True
) -> AccountMembership:
    membership, _ = AccountMembership.objects.update_or_create(
        account=account, user=user, defaults={"can_trade": can_trade}
    )
    on_commit(lambda: publish_access_changed(user.pk))
    return membership


@transaction.atomic
def revoke_account_access(*, membership: AccountMembership) -> None:
    user_id = membership.user_id
    membership.delete()
    # Open live connections drop the account's group at once, not at the next reconnect.
    on_commit(lambda: publish_access_changed(user_id))


def open_trading_account(
    *,
    name: str,
    program: Program,
    broker_connection: BrokerConnection,
    broker_account_id: str,
    starting_balance: Decimal | None = None,
) -> TradingAccount:
    """A new account starts with its cash at the starting balance (the program's unless given)."""
    start = starting_balance if starting_balance is not None else program.starting_balance
    return TradingAccount.objects.create(
        name=name,
        program=program,
        broker_connection=broker_connection,
        broker_account_id=broker_account_id,
        starting_balance=start,
        balance=start,
    )

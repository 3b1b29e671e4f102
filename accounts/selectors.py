"""Permission-scoped reads of accounts: the only way views, consumers and services fetch them."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Exists, OuterRef

from accounts.models import TradingAccount
from config.errors import DomainError, NotFoundError

User = AbstractBaseUser | AnonymousUser


class AccountNotFound(NotFoundError):
    code = "account_not_found"


class NotAllowedToTrade(DomainError):
    code = "not_allowed_to_trade"
    http_status = 403


def accounts_visible_to(user: User):  # -> TradingAccountQuerySet
    # Credentials stay encrypted unless a caller really reads them (sending to the broker).
    return (
        TradingAccount.objects.visible_to(user)
        .select_related("program__firm", "broker_connection")
        .defer("broker_connection__credentials")
    )


def visible_account_ids(user: User) -> list[int]:
    return list(TradingAccount.objects.visible_to(user).values_list("pk", flat=True))


def get_account_for_user(*, user: User, account_id: int | str) -> TradingAccount:
    """The account if the user may see it; otherwise the same 404 as for an account that does not exist."""
    try:
        return accounts_visible_to(user).get(pk=int(account_id))
    except (TradingAccount.DoesNotExist, ValueError, TypeError):
        raise AccountNotFound(f"No account {account_id} among your accounts.", field="account") from None


def get_tradable_account_for_user(*, user: User, account_id: int | str) -> TradingAccount:
    """The account if the user may trade it: 404 when they may not see it, 403 when only watch it."""
    may_trade = Exists(TradingAccount.objects.tradable_by(user).filter(pk=OuterRef("pk")))
    try:
        account = accounts_visible_to(user).annotate(may_trade=may_trade).get(pk=int(account_id))
    except (TradingAccount.DoesNotExist, ValueError, TypeError):
        raise AccountNotFound(f"No account {account_id} among your accounts.", field="account") from None
    if not account.may_trade:
        raise NotAllowedToTrade(f"You may watch account {account.name} but not trade it.", field="account")
    return account

"""Permission-scoped reads of signals and their outcomes, and the reversals waiting on fills."""

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet

from accounts.models import TradingAccount
from accounts.selectors import User
from config.errors import NotFoundError
from orders.domain import OrderStatus
from signals_in.models import OutcomeStatus, Signal, SignalOutcome


class SignalNotFound(NotFoundError):
    code = "signal_not_found"


def _is_staff(user: User) -> bool:
    return bool(user.is_authenticated and user.is_active and getattr(user, "is_staff", False))


def outcomes_visible_to(user: User) -> QuerySet[SignalOutcome]:
    outcomes = SignalOutcome.objects.select_related("account", "instrument", "order", "exit_order")
    if _is_staff(user):
        return outcomes
    return outcomes.filter(account__in=TradingAccount.objects.visible_to(user).values("pk"))


def signals_visible_to(user: User) -> QuerySet[Signal]:
    """Staff: every signal. A trader: signals of strategies they own, and signals that reached an
    account they can see (with only those accounts' outcomes, see `outcomes_visible_to`).
    `outcome_count` counts the outcomes the user may see."""
    signals = Signal.objects.select_related("strategy", "instrument")
    if not (user.is_authenticated and user.is_active):
        return signals.none()
    if _is_staff(user):
        return signals.annotate(outcome_count=Count("outcomes"))
    visible_accounts = TradingAccount.objects.visible_to(user).values("pk")
    reached = SignalOutcome.objects.filter(signal=OuterRef("pk"), account__in=visible_accounts)
    return signals.filter(Q(strategy__owner=user) | Exists(reached)).annotate(
        outcome_count=Count("outcomes", filter=Q(outcomes__account__in=visible_accounts))
    )


def get_signal_for_user(*, user: User, signal_id: int | str) -> Signal:
    """The signal with `visible_outcomes` (only the accounts the user can see), or a 404."""
    try:
        return (
            signals_visible_to(user)
            .prefetch_related(
                Prefetch(
                    "outcomes", queryset=outcomes_visible_to(user).order_by("account__name"), to_attr="visible_outcomes"
                )
            )
            .get(pk=int(signal_id))
        )
    except (Signal.DoesNotExist, ValueError, TypeError):
        raise SignalNotFound(f"No signal {signal_id} among your signals.") from None


def reversals_ready(fills: dict[int, list[int]]) -> list[int]:
    """Outcomes waiting for an exit that these fills (ids by account id) have just filled
    (one indexed query)."""
    fill_ids = [fill_id for ids in fills.values() for fill_id in ids]
    return list(
        SignalOutcome.objects.filter(
            account_id__in=list(fills),
            status=OutcomeStatus.WAITING_EXIT,
            exit_order__status=OrderStatus.FILLED,
            exit_order__fills__in=fill_ids,
        )
        .values_list("pk", flat=True)
        .distinct()
    )

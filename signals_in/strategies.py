"""Strategies, their webhook tokens and passphrase, and the accounts subscribed to them.

A webhook token is shown once: only its sha256 and first characters are stored. The body
passphrase is stored as a salted sha256, not a slow password hash, because it is checked on
every webhook inside TradingView's 3 s budget; the token in the URL is the real secret and the
passphrase a second factor.
"""

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.models import Instrument
from config.errors import DomainError, NotFoundError
from signals_in.models import TRADINGVIEW_IPS, Strategy, Subscription, WebhookToken

TOKEN_PREFIX_LENGTH = 8
_ROOT = re.compile(r"^[A-Z0-9]{1,8}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class StrategyNotFound(NotFoundError):
    code = "strategy_not_found"


class SubscriptionNotFound(NotFoundError):
    code = "subscription_not_found"


class NotStrategyOwner(DomainError):
    code = "not_strategy_owner"
    http_status = 403


# -- Strategies --------------------------------------------------------------------------------


def create_strategy(
    *,
    name: str,
    owner: AbstractBaseUser,
    description: str = "",
    rate_limit_per_minute: int = 60,
    allowed_ips: list[str] | None = None,
    passphrase: str | None = None,
    is_enabled: bool = True,
) -> Strategy:
    strategy = Strategy(
        name=name.strip(),
        owner=owner,
        description=description,
        is_enabled=is_enabled,
        rate_limit_per_minute=rate_limit_per_minute,
        allowed_ips=validate_allowed_ips(allowed_ips or []),
    )
    if passphrase:
        strategy.passphrase_hash = hash_passphrase(passphrase)
    try:
        with transaction.atomic():
            strategy.save()
    except IntegrityError:
        raise DomainError(f"A strategy named {name!r} exists already.", code="name_taken", field="name") from None
    return strategy


CHANGEABLE_STRATEGY_FIELDS = ("name", "description", "is_enabled", "rate_limit_per_minute")


def change_strategy(*, strategy: Strategy, **fields: Any) -> Strategy:
    """Change what is given: the plain fields, `passphrase` (blank or None clears it), `allowed_ips`,
    or `limit_to_tradingview=True` (TradingView's four addresses)."""
    for name in CHANGEABLE_STRATEGY_FIELDS:
        if name in fields:
            setattr(strategy, name, fields[name].strip() if name == "name" else fields[name])
    if "passphrase" in fields:
        strategy.passphrase_hash = hash_passphrase(fields["passphrase"]) if fields["passphrase"] else ""
    if "allowed_ips" in fields:
        strategy.allowed_ips = validate_allowed_ips(fields["allowed_ips"])
    if fields.get("limit_to_tradingview"):
        strategy.allowed_ips = list(TRADINGVIEW_IPS)
    try:
        with transaction.atomic():
            strategy.save()
    except IntegrityError:
        raise DomainError(
            f"A strategy named {strategy.name!r} exists already.", code="name_taken", field="name"
        ) from None
    return strategy


def strategies_visible_to(user: AbstractBaseUser):  # -> QuerySet[Strategy]
    """Staff see every strategy; a trader the ones they own."""
    strategies = Strategy.objects.select_related("owner").prefetch_related("tokens")
    if getattr(user, "is_staff", False):
        return strategies
    return strategies.filter(owner=user) if user.is_authenticated else strategies.none()


def get_strategy_for_user(*, user: AbstractBaseUser, strategy_id: int | str) -> Strategy:
    try:
        return strategies_visible_to(user).get(pk=int(strategy_id))
    except (Strategy.DoesNotExist, ValueError, TypeError):
        raise StrategyNotFound(f"No strategy {strategy_id} among your strategies.", field="strategy") from None


def limit_to_tradingview_ips(*, strategy: Strategy) -> None:
    strategy.allowed_ips = list(TRADINGVIEW_IPS)
    strategy.save(update_fields=["allowed_ips", "updated_at"])


def validate_allowed_ips(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise DomainError(
            "allowed_ips must be a list of IP addresses.", code="invalid_allowed_ips", field="allowed_ips"
        )
    addresses = []
    for item in value:
        try:
            addresses.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            raise DomainError(
                f"{item!r} is not an IP address.", code="invalid_allowed_ips", field="allowed_ips"
            ) from None
    return addresses


# -- Passphrase --------------------------------------------------------------------------------


def hash_passphrase(passphrase: str, *, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.sha256(f"{salt}:{passphrase}".encode()).hexdigest()
    return f"sha256${salt}${digest}"


def passphrase_matches(stored_hash: str, given: str | None) -> bool:
    """Constant-time comparison of a given passphrase with the stored hash."""
    try:
        _, salt, _digest = stored_hash.split("$")
    except ValueError:
        return False
    candidate = hash_passphrase(given or "", salt=salt)
    return hmac.compare_digest(candidate.encode(), stored_hash.encode()) and given is not None


def set_passphrase(*, strategy: Strategy, passphrase: str | None) -> None:
    """Set (or with None / "" clear) the passphrase the body's `passphrase` field must carry."""
    strategy.passphrase_hash = hash_passphrase(passphrase) if passphrase else ""
    strategy.save(update_fields=["passphrase_hash", "updated_at"])


# -- Webhook tokens ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `raw` is the only copy of the secret; show it once, never store or log it."""

    token: WebhookToken
    raw: str

    @property
    def path(self) -> str:
        return webhook_path(self.raw)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def webhook_path(raw: str) -> str:
    return reverse("signals_in:tradingview-webhook", kwargs={"token": raw})


def issue_webhook_token(*, strategy: Strategy, label: str = "") -> IssuedToken:
    raw = secrets.token_urlsafe(32)
    token = WebhookToken.objects.create(
        strategy=strategy, token_hash=token_hash(raw), prefix=raw[:TOKEN_PREFIX_LENGTH], label=label[:100]
    )
    return IssuedToken(token=token, raw=raw)


def revoke_webhook_token(*, token: WebhookToken) -> None:
    """Revoked tokens answer 404 from then on. Revoking twice keeps the first time."""
    WebhookToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])


@transaction.atomic
def rotate_webhook_tokens(*, strategy: Strategy, label: str = "") -> IssuedToken:
    """Revoke every live token of the strategy and issue one new one."""
    WebhookToken.objects.filter(strategy=strategy, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return issue_webhook_token(strategy=strategy, label=label)


# -- Subscriptions -----------------------------------------------------------------------------


def validate_symbol_map(value: Any) -> dict[str, str]:
    """{"NQ": "MNQ"}: product roots to trade instead. Roots are upper-cased; both must be known roots."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise DomainError(
            'symbol_map must be an object of product roots, e.g. {"NQ": "MNQ"}.',
            code="invalid_symbol_map",
            field="symbol_map",
        )
    cleaned: dict[str, str] = {}
    for source, target in value.items():
        if (
            not isinstance(target, str)
            or not _ROOT.match(str(source).strip().upper())
            or not _ROOT.match(target.strip().upper())
        ):
            raise DomainError(
                f'symbol_map maps a root to a root, e.g. {{"NQ": "MNQ"}} (got {source!r}: {target!r}).',
                code="invalid_symbol_map",
                field="symbol_map",
            )
        cleaned[str(source).strip().upper()] = target.strip().upper()
    known = set(Instrument.objects.filter(root__in={*cleaned, *cleaned.values()}).values_list("root", flat=True))
    unknown = sorted({*cleaned, *cleaned.values()} - known)
    if unknown:
        raise DomainError(
            f"symbol_map names roots we do not list: {', '.join(unknown)}.",
            code="invalid_symbol_map",
            field="symbol_map",
        )
    return cleaned


def validate_trading_windows(value: Any) -> list[dict[str, Any]]:
    """[{"days": [0..6] (Monday = 0), "start": "HH:MM", "end": "HH:MM", "tz": "America/Chicago"}].
    An end before the start crosses midnight. Blank: always."""
    if value in (None, ""):
        return []
    example = '[{"days": [0,1,2,3,4], "start": "08:30", "end": "15:00", "tz": "America/Chicago"}]'
    if not isinstance(value, list):
        raise DomainError(
            f"trading_windows must be a list of windows, e.g. {example}.",
            code="invalid_trading_windows",
            field="trading_windows",
        )
    cleaned = []
    for number, window in enumerate(value, start=1):

        def fail(why: str, number: int = number) -> DomainError:
            return DomainError(
                f"trading_windows window {number}: {why}. Example: {example}.",
                code="invalid_trading_windows",
                field="trading_windows",
            )

        if not isinstance(window, dict):
            raise fail("each window is an object")
        unknown = sorted(set(window) - {"days", "start", "end", "tz"})
        if unknown:
            raise fail(f"unknown key {unknown[0]!r}")
        days = window.get("days", [0, 1, 2, 3, 4, 5, 6])
        if (
            not isinstance(days, list)
            or not days
            or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days)
        ):
            raise fail("days is a list of weekday numbers, Monday = 0 to Sunday = 6")
        for key in ("start", "end"):
            if not isinstance(window.get(key), str) or not _CLOCK.match(window[key]):
                raise fail(f"{key} is a time HH:MM (24-hour)")
        if window["start"] == window["end"]:
            raise fail("start and end are the same time")
        tz = window.get("tz", "America/Chicago")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(f"unknown time zone {tz!r}") from None
        cleaned.append({"days": sorted(set(days)), "start": window["start"], "end": window["end"], "tz": tz})
    return cleaned


SUBSCRIPTION_FIELDS = (
    "is_enabled",
    "sizing_mode",
    "fixed_quantity",
    "multiplier",
    "risk_amount",
    "max_quantity",
    "symbol_map",
    "trading_windows",
    "allow_adds",
    "allow_reversals",
)


def subscriptions_visible_to(user: AbstractBaseUser):  # -> QuerySet[Subscription]
    """A trader sees subscriptions of the strategies they own and those on accounts they can see."""
    subscriptions = Subscription.objects.select_related("strategy", "account")
    if getattr(user, "is_staff", False):
        return subscriptions
    if not user.is_authenticated:
        return subscriptions.none()
    visible_accounts = TradingAccount.objects.visible_to(user).values("pk")
    return subscriptions.filter(
        pk__in=Subscription.objects.filter(strategy__owner=user)
        .values("pk")
        .union(Subscription.objects.filter(account__in=visible_accounts).values("pk"))
    )


def get_subscription_for_user(*, user: AbstractBaseUser, subscription_id: int | str) -> Subscription:
    try:
        return subscriptions_visible_to(user).get(pk=int(subscription_id))
    except (Subscription.DoesNotExist, ValueError, TypeError):
        raise SubscriptionNotFound(f"No subscription {subscription_id} among yours.") from None


def check_may_subscribe(*, user: AbstractBaseUser, strategy: Strategy, account: TradingAccount) -> None:
    """Traders subscribe accounts they may trade to strategies they own; staff anything."""
    if getattr(user, "is_staff", False):
        return
    if strategy.owner_id != user.pk:
        raise NotStrategyOwner(
            f"Only the owner of strategy {strategy.name} may change its subscriptions.", field="strategy"
        )
    if not TradingAccount.objects.tradable_by(user).filter(pk=account.pk).exists():
        raise DomainError(
            f"You may not trade account {account.name}, so you may not subscribe it.",
            code="not_allowed_to_trade",
            field="account",
        )


def _clean_subscription_fields(fields: dict[str, Any]) -> dict[str, Any]:
    cleaned = {k: v for k, v in fields.items() if k in SUBSCRIPTION_FIELDS}
    if "symbol_map" in cleaned:
        cleaned["symbol_map"] = validate_symbol_map(cleaned["symbol_map"])
    if "trading_windows" in cleaned:
        cleaned["trading_windows"] = validate_trading_windows(cleaned["trading_windows"])
    return cleaned


def subscribe_account(
    *, actor: AbstractBaseUser, strategy: Strategy, account: TradingAccount, **fields: Any
) -> Subscription:
    check_may_subscribe(user=actor, strategy=strategy, account=account)
    subscription = Subscription(strategy=strategy, account=account, **_clean_subscription_fields(fields))
    _check_sizing(subscription)
    try:
        with transaction.atomic():
            subscription.save()
    except IntegrityError:
        raise DomainError(
            f"Account {account.name} already follows {strategy.name}.", code="already_subscribed", field="account"
        ) from None
    return subscription


def update_subscription(*, actor: AbstractBaseUser, subscription: Subscription, **fields: Any) -> Subscription:
    check_may_subscribe(user=actor, strategy=subscription.strategy, account=subscription.account)
    for name, value in _clean_subscription_fields(fields).items():
        setattr(subscription, name, value)
    _check_sizing(subscription)
    subscription.save()
    return subscription


def unsubscribe(*, actor: AbstractBaseUser, subscription: Subscription) -> None:
    check_may_subscribe(user=actor, strategy=subscription.strategy, account=subscription.account)
    subscription.delete()


def _check_sizing(subscription: Subscription) -> None:
    if subscription.sizing_mode == "risk" and not subscription.risk_amount:
        raise DomainError(
            "Sizing by risk needs risk_amount (money risked to the signal's stop).",
            code="missing_field",
            field="risk_amount",
        )
    if subscription.multiplier is not None and subscription.multiplier <= 0:
        raise DomainError("multiplier must be above zero.", code="invalid_multiplier", field="multiplier")
    if subscription.fixed_quantity is not None and subscription.fixed_quantity < 1:
        raise DomainError("fixed_quantity must be 1 or more.", code="invalid_quantity", field="fixed_quantity")

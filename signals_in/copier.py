"""The trade copier: leader fills mirrored to followers, and the loop that keeps followers in line.

A follower's desired position in each product is its leader's, scaled by the link's ratio,
rounded toward zero, capped and symbol-mapped (signals_in.copying). Mirroring a leader fill and
correcting drift are the same move: one order from where the follower is (its booked position
plus its copier orders still in flight) toward where it should be. Every step is a CopyAction.

Exactly once: a mirror's client id comes from (link, leader fill), a correction's from (link,
instrument, how many corrections came before); both run holding the link's row lock, and a
leader fill already acted on is never acted on again.

Lock order: copier link, then (inside orders.services) the follower's account.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brokers.models import Instrument
from brokers.selectors import resolve_instrument
from brokers.ticks import normalize_price
from config.errors import DomainError
from orders import services as order_services
from orders.domain import OPEN_STATUSES, OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType, PositionEffect
from orders.models import Fill, Order, Position
from signals_in.copying import (
    InvalidCopierLink,
    desired_positions,
    drifted,
    follower_symbol,
    legs_toward,
    slippage_ticks,
)
from signals_in.models import CopierLink, CopierStatus, CopyAction, CopyActionKind, DriftAction

logger = logging.getLogger(__name__)

# A leader fill this recent that no step of the link has answered yet is a mirror on its way:
# the loop leaves that product alone rather than "correcting" (or quarantining) ahead of it.
MIRROR_GRACE = timedelta(seconds=30)
# A correction refused (by risk, or by the order path) is asked again after this, not every 5 s.
RETRY_REFUSED_AFTER = timedelta(seconds=60)

MIRROR_SCOPE = "copy"
CORRECTION_SCOPE = "copy-correction"


# -- Reads -------------------------------------------------------------------------------------


def active_links() -> list[CopierLink]:
    return list(CopierLink.objects.filter(is_enabled=True, status=CopierStatus.ACTIVE).order_by("pk"))


def copier_roles(account_ids: list[int]) -> tuple[set[int], set[int]]:
    """(leaders, followers): which of these accounts lead, and which follow, an enabled link.
    One query for any number."""
    rows = CopierLink.objects.filter(Q(leader_id__in=account_ids) | Q(follower_id__in=account_ids), is_enabled=True)
    pairs = list(rows.values_list("leader_id", "follower_id"))
    wanted = set(account_ids)
    return {leader for leader, _ in pairs} & wanted, {follower for _, follower in pairs} & wanted


def follower_instrument(link: CopierLink, leader_instrument: Instrument) -> Instrument:
    """The follower's contract for a leader contract (same expiry in the mapped product when it is
    listed, else the mapped product's front month). Raises UnknownSymbol."""
    symbol = follower_symbol(
        leader_symbol=leader_instrument.symbol, leader_root=leader_instrument.root, symbol_map=link.symbol_map or {}
    )
    try:
        return resolve_instrument(symbol)
    except DomainError:
        root = follower_symbol(
            leader_symbol=leader_instrument.root, leader_root=leader_instrument.root, symbol_map=link.symbol_map or {}
        )
        return resolve_instrument(root)


def desired_state(link: CopierLink) -> dict[Instrument, int]:
    """The follower's desired position per instrument, over every product the leader has traded
    (a leader flat in a product wants the follower flat in it). Follower positions in products
    the leader never traded are the follower's own business and are not listed."""
    leader_positions = Position.objects.filter(account_id=link.leader_id).select_related("instrument")
    pairs = []
    for position in leader_positions:
        try:
            pairs.append((follower_instrument(link, position.instrument), position.quantity))
        except DomainError:
            logger.warning("Copier link %s: no follower contract for %s", link.pk, position.instrument.symbol)
    return desired_positions(pairs, ratio=link.ratio, max_quantity=link.max_quantity)


@dataclass(frozen=True)
class FollowerHolding:
    held: int  # booked position (reconciliation keeps it in line with the broker)
    in_flight: int  # signed unfilled quantity of the follower's copier orders not yet done

    @property
    def actual(self) -> int:
        return self.held + self.in_flight


def follower_holding(*, account_id: int, instrument_id: int) -> FollowerHolding:
    position = Position.objects.filter(account_id=account_id, instrument_id=instrument_id).first()
    in_flight = 0
    for side, quantity, filled in Order.objects.filter(
        account_id=account_id, instrument_id=instrument_id, source=OrderSource.COPIER, status__in=OPEN_STATUSES
    ).values_list("side", "quantity", "filled_quantity"):
        in_flight += (quantity - filled) if side == OrderSide.BUY else -(quantity - filled)
    return FollowerHolding(held=position.quantity if position else 0, in_flight=in_flight)


@dataclass(frozen=True)
class Drift:
    instrument: Instrument
    desired: int
    actual: int


def drift_now(link: CopierLink) -> list[Drift]:
    """Every product where the follower is not where the leader puts it (tolerance ignored)."""
    found = []
    for instrument, desired in sorted(desired_state(link).items(), key=lambda item: item[0].symbol):
        actual = follower_holding(account_id=link.follower_id, instrument_id=instrument.pk).actual
        if desired != actual:
            found.append(Drift(instrument, desired, actual))
    return found


# -- Placing the follower's orders ----------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    kind: CopyActionKind  # MIRROR / CORRECTION (an order went out), DENIED or SKIPPED
    order: Order | None
    detail: str


def _intent(
    instrument: Instrument,
    *,
    side: str,
    quantity: int,
    is_liquidation: bool = False,
    position_effect: PositionEffect = PositionEffect.AUTO,
) -> OrderIntent:
    return OrderIntent(
        symbol=instrument.symbol,
        side=OrderSide(side),
        quantity=quantity,
        order_type=OrderType.MARKET,
        is_liquidation=is_liquidation,
        position_effect=position_effect,
    )


def _submit(link: CopierLink, intent: OrderIntent, client_order_id: str) -> Order | DomainError:
    try:
        return order_services.submit_order(
            account=link.follower, intent=intent, source=OrderSource.COPIER, client_order_id=client_order_id
        ).order
    except DomainError as exc:  # refused before it was stored (side conflict, broker not ready, ...)
        return exc


def _describe(intent: OrderIntent) -> str:
    how = {PositionEffect.REVERSE: " (reverse)"}.get(intent.position_effect, "")
    if intent.is_liquidation:
        how = " (reducing)"
    return f"{intent.side} {intent.quantity} {intent.symbol}{how}"


def _outcome(order: Order | DomainError, intent: OrderIntent, *, sent_kind: CopyActionKind) -> Placed:
    if isinstance(order, DomainError):
        return Placed(CopyActionKind.SKIPPED, None, f"{_describe(intent)} refused: {order.detail} ({order.code})")
    if order.status == OrderStatus.DENIED:
        return Placed(CopyActionKind.DENIED, order, f"{_describe(intent)} denied by risk: {order.reason}")
    return Placed(sent_kind, order, f"{_describe(intent)}.")


def place_toward(
    link: CopierLink,
    instrument: Instrument,
    *,
    holding: FollowerHolding,
    desired: int,
    client_key: str,
    scope: str,
    sent_kind: CopyActionKind,
) -> list[Placed]:
    """Send the follower's order toward `desired`. Call holding the link's row lock.

    A reduction takes the liquidating path (so a halted or reducing follower still follows its
    leader out). A sign change goes as one explicit reverse order; if risk refuses it, the
    follower is closed instead (liquidating) and the loop opens the other side once risk allows.
    While copier orders are still in flight, only what the order path itself checks is sent
    (no liquidating shortcut: the booked position is not yet where those orders will take it).
    """
    legs = legs_toward(actual=holding.actual, desired=desired)
    if not legs:
        return []
    client_id = order_services.client_order_id_for(scope=scope, key=client_key)
    settled = holding.in_flight == 0
    if len(legs) == 1:
        leg = legs[0]
        intent = _intent(instrument, side=leg.side, quantity=leg.quantity, is_liquidation=leg.reduces and settled)
        return [_outcome(_submit(link, intent, client_id), intent, sent_kind=sent_kind)]
    close, opening = legs
    if not settled:
        intent = _intent(instrument, side=close.side, quantity=close.quantity)
        return [_outcome(_submit(link, intent, client_id), intent, sent_kind=sent_kind)]
    reverse = _intent(
        instrument, side=close.side, quantity=close.quantity + opening.quantity, position_effect=PositionEffect.REVERSE
    )
    first = _outcome(_submit(link, reverse, client_id), reverse, sent_kind=sent_kind)
    if first.kind != CopyActionKind.DENIED:
        return [first]
    closing = _intent(instrument, side=close.side, quantity=close.quantity, is_liquidation=True)
    second = _submit(link, closing, order_services.client_order_id_for(scope=scope, key=f"{client_key}:close"))
    return [first, _outcome(second, closing, sent_kind=sent_kind)]


def _latency_ms(since: datetime, order: Order | None) -> int | None:
    if order is None:
        return None
    return max(int((order.created_at - since).total_seconds() * 1000), 0)


# -- Mirroring leader fills ---------------------------------------------------------------------


def mirror_leader_fills(*, account_id: int, fill_ids: list[int]) -> list[CopyAction]:
    """Mirror booked fills of a leader to each of its active followers, one transaction per
    follower (one follower's refusal or failure never holds up the others)."""
    fills = list(
        Fill.objects.filter(pk__in=fill_ids, account_id=account_id).select_related("instrument").order_by("pk")
    )
    if not fills:
        return []
    recorded: list[CopyAction] = []
    link_ids = list(
        CopierLink.objects.filter(leader_id=account_id, is_enabled=True, status=CopierStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for link_id in link_ids:
        try:
            recorded += _mirror_to_link(link_id=link_id, fills=fills)
        except Exception:
            logger.exception("Copier link %s: mirroring fills %s failed", link_id, fill_ids)
    return recorded


def _mirror_to_link(*, link_id: int, fills: list[Fill]) -> list[CopyAction]:
    recorded: list[CopyAction] = []
    with transaction.atomic():
        link = (
            CopierLink.objects.select_for_update(of=("self",))
            .select_related("follower")
            .filter(pk=link_id, is_enabled=True, status=CopierStatus.ACTIVE)
            .first()
        )
        if link is None:
            return []  # quarantined or switched off since the fill was booked
        done = set(CopyAction.objects.filter(link=link, leader_fill__in=fills).values_list("leader_fill_id", flat=True))
        for fill in fills:
            if fill.pk in done:
                continue  # a redelivered fill: mirrored (or answered) already
            recorded += _mirror_fill(link, fill)
        if recorded:
            from signals_in.tasks.copier import check_link_task  # tasks import this module

            check_link_task.delay_on_commit(link.pk)
    return recorded


def _mirror_fill(link: CopierLink, fill: Fill) -> list[CopyAction]:
    try:
        instrument = follower_instrument(link, fill.instrument)
    except DomainError as exc:
        return [
            CopyAction.objects.create(
                link=link, kind=CopyActionKind.SKIPPED, leader_fill=fill, detail=f"No follower contract: {exc.detail}"
            )
        ]
    desired = desired_state(link).get(instrument, 0)
    holding = follower_holding(account_id=link.follower_id, instrument_id=instrument.pk)
    base = {"link": link, "instrument": instrument, "desired_quantity": desired, "actual_quantity": holding.actual}
    placed = place_toward(
        link,
        instrument,
        holding=holding,
        desired=desired,
        client_key=f"{link.pk}:{fill.pk}",
        scope=MIRROR_SCOPE,
        sent_kind=CopyActionKind.MIRROR,
    )
    if not placed:
        detail = (
            f"Leader {fill.side} {fill.quantity} {fill.instrument.symbol}: the follower is already where it should be."
        )
        return [CopyAction.objects.create(**base, kind=CopyActionKind.SKIPPED, leader_fill=fill, detail=detail)]
    price = normalize_price(fill.price, fill.instrument.tick_size)
    return [
        CopyAction.objects.create(
            **base,
            kind=step.kind,
            leader_fill=fill,
            order=step.order,
            latency_ms=_latency_ms(fill.occurred_at, step.order),
            detail=f"Leader {fill.side} {fill.quantity} {fill.instrument.symbol} @ {price}: {step.detail}"[:500],
        )
        for step in placed
    ]


# -- Follower fills: slippage ----------------------------------------------------------------------


def record_follower_fills(*, account_id: int, fill_ids: list[int]) -> list[int]:
    """Slippage of the follower's mirrored orders against the leader fills they copied, from the
    orders' average fill so far. Returns the links whose follower traded (to be checked)."""
    order_ids = set(
        Fill.objects.filter(pk__in=fill_ids, account_id=account_id, order__source=OrderSource.COPIER).values_list(
            "order_id", flat=True
        )
    )
    if not order_ids:
        return []
    links: set[int] = set()
    for action in CopyAction.objects.filter(order_id__in=order_ids).select_related("order__instrument", "leader_fill"):
        links.add(action.link_id)
        order = action.order
        if action.leader_fill is None or order is None or order.avg_fill_price is None:
            continue
        action.slippage_ticks = slippage_ticks(
            side=order.side,
            leader_price=action.leader_fill.price,
            follower_price=order.avg_fill_price,
            tick_size=order.instrument.tick_size,
        )
        action.save(update_fields=["slippage_ticks"])
    return sorted(links)


# -- The loop: drift ---------------------------------------------------------------------------------


def check_all_links() -> int:
    """Check every active link (beat). One link's failure does not stop the others."""
    checked = 0
    for link in active_links():
        try:
            check_link(link_id=link.pk)
            checked += 1
        except Exception:
            logger.exception("Copier link %s: check failed", link.pk)
    return checked


def check_link(*, link_id: int, now: datetime | None = None) -> list[CopyAction]:
    """Compare the follower with its desired state and correct drift beyond the tolerance, or
    quarantine the follower (by the link's setting). A link another check holds is skipped, and
    so is a product with copier orders in flight or a leader fill not yet mirrored."""
    now = now or timezone.now()
    with transaction.atomic():
        link = (
            CopierLink.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("follower", "leader")
            .filter(pk=link_id, is_enabled=True, status=CopierStatus.ACTIVE)
            .first()
        )
        if link is None:
            return []
        recorded: list[CopyAction] = []
        drifts = []
        pending = _instruments_with_unanswered_fills(link, now=now)
        for instrument, desired in sorted(desired_state(link).items(), key=lambda item: item[0].symbol):
            if instrument.pk in pending:
                continue  # a mirror is on its way
            holding = follower_holding(account_id=link.follower_id, instrument_id=instrument.pk)
            if holding.in_flight:
                # Copier orders still on their way: judged once they are done (their fills
                # trigger a check; one that never fills is settled by reconciliation).
                continue
            if drifted(desired=desired, actual=holding.actual, tolerance=link.drift_tolerance):
                drifts.append((instrument, desired, holding))
        if drifts and link.on_drift == DriftAction.QUARANTINE:
            recorded.append(_quarantine(link, drifts))
        else:
            for instrument, desired, holding in drifts:
                recorded += _correct(link, instrument, desired=desired, holding=holding, now=now)
        CopierLink.objects.filter(pk=link.pk).update(last_checked_at=now)
    return recorded


def _instruments_with_unanswered_fills(link: CopierLink, *, now: datetime) -> set[int]:
    """Follower instruments with a recent leader fill no step of this link has answered yet.
    Fills from before the link was last changed (created, resumed, edited) were never to be
    mirrored by it (a quarantined link skips them), so they are not waited for."""
    answered = CopyAction.objects.filter(link=link, leader_fill__isnull=False).values("leader_fill_id")
    fills = (
        Fill.objects.filter(account_id=link.leader_id, created_at__gte=max(now - MIRROR_GRACE, link.updated_at))
        .exclude(pk__in=answered)
        .select_related("instrument")
    )
    pending = set()
    for fill in fills:
        try:
            pending.add(follower_instrument(link, fill.instrument).pk)
        except DomainError:
            continue
    return pending


def _quarantine(link: CopierLink, drifts: list[tuple[Instrument, int, FollowerHolding]]) -> CopyAction:
    found = "; ".join(f"{i.symbol} wanted {d:+d}, found {h.actual:+d}" for i, d, h in drifts)
    reason = f"Drift beyond the tolerance of {link.drift_tolerance}: {found}."[:300]
    link.status, link.status_reason = CopierStatus.QUARANTINED, reason
    link.save(update_fields=["status", "status_reason", "updated_at"])
    instrument, desired, holding = drifts[0]
    return CopyAction.objects.create(
        link=link,
        kind=CopyActionKind.QUARANTINE,
        instrument=instrument,
        desired_quantity=desired,
        actual_quantity=holding.actual,
        detail=f"Quarantined: no more copying until staff resume the link. {reason}"[:500],
    )


def _correct(
    link: CopierLink, instrument: Instrument, *, desired: int, holding: FollowerHolding, now: datetime
) -> list[CopyAction]:
    earlier = CopyAction.objects.filter(link=link, instrument=instrument)
    last = earlier.exclude(kind=CopyActionKind.QUARANTINE).order_by("-created_at", "-pk").first()
    if (
        last is not None
        and last.kind in (CopyActionKind.DENIED, CopyActionKind.SKIPPED)
        and (last.desired_quantity, last.actual_quantity) == (desired, holding.actual)
        and last.created_at > now - RETRY_REFUSED_AFTER
    ):
        return []  # refused a moment ago, and nothing has changed since: ask again later
    # Deterministic per drift: the n-th correction of this product on this link.
    sequence = earlier.filter(leader_fill__isnull=True, kind__in=[CopyActionKind.CORRECTION, CopyActionKind.DENIED])
    placed = place_toward(
        link,
        instrument,
        holding=holding,
        desired=desired,
        client_key=f"{link.pk}:{instrument.pk}:{sequence.count()}",
        scope=CORRECTION_SCOPE,
        sent_kind=CopyActionKind.CORRECTION,
    )
    return [
        CopyAction.objects.create(
            link=link,
            kind=step.kind,
            instrument=instrument,
            order=step.order,
            desired_quantity=desired,
            actual_quantity=holding.actual,
            detail=f"Drift: wanted {desired:+d}, found {holding.actual:+d} "
            f"(held {holding.held:+d}, in flight {holding.in_flight:+d}); {step.detail}"[:500],
        )
        for step in placed
    ]


# -- Staff ---------------------------------------------------------------------------------------


def resume_link(*, link: CopierLink, actor: AbstractBaseUser | None = None) -> CopierLink:
    """Lift a quarantine: the link copies again, and its next check brings the follower in line."""
    with transaction.atomic():
        link = CopierLink.objects.select_for_update().get(pk=link.pk)
        if link.status == CopierStatus.ACTIVE:
            return link
        who = getattr(actor, "username", "") or "staff"
        link.status, link.status_reason = CopierStatus.ACTIVE, ""
        link.save(update_fields=["status", "status_reason", "updated_at"])
        CopyAction.objects.create(
            link=link, kind=CopyActionKind.RESUMED, detail=f"Resumed by {who}: copying again from the next check."
        )
    return link


def check_link_allowed(*, leader_id: int, follower_id: int, link_id: int | None = None) -> None:
    """A link may not copy an account to itself, nor close a loop (A copies B copies A)."""
    if leader_id == follower_id:
        raise InvalidCopierLink("An account cannot copy itself: choose a different follower.", field="follower")
    edges = CopierLink.objects.exclude(pk=link_id).values_list("leader_id", "follower_id")
    follows: dict[int, set[int]] = {}
    for leader, follower in edges:
        follows.setdefault(leader, set()).add(follower)
    seen, frontier = set(), [follower_id]
    while frontier:
        account = frontier.pop()
        if account == leader_id:
            raise InvalidCopierLink(
                "This link would close a loop: the leader already copies the follower (directly or through "
                "other links), so every fill would be copied back and forth.",
                code="copier_loop",
                field="follower",
            )
        if account not in seen:
            seen.add(account)
            frontier.extend(follows.get(account, ()))

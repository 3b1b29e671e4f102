"""Turning a stored signal into one outcome per enabled subscription: map, size, decide, order.

A chunk of accounts is settled in one transaction under their row locks (the locks submit_order
takes too): their orders are placed in one submission (orders.services.submit_orders) and
committed with the outcome rows, so a second run of the same signal (a redelivered task, four
concurrent deliveries) finds the outcomes and does nothing, and the deterministic client id per
(signal, subscription, leg) makes even a lost outcome unable to place a second order. One
account's denial, skip or refusal never stops the others; should something unexpected break the
chunk, its accounts are settled again one by one.

A reversal exits first; the entry goes out when the exit has filled (`place_reversal_entry`, from
the fill listener), or the outcome fails `exit_not_filled` after EXIT_FILL_TIMEOUT
(`expire_waiting_exits`, on a beat).
"""

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.market_data import get_last_price
from brokers.models import Instrument
from brokers.ticks import normalize_price, round_to_tick
from config.errors import ConflictError, DomainError
from orders import services as order_services
from orders.domain import (
    CANCELABLE_STATUSES,
    PROTECTIVE_ROLES,
    BracketSpec,
    Level,
    OrderIntent,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionEffect,
)
from orders.models import Order, Position
from orders.selectors import working_quantities
from signals_in import automation, intents, sizing
from signals_in.models import OutcomeStatus, Signal, SignalOutcome, SignalStatus, Subscription

logger = logging.getLogger(__name__)

# A reversal whose exit has not filled by then gives up its entry (the exit stays working).
EXIT_FILL_TIMEOUT = timedelta(minutes=2)
# Codes of DomainErrors that mean "this account cannot take it now" rather than "it went wrong".
SKIP_CODES = frozenset({"position_side_conflict", "nothing_to_close", "unknown_symbol", "no_mapped_instrument"})
# Accounts one task settles; a larger fan-out is split over the order workers.
FANOUT_CHUNK_SIZE = 50
ENDED_UNFILLED = frozenset({OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.DENIED})


def signal_client_order_id(*, signal_id: int, subscription_id: int | None, account_id: int, leg: str) -> str:
    # The subscription is the key; an outcome whose subscription was deleted falls back to the account.
    key = f"{signal_id}:{subscription_id}:{leg}" if subscription_id else f"{signal_id}:account-{account_id}:{leg}"
    return order_services.client_order_id_for(scope="signal", key=key)


# -- Reading the signal once per fan-out ----------------------------------------------------------


class NoMappedInstrument(DomainError):
    code = "no_mapped_instrument"


@dataclass
class FanoutContext:
    signal: Signal
    now: datetime
    _mapped: dict[str, Instrument] = field(default_factory=dict)
    _prices: dict[str, Decimal | None] = field(default_factory=dict)

    def last_price(self, symbol: str) -> Decimal | None:
        """The last price as the fan-out started: one read per instrument, not per account."""
        if symbol not in self._prices:
            self._prices[symbol] = get_last_price(symbol)
        return self._prices[symbol]

    def instrument_for(self, subscription: Subscription) -> Instrument:
        """The signal's contract, or the same-expiry contract of the mapped root (its front month
        when there is none): NQZ6 with {"NQ": "MNQ"} trades MNQZ6."""
        base = self.signal.instrument
        assert base is not None
        mapping = {str(k).upper(): str(v).upper() for k, v in (subscription.symbol_map or {}).items()}
        root = mapping.get(base.root.upper())
        if not root or root == base.root.upper():
            return base
        if root not in self._mapped:
            same_expiry = (
                Instrument.objects.tradable().filter(root=root, expires_on=base.expires_on).first()
                if base.expires_on
                else None
            )
            instrument = same_expiry or Instrument.objects.front_of(root).first()
            if instrument is None:
                raise NoMappedInstrument(f"No tradable {root} contract to trade for {base.symbol} (symbol map).")
            self._mapped[root] = instrument
        return self._mapped[root]


def _rule(subscription: Subscription) -> sizing.SizingRule:
    return sizing.SizingRule(
        mode=subscription.sizing_mode,
        fixed_quantity=subscription.fixed_quantity,
        multiplier=subscription.multiplier,
        risk_amount=subscription.risk_amount,
        max_quantity=subscription.max_quantity,
    )


def _price(value: Decimal | None, instrument: Instrument) -> Decimal | None:
    """A signal's price on the instrument's grid (TradingView prints computed prices unrounded)."""
    if value is None:
        return None
    return normalize_price(round_to_tick(value, instrument.tick_size), instrument.tick_size)


@dataclass(frozen=True)
class EntryTerms:
    intent: OrderIntent
    bracket: BracketSpec | None
    stop_distance: Decimal | None


def _entry_terms(
    signal: Signal, instrument: Instrument, *, side: str, quantity: int, last_price: Decimal | None = None
) -> EntryTerms:
    """The entry order a signal asks for on `instrument` (quantity 0 is fine for sizing);
    `last_price` saves reading it when the caller has."""
    tick = instrument.tick_size
    payload = signal.payload or {}
    order_type = OrderType(signal.order_type or OrderType.MARKET)
    limit_price = (
        _price(signal.limit_price, instrument) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    )
    stop_price = _price(signal.stop_price, instrument) if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None
    trail = None
    if order_type == OrderType.TRAILING_STOP and payload.get("trail_amount") is not None:
        trail = _price(sizing.positive_decimal(payload["trail_amount"], field="trail_amount"), instrument)
    levels = {
        name: sizing.parse_level(payload.get(name), tick_size=tick, field=name) for name in ("stop_loss", "take_profit")
    }
    bracket = None
    if any(levels.values()):
        bracket = BracketSpec(
            **{
                name: Level(price=_price(level.price, instrument)) if level.price is not None else level
                for name, level in levels.items()
                if level is not None
            }
        )
    reference = (
        limit_price
        or stop_price
        or _price(signal.signal_price, instrument)
        or last_price
        or get_last_price(instrument.symbol)
    )
    distance = sizing.stop_distance(stop_loss=levels["stop_loss"], reference=reference, tick_size=tick)
    intent = OrderIntent(
        symbol=instrument.symbol,
        side=OrderSide(side),
        quantity=max(quantity, 1),
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        trail_amount=trail,
    )
    return EntryTerms(intent=intent, bracket=bracket, stop_distance=distance)


def _latency_ms(signal: Signal) -> int:
    return max(int((timezone.now() - signal.received_at).total_seconds() * 1000), 0)


# -- Processing ---------------------------------------------------------------------------------


def process_signal(*, signal_id: int) -> None:
    """One outcome per enabled subscription of the signal's strategy; then the signal is processed
    (or failed, when an account failed: staff may process it again). Only RECEIVED signals.

    Up to FANOUT_CHUNK_SIZE accounts are settled here; more are split into chunks that the
    order workers settle side by side (`process_signal_chunk`)."""
    signal = Signal.objects.select_related("strategy", "instrument").filter(pk=signal_id).first()
    if signal is None or signal.status != SignalStatus.RECEIVED:
        return
    # A strategy with enabled automation rules has its signals decided by the rules (one
    # RuleDecision per account in scope) instead of the plain fan-out below.
    if automation.handle_signal(signal):
        Signal.objects.filter(pk=signal.pk, status=SignalStatus.RECEIVED).update(
            status=SignalStatus.PROCESSED, processed_at=timezone.now()
        )
        return
    if signal.instrument is None:
        _finish_signal(
            signal, expected=0, failed=("no_instrument", "The signal names no instrument; nothing was traded.")
        )
        return
    subscription_ids = list(
        Subscription.objects.filter(strategy_id=signal.strategy_id, is_enabled=True)
        .order_by("account_id")
        .values_list("pk", flat=True)
    )
    if len(subscription_ids) <= FANOUT_CHUNK_SIZE:
        _settle_chunk(signal, subscription_ids, expected=len(subscription_ids))
        return
    from signals_in.tasks.fanout import process_signal_chunk_task  # the tasks module imports this one

    for start in range(0, len(subscription_ids), FANOUT_CHUNK_SIZE):
        chunk = subscription_ids[start : start + FANOUT_CHUNK_SIZE]
        process_signal_chunk_task.delay(signal_id, chunk, len(subscription_ids))


def process_signal_chunk(*, signal_id: int, subscription_ids: list[int], expected: int) -> None:
    """Settle these subscriptions' accounts; the chunk that completes the set of `expected`
    outcomes finishes the signal."""
    signal = Signal.objects.select_related("strategy", "instrument").filter(pk=signal_id).first()
    if signal is None or signal.status != SignalStatus.RECEIVED or signal.instrument is None:
        return
    _settle_chunk(signal, subscription_ids, expected=expected)


def _settle_chunk(signal: Signal, subscription_ids: list[int], *, expected: int) -> None:
    context = FanoutContext(signal=signal, now=timezone.now())
    subscriptions = list(Subscription.objects.filter(pk__in=subscription_ids, is_enabled=True).order_by("account_id"))
    try:
        with transaction.atomic():
            _settle_accounts(signal, subscriptions, context)
    except Exception:
        # Something unexpected broke the batch: settle each account alone, so that it stops only its own.
        logger.exception("Signal %s: settling %d accounts together failed; one by one", signal.pk, len(subscriptions))
        for subscription in subscriptions:
            _settle_alone(signal, subscription, context)
    _finish_signal(signal, expected=expected)


def _settle_alone(signal: Signal, subscription: Subscription, context: FanoutContext) -> None:
    try:
        with transaction.atomic():
            _settle_accounts(signal, [subscription], context)
    except DomainError as exc:
        status = OutcomeStatus.SKIPPED if exc.code in SKIP_CODES else OutcomeStatus.FAILED
        _record_without_order(signal, subscription, status, exc.code, exc.detail)
    except Exception as exc:  # one account's surprise must not stop the others
        logger.exception("Signal %s on account %s failed", signal.pk, subscription.account_id)
        _record_without_order(
            signal, subscription, OutcomeStatus.FAILED, "unexpected_error", f"Unexpected error ({type(exc).__name__})."
        )


def _finish_signal(signal: Signal, *, expected: int, failed: tuple[str, str] | None = None) -> None:
    statuses = list(SignalOutcome.objects.filter(signal=signal).order_by().values_list("status", flat=True))
    if len(statuses) < expected or OutcomeStatus.PENDING in statuses:
        return  # other chunks are still at work (or a run died: a redelivery finishes it)
    failures = statuses.count(OutcomeStatus.FAILED)
    if failed is None and failures:
        failed = ("accounts_failed", f"{failures} of {len(statuses)} accounts failed; see the outcomes.")
    Signal.objects.filter(pk=signal.pk, status=SignalStatus.RECEIVED).update(
        status=SignalStatus.FAILED if failed else SignalStatus.PROCESSED,
        processed_at=timezone.now(),
        reject_code=failed[0] if failed else "",
        reject_reason=failed[1] if failed else "",
    )


def _is_settled(outcome: SignalOutcome) -> bool:
    """Settled outcomes are final for a run; a failure that placed nothing is tried again."""
    if outcome.status == OutcomeStatus.PENDING:
        return False
    if outcome.status == OutcomeStatus.FAILED and outcome.order_id is None and outcome.exit_order_id is None:
        return False
    return True


@dataclass(frozen=True)
class _Leg:
    """An order an outcome places in this run."""

    outcome: SignalOutcome
    name: str  # "entry" or "exit"
    request: order_services.OrderToSubmit
    plan: intents.Plan
    held: int


def _settle_accounts(signal: Signal, subscriptions: list[Subscription], ctx: FanoutContext) -> None:
    """Settle these accounts in the caller's transaction, under their row locks (taken in id
    order): decide each account's step, place every order in one submission, save the outcomes.
    An account that is already settled (an earlier or concurrent run) is left as it is."""
    accounts = {
        account.pk: account
        for account in TradingAccount.objects.select_for_update(of=("self",))
        .select_related("broker_connection")
        .defer("broker_connection__credentials")  # never needed here, costly to decrypt
        .filter(pk__in=[s.account_id for s in subscriptions])
        .order_by("pk")
    }
    outcomes = {o.account_id: o for o in SignalOutcome.objects.filter(signal=signal, account_id__in=list(accounts))}
    settling: list[tuple[Subscription, TradingAccount, SignalOutcome]] = []
    touched: list[SignalOutcome] = []
    for subscription in subscriptions:
        account = accounts.get(subscription.account_id)
        outcome = outcomes.get(subscription.account_id)
        if account is None or (outcome is not None and _is_settled(outcome)):
            continue
        outcome = outcome or SignalOutcome(signal=signal, account=account)
        outcome.subscription = subscription
        outcome.reason_code, outcome.reason = "", ""
        touched.append(outcome)
        try:
            outcome.instrument = ctx.instrument_for(subscription)
        except DomainError as exc:
            _refuse(outcome, exc)
            continue
        settling.append((subscription, account, outcome))
    legs = _decide_all(signal, settling, ctx)
    results = order_services.submit_orders([leg.request for leg in legs], source=OrderSource.WEBHOOK)
    latency = _latency_ms(signal)
    for leg, result in zip(legs, results, strict=True):
        if isinstance(result, DomainError):
            _refuse(leg.outcome, result)
        elif leg.name == "exit":
            _exit_placed(leg, result.order)
        else:
            _entry_placed(leg.outcome, result.order)
        leg.outcome.latency_ms = latency
    for outcome in touched:
        if outcome.pk is not None:  # an earlier run's failure, tried again
            outcome.save()
    SignalOutcome.objects.bulk_create([outcome for outcome in touched if outcome.pk is None])


def _refuse(outcome: SignalOutcome, error: DomainError) -> None:
    outcome.status = OutcomeStatus.SKIPPED if error.code in SKIP_CODES else OutcomeStatus.FAILED
    outcome.reason_code, outcome.reason = error.code[:40], error.detail[:500]


def _decide_all(
    signal: Signal, settling: list[tuple[Subscription, TradingAccount, SignalOutcome]], ctx: FanoutContext
) -> list[_Leg]:
    """Each account's step from its position (two queries for all): skips and cancels are
    settled here, the orders to place are returned."""
    account_ids = [account.pk for _, account, _ in settling]
    instrument_ids = {outcome.instrument_id for _, _, outcome in settling}
    held = {
        (account_id, instrument_id): quantity
        for account_id, instrument_id, quantity in Position.objects.filter(
            account_id__in=account_ids, instrument_id__in=instrument_ids
        )
        .order_by()
        .values_list("account_id", "instrument_id", "quantity")
    }
    working = working_quantities(account_ids=account_ids, instrument_ids=instrument_ids) if held else {}
    legs: list[_Leg] = []
    for subscription, account, outcome in settling:
        quantity = held.get((account.pk, outcome.instrument_id), 0)
        against = OrderSide.SELL if quantity > 0 else OrderSide.BUY
        closing = working.get((account.pk, outcome.instrument_id, against), 0) if quantity else 0
        try:
            leg = _decide(signal, subscription, account, outcome, ctx, held=quantity, closing=closing)
        except DomainError as exc:
            _refuse(outcome, exc)
            continue
        if leg is not None:
            legs.append(leg)
    return legs


def _record_without_order(
    signal: Signal, subscription: Subscription, status: OutcomeStatus, code: str, detail: str
) -> None:
    with transaction.atomic():
        outcome, created = SignalOutcome.objects.select_for_update().get_or_create(
            signal=signal,
            account_id=subscription.account_id,
            defaults={"subscription": subscription, "status": status, "reason_code": code[:40], "reason": detail[:500]},
        )
        if not created and not _is_settled(outcome):
            outcome.status, outcome.reason_code, outcome.reason = status, code[:40], detail[:500]
            outcome.save(update_fields=["status", "reason_code", "reason", "updated_at"])


def _decide(
    signal: Signal,
    subscription: Subscription,
    account: TradingAccount,
    outcome: SignalOutcome,
    ctx: FanoutContext,
    *,
    held: int,
    closing: int,
) -> _Leg | None:
    """One account's step, under its lock: the order to place, or None when the outcome is
    settled here (a skip, or cancels requested)."""
    instrument = outcome.instrument
    rule = _rule(subscription)
    entry_side = _entry_side(signal.action, held)
    terms = (
        _entry_terms(signal, instrument, side=entry_side, quantity=1, last_price=ctx.last_price(instrument.symbol))
        if entry_side
        else None
    )
    sized = sizing.Sized(0, "size_zero", "")
    if terms is not None:
        confidence = signal.confidence if (signal.payload or {}).get("size_by_confidence") else None
        sized = sizing.size_entry(
            rule,
            signal_quantity=signal.quantity,
            stop_distance=terms.stop_distance,
            point_value=instrument.point_value,
            confidence=confidence,
        )
    partial = sizing.size_exit(rule, signal_quantity=signal.quantity) if signal.quantity else None
    plan = intents.plan_for(
        intents.SignalFacts(action=signal.action, sentiment=signal.sentiment, partial_exit_quantity=partial),
        intents.AccountFacts(
            held=held, closing=closing, allow_adds=subscription.allow_adds, allow_reversals=subscription.allow_reversals
        ),
        entry_quantity=sized.quantity,
    )
    if plan.opens_risk and not intents.within_windows(intents.parse_windows(subscription.trading_windows), ctx.now):
        plan = intents.outside_window(plan)
    if plan.step == intents.Step.SKIP:
        code, detail = plan.code, plan.detail
        if code == "size_zero" and sized.code:
            code, detail = sized.code, sized.detail or detail
        outcome.status, outcome.reason_code, outcome.reason = OutcomeStatus.SKIPPED, code, detail[:500]
        return None
    if plan.step == intents.Step.CANCEL:
        with transaction.atomic():  # all of the account's cancels, or none
            _cancel_working(account, instrument, outcome)
        return None
    leg_name = "exit" if plan.step in (intents.Step.EXIT, intents.Step.REVERSE) else "entry"
    client_order_id = signal_client_order_id(
        signal_id=signal.pk, subscription_id=subscription.pk, account_id=account.pk, leg=leg_name
    )
    if leg_name == "exit":
        # A market order taking the exit quantity off the position, as a close: it only takes
        # risk off, so risk rules let it through even on a halted account (`closing` made sure
        # it does not exceed what is left to close).
        intent = OrderIntent(
            symbol=instrument.symbol,
            side=OrderSide(plan.side),
            quantity=plan.exit_quantity,
            order_type=OrderType.MARKET,
            position_effect=PositionEffect.REDUCE,
            is_liquidation=True,
        )
        request = order_services.OrderToSubmit(account, intent, client_order_id)
    else:
        assert terms is not None
        intent = replace(terms.intent, side=OrderSide(plan.side), quantity=plan.entry_quantity)
        request = order_services.OrderToSubmit(account, intent, client_order_id, bracket=terms.bracket)
        outcome.quantity = plan.entry_quantity
    return _Leg(outcome=outcome, name=leg_name, request=request, plan=plan, held=held)


def _exit_placed(leg: _Leg, order: Order) -> None:
    outcome, plan = leg.outcome, leg.plan
    outcome.exit_order = order
    if plan.step == intents.Step.EXIT:
        outcome.quantity = plan.exit_quantity
        outcome.status = OutcomeStatus.ORDERED
        outcome.reason_code, outcome.reason = plan.code, plan.detail[:500]
        return
    outcome.quantity = plan.entry_quantity
    outcome.status = OutcomeStatus.WAITING_EXIT
    outcome.reason_code = "waiting_exit"
    outcome.reason = f"Exiting {abs(leg.held)} first; the entry goes out when the exit has filled."


def _entry_side(action: str, held: int) -> str:
    """The side an entry (or add) would take, for sizing; blank when the action enters nothing."""
    if action in ("buy", "sell"):
        return action
    if action == "add" and held:
        return OrderSide.BUY if held > 0 else OrderSide.SELL
    return ""


def _entry_placed(outcome: SignalOutcome, order: Order) -> None:
    outcome.order = order
    if order.status == OrderStatus.DENIED:
        denials = order.denials or []
        outcome.status = OutcomeStatus.DENIED
        outcome.reason_code = (
            (denials[0].get("code") or denials[0].get("rule") or "risk_denied") if denials else "risk_denied"
        )
        outcome.reason = (order.reason or "Denied by the account's risk rules.")[:500]
        return
    outcome.status = OutcomeStatus.ORDERED
    if outcome.reason_code == "waiting_exit":
        outcome.reason_code, outcome.reason = "reversed", "The exit filled; the entry went out."


def _cancel_working(account: TradingAccount, instrument: Instrument, outcome: SignalOutcome) -> None:
    """Cancel the instrument's working orders on the account, but not a position's stop and
    target (cancelling those would leave the position unprotected)."""
    working = list(
        Order.objects.filter(account=account, instrument=instrument, status__in=CANCELABLE_STATUSES)
        .exclude(role__in=PROTECTIVE_ROLES)
        .order_by("pk")
    )
    if not working:
        outcome.status, outcome.reason_code = OutcomeStatus.SKIPPED, "nothing_to_cancel"
        outcome.reason = f"No working {instrument.symbol} orders to cancel."
        return
    for order in working:
        order_services.request_cancel(order=order)
    outcome.status, outcome.reason_code = OutcomeStatus.ORDERED, "cancel_requested"
    outcome.reason = f"Cancel requested for {len(working)} working {instrument.symbol} order(s)."


# -- Reversals: the second leg ---------------------------------------------------------------------


def place_reversal_entry(*, outcome_id: int) -> None:
    """The entry of a reversal whose exit has filled. Idempotent: only a WAITING_EXIT outcome
    whose exit is FILLED places it, under the account's lock, with the leg's deterministic id."""
    outcome = SignalOutcome.objects.filter(pk=outcome_id, status=OutcomeStatus.WAITING_EXIT).first()
    if outcome is None:
        return
    try:
        with transaction.atomic():
            account = (
                TradingAccount.objects.select_for_update(of=("self",))
                .select_related("broker_connection")
                .get(pk=outcome.account_id)
            )
            outcome = (
                SignalOutcome.objects.select_for_update(of=("self",))
                .select_related("signal", "instrument", "exit_order")
                .get(pk=outcome_id)
            )
            if outcome.status != OutcomeStatus.WAITING_EXIT or outcome.exit_order.status != OrderStatus.FILLED:
                return
            signal = outcome.signal
            terms = _entry_terms(signal, outcome.instrument, side=signal.action, quantity=outcome.quantity or 1)
            client_order_id = signal_client_order_id(
                signal_id=signal.pk, subscription_id=outcome.subscription_id, account_id=account.pk, leg="entry"
            )
            order = order_services.submit_order(
                account=account,
                intent=terms.intent,
                source=OrderSource.WEBHOOK,
                client_order_id=client_order_id,
                bracket=terms.bracket,
            ).order
            _entry_placed(outcome, order)
            outcome.save()
    except DomainError as exc:
        _fail_waiting(
            outcome_id, OutcomeStatus.FAILED, exc.code, f"The exit filled but the entry could not go out: {exc.detail}"
        )
    except Exception as exc:
        logger.exception("Reversal entry of outcome %s failed", outcome_id)
        _fail_waiting(outcome_id, OutcomeStatus.FAILED, "unexpected_error", f"Unexpected error ({type(exc).__name__}).")


def _fail_waiting(outcome_id: int, status: OutcomeStatus, code: str, detail: str) -> None:
    SignalOutcome.objects.filter(pk=outcome_id, status=OutcomeStatus.WAITING_EXIT).update(
        status=status, reason_code=code[:40], reason=detail[:500], updated_at=timezone.now()
    )


def expire_waiting_exits(*, now: datetime | None = None) -> list[int]:
    """Reversals whose exit ended unfilled, or has not filled within EXIT_FILL_TIMEOUT, fail
    `exit_not_filled` (the exit order stays as it is); returns the ids of those whose exit did
    fill but whose entry was never placed (a lost task), for the caller to place."""
    now = now or timezone.now()
    waiting = SignalOutcome.objects.filter(status=OutcomeStatus.WAITING_EXIT)
    expired = waiting.filter(
        Q(exit_order__status__in=ENDED_UNFILLED)
        | (Q(exit_order__created_at__lt=now - EXIT_FILL_TIMEOUT) & ~Q(exit_order__status=OrderStatus.FILLED))
    )
    expired.update(
        status=OutcomeStatus.FAILED,
        reason_code="exit_not_filled",
        reason=f"The reversal's exit did not fill within {int(EXIT_FILL_TIMEOUT.total_seconds())} s; no entry was "
        "placed (the exit order stays as it is).",
        updated_at=now,
    )
    return list(waiting.filter(exit_order__status=OrderStatus.FILLED).values_list("pk", flat=True))


# -- Staff -------------------------------------------------------------------------------------------


class SignalNotRetryable(ConflictError):
    code = "signal_not_failed"


def reprocess_signal(*, signal_id: int) -> None:
    """A FAILED signal back to RECEIVED, processed again after commit: accounts whose outcome
    failed without placing anything are tried again; the others keep what they have."""
    from signals_in.tasks.fanout import process_signal_task  # tasks import this module

    with transaction.atomic():
        updated = Signal.objects.filter(pk=signal_id, status=SignalStatus.FAILED).update(
            status=SignalStatus.RECEIVED, processed_at=None, reject_code="", reject_reason=""
        )
        if not updated:
            raise SignalNotRetryable(f"Signal {signal_id} has not failed; only failed signals are processed again.")
        process_signal_task.delay_on_commit(signal_id)

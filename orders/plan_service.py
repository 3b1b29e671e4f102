"""Running position-management plans: attaching and cancelling them, starting program defaults,
carrying out what orders.plans decides through the normal order path, and the price trigger.

Every action is a PlanEvent row and a live "plan.updated" event after commit. A stop move goes
through the broker's modify (orders.services.modify_order): the stop in force is the broker's
until it confirms. A refused move is recorded as a FAILED event and asked again at the next
evaluation (the stop is still short of where the plan wants it), up to MAX_STOP_REFUSALS
refusals; after that the plan stops moving that stop and says so, and the old stop stays.

Lock order, as in orders.services: account, then plan, then orders.
"""

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.commands.core import Script

from accounts.models import Program, TradingAccount
from accounts.realtime import on_commit, publish_account_event
from brokers import market_data
from brokers.market_data import get_last_price
from brokers.models import Instrument
from brokers.ticks import display_price
from config.errors import DomainError, NotFoundError
from config.redis_client import get_redis, key
from config.representation import represent, represent_many
from orders import groups, services, tasks, trailing
from orders.domain import (
    LIQUIDATING_SOURCES,
    LIVE_STATUSES,
    OPEN_STATUSES,
    PROTECTIVE_ROLES,
    OrderEventType,
    OrderRole,
    OrderSide,
    OrderSource,
)
from orders.models import (
    Order,
    OrderEvent,
    PlanEvent,
    PlanEventKind,
    PlanStatus,
    Position,
    PositionPlan,
)
from orders.plan_serializers import PlanEventSerializer, PlanStateSerializer
from orders.plans import (
    LONG,
    SHORT,
    Evaluation,
    ExitAll,
    ExitPart,
    InvalidPlan,
    Market,
    MoveStop,
    PartialExitRule,
    PlanRequest,
    PlanRules,
    PlanState,
    TrailStep,
    check_initial_stop,
    evaluate,
    next_trigger,
    parse_plan_request,
    stop_from_ticks,
)
from orders.selectors import liquidating_quantity

logger = logging.getLogger(__name__)

User = AbstractBaseUser

# A round of price-driven evaluations of one instrument holds its slot this long at most (it is
# refreshed at every run of the round); should the worker die, the next price starts a new one.
ROUND_SLOT_SECONDS = 1.0
# Runs of one round in one task before it hands over to a fresh task (other instruments' rounds
# waiting in the queue get a worker process too).
RUNS_PER_TASK = 20
# After a stop move was asked (or had to wait for one in flight), one more evaluation this much
# later settles it: a refusal is recorded and asked again even if the market goes quiet.
FOLLOW_UP_SECONDS = 1.0
MAX_STOP_REFUSALS = 3
# How long a band stands at most: work it does not know of (a move in flight resolved by
# reconciliation rather than by its send task) waits at most this long for the next price.
BAND_TTL_SECONDS = 3.0
# Refusals older than this are not looked at again (each is recorded once, when first seen).
REFUSALS_LOOKBACK = timedelta(minutes=15)


class PlanNotFound(NotFoundError):
    code = "plan_not_found"


# -- The price trigger -----------------------------------------------------------------------


def _evaluation_slot(symbol: str) -> str:
    return key("plans", "evaluation-pending", symbol)


def _evaluation_again(symbol: str) -> str:
    return key("plans", "evaluation-again", symbol)


def _follow_up_slot(symbol: str) -> str:
    return key("plans", "follow-up-pending", symbol)


def has_managed_orders(symbol: str) -> bool:
    """Whether a price of `symbol` concerns plans: an active plan or a working trailing stop."""
    return (
        PositionPlan.objects.filter(status=PlanStatus.ACTIVE, instrument__symbol=symbol).exists()
        or trailing.working_trailing_stops(symbol).exists()
    )


def _band_key(symbol: str) -> str:
    return key("plans", "band", symbol)


# A band is "up|down" ('' for no bound; "-Infinity"/"Infinity": any price acts). Decimal prices of
# a few significant digits compare exactly as Lua doubles (distinct ones stay distinct, in order).
_PRICE_SCRIPT = """
local function num(s)
  if s == '-Infinity' then return -math.huge elseif s == 'Infinity' then return math.huge end
  return tonumber(s)
end
local band = redis.call('GET', KEYS[1])
if band then
  local sep = string.find(band, '|', 1, true)
  local up, down = string.sub(band, 1, sep - 1), string.sub(band, sep + 1)
  local price = tonumber(ARGV[1])
  if (up == '' or price < num(up)) and (down == '' or price > num(down)) then return 0 end
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  if band then return 2 end
  return 1
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return 3
"""
# The end of a run: another run when prices outside the band arrived meanwhile, else the round ends.
_RUN_END_SCRIPT = """
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
"""
_NOTHING_TO_DO, _NEW_ROUND_UNKNOWN, _NEW_ROUND, _ROUND_RUNNING = 0, 1, 2, 3


@cache
def _script(source: str) -> Script:
    """A script run by its SHA (EVALSHA; redis-py loads it again should Redis have lost it)."""
    return get_redis().register_script(source)


def request_evaluation(symbol: str, price: Decimal) -> None:
    """A new price of `symbol` (called by risk.services.apply_price): evaluate its plans and
    emulated trailing stops at once, and again with the newest price as long as prices keep
    arriving during the evaluations, however many arrive.

    One Redis script per price decides (decision 0017): a price inside the symbol's band (between
    the nearest prices at which any plan or trailing stop could act, written by the last
    evaluation) changes nothing; outside it, a price starts a round (one task, evaluate_round)
    unless one is running, which it then flags to run once more. The band lives BAND_TTL_SECONDS,
    so work it did not know of waits at most that long; attaching or ending a plan, a trailing
    stop accepted and a stop move answered drop it at once.
    """
    redis = get_redis()
    slot_ms = int(ROUND_SLOT_SECONDS * 1000)
    keys = [_band_key(symbol), _evaluation_slot(symbol), _evaluation_again(symbol)]
    outcome = _script(_PRICE_SCRIPT)(keys=keys, args=[str(price), slot_ms])
    if outcome == _NEW_ROUND_UNKNOWN:
        version = _band_version(symbol)
        if not has_managed_orders(symbol):
            # Nothing to evaluate: an empty band skips this symbol's prices for a while, and the
            # slot is free for the first price after a plan or trailing stop is placed (which
            # drops the band).
            _store_band(symbol, [], version=version)
            redis.delete(_evaluation_slot(symbol))
            return
    if outcome in (_NEW_ROUND_UNKNOWN, _NEW_ROUND):
        tasks.evaluate_plans_task.delay(symbol, price_round=True)


def evaluate_round(symbol: str) -> None:
    """The price-driven evaluations of `symbol` (the task request_evaluation starts, holding the
    symbol's slot): one at the newest price, then one more each time prices outside the band
    arrived during the last (request_evaluation flags them), until none did."""
    slot_ms = int(ROUND_SLOT_SECONDS * 1000)
    keys = [_evaluation_slot(symbol), _evaluation_again(symbol)]
    for _ in range(RUNS_PER_TASK):
        evaluate_symbol(symbol=symbol, outside_band_only=True)
        if not _script(_RUN_END_SCRIPT)(keys=keys, args=[slot_ms]):
            return
    tasks.evaluate_plans_task.delay(symbol, price_round=True)  # the round goes on (slot held) in a fresh task


def release_follow_up_slot(symbol: str) -> None:
    """Called by the follow-up run before it reads the price: a move asked after this gets a
    follow-up of its own. (The slot also expires by itself, should that run be lost.)"""
    get_redis().delete(_follow_up_slot(symbol))


def _evaluation_inputs(symbol: str) -> tuple[str, Decimal | None, str | None]:
    """The band version, the newest price and the band, in one round trip. The version is read
    before the rows the band will be computed from (see _STORE_BAND_SCRIPT)."""
    pipeline = get_redis().pipeline(transaction=False)
    pipeline.get(_band_version_key(symbol))
    market_data.ask_last_price(pipeline, symbol)
    pipeline.get(_band_key(symbol))
    version, price, band = pipeline.execute()
    return str(version or "0"), market_data.last_price_from(price), band


def _inside(band: str | None, price: Decimal) -> bool:
    if band is None:
        return False
    up, _, down = str(band).partition("|")
    return (not up or price < Decimal(up)) and (not down or price > Decimal(down))


# An evaluation reads one instrument (its tick size and point value, fixed for a contract); read
# from the database at most every INSTRUMENT_CACHE_SECONDS per process instead of once per run.
INSTRUMENT_CACHE_SECONDS = 30.0
_instruments: dict[int, tuple[Instrument, float]] = {}


def _instrument(pk: int) -> Instrument:
    cached = _instruments.get(pk)
    if cached is not None and time.monotonic() - cached[1] < INSTRUMENT_CACHE_SECONDS:
        return cached[0]
    instrument = Instrument.objects.get(pk=pk)
    _instruments[pk] = (instrument, time.monotonic())
    return instrument


def _band_version_key(symbol: str) -> str:
    return key("plans", "band-version", symbol)


def drop_band(symbol: str, *, at_once: bool = False) -> None:
    """After commit (`at_once`: now, for a caller whose writes are committed): the next price of
    `symbol` is evaluated whatever it is (plans changed, a stop move was answered). A band
    computed before the drop is not stored after it."""

    def drop() -> None:
        pipeline = get_redis().pipeline(transaction=True)
        pipeline.delete(_band_key(symbol))
        pipeline.incr(_band_version_key(symbol))
        pipeline.execute()

    if at_once:
        drop()
    else:
        on_commit(drop)


def _band_version(symbol: str) -> str:
    """Read before an evaluation reads the rows its band is computed from."""
    return str(get_redis().get(_band_version_key(symbol)) or "0")


# Stores the band unless it was dropped since the evaluation began (then it may be stale: the
# next price evaluates instead).
_STORE_BAND_SCRIPT = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


def _store_band(symbol: str, triggers: list[tuple[bool, Decimal]], *, version: str) -> None:
    """The nearest prices at which anything could act: longs (and sell stops) at or above
    `up`, shorts (and buy stops) at or below `down`."""
    up = min((price for long, price in triggers if long), default=None)
    down = max((price for long, price in triggers if not long), default=None)
    band = f"{'' if up is None else up}|{'' if down is None else down}"
    keys = [_band_key(symbol), _band_version_key(symbol)]
    ttl = int(BAND_TTL_SECONDS * 1000)
    on_commit(lambda: _script(_STORE_BAND_SCRIPT)(keys=keys, args=[version, band, ttl]))


def _refused_key(symbol: str) -> str:
    return key("plans", "stop-refused", symbol)


def note_stop_refused(symbol: str) -> None:
    """A stop move in `symbol` was refused (orders.services._drop_change, the one place a refused
    stop change is recorded). Evaluations look for refusals to record only while this mark
    stands (REFUSALS_LOOKBACK, as far back as they look): the query cost ~1.3 ms per evaluation,
    and refusals are rare. Set at once: a mark before the commit only costs that query once more."""
    get_redis().set(_refused_key(symbol), "1", px=int(REFUSALS_LOOKBACK.total_seconds() * 1000))


def _schedule_follow_up(symbol: str) -> None:
    if get_redis().set(_follow_up_slot(symbol), "1", nx=True, px=int(FOLLOW_UP_SECONDS * 1000) * 4):
        on_commit(
            lambda: tasks.evaluate_plans_task.apply_async(
                (symbol,), kwargs={"follow_up": True}, countdown=FOLLOW_UP_SECONDS
            )
        )


# -- Rows <-> the pure model ----------------------------------------------------------------------


def rules_of(plan: PositionPlan) -> PlanRules:
    return PlanRules(
        partial_exits=tuple(PartialExitRule(Decimal(str(e["r"])), int(e["percent"])) for e in plan.partial_exits),
        breakeven_after_ticks=plan.breakeven_after_ticks,
        breakeven_offset_ticks=plan.breakeven_offset_ticks,
        trail_after_ticks=plan.trail_after_ticks,
        trail_ticks=plan.trail_ticks,
        trail_steps=tuple(TrailStep(Decimal(str(s["r"])), int(s["ticks"])) for s in plan.trail_steps),
        exit_at=plan.exit_at,
    )


def state_of(plan: PositionPlan) -> PlanState:
    return PlanState(
        side=plan.side,
        entry_price=plan.entry_price,
        initial_stop_price=plan.initial_stop_price,
        initial_quantity=plan.initial_quantity,
        best_price=plan.best_price,
        exits_done=plan.exits_done,
        breakeven_done=plan.breakeven_done,
        trailing=plan.trailing,
        time_exit_done=plan.time_exit_done,
    )


_STATE_FIELDS = ("best_price", "exits_done", "breakeven_done", "trailing", "time_exit_done")


def _store_state(plan: PositionPlan, state: PlanState) -> None:
    for name in _STATE_FIELDS:
        setattr(plan, name, getattr(state, name))
    plan.save(update_fields=[*_STATE_FIELDS, "updated_at"])


def _store_states(plans: list[PositionPlan], *, now: datetime) -> None:
    """Save many plans' standing: one UPDATE per distinct standing. After one price the plans
    that move share a few (the same best price, the same flags); bulk_update's CASE per row and
    field cost ~3 ms per plan (bench/plans.py profile)."""
    same: dict[tuple[Any, ...], list[int]] = {}
    for plan in plans:
        same.setdefault(tuple(getattr(plan, name) for name in _STATE_FIELDS), []).append(plan.pk)
    for values, ids in same.items():
        PositionPlan.objects.filter(pk__in=ids).update(**dict(zip(_STATE_FIELDS, values, strict=True)), updated_at=now)


def _record(
    plan: PositionPlan,
    kind: PlanEventKind,
    detail: str,
    *,
    price: Decimal | None = None,
    order: Order | None = None,
    order_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> PlanEvent:
    event = PlanEvent.objects.create(
        plan=plan,
        kind=kind,
        detail=detail[:500],
        price=price,
        order_id=order.pk if order is not None else order_id,
        payload=payload or {},
        occurred_at=timezone.now(),
    )
    _publish_on_commit(plan, [event])
    return event


def _publish_on_commit(plan: PositionPlan, events: list[PlanEvent]) -> None:
    """After commit, "plan.updated": the plan as it then stands and the events this change added
    (built from the objects in hand: no queries on the evaluation's path; the API has them all)."""

    def publish() -> None:
        data = {**represent(PlanStateSerializer, plan), "events": represent_many(PlanEventSerializer, events)}
        publish_account_event(plan.account_id, "plan.updated", data)

    on_commit(publish)


# -- Attaching, replacing, cancelling --------------------------------------------------------------


def _rules_json(rules: PlanRules) -> dict[str, Any]:
    return {
        "partial_exits": [{"r": str(e.r), "percent": e.percent} for e in rules.partial_exits],
        "breakeven_after_ticks": rules.breakeven_after_ticks,
        "breakeven_offset_ticks": rules.breakeven_offset_ticks,
        "trail_after_ticks": rules.trail_after_ticks,
        "trail_ticks": rules.trail_ticks,
        "trail_steps": [{"r": str(s.r), "ticks": s.ticks} for s in rules.trail_steps],
        "exit_at": rules.exit_at,
    }


def _end_plan(plan: PositionPlan, status: PlanStatus, detail: str, *, price: Decimal | None = None) -> None:
    plan.status = status
    plan.save(update_fields=["status", "updated_at"])
    _record(plan, PlanEventKind.FINISHED, detail, price=price, payload={"status": status})
    drop_band(plan.instrument.symbol)


def attach_plan(
    *, position: Position, request: PlanRequest, source: str, created_by: User | None = None
) -> PositionPlan:
    """Start a plan on an open position, replacing its active plan if it has one.

    R comes from the position's live stop; a position without a stop first gets one at the
    requested initial stop (orders.groups.protect_position). A requested initial stop on a
    position that has a stop moves that stop there.
    """
    with transaction.atomic():
        TradingAccount.objects.select_for_update(of=("self",)).get(pk=position.account_id)
        position = Position.objects.select_related("instrument", "account").get(pk=position.pk)
        instrument = position.instrument
        if position.quantity == 0:
            raise DomainError(f"The {instrument.symbol} position is flat: nothing to manage.", code="position_flat")
        side = LONG if position.quantity > 0 else SHORT
        entry = position.avg_price
        stop = request.initial_stop
        if stop is not None:
            stop = services.validate_price(stop, tick_size=instrument.tick_size, field="initial_stop")
        elif request.initial_stop_ticks is not None:
            stop = stop_from_ticks(
                side=side, entry=entry, ticks=request.initial_stop_ticks, tick_size=instrument.tick_size
            )
        leg = groups.protective_leg(
            account_id=position.account_id, instrument_id=instrument.pk, role=OrderRole.STOP_LOSS
        )
        if stop is None:
            if leg is None or leg.stop_price is None:
                raise InvalidPlan(
                    f"The {instrument.symbol} position has no stop: give initial_stop (a price) or "
                    "initial_stop_ticks, which R is measured from.",
                    code="initial_stop_required",
                    field="initial_stop",
                )
            stop = Decimal(leg.pending_change["stop_price"]) if "stop_price" in leg.pending_change else leg.stop_price
        check_initial_stop(side=side, entry=entry, stop=stop)
        if leg is None or leg.stop_price != stop:
            groups.protect_position(position=position, stop_loss=stop, created_by=created_by, source=OrderSource.PLAN)
        for old in PositionPlan.objects.select_for_update().filter(position=position, status=PlanStatus.ACTIVE):
            _end_plan(old, PlanStatus.CANCELED, "Replaced by a new plan.")
        market = get_last_price(instrument.symbol) or entry
        plan = PositionPlan.objects.create(
            account_id=position.account_id,
            instrument=instrument,
            position=position,
            source=source,
            side=side,
            entry_price=entry,
            initial_stop_price=stop,
            initial_quantity=abs(position.quantity),
            best_price=max(entry, market) if side == LONG else min(entry, market),
            created_by=created_by if created_by is not None and created_by.is_authenticated else None,
            **_rules_json(request.rules),
        )
        r = abs(entry - stop)
        _record(
            plan,
            PlanEventKind.STARTED,
            f"Managing {side} {abs(position.quantity)} {instrument.symbol} from "
            f"{display_price(entry, instrument.tick_size)} with the stop at {stop} (R = {r.normalize():f}).",
            price=market,
            payload={
                "source": source,
                "rules": {**_rules_json(request.rules), "exit_at": plan.exit_at.isoformat() if plan.exit_at else None},
                "r": str(r),
            },
        )
        drop_band(instrument.symbol)
        if request.rules.exit_at is not None:
            symbol, eta = instrument.symbol, request.rules.exit_at
            on_commit(lambda: tasks.evaluate_plans_task.apply_async((symbol,), eta=eta))
    return plan


def cancel_plan(*, plan: PositionPlan, actor: User | None = None) -> PositionPlan:
    """Stop managing the position; its stop stays where it is."""
    with transaction.atomic():
        TradingAccount.objects.select_for_update(of=("self",)).get(pk=plan.account_id)
        plan = PositionPlan.objects.select_for_update(of=("self",)).get(pk=plan.pk)
        if plan.status != PlanStatus.ACTIVE:
            raise DomainError(f"The plan is already {plan.status}.", code="plan_not_active")
        who = getattr(actor, "username", "") if actor is not None and actor.is_authenticated else ""
        _end_plan(plan, PlanStatus.CANCELED, f"Cancelled{' by ' + who if who else ''}; the stop stays where it is.")
    return plan


# -- Following the position (called from orders.booking.apply_broker_reports) --------------------


def start_default_plans(*, account: TradingAccount, instrument_ids: set[int]) -> None:
    """After broker reports changed these positions (account lock held): finish the plans of
    positions that went flat (or reversed), and start the program's default plan on a position
    that opened without one. A default starts once per position: a plan the trader cancelled
    is not started again by the next fill."""
    # Plans change status only under their account's lock, which the caller holds: a plain read
    # of a few columns is enough to see that nothing ends, the usual case (every booked stop move
    # passes here; loading and locking the plans with their positions was ~18% of the send
    # worker's CPU, decision 0017). Plans that do end are locked and loaded.
    plans = list(
        PositionPlan.objects.filter(
            account=account, instrument_id__in=instrument_ids, status=PlanStatus.ACTIVE
        ).values_list("pk", "instrument_id", "side", "position__quantity")
    )
    ending = [pk for pk, _, side, held in plans if held == 0 or (held > 0) != (side == LONG)]
    for plan in (
        PositionPlan.objects.select_for_update(of=("self",))
        .filter(pk__in=ending)
        .select_related("position", "instrument")
        if ending
        else ()
    ):
        held = plan.position.quantity
        _end_plan(
            plan,
            PlanStatus.DONE,
            "The position is flat: the plan is done." if held == 0 else "The position reversed: the plan is done.",
        )
    managed = {instrument_id for pk, instrument_id, _, _ in plans if pk not in ending}
    if not instrument_ids - managed:
        return  # every position here is managed: the usual case of a fill or a stop move confirmed
    default = Program.objects.filter(pk=account.program_id).values_list("default_position_plan", flat=True).first()
    if not default and not groups.contexts_with_plans(account_id=account.pk, instrument_ids=instrument_ids - managed):
        return  # no plan to start: none came with a bracket, the program gives none (a fan-out's usual case)
    for position in Position.objects.open().filter(account=account, instrument_id__in=instrument_ids - managed):
        if PositionPlan.objects.filter(position=position, created_at__gte=position.opened_at).exists():
            continue
        # The plan the trader sent with the bracket (order ticket or API) wins over the program's.
        context = groups.position_context(account_id=account.pk, instrument_id=position.instrument_id)
        entry = context.legs.filter(role=OrderRole.ENTRY).first() if context is not None and context.plan else None
        spec, source = (context.plan, entry.source if entry else "api") if entry else (default, "program")
        if not spec:
            continue
        try:
            # A savepoint: a plan that cannot start must never undo the fills being applied.
            with transaction.atomic():
                request = parse_plan_request(spec, now=timezone.now())
                attach_plan(position=position, request=request, source=source)
        except DomainError as exc:
            logger.warning("Plan (%s) not started on position %s: %s", source, position.pk, exc.detail)


# -- Evaluating at a price -----------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """A position's live stop as the evaluation reads it (a few columns: an Order object and its
    Instrument per plan were most of an evaluation's CPU; decision 0017)."""

    pk: int
    account_id: int
    instrument_id: int
    stop_price: Decimal | None
    pending_change: dict[str, Any]
    tick_size: Decimal


@dataclass(frozen=True)
class Context:
    """What one plan's evaluation needs from the rows around it."""

    leg: Order | Leg | None  # the position's live stop
    closing: int  # contracts being closed by orders on their way
    refusals: int  # stop moves the broker refused since the plan started


def evaluate_symbol(*, symbol: str, outside_band_only: bool = False) -> None:
    """Evaluate every active plan and emulated trailing stop of `symbol` at its newest price.
    `outside_band_only`: the trailing run of a round, which has nothing to do if the newest price
    is inside the band the leading run left."""
    version, price, band = _evaluation_inputs(symbol)
    if price is None or (outside_band_only and _inside(band, price)):
        return
    now = timezone.now()
    follow_up, triggers = _follow_trailing_orders(symbol, price, version=version)
    # The position's quantity as a column and the instrument (one per symbol) shared: building a
    # Position and an Instrument object per plan was a third of an evaluation's CPU (decision 0017).
    plans = list(
        PositionPlan.objects.filter(status=PlanStatus.ACTIVE, instrument__symbol=symbol).annotate(
            held=F("position__quantity")
        )
    )
    if plans:
        instrument = _instrument(plans[0].instrument_id)
        for plan in plans:
            plan.instrument = instrument
    contexts = _contexts(plans)
    stop_moves: list[PositionPlan] = []
    better: list[PositionPlan] = []  # plans whose only change is a new best price
    for plan in plans:
        decided = _evaluate_plan(plan, contexts[plan.pk], price=price, now=now, better=better)
        if decided is None:
            stop_moves.append(plan)
            continue
        wants_follow_up, trigger = decided
        follow_up |= wants_follow_up
        if trigger is not None:
            triggers.append((plan.side == LONG, trigger))
    _raise_best_prices(better, price=price, now=now)
    if stop_moves:
        wants_follow_up, moved_triggers = _move_stops_together(stop_moves, contexts, price=price, now=now)
        follow_up |= wants_follow_up
        triggers.extend(moved_triggers)
    _store_band(symbol, triggers, version=version)
    if follow_up:
        _schedule_follow_up(symbol)


# Symbols whose last look found no emulated trailing stop to follow: (band version, when). A
# trailing stop accepted drops the band (a new version), so the query is skipped only while the
# version stands, and for BAND_TTL_SECONDS at most (the band's own bound). It was ~8% of an
# evaluation's CPU, for no rows on most symbols.
_without_trailing: dict[str, tuple[str, float]] = {}


def _follow_trailing_orders(symbol: str, price: Decimal, *, version: str) -> tuple[bool, list[tuple[bool, Decimal]]]:
    seen = _without_trailing.get(symbol)
    if seen is not None and seen[0] == version and time.monotonic() - seen[1] < BAND_TTL_SECONDS:
        return False, []
    follow_up, triggers = trailing.follow_trailing_orders(symbol=symbol, price=price)
    if not follow_up and not triggers:
        _without_trailing[symbol] = (version, time.monotonic())
    else:
        _without_trailing.pop(symbol, None)
    return follow_up, triggers


def _raise_best_prices(plans: list[PositionPlan], *, price: Decimal, now: datetime) -> None:
    """A new best price for plans with nothing else to do: it is `price` for all of them, so one
    conditional UPDATE per side (never lowers a best another evaluation raised meanwhile)."""
    for side, better in ((LONG, Q(best_price__lt=price)), (SHORT, Q(best_price__gt=price))):
        ids = [plan.pk for plan in plans if plan.side == side]
        if ids:
            PositionPlan.objects.filter(Q(pk__in=ids) & better).update(best_price=price, updated_at=now)


def _contexts(plans: list[PositionPlan]) -> dict[int, Context]:
    """Stops, closes in flight and refusals for all the plans at once (two queries, not per plan)."""
    if not plans:
        return {}
    accounts = {plan.account_id for plan in plans}
    tick_sizes = {plan.instrument_id: plan.instrument.tick_size for plan in plans}
    legs: dict[tuple[int, int], Leg] = {}
    closing: dict[tuple[int, int, str], int] = {}
    # The stops and the closes in flight in one query (one query less per evaluation).
    for pk, account_id, instrument_id, stop, pending, role, status, source, side, quantity, filled, kind, state in (
        Order.objects.filter(account_id__in=accounts, instrument_id__in=set(tick_sizes))
        .filter(
            Q(role=OrderRole.STOP_LOSS, status__in=LIVE_STATUSES, group__kind="bracket", group__status="active")
            | (Q(status__in=OPEN_STATUSES, source__in=LIQUIDATING_SOURCES) & ~Q(role__in=PROTECTIVE_ROLES))
        )
        .order_by("pk")
        .values_list(
            "pk",
            "account_id",
            "instrument_id",
            "stop_price",
            "pending_change",
            "role",
            "status",
            "source",
            "side",
            "quantity",
            "filled_quantity",
            "group__kind",
            "group__status",
        )
    ):
        if role == OrderRole.STOP_LOSS and status in LIVE_STATUSES and (kind, state) == ("bracket", "active"):
            # The newest wins, as in groups.protective_leg.
            legs[(account_id, instrument_id)] = Leg(
                pk, account_id, instrument_id, stop, pending, tick_sizes[instrument_id]
            )
        if status in OPEN_STATUSES and source in LIQUIDATING_SOURCES and role not in PROTECTIVE_ROLES:
            # A resting stop or target is not a close on its way (as selectors.liquidating_quantity).
            closing[(account_id, instrument_id, side)] = (
                closing.get((account_id, instrument_id, side), 0) + quantity - filled
            )
    refusals = _record_refusals(plans, legs)
    contexts = {}
    for plan in plans:
        exit_side = OrderSide.SELL if plan.side == LONG else OrderSide.BUY
        contexts[plan.pk] = Context(
            leg=legs.get((plan.account_id, plan.instrument_id)),
            closing=closing.get((plan.account_id, plan.instrument_id, exit_side), 0),
            refusals=refusals.get(plan.pk, 0),
        )
    return contexts


def _stop_legs(accounts: set[int], instruments: set[int]) -> dict[tuple[int, int], Leg]:
    """The live stop of each (account, instrument) position context, in one query."""
    legs: dict[tuple[int, int], Leg] = {}
    for row in (
        Order.objects.filter(
            account_id__in=accounts,
            instrument_id__in=instruments,
            role=OrderRole.STOP_LOSS,
            status__in=LIVE_STATUSES,
            group__kind="bracket",
            group__status="active",
        )
        .order_by("pk")
        .values_list("pk", "account_id", "instrument_id", "stop_price", "pending_change", "instrument__tick_size")
    ):
        leg = Leg(*row)
        legs[(leg.account_id, leg.instrument_id)] = leg  # the newest wins, as in groups.protective_leg
    return legs


def _record_refusals(plans: list[PositionPlan], legs: dict[tuple[int, int], Leg]) -> dict[int, int]:
    """Stop moves the broker refused (OrderEvent MODIFY_REJECTED on a plan's stop): each becomes a
    FAILED plan event once, saying the old stop is still in force. Returns refusals per plan."""
    plan_by_leg = {}
    for plan in plans:
        leg = legs.get((plan.account_id, plan.instrument_id))
        if leg is not None and plan.held != 0:
            plan_by_leg[leg.pk] = plan
    if not plan_by_leg or not get_redis().exists(_refused_key(plans[0].instrument.symbol)):
        return {}
    since = max(min(plan.created_at for plan in plans), timezone.now() - REFUSALS_LOOKBACK)
    refused = list(
        OrderEvent.objects.filter(
            order_id__in=plan_by_leg,
            type=OrderEventType.MODIFY_REJECTED,
            created_at__gte=since,
            payload__has_key="stop_price",
        )
    )
    if not refused:
        return {}
    recorded = set(
        PlanEvent.objects.filter(
            plan__in=list(plan_by_leg.values()), kind=PlanEventKind.FAILED, payload__has_key="order_event"
        ).values_list("payload__order_event", flat=True)
    )
    counts: dict[int, int] = {}
    for event in refused:
        plan = plan_by_leg[event.order_id]
        if event.created_at < plan.created_at:
            continue
        counts[plan.pk] = counts.get(plan.pk, 0) + 1
        if event.pk in recorded:
            continue
        leg = legs[(plan.account_id, plan.instrument_id)]
        wanted = event.payload.get("stop_price", "?") if isinstance(event.payload, dict) else "?"
        giving_up = counts[plan.pk] >= MAX_STOP_REFUSALS
        _record(
            plan,
            PlanEventKind.FAILED,
            f"Moving the stop to {wanted} was refused: {event.detail} The stop stays at {_stop_text(leg)}"
            + ("; no more stop moves for this plan." if giving_up else "; asking again."),
            order_id=leg.pk,
            payload={"order_event": event.pk, "action": "move_stop", "to": wanted, "refusals": counts[plan.pk]},
        )
    return counts


def record_rejected_exit(order: Order) -> None:
    """A plan's exit the broker refused after it was sent (the order just became REJECTED):
    a FAILED plan event, once, saying the contracts are still held. It is not sent again: what
    the broker refused once (a locked market, a closed session) a person looks at. Call with the
    order's row lock held (orders.services, where orders become REJECTED)."""
    event = (
        PlanEvent.objects.filter(order=order, kind__in=(PlanEventKind.PARTIAL_EXIT, PlanEventKind.TIME_EXIT))
        .select_related("plan__instrument")
        .first()
    )
    if event is None or PlanEvent.objects.filter(plan=event.plan, payload__rejected_exit=event.pk).exists():
        return
    _record(
        event.plan,
        PlanEventKind.FAILED,
        f"The exit of {order.quantity} ({event.get_kind_display().lower()}) was rejected by the broker: "
        f"{order.reason or 'no reason given'}. Those contracts are still held; the plan does not send it again.",
        order=order,
        payload={"rejected_exit": event.pk, "action": event.kind, "quantity": order.quantity},
    )


def _stop_text(leg: Order | Leg) -> str:
    tick_size = leg.tick_size if isinstance(leg, Leg) else leg.instrument.tick_size
    return display_price(leg.stop_price, tick_size) if leg.stop_price is not None else "none"


def _market(plan: PositionPlan, context: Context, *, price: Decimal, now: datetime, held: int) -> Market:
    stop = context.leg.stop_price if context.leg is not None else None
    return Market(
        price=price,
        now=now,
        tick_size=plan.instrument.tick_size,
        open_quantity=abs(held),
        closing_quantity=context.closing,
        stop_price=stop,
    )


def _stop_blocked(context: Context) -> bool:
    return context.leg is None or bool(context.leg.pending_change) or context.refusals >= MAX_STOP_REFUSALS


def _trigger(
    plan: PositionPlan, state: PlanState, *, stop: Decimal | None, refusals: int, in_flight: bool
) -> Decimal | None:
    """The plan's next trigger. A stop with a move in flight cannot move again before the broker
    answers, so only the plan's exits count then: the answer, once booked, drops the band
    (orders.services.send_modifies_to_broker), and the follow-up evaluation comes anyway. (Counting
    the move kept the band open at every price while the broker had not answered: evaluations
    that could only wait; decision 0017.)"""
    return next_trigger(
        rules_of(plan),
        state,
        stop=stop,
        tick_size=plan.instrument.tick_size,
        stop_movable=refusals < MAX_STOP_REFUSALS and not in_flight,
    )


def _stop_in_force(leg: Order | Leg | None) -> Decimal | None:
    """The stop as it stands or as asked of the broker (a move in flight is settled by a follow-up)."""
    if leg is None:
        return None
    return Decimal(str(leg.pending_change["stop_price"])) if "stop_price" in leg.pending_change else leg.stop_price


def _evaluate_plan(
    plan: PositionPlan, context: Context, *, price: Decimal, now: datetime, better: list[PositionPlan]
) -> tuple[bool, Decimal | None] | None:
    """One plan, read without locks (`plan.held`: its position's quantity); it is locked only
    when it has something to do (a new best price alone joins `better`, raised by one UPDATE).
    Returns whether a follow-up evaluation is needed, and the plan's next trigger price; or None
    when all it wants is its stop moved, which _move_stops_together does for all such plans of
    the price at once."""
    held = plan.held
    if held == 0 or (held > 0) != (plan.side == LONG):
        return _carry_out(plan, context, price=price, now=now)
    before = state_of(plan)
    result = evaluate(rules_of(plan), before, _market(plan, context, price=price, now=now, held=held))
    wants_stop_move = any(isinstance(a, MoveStop) for a in result.actions)
    actions = [a for a in result.actions if not (isinstance(a, MoveStop) and _stop_blocked(context))]
    waiting = wants_stop_move and context.leg is not None and bool(context.leg.pending_change)
    if not actions and replace(result.state, best_price=before.best_price) == before:
        if result.state.best_price != before.best_price:
            better.append(plan)
        in_flight = context.leg is not None and bool(context.leg.pending_change)
        return waiting, _trigger(
            plan, result.state, stop=_stop_in_force(context.leg), refusals=context.refusals, in_flight=in_flight
        )
    exits = any(isinstance(a, ExitPart | ExitAll) for a in actions)
    if actions and not exits:
        return None
    follow_up, trigger = _carry_out(plan, context, price=price, now=now, exits=exits)
    return follow_up or waiting, trigger


def _move_stops_together(
    unlocked: list[PositionPlan], seen: dict[int, Context], *, price: Decimal, now: datetime
) -> tuple[bool, list[tuple[bool, Decimal]]]:
    """The stop moves of many plans after one price, in one transaction: each plan is evaluated
    again under its locks, the stops go to the broker through one services.modify_stops and the
    plan events are written in bulk (one plan at a time cost ~28 ms of CPU per move: see
    bench/plans.py). A plan whose situation changed since the unlocked read (an exit is due, the
    position went flat) is carried out on its own afterwards. Returns whether a follow-up
    evaluation is needed and the plans' next triggers."""
    follow_up = False
    triggers: list[tuple[bool, Decimal]] = []
    one_by_one: list[PositionPlan] = []
    with transaction.atomic():
        list(
            TradingAccount.objects.select_for_update(of=("self",))
            .filter(pk__in={plan.account_id for plan in unlocked})
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        plans = list(
            PositionPlan.objects.select_for_update(of=("self",))
            .select_related("instrument")
            .filter(pk__in=[plan.pk for plan in unlocked], status=PlanStatus.ACTIVE)
            .order_by("pk")
        )
        held = dict(Position.objects.filter(pk__in=[plan.position_id for plan in plans]).values_list("pk", "quantity"))
        legs = _stop_legs({plan.account_id for plan in plans}, {plan.instrument_id for plan in plans})
        # The stops are placed against the market as it is now, which may have moved since the
        # unlocked read (a busy worker): a stop put through it would be refused (a FAILED event
        # for nothing). The price read then still counts as seen, for the best price.
        seen_price, price = price, (get_last_price(plans[0].instrument.symbol) if plans else None) or price
        now = timezone.now()  # when the moves are asked (their events' time)
        moves: list[tuple[PositionPlan, Leg, MoveStop]] = []
        changed: list[PositionPlan] = []
        for plan in plans:
            quantity = held.get(plan.position_id, 0)
            leg = legs.get((plan.account_id, plan.instrument_id))
            context = Context(leg=leg, closing=seen[plan.pk].closing, refusals=seen[plan.pk].refusals)
            if quantity == 0 or (quantity > 0) != (plan.side == LONG) or leg is None:
                one_by_one.append(plan)
                continue
            result = evaluate(
                rules_of(plan),
                _having_seen(state_of(plan), seen_price),
                _market(plan, context, price=price, now=now, held=quantity),
            )
            wanted = [a for a in result.actions if isinstance(a, MoveStop)]
            if len(wanted) != len(result.actions) or not wanted or any(leg.pk == m[1].pk for m in moves):
                one_by_one.append(plan)
                continue
            for name in _STATE_FIELDS:
                setattr(plan, name, getattr(result.state, name))
            plan.updated_at = now
            changed.append(plan)
            if _stop_blocked(context):
                follow_up |= bool(leg.pending_change)
                trigger = _trigger(
                    plan,
                    result.state,
                    stop=_stop_in_force(leg),
                    refusals=context.refusals,
                    in_flight=bool(leg.pending_change),
                )
                if trigger is not None:
                    triggers.append((plan.side == LONG, trigger))
                continue
            moves.append((plan, leg, wanted[0]))
        outcome = services.modify_stops(
            moves=[
                services.StopMove(order_id=leg.pk, stop_price=action.price, detail=f"Plan {plan.pk}: {action.detail}")
                for plan, leg, action in moves
            ]
        )
        events: dict[int, list[PlanEvent]] = {}
        for plan, leg, action in moves:
            error = outcome[leg.pk]
            before = _stop_text(leg)
            stop = _stop_in_force(leg)
            if error is None:
                kind = PlanEventKind.BREAKEVEN if action.reason == "breakeven" else PlanEventKind.TRAIL
                detail = f"{action.detail} Stop {before} -> {action.price} (asked of the broker)."
                payload = {"from": before, "to": str(action.price)}
                stop = action.price
                follow_up = True
            elif isinstance(error, services.ChangePending):
                follow_up = True  # the move in flight settles first; the follow-up asks again
                kind = None
            else:
                kind = PlanEventKind.FAILED
                detail = (
                    f"Moving the stop to {action.price} was not possible: {error.detail} The stop stays at {before}."
                )
                payload = {"action": "move_stop", "to": str(action.price), "code": error.code}
            if kind is not None:
                events.setdefault(plan.pk, []).append(
                    PlanEvent(
                        plan=plan,
                        kind=kind,
                        detail=detail[:500],
                        price=price,
                        order_id=leg.pk,
                        payload=payload,
                        occurred_at=now,
                    )
                )
            in_flight = error is None or isinstance(error, services.ChangePending)
            trigger = _trigger(plan, state_of(plan), stop=stop, refusals=seen[plan.pk].refusals, in_flight=in_flight)
            if trigger is not None:
                triggers.append((plan.side == LONG, trigger))
        PlanEvent.objects.bulk_create([event for plan_events in events.values() for event in plan_events])
        _store_states(changed, now=now)
        for plan in changed:
            _publish_on_commit(plan, events.get(plan.pk, []))
    for plan in one_by_one:
        wants_follow_up, trigger = _carry_out(plan, seen[plan.pk], price=price, now=now, seen_price=seen_price)
        follow_up |= wants_follow_up
        if trigger is not None:
            triggers.append((plan.side == LONG, trigger))
    return follow_up, triggers


def _having_seen(state: PlanState, price: Decimal | None) -> PlanState:
    """The plan's standing with `price` counted as seen (its best price)."""
    if price is None:
        return state
    best = max(state.best_price, price) if state.side == LONG else min(state.best_price, price)
    return replace(state, best_price=best)


def _carry_out(
    unlocked: PositionPlan,
    seen: Context,
    *,
    price: Decimal,
    now: datetime,
    exits: bool = True,
    seen_price: Decimal | None = None,
) -> tuple[bool, Decimal | None]:
    """Evaluate one plan again under its locks and carry out its actions through the order path.
    `seen` is what the unlocked read found; closes in flight are read again only when it
    wants an exit (close_position checks the quantity again under its own lock anyway).
    `seen_price`: an earlier price of the same evaluation, counted as seen (for the best price).
    Returns whether a follow-up evaluation is needed, and the plan's next trigger price."""
    follow_up = False
    refusals = seen.refusals
    with transaction.atomic():
        TradingAccount.objects.select_for_update(of=("self",)).get(pk=unlocked.account_id)
        plan = PositionPlan.objects.select_for_update(of=("self",)).select_related("instrument").get(pk=unlocked.pk)
        if plan.status != PlanStatus.ACTIVE:
            return False, None
        position = Position.objects.get(pk=plan.position_id)
        held = position.quantity
        if held == 0 or (held > 0) != (plan.side == LONG):
            _end_plan(
                plan,
                PlanStatus.DONE,
                "The position is flat: the plan is done." if held == 0 else "The position reversed: the plan is done.",
                price=price,
            )
            return False, None
        leg = groups.protective_leg(
            account_id=plan.account_id, instrument_id=plan.instrument_id, role=OrderRole.STOP_LOSS
        )
        exit_side = OrderSide.SELL if plan.side == LONG else OrderSide.BUY
        context = Context(
            leg=leg,
            closing=liquidating_quantity(account_id=plan.account_id, instrument_id=plan.instrument_id, side=exit_side)
            if exits
            else seen.closing,
            refusals=refusals,
        )
        result: Evaluation = evaluate(
            rules_of(plan),
            _having_seen(state_of(plan), seen_price),
            _market(plan, context, price=price, now=now, held=held),
        )
        stop = _stop_in_force(leg)
        for action in result.actions:
            if isinstance(action, MoveStop):
                if _stop_blocked(context):
                    follow_up |= bool(leg is not None and leg.pending_change)
                    continue
                assert leg is not None
                if asked := _move_stop(plan, leg, action, price=price):
                    stop = action.price
                # Asked or waiting for a move in flight: a follow-up settles it.
                follow_up |= asked or _waiting_for_broker(leg)
            elif isinstance(action, ExitPart):
                _close(
                    plan,
                    position,
                    action.quantity,
                    PlanEventKind.PARTIAL_EXIT,
                    price=price,
                    detail=f"{action.r}R reached at {price}: closing {action.quantity} of {abs(held)}.",
                    payload={"index": action.index, "r": str(action.r), "quantity": action.quantity},
                )
            elif isinstance(action, ExitAll):
                _close(
                    plan,
                    position,
                    action.quantity,
                    PlanEventKind.TIME_EXIT,
                    price=price,
                    detail=f"Exit time {plan.exit_at.isoformat() if plan.exit_at else ''} reached: closing the "
                    f"remaining {action.quantity}.",
                    payload={"quantity": action.quantity},
                )
        _store_state(plan, result.state)
        if not result.actions:
            _publish_on_commit(plan, [])  # a flag changed (breakeven or trailing reached, the stop already there)
    # A follow-up is wanted exactly when a move was asked or waits for one in flight.
    return follow_up, _trigger(plan, result.state, stop=stop, refusals=refusals, in_flight=follow_up)


def _waiting_for_broker(leg: Order) -> bool:
    return Order.objects.filter(pk=leg.pk).exclude(pending_change={}).exists()


def _move_stop(plan: PositionPlan, leg: Order, action: MoveStop, *, price: Decimal) -> bool:
    """Ask the broker to move the stop; True when asked (False: not possible now, or waiting)."""
    kind = PlanEventKind.BREAKEVEN if action.reason == "breakeven" else PlanEventKind.TRAIL
    try:
        services.modify_order(
            order=leg,
            change=services.OrderChange(stop_price=action.price),
            managed=True,
            detail=f"Plan {plan.pk}: {action.detail}",
        )
    except services.ChangePending:
        return False  # the move in flight settles first; the follow-up asks again
    except DomainError as exc:
        _record(
            plan,
            PlanEventKind.FAILED,
            f"Moving the stop to {action.price} was not possible: {exc.detail} The stop stays at {_stop_text(leg)}.",
            price=price,
            order=leg,
            payload={"action": "move_stop", "to": str(action.price), "code": exc.code},
        )
        return False
    _record(
        plan,
        kind,
        f"{action.detail} Stop {_stop_text(leg)} -> {action.price} (asked of the broker).",
        price=price,
        order=leg,
        payload={"from": _stop_text(leg), "to": str(action.price)},
    )
    return True


def _close(
    plan: PositionPlan,
    position: Position,
    quantity: int,
    kind: PlanEventKind,
    *,
    price: Decimal,
    detail: str,
    payload: dict[str, Any],
) -> None:
    try:
        order = services.close_position(position=position, quantity=quantity, source=OrderSource.PLAN)
    except DomainError as exc:
        _record(
            plan,
            PlanEventKind.FAILED,
            f"{detail} Not sent: {exc.detail}",
            price=price,
            payload={**payload, "action": kind, "code": exc.code},
        )
        return
    _record(plan, kind, detail, price=price, order=order, payload=payload)


# -- Reads for the API -------------------------------------------------------------------------------


def latest_plan(*, position: Position) -> PositionPlan:
    """The position's active plan, else its most recent one."""
    plans = PositionPlan.objects.filter(position=position).select_related("instrument").prefetch_related("events")
    plan = plans.filter(status=PlanStatus.ACTIVE).first() or plans.order_by("-created_at", "-id").first()
    if plan is None:
        raise PlanNotFound(f"Position {position.pk} has no plan.")
    return plan


def active_plan(*, position: Position) -> PositionPlan:
    plan = PositionPlan.objects.filter(position=position, status=PlanStatus.ACTIVE).first()
    if plan is None:
        raise PlanNotFound(f"Position {position.pk} has no active plan.")
    return plan

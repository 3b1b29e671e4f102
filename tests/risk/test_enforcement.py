"""Monitoring and enforcement on PostgreSQL and Redis with the paper venue: breaches, rollover,
flat-by, exactly-once enforcement."""

import threading
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from accounts.domain import AccountStatus, TradingState
from accounts.models import TradingAccount
from brokers.paper.models import VenueContract, VenueOrder, VenuePosition
from orders import services as order_services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Fill, Order, Position
from risk import enforcement
from risk.models import AccountDay, AccountRiskState, NewsRelease, ProgramRules, ScalingTier, Violation
from risk.trading_day import trade_date_closes_at, trade_date_for
from tests.factories import BrokerConnectionFactory

pytestmark = pytest.mark.django_db
CT = ZoneInfo("America/Chicago")


def buy(quantity: int = 1, symbol: str = "MES", **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def rules(account, **figures) -> ProgramRules:  # type: ignore[no-untyped-def]
    row, _ = ProgramRules.objects.update_or_create(program=account.program, defaults=figures)
    return row


def venue_position(account, symbol: str | None = None) -> int:  # type: ignore[no-untyped-def]
    rows = VenuePosition.objects.filter(account__ref=account.broker_account_id)
    row = (rows.filter(symbol=symbol) if symbol else rows).first()
    return row.quantity if row else 0


def test_price_through_intraday_floor_fails_account_and_flattens_at_venue(alice_account, paper, commit):
    rules(alice_account, drawdown_kind="intraday_trailing", drawdown_amount=Decimal("500"))
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(4), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "5010.00")  # +10 points * $5 * 4 = +200: the peak, floor rises to 49,700
    state = AccountRiskState.objects.get(account=alice_account)
    assert state.peak_equity > Decimal("50190")
    with commit():
        paper.price("MESZ6", "4985.00")  # -15 points from entry * 20 = -300: equity ~49,700 -> breach

    violation = Violation.objects.get(account=alice_account)
    assert violation.rule == "drawdown" and violation.severity == "hard" and violation.action == "breached"
    alice_account.refresh_from_db()
    assert alice_account.status == AccountStatus.BREACHED
    assert alice_account.trading_state == TradingState.HALTED
    assert Position.objects.get(account=alice_account).quantity == 0
    assert venue_position(alice_account) == 0
    closing = Order.objects.get(account=alice_account, source=OrderSource.RISK)
    assert (
        closing.status == OrderStatus.FILLED
        and VenueOrder.objects.filter(client_order_id=closing.client_order_id).count() == 1
    )
    # Further orders are denied, and seeing the breach again does nothing more.
    with commit():
        denied = order_services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API).order
    assert denied.status == OrderStatus.DENIED
    assert enforcement.enforce_breaches(account_id=alice_account.pk) == []
    assert Violation.objects.filter(account=alice_account).count() == 1


def test_soft_daily_limit_blocks_until_next_trade_date_then_lifts(alice_account, paper, commit):
    rules(alice_account, daily_loss_mode="soft", daily_loss_limit=Decimal("100"))
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(2), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "4990.00")  # -10 points * 5 * 2 = -100 (+ fees): at the limit

    violation = Violation.objects.get(account=alice_account)
    assert (violation.rule, violation.severity, violation.action) == ("daily_loss", "soft", "blocked")
    alice_account.refresh_from_db()
    assert alice_account.status == AccountStatus.ACTIVE
    assert Position.objects.get(account=alice_account).quantity == 0
    state = AccountRiskState.objects.get(account=alice_account)
    assert state.blocked_until is not None
    with commit():
        denied = order_services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API).order
    assert denied.status == OrderStatus.DENIED and denied.denials[0]["code"] == "daily_loss_blocked"

    after_close = state.blocked_until + timedelta(minutes=1)
    with commit():
        assert enforcement.roll_trade_date(now=after_close) == 1
        assert enforcement.roll_trade_date(now=after_close) == 0  # idempotent
    state.refresh_from_db()
    assert state.blocked_until is None
    day = AccountDay.objects.get(account=alice_account)
    alice_account.refresh_from_db()
    assert day.closing_balance == alice_account.balance
    assert not Violation.objects.get(pk=violation.pk).is_active


def test_flat_by_closes_positions(alice_account, paper, commit):
    rules(alice_account, flat_by=time(15, 10), time_zone="America/Chicago")
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API)
    trade_day = datetime(2026, 11, 23, 15, 11, tzinfo=CT)
    with commit():
        result = enforcement.enforce_trading_hours(now=trade_day)
    assert result.liquidated == [alice_account.pk]
    assert Position.objects.get(account=alice_account).quantity == 0
    assert Violation.objects.get(account=alice_account).rule == "flat_by"


# -- Helpers for the scenarios below --------------------------------------------------------------


def no_fees() -> None:
    VenueContract.objects.update(fee_per_contract=Decimal(0))


def round_trip_es(account, paper, commit, *, points: int, entry: str = "5000.00") -> None:  # type: ignore[no-untyped-def]
    """Buy 1 ES at `entry`, move the price by `points` and close: P&L is points x $50."""
    with commit():
        paper.price("ESZ6", entry)
    with commit():
        order_services.submit_order(account=account, intent=buy(1, "ES"), source=OrderSource.API)
    with commit():
        paper.price("ESZ6", str(Decimal(entry) + points))
    with commit():
        order_services.close_position(position=Position.objects.get(account=account, instrument__symbol="ESZ6"))


def book_fills_on(account, trade_date: date, *, since: int) -> None:  # type: ignore[no-untyped-def]
    """The paper venue fills at the real clock; file the fills after pk `since` under `trade_date`."""
    Fill.objects.filter(account=account, pk__gt=since).update(trade_date=trade_date)


def last_fill_pk() -> int:
    return Fill.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def next_business_day(day: date) -> date:
    return trade_date_for(trade_date_closes_at(day) + timedelta(minutes=1))


def after_close(trade_date: date) -> datetime:
    return trade_date_closes_at(trade_date) + timedelta(minutes=1)


# -- End-of-day trailing, rollover and scaling -----------------------------------------------------


def test_topstep_eod_trailing_example_trails_then_locks_at_starting_balance(alice_account, paper, commit):
    """Topstep 50K: $2,000 end-of-day trailing, stops at the starting balance.
    +500, -500, +2500 -> floors 48,500, 48,500, 50,000 (locked)."""
    no_fees()
    rules(
        alice_account, drawdown_kind="eod_trailing", drawdown_amount=Decimal("2000"), drawdown_lock="starting_balance"
    )
    first = trade_date_for(timezone.now())
    days = [first, next_business_day(first), next_business_day(next_business_day(first))]
    expected = [("50500", "48500"), ("50000", "48500"), ("52500", "50000")]

    for day, points, (closing, floor) in zip(days, (10, -10, 50), expected, strict=True):
        since = last_fill_pk()
        round_trip_es(alice_account, paper, commit, points=points)
        book_fills_on(alice_account, day, since=since)
        with commit():
            assert enforcement.roll_account(account_id=alice_account.pk, now=after_close(day)) is True
        state = AccountRiskState.objects.get(account=alice_account)
        assert state.drawdown_floor == Decimal(floor)
        assert AccountDay.objects.get(account=alice_account, trade_date=day).closing_balance == Decimal(closing)

    rows = AccountDay.objects.filter(account=alice_account).order_by("trade_date")
    assert [(d.trade_date, d.realized_pnl, d.fills) for d in rows] == [
        (days[0], Decimal("500"), 2),
        (days[1], Decimal("-500"), 2),
        (days[2], Decimal("2500"), 2),
    ]
    state.refresh_from_db()
    assert state.eod_high_balance == Decimal("52500") and state.trade_date == next_business_day(days[2])
    # Locked: a further high day does not lift the floor past the starting balance.
    since = last_fill_pk()
    round_trip_es(alice_account, paper, commit, points=20)
    book_fills_on(alice_account, state.trade_date, since=since)
    with commit():
        enforcement.roll_account(account_id=alice_account.pk, now=after_close(state.trade_date))
    state.refresh_from_db()
    assert state.drawdown_floor == Decimal("50000")


def test_rollover_catches_up_missed_trade_dates_with_exact_closing_balances(alice_account, paper, commit):
    no_fees()
    first = trade_date_for(timezone.now())
    second = next_business_day(first)
    round_trip_es(alice_account, paper, commit, points=10)  # +500 on the first date
    book_fills_on(alice_account, first, since=0)
    since = last_fill_pk()
    round_trip_es(alice_account, paper, commit, points=-4)  # -200 on the second, no roll between
    book_fills_on(alice_account, second, since=since)

    with commit():
        assert enforcement.roll_trade_date(now=after_close(second)) == 1

    rows = AccountDay.objects.filter(account=alice_account).order_by("trade_date")
    assert [(d.trade_date, d.closing_balance, d.realized_pnl) for d in rows] == [
        (first, Decimal("50500"), Decimal("500")),
        (second, Decimal("50300"), Decimal("-200")),
    ]
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50300")
    state = AccountRiskState.objects.get(account=alice_account)
    assert state.trade_date == next_business_day(second) and state.eod_high_balance == Decimal("50500")


def test_scaling_tier_applies_from_the_next_session(alice_account, paper, commit):
    no_fees()
    rules(alice_account, max_contracts=5, micro_weight=Decimal("1"), scaling_basis="profit")
    ScalingTier.objects.create(program=alice_account.program, threshold=Decimal("0"), max_contracts=2)
    ScalingTier.objects.create(program=alice_account.program, threshold=Decimal("1500"), max_contracts=5)
    today = trade_date_for(timezone.now())
    round_trip_es(alice_account, paper, commit, points=-2)  # -100: below the 1,500 tier
    assert AccountRiskState.objects.get(account=alice_account).scaled_max_contracts is None  # not before the roll

    with commit():
        enforcement.roll_account(account_id=alice_account.pk, now=after_close(today))

    assert AccountRiskState.objects.get(account=alice_account).scaled_max_contracts == 2
    with commit():
        three = order_services.submit_order(account=alice_account, intent=buy(3, "ES"), source=OrderSource.API).order
        two = order_services.submit_order(account=alice_account, intent=buy(2, "ES"), source=OrderSource.API).order
    three.refresh_from_db()
    two.refresh_from_db()
    assert three.status == OrderStatus.DENIED and three.denials[0]["rule"] == "max_contracts"
    assert "scaling plan" in three.denials[0]["detail"]
    assert two.status == OrderStatus.FILLED and venue_position(alice_account) == 2


# -- Breaches -------------------------------------------------------------------------------------------


def test_hard_daily_loss_fails_the_account(alice_account, paper, commit):
    rules(alice_account, daily_loss_mode="hard", daily_loss_limit=Decimal("100"))
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(2), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "4989.00")  # -11 points x $5 x 2 = -110

    violation = Violation.objects.get(account=alice_account)
    assert (violation.rule, violation.severity, violation.action) == ("daily_loss", "hard", "breached")
    assert violation.threshold == Decimal("-100")
    alice_account.refresh_from_db()
    assert alice_account.status == AccountStatus.BREACHED and alice_account.trading_state == TradingState.HALTED
    assert alice_account.trading_state_reason == violation.detail[:300]
    assert Position.objects.get(account=alice_account).quantity == 0 and venue_position(alice_account) == 0
    assert AccountRiskState.objects.get(account=alice_account).blocked_until is None  # failed, not blocked


def breach_quietly(account, paper, commit) -> None:  # type: ignore[no-untyped-def]
    """Hold 2 MES, let the price fall with no rule set, then set a daily limit it is already past:
    no price event has seen the breach."""
    with commit():
        order_services.submit_order(account=account, intent=buy(2), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "4980.00")  # -200 open
    rules(account, daily_loss_mode="hard", daily_loss_limit=Decimal("100"))
    assert not Violation.objects.filter(account=account).exists()


def test_sweep_finds_a_breach_without_a_price_event(alice_account, bob_account, paper, commit):
    breach_quietly(alice_account, paper, commit)

    with commit():
        result = enforcement.monitor_accounts()

    assert result.assessed == 2 and result.breached == [alice_account.pk]
    assert [v.rule for v in result.violations] == ["daily_loss"]
    alice_account.refresh_from_db()
    assert alice_account.status == AccountStatus.BREACHED
    assert Position.objects.get(account=alice_account).quantity == 0 and venue_position(alice_account) == 0
    with commit():
        assert enforcement.monitor_accounts().breached == []  # failed accounts are no longer watched
    assert Violation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_monitors_enforce_the_same_breach_exactly_once(alice_account, paper, commit):
    breach_quietly(alice_account, paper, commit)
    barrier = threading.Barrier(2)
    results: list[list[Violation]] = []
    errors: list[BaseException] = []

    def monitor() -> None:
        try:
            barrier.wait()
            results.append(enforcement.enforce_breaches(account_id=alice_account.pk))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=monitor) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(len(found) for found in results) == [0, 1]
    assert Violation.objects.filter(account=alice_account).count() == 1
    closing = Order.objects.filter(account=alice_account, source=OrderSource.RISK)
    assert closing.count() == 1
    assert VenueOrder.objects.filter(client_order_id=closing.get().client_order_id).count() == 1
    assert Position.objects.get(account=alice_account).quantity == 0 and venue_position(alice_account) == 0


def breach_together(accounts, paper, commit, **figures) -> None:  # type: ignore[no-untyped-def]
    """Each account holds 2 MES, the price falls with no rule set, then each gets a daily limit
    it is already past (`figures` per account, in order): no monitor has seen the breaches yet."""
    with commit():
        for account in accounts:
            order_services.submit_order(account=account, intent=buy(2), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "4980.00")  # -200 open each
    for account, mode in zip(accounts, figures["modes"], strict=True):
        rules(account, daily_loss_mode=mode, daily_loss_limit=Decimal("100"))
    assert not Violation.objects.exists()


def test_one_monitor_enforces_all_breached_accounts_together_once(alice_account, bob_account, paper, commit):
    breach_together([alice_account, bob_account], paper, commit, modes=["soft", "hard"])

    with commit():
        result = enforcement.monitor_accounts()

    assert sorted(result.breached) == sorted([alice_account.pk, bob_account.pk])
    assert {(v.account_id, v.severity) for v in result.violations} == {
        (alice_account.pk, "soft"),
        (bob_account.pk, "hard"),
    }
    for account in (alice_account, bob_account):
        closing = Order.objects.get(account=account, source=OrderSource.RISK)
        assert closing.status == OrderStatus.FILLED and closing.events.filter(type="created").count() == 1
        assert VenueOrder.objects.filter(client_order_id=closing.client_order_id).count() == 1
        assert Position.objects.get(account=account).quantity == 0 and venue_position(account) == 0
    alice_account.refresh_from_db()
    bob_account.refresh_from_db()
    # Soft: blocked until the close, still active. Hard: failed and halted, with a history row.
    assert alice_account.status == AccountStatus.ACTIVE
    assert AccountRiskState.objects.get(account=alice_account).blocked_until == trade_date_closes_at(
        trade_date_for(timezone.now())
    )
    assert bob_account.status == AccountStatus.BREACHED and bob_account.trading_state == TradingState.HALTED
    assert bob_account.history.first().status == AccountStatus.BREACHED
    assert AccountRiskState.objects.get(account=bob_account).blocked_until is None

    with commit():  # seeing the same breaches again does nothing
        assert enforcement.enforce_all_breaches(account_ids=[alice_account.pk, bob_account.pk]) == {}
    assert Violation.objects.count() == 2 and Order.objects.filter(source=OrderSource.RISK).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_monitors_enforcing_many_accounts_act_once_on_each(alice_account, bob_account, paper, commit):
    breach_together([alice_account, bob_account], paper, commit, modes=["soft", "hard"])
    barrier = threading.Barrier(2)
    results: list[dict[int, list[Violation]]] = []
    errors: list[BaseException] = []

    def monitor(account_ids: list[int]) -> None:
        try:
            barrier.wait()
            results.append(enforcement.enforce_all_breaches(account_ids=account_ids))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    # Opposite orders: the accounts are locked in id order whatever the caller passes, so no deadlock.
    ids = [alice_account.pk, bob_account.pk]
    threads = [threading.Thread(target=monitor, args=(order,)) for order in (ids, ids[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sum(len(found) for result in results for found in result.values()) == 2
    for account in (alice_account, bob_account):
        assert Violation.objects.filter(account=account).count() == 1
        closing = Order.objects.filter(account=account, source=OrderSource.RISK)
        assert closing.count() == 1
        assert VenueOrder.objects.filter(client_order_id=closing.get().client_order_id).count() == 1
        assert Position.objects.get(account=account).quantity == 0 and venue_position(account) == 0


def test_a_connection_refusing_orders_holds_back_only_its_own_account(alice_account, bob_account, paper, commit):
    breach_together([alice_account, bob_account], paper, commit, modes=["hard", "hard"])
    down = BrokerConnectionFactory(name="Paper down", is_enabled=False, last_error="maintenance")
    TradingAccount.objects.filter(pk=bob_account.pk).update(broker_connection=down)

    with commit(), pytest.raises(order_services.BrokerNotReady):
        enforcement.enforce_all_breaches(account_ids=[alice_account.pk, bob_account.pk])

    assert list(Violation.objects.values_list("account_id", flat=True)) == [alice_account.pk]
    assert Position.objects.get(account=alice_account).quantity == 0 and venue_position(alice_account) == 0
    bob_account.refresh_from_db()
    assert bob_account.status == AccountStatus.ACTIVE  # not acted on: the next sweep tries again
    assert Position.objects.get(account=bob_account).quantity == 2
    assert not Order.objects.filter(account=bob_account, source=OrderSource.RISK).exists()


# -- Flat-by warning and news blackout -----------------------------------------------------------------


def test_flat_by_warning_published_once(alice_account, paper, commit, monkeypatch):
    rules(alice_account, flat_by=time(15, 10), time_zone="America/Chicago", flat_by_warning_minutes=5)
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API)
    published: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(enforcement, "publish_account_event", lambda *args: published.append(args))
    monday = datetime(2026, 11, 23, 15, 6, tzinfo=CT)

    with commit():
        first = enforcement.enforce_trading_hours(now=monday)
    with commit():
        second = enforcement.enforce_trading_hours(now=monday + timedelta(minutes=1))

    assert first.warned == [alice_account.pk] and second.warned == []
    assert first.liquidated == second.liquidated == []
    assert [(account_id, kind, data["rule"]) for account_id, kind, data in published] == [
        (alice_account.pk, "risk.warning", "flat_by")
    ]
    assert "15:10" in published[0][2]["detail"]
    assert AccountRiskState.objects.get(account=alice_account).flat_by_warned_on == date(2026, 11, 23)
    assert Position.objects.get(account=alice_account).quantity == 1


def test_news_blackout_closes_positions_in_affected_products(alice_account, paper, commit):
    rules(alice_account, news_blackout_minutes_before=2, news_blackout_minutes_after=2)
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API)
        order_services.submit_order(account=alice_account, intent=buy(1, "ES"), source=OrderSource.API)
    release = NewsRelease.objects.create(
        title="Nonfarm payrolls", at=datetime(2026, 11, 23, 7, 30, tzinfo=CT), roots=["MES"]
    )

    with commit():
        outside = enforcement.enforce_trading_hours(now=release.at - timedelta(minutes=3))
    with commit():
        inside = enforcement.enforce_trading_hours(now=release.at - timedelta(minutes=1))

    assert outside.liquidated == [] and inside.liquidated == [alice_account.pk]
    violation = Violation.objects.get(account=alice_account)
    assert (violation.rule, violation.severity, violation.action) == ("news_blackout", "enforced", "flattened")
    assert violation.trade_date == date(2026, 11, 23) and "MES" in violation.detail
    assert Position.objects.get(account=alice_account, instrument__symbol="MESZ6").quantity == 0
    assert Position.objects.get(account=alice_account, instrument__symbol="ESZ6").quantity == 1
    assert venue_position(alice_account, "MESZ6") == 0
    closing = Order.objects.get(account=alice_account, source=OrderSource.RISK)
    assert closing.status == OrderStatus.FILLED and closing.instrument.symbol == "MESZ6"


def test_evaluation_passes_at_the_close_once_target_days_and_consistency_are_met(alice_account, paper, commit):
    no_fees()
    rules(
        alice_account,
        profit_target=Decimal("3000"),
        min_trading_days=2,
        consistency_max_pct=Decimal("50"),
    )
    day = trade_date_for(timezone.now())
    statuses = []
    for points in (30, 32, 2):  # +1,500, +1,600 (best day 51.6% of 3,100), +100 (50.0% of 3,200)
        since = last_fill_pk()
        round_trip_es(alice_account, paper, commit, points=points)
        book_fills_on(alice_account, day, since=since)
        with commit():
            enforcement.roll_account(account_id=alice_account.pk, now=after_close(day))
        alice_account.refresh_from_db()
        statuses.append(alice_account.status)
        day = next_business_day(day)

    assert statuses == [AccountStatus.ACTIVE, AccountStatus.ACTIVE, AccountStatus.PASSED]
    assert alice_account.balance == Decimal("53200")

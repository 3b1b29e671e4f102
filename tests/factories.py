"""factory-boy factories for every model; `.build()` where no database is needed."""

import datetime
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from accounts.domain import Phase
from accounts.models import AccountMembership, Firm, Program, TradingAccount
from brokers.models import BrokerConnection, BrokerKind, Instrument, SizeClass
from brokers.paper.models import VenueAccount, VenueContract
from orders.domain import OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Fill, Order, OrderEvent, Position
from risk.domain import DailyLossMode, DrawdownKind, DrawdownLock, RiskRule, Severity, ViolationAction
from risk.models import (
    AccountDay,
    AccountRiskState,
    AccountRuleOverride,
    ContractLimit,
    MarketClose,
    NewsRelease,
    ProgramRules,
    ScalingTier,
    TradingWindow,
    Violation,
)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"trader{n}")
    password = factory.django.Password("pw")


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class FirmFactory(DjangoModelFactory):
    class Meta:
        model = Firm
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Firm {n}")


class ProgramFactory(DjangoModelFactory):
    class Meta:
        model = Program

    firm = factory.SubFactory(FirmFactory)
    name = factory.Sequence(lambda n: f"50K Evaluation {n}")
    phase = Phase.EVALUATION
    starting_balance = Decimal("50000")


class BrokerConnectionFactory(DjangoModelFactory):
    class Meta:
        model = BrokerConnection

    name = factory.Sequence(lambda n: f"Paper {n}")
    kind = BrokerKind.PAPER


class InstrumentFactory(DjangoModelFactory):
    class Meta:
        model = Instrument
        django_get_or_create = ("symbol",)

    symbol = "MESZ6"
    root = "MES"
    description = "Micro E-mini S&P 500"
    exchange = "CME"
    tick_size = Decimal("0.25")
    tick_value = Decimal("1.25")
    size_class = SizeClass.MICRO
    mini_equivalent = Decimal("0.1")


class TradingAccountFactory(DjangoModelFactory):
    class Meta:
        model = TradingAccount

    name = factory.Sequence(lambda n: f"Account {n}")
    program = factory.SubFactory(ProgramFactory)
    broker_connection = factory.SubFactory(BrokerConnectionFactory)
    broker_account_id = factory.Sequence(lambda n: f"PAPER-T{n:04d}")
    starting_balance = Decimal("50000")
    balance = Decimal("50000")


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = AccountMembership

    account = factory.SubFactory(TradingAccountFactory)
    user = factory.SubFactory(UserFactory)


class OrderFactory(DjangoModelFactory):
    class Meta:
        model = Order

    client_order_id = factory.Sequence(lambda n: f"pd-test-{n}")
    account = factory.SubFactory(TradingAccountFactory)
    instrument = factory.SubFactory(InstrumentFactory)
    side = OrderSide.BUY
    quantity = 1
    order_type = OrderType.MARKET
    source = OrderSource.API
    status = OrderStatus.NEW


class OrderEventFactory(DjangoModelFactory):
    class Meta:
        model = OrderEvent

    order = factory.SubFactory(OrderFactory)
    type = "created"
    occurred_at = factory.Faker("date_time", tzinfo=__import__("datetime").UTC)


class FillFactory(DjangoModelFactory):
    class Meta:
        model = Fill

    order = factory.SubFactory(OrderFactory)
    account = factory.SelfAttribute("order.account")
    instrument = factory.SelfAttribute("order.instrument")
    broker_fill_id = factory.Sequence(lambda n: f"fill-{n}")
    side = OrderSide.BUY
    quantity = 1
    price = Decimal("5000.25")
    trade_date = factory.Faker("date_object")
    occurred_at = factory.Faker("date_time", tzinfo=__import__("datetime").UTC)


class PositionFactory(DjangoModelFactory):
    class Meta:
        model = Position

    account = factory.SubFactory(TradingAccountFactory)
    instrument = factory.SubFactory(InstrumentFactory)


class VenueContractFactory(DjangoModelFactory):
    class Meta:
        model = VenueContract
        django_get_or_create = ("symbol",)

    symbol = "MESZ6"
    tick_size = Decimal("0.25")
    tick_value = Decimal("1.25")
    start_price = Decimal("5000.00")
    fee_per_contract = Decimal("0.37")


class VenueAccountFactory(DjangoModelFactory):
    class Meta:
        model = VenueAccount

    ref = factory.Sequence(lambda n: f"PAPER-V{n:04d}")
    stream_key = "0"
    cash = Decimal("50000")


# -- Risk --------------------------------------------------------------------------------------


class ProgramRulesFactory(DjangoModelFactory):
    """Topstep-50K-like figures: EOD trailing 2,000 locking at the start, 5 contracts, micros 0.1."""

    class Meta:
        model = ProgramRules

    program = factory.SubFactory(ProgramFactory)
    daily_loss_mode = DailyLossMode.OFF
    drawdown_kind = DrawdownKind.EOD_TRAILING
    drawdown_amount = Decimal("2000")
    drawdown_lock = DrawdownLock.STARTING_BALANCE
    max_contracts = 5
    micro_weight = Decimal("0.1")
    time_zone = "America/Chicago"
    flat_by = datetime.time(15, 10)


class AccountRuleOverrideFactory(DjangoModelFactory):
    class Meta:
        model = AccountRuleOverride

    account = factory.SubFactory(TradingAccountFactory)
    max_contracts = 2
    reason = "New trader: half size."


class ContractLimitFactory(DjangoModelFactory):
    class Meta:
        model = ContractLimit

    program = factory.SubFactory(ProgramFactory)
    root = "CL"
    max_contracts = 2


class ScalingTierFactory(DjangoModelFactory):
    class Meta:
        model = ScalingTier

    program = factory.SubFactory(ProgramFactory)
    threshold = Decimal("1500")
    max_contracts = 3


class TradingWindowFactory(DjangoModelFactory):
    class Meta:
        model = TradingWindow

    program = factory.SubFactory(ProgramFactory)
    weekday = 0
    starts_at = datetime.time(8, 30)
    ends_at = datetime.time(15, 0)


class MarketCloseFactory(DjangoModelFactory):
    class Meta:
        model = MarketClose

    roots = factory.LazyFunction(lambda: ["ZC", "ZW"])
    closes_at = datetime.time(13, 20)
    reason = "Grains day-session close"


class NewsReleaseFactory(DjangoModelFactory):
    class Meta:
        model = NewsRelease

    title = "US CPI"
    at = factory.Faker("date_time", tzinfo=datetime.UTC)


class AccountRiskStateFactory(DjangoModelFactory):
    class Meta:
        model = AccountRiskState

    account = factory.SubFactory(TradingAccountFactory)
    trade_date = factory.Faker("date_object")
    eod_high_balance = Decimal("50000")
    peak_equity = Decimal("50000")
    drawdown_floor = Decimal("48000")


class AccountDayFactory(DjangoModelFactory):
    class Meta:
        model = AccountDay

    account = factory.SubFactory(TradingAccountFactory)
    trade_date = factory.Faker("date_object")
    closing_balance = Decimal("50250")
    realized_pnl = Decimal("260")
    fees = Decimal("10")
    fills = 4


class ViolationFactory(DjangoModelFactory):
    class Meta:
        model = Violation

    account = factory.SubFactory(TradingAccountFactory)
    rule = RiskRule.DRAWDOWN
    severity = Severity.HARD
    action = ViolationAction.BREACHED
    threshold = Decimal("48000")
    observed = Decimal("47990")
    trade_date = factory.Faker("date_object")
    detail = "Equity 47990 reached the drawdown floor 48000."
    occurred_at = factory.Faker("date_time", tzinfo=datetime.UTC)

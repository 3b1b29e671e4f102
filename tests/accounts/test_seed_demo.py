"""`seed_demo` builds the demo world once and leaves it as it is when run again."""

import json
from datetime import time
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from accounts.models import AccountMembership, Firm, Program, TradingAccount
from brokers.models import BrokerConnection, Instrument
from brokers.paper import venue
from brokers.paper.models import VenueAccount, VenueContract
from brokers.services import DEFAULT_INSTRUMENT_FILE
from risk.models import MarketClose, ProgramRules
from risk.templates import DEFAULT_TEMPLATE_FILE
from signals_in.models import Strategy, Subscription

pytestmark = pytest.mark.django_db

# Tick size and tick value per contract, from shared/docs/PROP_FIRMS_CME_TRADINGVIEW.md section 3.1.
CONTRACT_SPECS = {
    "ESZ6": ("0.25", "12.50"),
    "MESZ6": ("0.25", "1.25"),
    "NQZ6": ("0.25", "5.00"),
    "MNQZ6": ("0.25", "0.50"),
    "YMZ6": ("1", "5.00"),
    "MYMZ6": ("1", "0.50"),
    "RTYZ6": ("0.10", "5.00"),
    "M2KZ6": ("0.10", "0.50"),
    "CLF7": ("0.01", "10.00"),
    "MCLF7": ("0.01", "1.00"),
    "GCG7": ("0.10", "10.00"),
    "MGCG7": ("0.10", "1.00"),
    "6EZ6": ("0.00005", "6.25"),
    "ZNH7": ("0.015625", "15.625"),
    # The next equity index quarter: where continuous symbols (NQ1!) go after the roll.
    "ESH7": ("0.25", "12.50"),
    "MESH7": ("0.25", "1.25"),
    "NQH7": ("0.25", "5.00"),
    "MNQH7": ("0.25", "0.50"),
    "YMH7": ("1", "5.00"),
    "MYMH7": ("1", "0.50"),
    "RTYH7": ("0.10", "5.00"),
    "M2KH7": ("0.10", "0.50"),
}
DEMO_REFS = {"PAPER-0001", "PAPER-0002", "PAPER-0003", "PAPER-0004", "PAPER-0005"}


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "firms": Firm.objects.count(),
        "programs": Program.objects.count(),
        "accounts": TradingAccount.objects.count(),
        "instruments": Instrument.objects.count(),
        "users": get_user_model().objects.count(),
        "memberships": AccountMembership.objects.count(),
        "connections": BrokerConnection.objects.count(),
        "venue_accounts": VenueAccount.objects.count(),
        "venue_contracts": VenueContract.objects.count(),
        "program_rules": ProgramRules.objects.count(),
        "market_closes": MarketClose.objects.count(),
        "rules_history": ProgramRules.history.count(),
    }


def test_seed_demo_twice_gives_the_same_world_and_keeps_tokens():
    first_output = seed()
    first_counts = counts()
    tokens = dict(Token.objects.values_list("user__username", "key"))

    second_output = seed()

    assert counts() == first_counts
    shipped_programs = sum(len(f["programs"]) for f in json.loads(DEFAULT_TEMPLATE_FILE.read_text())["firms"])
    shipped_instruments = len(json.loads(DEFAULT_INSTRUMENT_FILE.read_text())["instruments"])
    assert first_counts == {
        "firms": 5,
        "programs": shipped_programs,
        "accounts": 5,
        "instruments": shipped_instruments,
        "users": 3,
        "memberships": 5,
        "connections": 1,
        "venue_accounts": 5,
        "venue_contracts": shipped_instruments,
        "program_rules": shipped_programs,
        "market_closes": 2,
        "rules_history": shipped_programs,  # one row per created program's rules, none from the second run
    }
    assert dict(Token.objects.values_list("user__username", "key")) == tokens
    assert set(tokens) == {"staff", "alice", "bob"}
    for username, key in tokens.items():
        assert key in first_output and key in second_output, username
    assert "Demo data ready." in second_output


def test_seed_demo_instruments_have_the_cme_tick_sizes_and_values():
    seed()

    specs = {i.symbol: (i.tick_size, i.tick_value) for i in Instrument.objects.all()}
    assert specs == {symbol: (Decimal(size), Decimal(value)) for symbol, (size, value) in CONTRACT_SPECS.items()}
    listed = {c.symbol: (c.tick_size, c.tick_value) for c in VenueContract.objects.filter(is_listed=True)}
    assert listed == specs
    # Spot checks the platform depends on (point value = tick value / tick size).
    assert Instrument.objects.get(symbol="ESZ6").point_value == Decimal("50")
    assert Instrument.objects.get(symbol="ZNH7").point_value == Decimal("1000")
    assert Instrument.objects.get(symbol="6EZ6").point_value == Decimal("125000")


def test_every_demo_account_has_a_venue_account_streaming_to_its_connection():
    seed()

    connection = BrokerConnection.objects.get(name="Paper (demo)")
    accounts = TradingAccount.objects.filter(broker_connection=connection)
    assert {a.broker_account_id for a in accounts} == DEMO_REFS
    for account in accounts:
        venue_account = VenueAccount.objects.get(ref=account.broker_account_id)
        assert venue_account.stream_key == str(connection.pk)
        assert venue_account.cash == account.starting_balance == account.balance == Decimal("50000")


def test_every_listed_contract_has_a_market_price_at_its_start_price():
    seed()

    for contract in VenueContract.objects.filter(is_listed=True):
        assert venue.market_price(contract.symbol) == contract.start_price, contract.symbol
    assert venue.market_price("ESZ6") == Decimal("6800.00")


def test_second_run_keeps_moved_prices_and_venue_cash():
    seed()
    venue.set_market_price(symbol="MESZ6", price=Decimal("6812.25"))
    VenueAccount.objects.filter(ref="PAPER-0001").update(cash=Decimal("49990.26"))

    seed()

    assert venue.market_price("MESZ6") == Decimal("6812.25")
    assert VenueAccount.objects.get(ref="PAPER-0001").cash == Decimal("49990.26")


def test_seed_demo_users_access_and_logins():
    seed()

    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["staff"].is_staff and users["staff"].is_superuser
    assert not users["alice"].is_staff and not users["bob"].is_staff
    assert users["alice"].check_password("propdesk-alice")
    assert set(TradingAccount.objects.visible_to(users["alice"]).values_list("broker_account_id", flat=True)) == {
        "PAPER-0001",
        "PAPER-0002",
    }
    assert set(TradingAccount.objects.visible_to(users["bob"]).values_list("broker_account_id", flat=True)) == {
        "PAPER-0003",
        "PAPER-0004",
        "PAPER-0005",
    }
    assert TradingAccount.objects.visible_to(users["staff"]).count() == 5


def test_demo_accounts_follow_the_firm_templates():
    seed()

    programs = {
        a.broker_account_id: (a.program.firm.name, a.program.name)
        for a in TradingAccount.objects.select_related("program__firm")
    }
    assert programs == {
        "PAPER-0001": ("Topstep", "50K Trading Combine"),
        "PAPER-0002": ("Apex Trader Funding", "50K EOD Evaluation"),
        "PAPER-0003": ("TradeDay", "50K Intraday Evaluation"),
        "PAPER-0004": ("Topstep", "50K Trading Combine"),
        "PAPER-0005": ("Apex Trader Funding", "50K EOD Evaluation"),
    }
    topstep = ProgramRules.objects.get(program__firm__name="Topstep", program__name="50K Trading Combine")
    apex = ProgramRules.objects.get(program__firm__name="Apex Trader Funding", program__name="50K EOD Evaluation")
    tradeday = ProgramRules.objects.get(program__firm__name="TradeDay", program__name="50K Intraday Evaluation")
    assert (topstep.drawdown_kind, topstep.drawdown_amount, topstep.max_contracts, topstep.flat_by) == (
        "eod_trailing",
        Decimal("2000"),
        5,
        time(15, 10),
    )
    assert (apex.daily_loss_mode, apex.automation_allowed) == ("soft", False)
    assert (tradeday.drawdown_kind, tradeday.news_blackout_minutes_before) == ("intraday_trailing", 2)
    assert Program.objects.filter(firm__name="Topstep").count() == 6  # the other templates are there too
    assert MarketClose.objects.filter(roots__contains=["ZC"]).get().closes_at == time(13, 20)


def test_seed_demo_gives_alice_a_strategy_her_accounts_follow_and_its_webhook_once():
    first = seed()
    second = seed()

    strategy = Strategy.objects.get(name="Demo TradingView alerts")
    assert strategy.owner.username == "alice"
    followers = set(Subscription.objects.filter(strategy=strategy).values_list("account__broker_account_id", flat=True))
    assert followers == {"PAPER-0001", "PAPER-0002"}
    assert "Demo strategy webhook (shown once): POST http://127.0.0.1:8000/webhooks/tradingview/" in first
    assert "/webhooks/tradingview/" not in second  # the token's secret exists nowhere to be shown again
    assert strategy.tokens.count() == 1


def test_the_webhook_url_shown_is_on_the_port_make_run_serves(monkeypatch):
    monkeypatch.setenv("WEB_PORT", "8765")  # make run exports it (and starts the web server there)

    assert "POST http://127.0.0.1:8765/webhooks/tradingview/" in seed()

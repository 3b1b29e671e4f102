"""Demo data for `make run`: the firm templates and market calendar, traders, paper accounts on
template programs, CME instruments.

Idempotent: running it again updates what exists and creates only what is missing.
"""

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token

from accounts.models import AccountMembership, Program, TradingAccount
from accounts.services import grant_account_access, open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.models import BrokerConnection, BrokerKind, Environment
from brokers.paper import feed, venue
from brokers.paper.models import VenueContract
from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
from risk.templates import load_firm_templates, load_market_calendar

# The template program (risk/data/firm_templates.json) each firm's demo accounts follow.
DEMO_PROGRAMS = {
    "Topstep": "50K Trading Combine",
    "Apex Trader Funding": "50K EOD Evaluation",  # the 2026 EOD Trail programme
    "TradeDay": "50K Intraday Evaluation",
}

# Fixed demo logins, printed by seed_demo and listed in the README. Demo only.
USERS = {
    "staff": ("propdesk-staff", True),
    "alice": ("propdesk-alice", False),
    "bob": ("propdesk-bob", False),
}

ACCOUNTS = [  # name, firm, broker account id, trader
    ("Topstep 50K #1", "Topstep", "PAPER-0001", "alice"),
    ("Apex 50K #1", "Apex Trader Funding", "PAPER-0002", "alice"),
    ("TradeDay 50K #1", "TradeDay", "PAPER-0003", "bob"),
    ("Topstep 50K #2", "Topstep", "PAPER-0004", "bob"),
    ("Apex 50K #2", "Apex Trader Funding", "PAPER-0005", "bob"),
]


@dataclass
class DemoSummary:
    logins: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    accounts: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    # A webhook URL path for the demo strategy: shown once, when the strategy is first created.
    webhook_path: str | None = None


DEMO_STRATEGY = "Demo TradingView alerts"


def _demo_strategy(owner: AbstractBaseUser) -> str | None:
    """Alice's strategy, followed by her accounts (1 contract each); its webhook token is issued
    (and returned) only when the strategy is created: only its hash is kept."""
    from signals_in import strategies  # signals in sit above accounts; the demo wires them together
    from signals_in.models import Strategy, Subscription

    strategy = Strategy.objects.filter(name=DEMO_STRATEGY).first()
    issued = None
    if strategy is None:
        strategy = strategies.create_strategy(name=DEMO_STRATEGY, owner=owner, description="Demo: post alerts here.")
        issued = strategies.issue_webhook_token(strategy=strategy, label="demo")
    for account in TradingAccount.objects.filter(memberships__user=owner):
        Subscription.objects.get_or_create(strategy=strategy, account=account)
    return issued.path if issued else None


def seed_demo() -> DemoSummary:
    summary = DemoSummary()
    with transaction.atomic():
        rows = read_instrument_file(DEFAULT_INSTRUMENT_FILE)
        summary.instruments = [i.symbol for i in load_instruments(rows)]
        venue.list_contracts(rows)

        connection, _ = BrokerConnection.objects.get_or_create(
            name="Paper (demo)", defaults={"kind": BrokerKind.PAPER, "environment": Environment.DEMO}
        )
        load_firm_templates()
        load_market_calendar()
        programs = {
            firm_name: Program.objects.get(firm__name=firm_name, name=program_name)
            for firm_name, program_name in DEMO_PROGRAMS.items()
        }

        user_model = get_user_model()
        users = {}
        for username, (password, is_staff) in USERS.items():
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"is_staff": is_staff, "is_superuser": is_staff}
            )
            if created:
                user.set_password(password)
                user.save()
            users[username] = user
            summary.logins[username] = password
            summary.tokens[username] = Token.objects.get_or_create(user=user)[0].key

        adapter = PaperBroker(connection)
        for name, firm_name, ref, trader in ACCOUNTS:
            account = TradingAccount.objects.filter(broker_connection=connection, broker_account_id=ref).first()
            if account is None:
                account = open_trading_account(
                    name=name, program=programs[firm_name], broker_connection=connection, broker_account_id=ref
                )
            adapter.open_account(account_ref=ref, cash=account.starting_balance)
            if not AccountMembership.objects.filter(account=account, user=users[trader]).exists():
                grant_account_access(user=users[trader], account=account)
            summary.accounts.append(f"{name} ({trader})")
        summary.webhook_path = _demo_strategy(users["alice"])

    # Opening prices, so market orders fill before the simulator has ticked.
    for contract in VenueContract.objects.filter(is_listed=True):
        if venue.market_price(contract.symbol) is None:
            feed.publish_price(symbol=contract.symbol, price=contract.start_price)
    # Compared with the venue once now, so the demo can trade before the first beat run
    # (an account never reconciled may only reduce exposure).
    from orders.reconciliation import ReconciliationTrigger, reconcile_account  # the order layer, above accounts

    for account in TradingAccount.objects.filter(broker_connection=connection):
        reconcile_account(account_id=account.pk, trigger=ReconciliationTrigger.SEED)
    return summary

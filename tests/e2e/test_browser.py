"""In a real browser on the real stack: a trader logs in, sees only her own accounts, trades
from the order ticket and watches the page follow fills and price moves over /ws/live/
without ever reloading it."""

import re
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from playwright.sync_api import Browser, Page, expect, sync_playwright

from accounts.services import grant_account_access, open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.paper.models import VenueOrder
from orders.models import PositionPlan
from risk.services import halt_account
from tests.conftest import load_cme_instruments, token_for
from tests.factories import BrokerConnectionFactory, ProgramFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
# The machine's network is closed: without these, chromium keeps trying background connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium for the module. Playwright's sync API keeps an asyncio loop running in this
    thread (it switches to it with greenlets), which Django's async-safety check mistakes for
    async code calling the ORM; the check is turned off only while this module's browser runs."""
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, live_stack) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=live_stack.base_url)
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    load_cme_instruments()
    connection = BrokerConnectionFactory(name="Paper browser")
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    # The test settings hash with MD5, which the stack (base settings) does not accept.
    alice.password = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    alice.save(update_fields=["password"])
    staff = StaffFactory(username="staff")
    accounts = {}
    for user, ref in ((alice, "PAPER-WEB-A"), (bob, "PAPER-WEB-B")):
        account = open_trading_account(
            name=f"{user.username.title()} 50K Eval",
            program=ProgramFactory(),
            broker_connection=connection,
            broker_account_id=ref,
        )
        PaperBroker(connection).open_account(account_ref=ref, cash=account.starting_balance)
        grant_account_access(user=user, account=account)
        accounts[user.username] = account
    return {"alice": alice, "bob": bob, "staff": staff, "accounts": accounts}


def log_in(page: Page, username: str) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_title("Accounts · propdesk")


def api_for(live_stack, user) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(user)}"})


def set_price(live_stack, staff, symbol: str, price: str) -> None:  # type: ignore[no-untyped-def]
    with api_for(live_stack, staff) as staff_api:
        response = staff_api.post("/api/v1/sim/prices/", json={"symbol": symbol, "price": price})
    assert response.status_code == 200, response.text


def money(value: str | Decimal) -> str:
    """A money figure as the page shows it: thousands grouped, two decimals."""
    return f"{Decimal(value):,.2f}"


def test_static_files_are_served(live_stack):  # type: ignore[no-untyped-def]
    """The stack runs with DEBUG=0: WhiteNoise must still serve the page's script and styles."""
    for path in ("/static/js/live.js", "/static/css/app.css"):
        assert httpx.get(f"{live_stack.base_url}{path}").status_code == 200, path


def test_trader_trades_from_the_page_and_it_follows_live(live_stack, world, page):  # type: ignore[no-untyped-def]
    alice_account = world["accounts"]["alice"]
    api = api_for(live_stack, world["alice"])
    set_price(live_stack, world["staff"], "MES", "5000.25")

    log_in(page, "alice")
    page.evaluate("window.notReloaded = true")  # a reload or navigation would lose it

    # Only her own account.
    expect(page.locator("[data-account]")).to_have_count(1)
    card = page.locator(f'[data-account="{alice_account.pk}"]')
    expect(card.get_by_role("heading", name="Alice 50K Eval")).to_be_visible()
    expect(page.get_by_text("Bob 50K Eval")).to_have_count(0)

    # The page connects to /ws/live/ with the session cookie.
    expect(page.locator("#live-status")).to_have_text("live")

    figures = card.locator(".figures")
    positions = card.locator("table.positions tbody")
    orders = card.locator("table.orders tbody")
    expect(figures.locator('[data-field="equity"]')).to_have_text(money(alice_account.starting_balance))
    expect(positions).to_have_text("Flat.")
    expect(orders).to_have_text("No orders yet.")

    # A market buy of 2 MES from the ticket.
    ticket = card.locator("form[data-ticket]")
    ticket.get_by_label("Symbol").select_option("MESZ6")
    ticket.get_by_label("Quantity").fill("2")
    ticket.get_by_label("Order type").select_option("market")
    ticket.get_by_role("button", name="Buy").click()
    expect(ticket.locator(".ticket-result")).to_have_text(re.compile(r"^Order \d+ \w+$"))
    expect(ticket.locator(".ticket-result")).not_to_have_class(re.compile(r"\berror\b"))

    # The fill arrives over the WebSocket: a position row and the order, filled.
    row = positions.locator('tr[data-symbol="MESZ6"]')
    expect(row.locator('[data-field="quantity"]')).to_have_text("2")
    expect(row.locator('[data-field="avg_price"]')).to_have_text("5000.25")
    order = orders.locator("tr[data-order]")
    expect(order).to_have_count(1)
    expect(order.locator("td").nth(2)).to_have_text("buy")
    expect(order.locator('[data-field="status"]')).to_have_text("filled")

    # Flat price, so equity is the balance after fees; both as the API has them.
    filled = api.get(f"/api/v1/accounts/{alice_account.pk}/").json()
    assert filled["unrealized_pnl"] == "0.00" and filled["equity"] == filled["balance"], filled
    expect(figures.locator('[data-field="balance"]')).to_have_text(money(filled["balance"]))
    expect(figures.locator('[data-field="equity"]')).to_have_text(money(filled["equity"]))

    # Staff moves MES up 4 ticks: 2 contracts x 4 ticks x $1.25 = $10.00 of open profit.
    set_price(live_stack, world["staff"], "MES", "5001.25")
    expect(figures.locator('[data-field="unrealized_pnl"]')).to_have_text("10.00")
    expect(figures.locator('[data-field="unrealized_pnl"]')).to_have_class(re.compile(r"\bup\b"))
    expect(figures.locator('[data-field="equity"]')).to_have_text(money(Decimal(filled["balance"]) + 10))
    expect(row.locator('[data-field="unrealized_pnl"]')).to_have_text("10.00")
    expect(row.locator('[data-field="last_price"]')).to_have_text("5001.25")

    # Close from the row: a sell of 2 fills and the positions list goes flat.
    row.get_by_role("button", name="Close").click()
    expect(ticket.locator(".ticket-result")).to_have_text("Sent.")
    expect(row).to_have_count(0)
    expect(positions).to_have_text("Flat.")
    expect(orders.locator("tr[data-order]")).to_have_count(2)
    expect(orders.locator('tr[data-order] [data-field="status"]')).to_have_text(["filled", "filled"])
    expect(figures.locator('[data-field="unrealized_pnl"]')).to_have_text("0.00")

    assert page.evaluate("window.notReloaded") is True
    assert api.get("/api/v1/positions/", params={"account": alice_account.pk}).json()["results"] == []


def test_bracket_from_the_ticket_puts_its_stop_and_target_at_the_venue(live_stack, world, page):  # type: ignore[no-untyped-def]
    alice_account = world["accounts"]["alice"]
    set_price(live_stack, world["staff"], "MES", "5000.00")
    log_in(page, "alice")
    card = page.locator(f'[data-account="{alice_account.pk}"]')
    expect(page.locator("#live-status")).to_have_text("live")

    ticket = card.locator("form[data-ticket]")
    ticket.get_by_label("Symbol").select_option("MESZ6")
    ticket.get_by_label("Quantity").fill("1")
    ticket.get_by_label("Stop loss ticks").fill("8")
    ticket.get_by_label("Take profit ticks").fill("12")
    ticket.get_by_label("Manage").check()
    ticket.get_by_role("button", name="Buy").click()
    expect(ticket.locator(".ticket-result")).to_have_text(re.compile(r"^Order \d+ \w+$"))

    orders = card.locator("table.orders tbody")
    expect(orders.locator('tr[data-role="stop_loss"] [data-field="status"]')).to_have_text("accepted")
    expect(orders.locator('tr[data-role="take_profit"] [data-field="status"]')).to_have_text("accepted")
    expect(orders.locator('tr[data-role="stop_loss"]')).to_contain_text("stop 4998.00")
    at_venue = VenueOrder.objects.filter(account__ref=alice_account.broker_account_id, status="working")
    assert sorted(at_venue.values_list("order_type", flat=True)) == ["limit", "stop"]
    # "Manage": the position is under a plan from the ticket, R from the 8-tick stop.
    plan = PositionPlan.objects.get(account=alice_account)
    assert (plan.source, plan.initial_stop_price, plan.breakeven_after_ticks) == ("ticket", Decimal("4998.00"), 8)


def test_halted_account_ticket_shows_the_refusal(live_stack, world, page):  # type: ignore[no-untyped-def]
    alice_account = world["accounts"]["alice"]
    halt_account(account=alice_account, reason="Halted for the test.")
    set_price(live_stack, world["staff"], "MES", "5000.25")

    log_in(page, "alice")
    card = page.locator(f'[data-account="{alice_account.pk}"]')
    expect(card.locator('[data-field="trading_state"]')).to_have_text("halted")
    expect(page.locator("#live-status")).to_have_text("live")

    ticket = card.locator("form[data-ticket]")
    ticket.get_by_label("Symbol").select_option("MESZ6")
    ticket.get_by_role("button", name="Buy").click()

    # The API's own sentence, shown as an error.
    result = ticket.locator(".ticket-result")
    expect(result).to_have_text(re.compile(r"^The account is halted\b.*\.$"))
    expect(result).to_have_class(re.compile(r"\berror\b"))

    # The refusal is on record as a denied order (it shows as such), but nothing was sent.
    denied = card.locator("table.orders tr[data-order]")
    expect(denied.locator('[data-field="status"]')).to_have_text("denied")
    expect(card.locator("table.positions tbody")).to_have_text("Flat.")
    with api_for(live_stack, world["alice"]) as api:
        orders = api.get("/api/v1/orders/", params={"account": alice_account.pk}).json()["results"]
    assert [(o["status"], o["filled_quantity"]) for o in orders] == [("denied", 0)], orders
    assert not VenueOrder.objects.exists()

"""Strategy admin: a new webhook URL is shown once in a message and never on a page, the
passphrase is write-only, subscription JSON is checked with clear errors, actions call services."""

import re

import pytest
from django.contrib.messages import get_messages

from signals_in.models import TRADINGVIEW_IPS, Strategy, Subscription, WebhookToken
from signals_in.strategies import create_strategy, passphrase_matches, token_hash
from tests.conftest import admin_url as url

pytestmark = pytest.mark.django_db


@pytest.fixture
def strategy(alice):  # type: ignore[no-untyped-def]
    return create_strategy(name="ORB", owner=alice)


def run_action(staff_client, action: str, *strategies: Strategy):  # type: ignore[no-untyped-def]
    return staff_client.post(
        url(Strategy, "changelist"),
        {"action": action, "_selected_action": [s.pk for s in strategies]},
        follow=True,
    )


def test_issuing_a_token_shows_the_full_url_once_and_never_again(staff_client, strategy):
    response = run_action(staff_client, "issue_token", strategy)

    shown = [str(m) for m in get_messages(response.wsgi_request)] or [response.content.decode()]
    match = re.search(r"http://testserver/webhooks/tradingview/([A-Za-z0-9_-]+)/", " ".join(shown))
    assert match is not None, shown
    raw = match[1]
    token = WebhookToken.objects.get(strategy=strategy)
    assert token.token_hash == token_hash(raw)

    for page in (url(Strategy, "change", strategy.pk), url(Strategy, "changelist")):
        body = staff_client.get(page).content.decode()
        assert raw not in body and token.token_hash not in body
    assert token.prefix in staff_client.get(url(Strategy, "change", strategy.pk)).content.decode()


def test_rotating_revokes_the_old_tokens_and_issues_one(staff_client, strategy):
    run_action(staff_client, "issue_token", strategy)
    old = WebhookToken.objects.get(strategy=strategy)

    run_action(staff_client, "rotate_tokens", strategy)

    old.refresh_from_db()
    assert old.revoked_at is not None
    assert WebhookToken.objects.filter(strategy=strategy, revoked_at__isnull=True).count() == 1


def test_limit_to_tradingview_sets_the_four_addresses(staff_client, strategy):
    run_action(staff_client, "limit_to_tradingview", strategy)

    strategy.refresh_from_db()
    assert strategy.allowed_ips == TRADINGVIEW_IPS


def change_form(strategy: Strategy, **extra: object) -> dict:  # type: ignore[type-arg]
    data = {
        "name": strategy.name,
        "owner": strategy.owner_id,
        "description": "",
        "is_enabled": "on",
        "allowed_ips": "[]",
        "rate_limit_per_minute": 60,
        "tokens-TOTAL_FORMS": 0,
        "tokens-INITIAL_FORMS": 0,
        "subscriptions-TOTAL_FORMS": 0,
        "subscriptions-INITIAL_FORMS": 0,
    }
    data.update(extra)
    return data


def test_the_passphrase_is_set_hashed_and_never_shown(staff_client, strategy):
    response = staff_client.post(url(Strategy, "change", strategy.pk), change_form(strategy, new_passphrase="hunter2"))

    assert response.status_code == 302
    strategy.refresh_from_db()
    assert passphrase_matches(strategy.passphrase_hash, "hunter2")
    body = staff_client.get(url(Strategy, "change", strategy.pk)).content.decode()
    assert "hunter2" not in body and strategy.passphrase_hash not in body

    staff_client.post(url(Strategy, "change", strategy.pk), change_form(strategy, clear_passphrase="on"))
    strategy.refresh_from_db()
    assert strategy.passphrase_hash == ""


def test_a_bad_allowlist_address_is_refused(staff_client, strategy):
    response = staff_client.post(url(Strategy, "change", strategy.pk), change_form(strategy, allowed_ips='["1.2.3"]'))

    assert response.status_code == 200
    assert "is not an IP address" in response.content.decode()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("symbol_map", '["NQ"]', "symbol_map must be an object of product roots"),
        ("symbol_map", '{"NQ": "NOPE"}', "symbol_map names roots we do not list: NOPE"),
        ("trading_windows", '[{"start": "25:00", "end": "15:00"}]', "start is a time HH:MM"),
        ("trading_windows", '{"start": "08:30"}', "trading_windows must be a list of windows"),
    ],
)
def test_subscription_json_is_checked_with_clear_errors(staff_client, strategy, alice_account, field, value, words):
    form = {
        "strategy": strategy.pk,
        "account": alice_account.pk,
        "is_enabled": "on",
        "sizing_mode": "fixed",
        "fixed_quantity": 1,
        "multiplier": "1",
        "symbol_map": "{}",
        "trading_windows": "[]",
        "allow_reversals": "on",
    }
    form[field] = value

    response = staff_client.post(url(Subscription, "add"), form)

    assert response.status_code == 200
    assert words in response.content.decode()
    assert not Subscription.objects.exists()


def test_a_good_subscription_is_saved_from_the_admin(staff_client, strategy, alice_account):
    response = staff_client.post(
        url(Subscription, "add"),
        {
            "strategy": strategy.pk,
            "account": alice_account.pk,
            "is_enabled": "on",
            "sizing_mode": "fixed",
            "fixed_quantity": 2,
            "multiplier": "1",
            "symbol_map": '{"NQ": "MNQ"}',
            "trading_windows": '[{"days": [0, 1, 2, 3, 4], "start": "08:30", "end": "15:00"}]',
        },
    )

    assert response.status_code == 302
    subscription = Subscription.objects.get()
    assert subscription.symbol_map == {"NQ": "MNQ"}
    assert subscription.trading_windows == [
        {"days": [0, 1, 2, 3, 4], "start": "08:30", "end": "15:00", "tz": "America/Chicago"}
    ]

"""Strategies, webhook tokens and subscriptions over the API: a token's secret is shown once, a
trader sees and touches only their own strategies and subscribes only accounts they may trade."""

import pytest

from accounts.services import grant_account_access
from signals_in.models import TRADINGVIEW_IPS, Signal, Strategy, Subscription, WebhookToken
from signals_in.strategies import create_strategy, passphrase_matches, token_hash

pytestmark = pytest.mark.django_db


def test_a_trader_creates_a_strategy_they_own(alice_api, alice):
    response = alice_api.post(
        "/api/v1/strategies/",
        {"name": "ORB", "passphrase": "s3cret", "limit_to_tradingview": True, "rate_limit_per_minute": 30},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    strategy = Strategy.objects.get(pk=body["id"])
    assert (strategy.owner, strategy.allowed_ips, strategy.rate_limit_per_minute) == (alice, TRADINGVIEW_IPS, 30)
    assert passphrase_matches(strategy.passphrase_hash, "s3cret")
    assert body["has_passphrase"] is True and "passphrase" not in body and "s3cret" not in response.content.decode()
    assert body["tokens"] == []


def test_a_strategy_name_taken_is_a_clear_error(alice_api, bob):
    create_strategy(name="ORB", owner=bob)

    response = alice_api.post("/api/v1/strategies/", {"name": "ORB"}, format="json")

    assert (response.status_code, response.json()["code"], response.json()["field"]) == (400, "name_taken", "name")


def test_traders_list_only_their_own_strategies_and_staff_all(alice_api, bob_api, staff_api, alice, bob):
    create_strategy(name="Alice's", owner=alice)
    create_strategy(name="Bob's", owner=bob)

    def names(api) -> list[str]:  # type: ignore[no-untyped-def]
        return [s["name"] for s in api.get("/api/v1/strategies/").json()["results"]]

    assert names(alice_api) == ["Alice's"]
    assert names(bob_api) == ["Bob's"]
    assert names(staff_api) == ["Alice's", "Bob's"]


def test_another_traders_strategy_is_not_found(alice_api, bob):
    theirs = create_strategy(name="Bob's", owner=bob)

    assert alice_api.get(f"/api/v1/strategies/{theirs.pk}/").status_code == 404
    assert alice_api.patch(f"/api/v1/strategies/{theirs.pk}/", {"is_enabled": False}, format="json").status_code == 404
    assert alice_api.post(f"/api/v1/strategies/{theirs.pk}/tokens/", {}, format="json").status_code == 404
    assert not WebhookToken.objects.exists()
    assert Strategy.objects.get(pk=theirs.pk).is_enabled


def test_a_strategy_is_changed_in_part(alice_api, alice):
    strategy = create_strategy(name="ORB", owner=alice, passphrase="old")

    response = alice_api.patch(
        f"/api/v1/strategies/{strategy.pk}/", {"is_enabled": False, "passphrase": ""}, format="json"
    )

    assert response.status_code == 200
    strategy.refresh_from_db()
    assert (strategy.is_enabled, strategy.passphrase_hash, strategy.name) == (False, "", "ORB")


def test_the_token_is_shown_once_and_never_again(alice_api, alice):
    strategy = create_strategy(name="ORB", owner=alice)

    issued = alice_api.post(f"/api/v1/strategies/{strategy.pk}/tokens/", {"label": "chart 1"}, format="json")

    assert issued.status_code == 201
    body = issued.json()
    raw = body["token"]
    stored = WebhookToken.objects.get(pk=body["id"])
    assert stored.token_hash == token_hash(raw) and raw not in stored.token_hash
    assert (body["prefix"], body["label"]) == (raw[:8], "chart 1")
    assert body["url"] == f"http://testserver/webhooks/tradingview/{raw}/"
    assert issued.headers["Cache-Control"] == "no-store"
    for page in ("/api/v1/strategies/", f"/api/v1/strategies/{strategy.pk}/"):
        text = alice_api.get(page).content.decode()
        assert raw not in text and stored.prefix in text


def test_a_revoked_token_stops_working(alice_api, alice, client):
    strategy = create_strategy(name="ORB", owner=alice)
    issued = alice_api.post(f"/api/v1/strategies/{strategy.pk}/tokens/", {}, format="json").json()

    response = alice_api.delete(f"/api/v1/strategies/{strategy.pk}/tokens/{issued['id']}/")

    assert response.status_code == 204
    assert WebhookToken.objects.get(pk=issued["id"]).revoked_at is not None
    webhook = client.post(issued["url"], data='{"ticker": "NQ1!", "action": "buy"}', content_type="application/json")
    assert webhook.status_code == 404 and not Signal.objects.exists()


def test_a_token_of_another_strategy_cannot_be_revoked_through_mine(alice_api, alice, bob):
    mine = create_strategy(name="Mine", owner=alice)
    theirs = create_strategy(name="Theirs", owner=bob)
    their_token = WebhookToken.objects.create(strategy=theirs, token_hash="0" * 64, prefix="00000000")

    response = alice_api.delete(f"/api/v1/strategies/{mine.pk}/tokens/{their_token.pk}/")

    assert (response.status_code, response.json()["code"]) == (404, "token_not_found")
    assert WebhookToken.objects.get(pk=their_token.pk).revoked_at is None


# -- Subscriptions --------------------------------------------------------------------------------


@pytest.fixture
def alice_strategy(alice):  # type: ignore[no-untyped-def]
    return create_strategy(name="Alice ORB", owner=alice)


def test_a_trader_subscribes_an_account_they_trade_to_their_strategy(alice_api, alice_strategy, alice_account):
    response = alice_api.post(
        "/api/v1/subscriptions/",
        {
            "strategy": alice_strategy.pk,
            "account": alice_account.pk,
            "sizing_mode": "multiplier",
            "multiplier": "2",
            "symbol_map": {"nq": "mnq"},
            "trading_windows": [{"days": [0, 1, 2, 3, 4], "start": "08:30", "end": "15:00", "tz": "America/Chicago"}],
            "allow_adds": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    subscription = Subscription.objects.get(pk=response.json()["id"])
    assert (subscription.strategy, subscription.account, subscription.symbol_map) == (
        alice_strategy,
        alice_account,
        {"NQ": "MNQ"},
    )
    assert subscription.multiplier == 2 and subscription.allow_adds


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("symbol_map", ["NQ", "MNQ"], "invalid_symbol_map"),
        ("symbol_map", {"NQ": "XYZ"}, "invalid_symbol_map"),
        ("trading_windows", [{"days": [7], "start": "08:30", "end": "15:00"}], "invalid_trading_windows"),
        ("trading_windows", [{"start": "8:30", "end": "15:00"}], "invalid_trading_windows"),
        ("trading_windows", [{"start": "08:30", "end": "15:00", "tz": "Mars/Olympus"}], "invalid_trading_windows"),
    ],
)
def test_bad_symbol_maps_and_trading_windows_are_refused(alice_api, alice_strategy, alice_account, field, value, code):
    response = alice_api.post(
        "/api/v1/subscriptions/",
        {"strategy": alice_strategy.pk, "account": alice_account.pk, field: value},
        format="json",
    )

    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == (code, field)
    assert not Subscription.objects.exists()


def test_a_trader_cannot_subscribe_someone_elses_account(alice_api, alice_strategy, bob_account):
    response = alice_api.post(
        "/api/v1/subscriptions/", {"strategy": alice_strategy.pk, "account": bob_account.pk}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (404, "account_not_found")
    assert not Subscription.objects.exists()


def test_a_trader_cannot_subscribe_an_account_they_only_watch(alice_api, alice, alice_strategy, bob_account, commit):
    with commit():
        grant_account_access(user=alice, account=bob_account, can_trade=False)

    response = alice_api.post(
        "/api/v1/subscriptions/", {"strategy": alice_strategy.pk, "account": bob_account.pk}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (400, "not_allowed_to_trade")
    assert not Subscription.objects.exists()


def test_a_trader_cannot_subscribe_to_someone_elses_strategy(alice_api, bob, alice_account):
    theirs = create_strategy(name="Bob ORB", owner=bob)

    response = alice_api.post(
        "/api/v1/subscriptions/", {"strategy": theirs.pk, "account": alice_account.pk}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (404, "strategy_not_found")
    assert not Subscription.objects.exists()


def test_staff_subscribe_any_account_to_any_strategy(staff_api, alice_strategy, bob_account):
    response = staff_api.post(
        "/api/v1/subscriptions/", {"strategy": alice_strategy.pk, "account": bob_account.pk}, format="json"
    )

    assert response.status_code == 201
    assert Subscription.objects.get().account == bob_account


def test_subscriptions_are_listed_changed_and_deleted_only_by_their_traders(
    alice_api, bob_api, alice_strategy, alice_account
):
    subscription = Subscription.objects.create(strategy=alice_strategy, account=alice_account)
    url = f"/api/v1/subscriptions/{subscription.pk}/"

    assert [s["id"] for s in alice_api.get("/api/v1/subscriptions/").json()["results"]] == [subscription.pk]
    assert bob_api.get("/api/v1/subscriptions/").json()["results"] == []
    assert bob_api.get(url).status_code == 404
    assert bob_api.patch(url, {"is_enabled": False}, format="json").status_code == 404
    assert bob_api.delete(url).status_code == 404

    changed = alice_api.patch(url, {"is_enabled": False, "max_quantity": 3}, format="json")
    assert changed.status_code == 200 and changed.json()["max_quantity"] == 3
    subscription.refresh_from_db()
    assert (subscription.is_enabled, subscription.max_quantity) == (False, 3)

    assert alice_api.delete(url).status_code == 204
    assert not Subscription.objects.exists()


def test_the_api_needs_authentication(client):
    assert client.get("/api/v1/strategies/").status_code == 401
    assert client.get("/api/v1/subscriptions/").status_code == 401

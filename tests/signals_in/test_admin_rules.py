"""Staff screens for automation rules, their decisions and prediction feeds."""

import pytest

from signals_in.models import AutomationRule, FeedPoll, PredictionFeed, RuleDecision, Strategy
from tests.conftest import admin_url as url
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
SECRET = "feed-key-5c1e-DO-NOT-SHOW"


@pytest.fixture
def strategy(db) -> Strategy:  # type: ignore[no-untyped-def]
    return Strategy.objects.create(name="Admin strategy", owner=UserFactory())


def form(**fields) -> dict:  # type: ignore[no-untyped-def]
    return {"name": "My rule", "priority": "10", "cooldown_seconds": "0", "is_enabled": "on", **fields}


def test_the_add_page_offers_the_templates_and_fills_one_in(staff_client):
    page = staff_client.get(url(AutomationRule, "add"))
    filled = staff_client.get(url(AutomationRule, "add") + "?template=buy_with_brackets")

    assert page.status_code == filled.status_code == 200
    for label in ("Buy with brackets", "Sell / close all", "Scale in", "End-of-day close"):
        assert label in page.content.decode()
    form_initial = filled.context["adminform"].form.initial
    assert form_initial["action"]["take_profit_ticks"] == 40
    assert form_initial["conditions"] == {"signal": {"action": "buy"}, "position": "flat"}


def test_a_rule_is_created_from_a_template_choice(staff_client, strategy):
    response = staff_client.post(
        url(AutomationRule, "add"), form(template="sell_close_all", strategy=str(strategy.pk), conditions="", action="")
    )

    assert response.status_code == 302
    rule = AutomationRule.objects.get()
    assert (rule.template, rule.conditions, rule.action) == (
        "sell_close_all",
        {"signal": {"action": "sell"}},
        {"kind": "close_all"},
    )


def test_a_bad_rule_is_refused_with_an_error_on_each_field_and_nothing_stored(staff_client, strategy):
    response = staff_client.post(
        url(AutomationRule, "add"),
        form(
            strategy=str(strategy.pk),
            conditions='{"signal": {"action": "buy"}, "time_window": {"start": "8:3x", "end": "15:00"}}',
            action='{"kind": "open", "side": "buy", "quantity": 0}',
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["conditions"] == ["time_window.start: must be a time as HH:MM (got '8:3x')."]
    assert errors["action"] == ["quantity: must be a whole number from 1 to 10000."]
    assert not AutomationRule.objects.exists()


def test_a_signal_rule_needs_a_strategy(staff_client):
    response = staff_client.post(
        url(AutomationRule, "add"), form(conditions='{"signal": {}}', action='{"kind": "close_all"}')
    )

    assert "needs the strategy" in response.context["adminform"].form.errors["strategy"][0]
    assert not AutomationRule.objects.exists()


def test_decisions_are_read_only_and_filtered_by_rule_account_and_fired(staff_client, alice_account, strategy):
    rule = AutomationRule.objects.create(name="R", strategy=strategy, action={"kind": "close_all"})
    RuleDecision.objects.create(rule=rule, account=alice_account, trigger="signal", fired=True, reason="fired")
    RuleDecision.objects.create(rule=rule, account=alice_account, trigger="signal", fired=False, reason="held")

    fired = staff_client.get(url(RuleDecision, "changelist") + f"?fired__exact=1&rule__id__exact={rule.pk}")
    by_account = staff_client.get(url(RuleDecision, "changelist") + f"?account__id__exact={alice_account.pk}")

    assert [d.reason for d in fired.context["cl"].result_list] == ["fired"]
    assert by_account.context["cl"].result_count == 2
    assert staff_client.get(url(RuleDecision, "add")).status_code == 403


def test_feed_headers_are_never_shown_back_only_their_names(staff_client, strategy):
    response = staff_client.post(
        url(PredictionFeed, "add"),
        {
            "name": "Model A",
            "url": "http://127.0.0.1:1/predictions",
            "strategy": str(strategy.pk),
            "is_enabled": "on",
            "poll_interval_seconds": "15",
            "timeout_seconds": "0.5",
            "min_confidence": "0.6",
            "new_headers": f'{{"X-Api-Key": "{SECRET}"}}',
            "polls-TOTAL_FORMS": "0",
            "polls-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    feed = PredictionFeed.objects.get()
    assert feed.headers == {"X-Api-Key": SECRET}

    page = staff_client.get(url(PredictionFeed, "change", feed.pk)).content.decode()
    listing = staff_client.get(url(PredictionFeed, "changelist")).content.decode()

    assert "X-Api-Key" in page
    assert SECRET not in page and SECRET not in listing


def test_poll_now_records_the_poll_and_shows_the_error(staff_client, strategy):
    feed = PredictionFeed.objects.create(
        name="Down", url="http://127.0.0.1:1/predictions", strategy=strategy, headers={"Authorization": SECRET}
    )

    response = staff_client.post(
        url(PredictionFeed, "changelist"), {"action": "poll_now", "_selected_action": [str(feed.pk)]}, follow=True
    )

    poll = FeedPoll.objects.get(feed=feed)
    assert (poll.ok, poll.error) == (False, "Could not reach the feed: ConnectError.")
    text = response.content.decode()
    assert "Could not reach the feed" in text and SECRET not in text
    change = staff_client.get(url(PredictionFeed, "change", feed.pk)).content.decode()
    assert "Could not reach the feed" in change  # the health fields and the polls inline

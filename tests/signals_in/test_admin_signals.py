"""The signals admin: list with outcome counts, read-only outcomes inline, secrets masked, process again."""

import pytest

from orders.models import Order
from signals_in import fanout
from signals_in.admin.signals import masked_body
from signals_in.models import OutcomeStatus, Signal, SignalOutcome, SignalStatus
from tests.conftest import admin_url as url
from tests.signals_in.test_fanout import make_signal, make_strategy, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def processed(alice_account, bob_account, commit):  # type: ignore[no-untyped-def]
    strategy = make_strategy(name="Admin trend")
    subscribe(strategy, alice_account)
    subscribe(strategy, bob_account, sizing_mode="risk")  # no risk amount: skipped
    signal = make_signal(strategy, raw_body='{"ticker": "MES1!", "action": "buy", "passphrase": "hunter2-secret"}')
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    return signal


def test_list_shows_status_and_outcome_counts(staff_client, processed):
    page = staff_client.get(url(Signal, "changelist"))
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [processed]
    assert "1 ordered, 1 skipped" in page.content.decode()
    assert staff_client.get(url(Signal, "changelist"), {"status__exact": "processed"}).context["cl"].result_count == 1
    assert staff_client.get(url(Signal, "changelist"), {"status__exact": "failed"}).context["cl"].result_count == 0


def test_detail_is_read_only_with_outcomes_and_masks_the_passphrase(staff_client, processed, alice_account):
    page = staff_client.get(url(Signal, "change", processed.pk))
    body = page.content.decode()
    assert page.status_code == 200
    assert "hunter2-secret" not in body and "•••" in body
    assert alice_account.name in body and "no_risk_amount" in body
    # Nothing about it can be changed or deleted.
    assert staff_client.post(url(Signal, "change", processed.pk), {"status": "failed"}).status_code == 403
    assert staff_client.post(url(Signal, "delete", processed.pk), {"post": "yes"}).status_code == 403
    assert Signal.objects.get(pk=processed.pk).status == SignalStatus.PROCESSED


def test_process_again_only_for_failed_signals(staff_client, processed, bob_account, commit):
    SignalOutcome.objects.filter(signal=processed, account=bob_account).update(
        status=OutcomeStatus.FAILED, reason_code="unexpected_error"
    )
    Signal.objects.filter(pk=processed.pk).update(status=SignalStatus.FAILED)
    processed.strategy.subscriptions.filter(account=bob_account).update(fixed_quantity=1, sizing_mode="fixed")
    with commit():
        response = staff_client.post(
            url(Signal, "changelist"), {"action": "process_again", "_selected_action": [processed.pk]}, follow=True
        )
    assert "1 signal(s) queued" in response.content.decode()
    assert SignalOutcome.objects.get(signal=processed, account=bob_account).status == OutcomeStatus.ORDERED
    assert Order.objects.filter(account=bob_account).count() == 1
    assert Order.objects.filter(account=processed.outcomes.exclude(account=bob_account).get().account).count() == 1
    assert Signal.objects.get(pk=processed.pk).status == SignalStatus.PROCESSED

    again = staff_client.post(
        url(Signal, "changelist"), {"action": "process_again", "_selected_action": [processed.pk]}, follow=True
    )
    assert "only failed signals" in again.content.decode()


def test_masked_body_masks_key_value_lines_too():
    assert masked_body("ticker=MES\npassphrase=abc123") == "ticker=MES\npassphrase=•••"
    assert "abc" not in masked_body('{"nested": {"token": "abc"}}')

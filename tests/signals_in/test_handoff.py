"""The hand-off process (signals_in.handoff): a committed webhook signal is notified and handed to
the fan-out at once, nothing before its commit, rejected signals never; the sweep hands off what a
lost notification or publish left RECEIVED, again only after the retry interval."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
from signals_in import handoff
from signals_in.handoff import HANDOFF_RETRY_AFTER, HandOffLoop, received_signals
from signals_in.intake import WebhookRequest, receive_tradingview_webhook
from signals_in.models import TRADINGVIEW_IPS, OutcomeStatus, Signal, SignalOutcome, SignalStatus, Subscription
from signals_in.strategies import create_strategy, issue_webhook_token
from signals_in.tasks.fanout import process_signal_task
from tests.factories import UserFactory


def deliver(token: str, body: str):  # type: ignore[no-untyped-def]
    return receive_tradingview_webhook(
        WebhookRequest(token=token, body=body.encode(), content_type="text/plain", remote_addr=TRADINGVIEW_IPS[0])
    )


@pytest.fixture
def sweeping_loop():  # type: ignore[no-untyped-def]
    """A hand-off loop that only sweeps (as on SQLite): it sees this test's uncommitted rows."""
    loop = HandOffLoop()
    loop.listens = False
    return loop


@pytest.mark.django_db(transaction=True)
def test_a_committed_signal_is_notified_and_handed_off_at_once_and_only_after_commit(processed):
    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    token = issue_webhook_token(strategy=create_strategy(name="Notified", owner=UserFactory())).raw
    loop = HandOffLoop()
    try:
        assert loop.run_once(wait=0) == []  # listening, and the first sweep found nothing

        with transaction.atomic():
            signal_id = deliver(token, '{"ticker": "MNQ1!", "action": "buy"}').body["signal_id"]
            assert loop.run_once(wait=0.3) == []  # not committed: not notified
        assert loop.run_once(wait=5) == [signal_id]
        assert processed == [signal_id]

        deliver(token, '{"ticker": "MNQ1!", "action": "hold"}')  # stored as rejected
        assert loop.run_once(wait=0.3) == []
        assert processed == [signal_id]
    finally:
        loop.close()


def test_the_sweep_fans_out_a_signal_whose_hand_off_was_lost_once_the_retry_interval_has_passed(
    paper, alice, commit, monkeypatch, sweeping_loop
):
    strategy = create_strategy(name="Lost hand-off", owner=alice)
    account = paper.open_account("Follower", ref="PAPER-LOST")
    Subscription.objects.create(strategy=strategy, account=account, fixed_quantity=2)
    signal_id = deliver(issue_webhook_token(strategy=strategy).raw, '{"ticker": "MES1!", "action": "buy"}').body[
        "signal_id"
    ]

    def redis_down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis is down")

    with monkeypatch.context() as patched, commit():
        patched.setattr(process_signal_task, "delay", redis_down)
        assert sweeping_loop.run_once(wait=0) == [signal_id]  # tried; the publish failed (logged)
    assert Signal.objects.get(pk=signal_id).status == SignalStatus.RECEIVED
    assert not SignalOutcome.objects.exists()

    sweeping_loop.next_sweep = 0.0
    assert sweeping_loop.run_once(wait=0) == []  # handed off moments ago: probably still queued

    sweeping_loop.handed_off_at[signal_id] -= HANDOFF_RETRY_AFTER.total_seconds()
    sweeping_loop.next_sweep = 0.0
    with commit():
        assert sweeping_loop.run_once(wait=0) == [signal_id]

    outcome = SignalOutcome.objects.get(signal_id=signal_id, account=account)
    assert outcome.status == OutcomeStatus.ORDERED
    assert (outcome.order.side, outcome.order.quantity, outcome.order.instrument.root) == ("buy", 2, "MES")
    assert Signal.objects.get(pk=signal_id).status == SignalStatus.PROCESSED


def test_the_sweep_takes_received_signals_of_the_last_five_minutes_oldest_first(alice, processed):
    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    token = issue_webhook_token(strategy=create_strategy(name="Sweep", owner=alice)).raw
    now = timezone.now()
    ids = {}
    for name, seconds in {"new": 5, "lost": 40, "lost earlier": 280, "too old to trade": 400}.items():
        ids[name] = deliver(token, f'{{"ticker": "NQ1!", "action": "buy", "comment": "{name}"}}').body["signal_id"]
        Signal.objects.filter(pk=ids[name]).update(received_at=now - timedelta(seconds=seconds))
    settled = deliver(token, '{"ticker": "NQ1!", "action": "sell"}').body["signal_id"]
    Signal.objects.filter(pk=settled).update(status=SignalStatus.PROCESSED)
    deliver(token, '{"ticker": "NQ1!", "action": "hold"}')  # rejected

    assert received_signals(now=now) == [ids["lost earlier"], ids["lost"], ids["new"]]


def test_a_batch_is_published_together_and_a_failed_publish_never_raises(monkeypatch, caplog):
    published: list[int] = []
    monkeypatch.setattr(process_signal_task, "delay", published.append)
    handoff.enqueue_processing([3, 4])
    assert published == [3, 4]

    def redis_down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(process_signal_task, "delay", redis_down)
    handoff.enqueue_processing([5])  # logged, not raised: the sweep tries again
    assert "could not be enqueued" in caplog.text

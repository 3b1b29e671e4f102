"""Polling prediction feeds against a real local HTTP server serving recorded answers."""

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone

from brokers.models import Instrument
from signals_in import feeds
from signals_in.models import FeedPoll, PredictionFeed, Signal, SignalSource, SignalStatus, Strategy
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "predictions"
D = Decimal
API_KEY = "feed-secret-7f3a-NEVER-SHOWN"


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True
    seen_headers: list[dict[str, str]]
    slow_seconds = 2.0


class FeedHandler(BaseHTTPRequestHandler):
    server: FeedServer

    def do_GET(self) -> None:  # http.server calls it by this name
        self.server.seen_headers.append(dict(self.headers))
        if self.path == "/slow":
            time.sleep(self.server.slow_seconds)
            self._answer(200, b"[]")
        elif self.path == "/error":
            self._answer(500, b"internal error")
        elif (FIXTURES / self.path.lstrip("/")).is_file():
            self._answer(200, (FIXTURES / self.path.lstrip("/")).read_bytes())
        else:
            self._answer(404, b"not found")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up (the timeout test)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer(("127.0.0.1", 0), FeedHandler)
    server.seen_headers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def strategy(paper) -> Strategy:  # type: ignore[no-untyped-def]
    return Strategy.objects.create(name="Momentum model", owner=UserFactory())


def front(root: str) -> str:
    return Instrument.objects.front_of(root).first().symbol


def make_feed(server: FeedServer, strategy: Strategy, path: str, **fields) -> PredictionFeed:  # type: ignore[no-untyped-def]
    host, port = server.server_address[:2]
    defaults = {"name": f"feed {path}", "url": f"http://{host}:{port}/{path}", "strategy": strategy}
    return PredictionFeed.objects.create(**{**defaults, **fields})


def test_a_poll_turns_new_predictions_into_signals_and_enqueues_their_fan_out(
    feed_server, strategy, paper, processed, commit
):
    feed = make_feed(feed_server, strategy, "list.json", confidence_sizing=True, headers={"X-Api-Key": API_KEY})

    with commit():
        poll = feeds.poll_feed_now(feed_id=feed.pk)

    signals = {s.external_id: s for s in Signal.objects.filter(strategy=strategy)}
    assert set(signals) == {"pred-1001", "pred-1002", "pred-1003"}
    mnq = signals["pred-1001"]
    assert (mnq.source, mnq.status, mnq.action, mnq.instrument.symbol, mnq.confidence) == (
        SignalSource.PREDICTION,
        SignalStatus.RECEIVED,
        "buy",
        front("MNQ"),  # the root's front contract by the roll table
        D("0.82"),
    )
    assert mnq.payload["size_by_confidence"] is True and mnq.payload["horizon"] == "30m"
    assert (signals["pred-1002"].action, signals["pred-1002"].instrument.symbol) == ("sell", "MESZ6")  # SHORT
    assert signals["pred-1003"].action == "sell"
    assert sorted(processed) == sorted(s.pk for s in signals.values())
    assert (poll.ok, poll.http_status, poll.received, poll.accepted, poll.duplicates, poll.skipped) == (
        True,
        200,
        3,
        3,
        0,
        0,
    )
    assert feed_server.seen_headers[-1]["X-Api-Key"] == API_KEY
    feed.refresh_from_db()
    assert feed.last_ok_at == feed.last_polled_at == poll.started_at
    assert (feed.last_error, feed.consecutive_failures) == ("", 0)


def test_a_second_poll_of_the_same_predictions_creates_nothing(feed_server, strategy, processed, commit):
    feed = make_feed(feed_server, strategy, "list.json")
    with commit():
        feeds.poll_feed_now(feed_id=feed.pk)
    with commit():
        second = feeds.poll_feed_now(feed_id=feed.pk)

    assert Signal.objects.filter(strategy=strategy).count() == 3
    assert (second.received, second.accepted, second.duplicates) == (3, 0, 3)
    assert len(processed) == 3
    assert FeedPoll.objects.filter(feed=feed).count() == 2


def test_bad_low_and_unknown_items_are_counted_as_skipped_with_their_reasons(feed_server, strategy, processed, commit):
    feed = make_feed(feed_server, strategy, "mixed.json", min_confidence=D("0.5"))

    with commit():
        poll = feeds.poll_feed_now(feed_id=feed.pk)

    assert list(Signal.objects.values_list("external_id", flat=True)) == ["m-ok"]
    assert (poll.ok, poll.received, poll.accepted, poll.skipped) == (True, 8, 1, 7)
    assert "confidence 0.2000 is below 0.5" in poll.error
    assert "no tradable ZZZ" in poll.error
    assert "is not BUY, SELL or SHORT" in poll.error


def test_continuous_and_explicit_symbols_map_to_contracts(feed_server, strategy, processed, commit):
    feed = make_feed(feed_server, strategy, "wrapped.json")

    with commit():
        feeds.poll_feed_now(feed_id=feed.pk)

    assert dict(Signal.objects.values_list("external_id", "instrument__symbol")) == {"w-1": front("NQ"), "w-2": "ESZ6"}


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("error", 500, "The feed answered HTTP 500."),
        ("missing.json", 404, "The feed answered HTTP 404."),
        ("not_a_list.json", 200, 'The feed answer must be a list of predictions or an object {"predictions": [...]}.'),
    ],
)
def test_a_failing_feed_is_recorded_and_backs_off(feed_server, strategy, processed, path, status, error):
    feed = make_feed(feed_server, strategy, path, poll_interval_seconds=10)

    poll = feeds.poll_feed_now(feed_id=feed.pk)

    assert (poll.ok, poll.http_status, poll.error, poll.accepted) == (False, status, error, 0)
    feed.refresh_from_db()
    assert (feed.last_error, feed.consecutive_failures, feed.last_ok_at) == (error, 1, None)
    assert not Signal.objects.exists()
    # Backed off: due again after 20 s, not 10 s.
    assert not feeds.is_due(feed, now=feed.last_polled_at + timedelta(seconds=19))
    assert feeds.is_due(feed, now=feed.last_polled_at + timedelta(seconds=20))


def test_a_feed_that_does_not_answer_in_time_is_recorded_as_timed_out(feed_server, strategy, processed):
    feed = make_feed(feed_server, strategy, "slow", timeout_seconds=D("0.3"), headers={"Authorization": API_KEY})

    started = time.monotonic()
    poll = feeds.poll_feed_now(feed_id=feed.pk)

    assert time.monotonic() - started < 1.5
    assert (poll.ok, poll.http_status, poll.error) == (False, None, "Timed out after 0.30 s.")
    assert 250 <= poll.duration_ms < 1500
    feed.refresh_from_db()
    assert feed.consecutive_failures == 1 and API_KEY not in feed.last_error


def test_a_recovered_feed_resets_its_failures(feed_server, strategy, processed, commit):
    feed = make_feed(feed_server, strategy, "list.json")
    PredictionFeed.objects.filter(pk=feed.pk).update(consecutive_failures=4, last_error="Timed out after 5 s.")

    with commit():
        feeds.poll_feed_now(feed_id=feed.pk)

    feed.refresh_from_db()
    assert (feed.consecutive_failures, feed.last_error) == (0, "")


def test_only_enabled_due_feeds_are_polled(feed_server, strategy, processed, commit):
    now = timezone.now()
    due = make_feed(feed_server, strategy, "list.json", poll_interval_seconds=15)
    make_feed(feed_server, strategy, "wrapped.json", is_enabled=False)
    recent = make_feed(feed_server, strategy, "mixed.json", poll_interval_seconds=15)
    PredictionFeed.objects.filter(pk=recent.pk).update(last_polled_at=now - timedelta(seconds=5))
    PredictionFeed.objects.filter(pk=due.pk).update(last_polled_at=now - timedelta(seconds=16))

    with commit():
        polls = feeds.poll_due_feeds(now=now)

    assert [p.feed_id for p in polls] == [due.pk]


@pytest.mark.parametrize(("failures", "seconds"), [(0, 15), (1, 30), (3, 120), (6, 600), (40, 600)])
def test_backoff_doubles_per_failure_up_to_the_cap(failures, seconds):
    assert feeds.poll_interval(interval_seconds=15, consecutive_failures=failures) == timedelta(seconds=seconds)


@pytest.mark.django_db(transaction=True)
def test_a_feed_another_worker_is_polling_is_skipped(feed_server):
    strategy = Strategy.objects.create(name="Locked model", owner=UserFactory())
    feed = make_feed(feed_server, strategy, "list.json")
    other = connections.create_connection("default")  # a second worker, holding the row lock
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM signals_in_predictionfeed WHERE id = %s FOR UPDATE", [feed.pk])
            assert cursor.fetchall() == [(feed.pk,)]

        assert feeds.poll_feed_now(feed_id=feed.pk) is None
        assert feeds.poll_due_feeds() == []
    finally:
        other.rollback()
        other.close()
    assert not FeedPoll.objects.exists()

"""Webhook intake (service, on Django's connection): recorded payloads become Signals, duplicates
store nothing, refusals are stored with their reason, and four identical deliveries at once give
one Signal. The hand-off to the fan-out is in test_handoff.py; the same steps on the event loop
in test_webhook_view.py."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from brokers.models import Instrument
from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
from signals_in import fanout, intake
from signals_in.intake import WebhookRequest, client_ip, receive_tradingview_webhook
from signals_in.models import TRADINGVIEW_IPS, Signal, SignalStatus, WebhookToken
from signals_in.strategies import (
    create_strategy,
    issue_webhook_token,
    limit_to_tradingview_ips,
    revoke_webhook_token,
    set_passphrase,
)
from tests.factories import UserFactory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
TV_IP = TRADINGVIEW_IPS[0]


@pytest.fixture
def cme(db) -> None:  # type: ignore[no-untyped-def]
    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))


@pytest.fixture
def strategy(cme, alice):  # type: ignore[no-untyped-def]
    return create_strategy(name="NQ scalper", owner=alice)


@pytest.fixture
def token(strategy) -> str:  # type: ignore[no-untyped-def]
    return issue_webhook_token(strategy=strategy).raw


def deliver(token: str, body: bytes | str, *, ip: str = TV_IP, content_type: str = "text/plain; charset=utf-8"):  # type: ignore[no-untyped-def]
    body = body.encode() if isinstance(body, str) else body
    return receive_tradingview_webhook(
        WebhookRequest(token=token, body=body, content_type=content_type, remote_addr=ip)
    )


def front(root: str) -> Instrument:
    return Instrument.objects.front_of(root).first()


BUY_NQ = '{"ticker": "NQ1!", "action": "buy", "quantity": 1}'


# -- Recorded payloads ---------------------------------------------------------------------------


def expected_signals() -> dict[str, dict]:  # type: ignore[type-arg]
    return {
        "traderspost_limit_bracket.json": {
            "action": "buy",
            "sentiment": "long",
            "ticker": "MNQZ2026",
            "instrument": Instrument.objects.get(symbol="MNQZ6"),
            "quantity": Decimal(2),
            "order_type": "limit",
            "limit_price": Decimal("21000.25"),  # 21000.30 on the 0.25 tick
            "stop_price": None,
            "signal_price": Decimal("21001.75"),
            "signal_time": datetime(2026, 11, 20, 14, 30, tzinfo=UTC),
            "external_id": "tp-7f3a-0001",
            "payload.stop_loss": {"price": "20980.00"},
            "payload.take_profit": {"price": "21040.00"},
        },
        "tradingview_strategy_placeholders.txt": {
            "action": "sell",
            "sentiment": "short",
            "ticker": "NQ1!",
            "instrument": front("NQ"),
            "quantity": Decimal(1),
            "order_type": "market",
            "signal_price": Decimal("21012.25"),
            "signal_time": datetime(2026, 11, 20, 15, 2, tzinfo=UTC),
            "external_id": "",
        },
        "tradingview_exit_flat.txt": {
            "action": "sell",
            "sentiment": "flat",
            "ticker": "CME_MINI:MNQ1!",
            "instrument": front("MNQ"),
            "quantity": Decimal(3),
            "signal_price": Decimal("21020.5"),
        },
        "key_value_lines.txt": {
            "action": "exit",
            "ticker": "MES1!",
            "instrument": front("MES"),
            "quantity": Decimal(1),
            "order_type": "stop",
            "stop_price": Decimal("6790.25"),
            "signal_time": datetime(2026, 11, 20, 16, 0, tzinfo=UTC),
        },
        "crosstrade_semicolons.txt": {
            "action": "buy",
            "ticker": "MNQ 12-26",
            "instrument": Instrument.objects.get(symbol="MNQZ6"),
            "quantity": Decimal(1),
            "order_type": "market",
            "payload.time_in_force": "day",
        },
        "pickmytrade.json": {
            "action": "exit",
            "ticker": "NQ",
            "instrument": front("NQ"),
            "quantity": None,
            "signal_price": Decimal("21030"),
        },
    }


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_each_recorded_format_is_stored_as_a_received_signal(token, strategy, processed, commit, name):
    body = (FIXTURES / name).read_bytes()

    with commit():
        answer = deliver(token, body)

    assert answer.status == 200, answer.body
    assert answer.body == {"signal_id": answer.body["signal_id"], "duplicate": False, "status": "received"}
    signal = Signal.objects.get()
    assert (signal.pk, signal.strategy, signal.status, signal.reject_code) == (
        answer.body["signal_id"],
        strategy,
        SignalStatus.RECEIVED,
        "",
    )
    assert signal.raw_body == body.decode()
    assert (signal.source_ip, signal.content_type) == (TV_IP, "text/plain; charset=utf-8")
    for field, value in expected_signals()[name].items():
        if field.startswith("payload."):
            assert signal.payload[field.removeprefix("payload.")] == value, field
        else:
            assert getattr(signal, field) == value, field
    assert signal.payload["instrument"] == signal.instrument.symbol
    assert processed == []  # the web side fans nothing out: the hand-off process does (test_handoff.py)


# -- Duplicates ---------------------------------------------------------------------------------


def test_the_same_body_on_the_same_token_is_a_duplicate_and_stores_nothing(token, processed, commit):
    with commit():
        first = deliver(token, BUY_NQ)
        again = deliver(token, BUY_NQ)

    assert again.status == 200
    assert again.body == {"signal_id": first.body["signal_id"], "duplicate": True, "status": "received"}
    assert Signal.objects.count() == 1


def test_the_same_body_after_24_hours_is_a_new_signal(token, processed):
    first = deliver(token, BUY_NQ)
    Signal.objects.filter(pk=first.body["signal_id"]).update(received_at=datetime.now(UTC) - timedelta(hours=25))

    again = deliver(token, BUY_NQ)

    assert again.body["duplicate"] is False
    assert Signal.objects.count() == 2


def test_the_same_body_on_another_token_of_the_strategy_is_a_new_signal(token, strategy, processed):
    other = issue_webhook_token(strategy=strategy).raw

    deliver(token, BUY_NQ)
    again = deliver(other, BUY_NQ)

    assert again.body["duplicate"] is False
    assert Signal.objects.count() == 2


def test_the_same_explicit_id_with_another_body_is_a_duplicate(token, processed):
    first = deliver(token, '{"ticker": "NQ1!", "action": "buy", "id": "alert-42", "time": "2026-11-20T10:00:00Z"}')
    again = deliver(token, '{"ticker": "NQ1!", "action": "buy", "id": "alert-42", "time": "2026-11-20T10:00:01Z"}')

    assert again.body == {"signal_id": first.body["signal_id"], "duplicate": True, "status": "received"}
    assert Signal.objects.count() == 1


def test_a_repeated_bad_body_answers_the_same_refusal_without_storing_again(token):
    first = deliver(token, '{"ticker": "NQ1!", "action": "hold"}')
    again = deliver(token, '{"ticker": "NQ1!", "action": "hold"}')

    assert (first.status, again.status) == (400, 400)
    assert again.body["duplicate"] is True and again.body["signal_id"] == first.body["signal_id"]
    assert again.body["code"] == "unknown_action"
    assert Signal.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("same_id_only", [False, True])
def test_four_identical_deliveries_at_once_store_one_signal(monkeypatch, same_id_only):
    monkeypatch.setattr(fanout, "process_signal", lambda *, signal_id: None)
    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))
    strategy = create_strategy(name="Storm", owner=UserFactory(), rate_limit_per_minute=0)
    raw = issue_webhook_token(strategy=strategy).raw
    bodies = [
        f'{{"ticker": "NQ1!", "action": "buy", "id": "storm-1", "comment": "{n if same_id_only else 0}"}}'
        for n in range(4)
    ]
    start, answers, errors = threading.Barrier(4), [], []

    def post(body: str) -> None:
        try:
            start.wait()
            answers.append(deliver(raw, body))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert Signal.objects.count() == 1
    signal_id = Signal.objects.get().pk
    assert sorted(a.body["duplicate"] for a in answers) == [False, True, True, True]
    assert {(a.status, a.body["signal_id"]) for a in answers} == {(200, signal_id)}


# -- Refusals -----------------------------------------------------------------------------------


def test_bad_input_is_stored_as_rejected_with_the_raw_body(token, strategy, processed, commit):
    body = '{"ticker": "NQ1!", "action": "buy", "quantity": "lots"}'
    with commit():
        answer = deliver(token, body)

    assert answer.status == 400
    assert answer.body["code"] == "invalid_quantity" and answer.body["field"] == "quantity"
    signal = Signal.objects.get(pk=answer.body["signal_id"])
    assert (signal.status, signal.reject_code, signal.raw_body) == (SignalStatus.REJECTED, "invalid_quantity", body)
    assert signal.reject_reason == answer.body["detail"]
    assert processed == []  # nothing to fan out


def test_an_unknown_ticker_is_rejected(token):
    answer = deliver(token, '{"ticker": "ZZZ1!", "action": "buy"}')

    assert (answer.status, answer.body["code"]) == (400, "unknown_ticker")
    assert Signal.objects.get().reject_code == "unknown_ticker"


def test_an_unknown_or_revoked_token_is_404_and_stores_nothing(token, strategy):
    assert deliver("x" * 43, BUY_NQ).status == 404
    assert deliver("../../etc", BUY_NQ).status == 404
    revoke_webhook_token(token=WebhookToken.objects.get(strategy=strategy))
    assert deliver(token, BUY_NQ).status == 404
    assert Signal.objects.count() == 0


def test_over_the_rate_limit_is_429_and_not_stored(token, strategy, processed):
    strategy.rate_limit_per_minute = 2
    strategy.save()

    answers = [deliver(token, f'{{"ticker": "NQ1!", "action": "buy", "comment": "{n}"}}') for n in range(3)]

    assert [a.status for a in answers] == [200, 200, 429]
    assert answers[2].body["code"] == "rate_limited" and "Retry-After" in answers[2].headers
    assert Signal.objects.count() == 2


def test_a_source_outside_the_allowlist_is_403_and_stored_as_rejected(token, strategy):
    limit_to_tradingview_ips(strategy=strategy)

    refused = deliver(token, BUY_NQ, ip="203.0.113.9")
    allowed = deliver(token, BUY_NQ, ip=TRADINGVIEW_IPS[3])

    assert (refused.status, refused.body["code"]) == (403, "source_not_allowed")
    assert Signal.objects.get(pk=refused.body["signal_id"]).reject_code == "source_not_allowed"
    # Refused for where it came from, not for what it said: the same body from TradingView is new.
    assert (allowed.status, allowed.body["duplicate"]) == (200, False)


def test_a_disabled_strategy_refuses_and_stores_its_signals(token, strategy):
    strategy.is_enabled = False
    strategy.save()

    answer = deliver(token, BUY_NQ)

    assert (answer.status, answer.body["code"]) == (400, "strategy_disabled")
    assert Signal.objects.get().status == SignalStatus.REJECTED


def test_the_passphrase_is_checked_and_never_stored(token, strategy, processed):
    set_passphrase(strategy=strategy, passphrase="open sesame")

    wrong = deliver(token, '{"ticker": "NQ1!", "action": "buy", "passphrase": "guess"}')
    missing = deliver(token, BUY_NQ)
    right = deliver(token, '{"ticker": "NQ1!", "action": "buy", "passphrase": "open sesame"}')

    assert (wrong.status, wrong.body["code"], missing.body["code"]) == (400, "bad_passphrase", "bad_passphrase")
    assert right.status == 200
    for signal in Signal.objects.all():
        assert "open sesame" not in signal.raw_body and "guess" not in signal.raw_body
        assert "open sesame" not in str(signal.payload)


def test_a_body_over_64_kb_is_rejected_and_kept_cut(token):
    body = '{"ticker": "NQ1!", "action": "buy", "comment": "' + "x" * 70_000 + '"}'

    answer = deliver(token, body)

    assert (answer.status, answer.body["code"]) == (400, "body_too_large")
    assert len(Signal.objects.get().raw_body) == 64 * 1024


def test_with_redis_down_the_rate_limit_is_skipped_and_the_signal_taken(token, strategy, monkeypatch):
    strategy.rate_limit_per_minute = 1
    strategy.save()

    def redis_down():  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(intake, "get_redis", redis_down)
    answers = [deliver(token, f'{{"ticker": "NQ1!", "action": "buy", "comment": "{n}"}}') for n in range(2)]

    assert [a.status for a in answers] == [200, 200]  # not counted, so neither is refused
    assert Signal.objects.filter(status=SignalStatus.RECEIVED).count() == 2


def test_token_use_is_recorded_at_most_once_a_minute(token, strategy, processed, django_assert_num_queries):
    deliver(token, BUY_NQ)
    used = WebhookToken.objects.get(strategy=strategy).last_used_at
    assert used is not None

    # token and ticker in one round trip, then lock + duplicate check + insert + notify in one: no
    # token UPDATE within the minute
    with django_assert_num_queries(2):
        deliver(token, '{"ticker": "NQ1!", "action": "sell"}')
    assert WebhookToken.objects.get(strategy=strategy).last_used_at == used


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        (0, "10.0.0.5", "52.89.214.238", "10.0.0.5"),  # not behind a proxy: the header is ignored
        (1, "10.0.0.5", "1.2.3.4, 52.89.214.238", "52.89.214.238"),  # the client's own entry is not trusted
        (1, "10.0.0.5", None, "10.0.0.5"),
        (0, "not-an-ip", None, None),
    ],
)
def test_the_source_address_trusts_x_forwarded_for_only_behind_our_proxies(
    settings, proxies, remote, forwarded, expected
):
    settings.WEBHOOK_TRUSTED_PROXIES = proxies
    assert client_ip(remote, forwarded) == expected

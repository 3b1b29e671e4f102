"""Reading a prediction feed's answer (pure, no database)."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals_in.predictions import FeedBodyError, InvalidPrediction, parse_feed_body, parse_prediction

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "predictions"
D = Decimal


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_a_list_is_read_leniently_on_case_and_strictly_on_meaning():
    parsed = parse_feed_body(fixture("list.json"))

    assert parsed.skipped == []
    assert [(p.external_id, p.symbol, p.direction, p.action, p.confidence, p.horizon) for p in parsed.predictions] == [
        ("pred-1001", "MNQ", "BUY", "buy", D("0.82"), "30m"),
        ("pred-1002", "MES", "SHORT", "sell", D("0.71"), "1h"),
        ("pred-1003", "MESZ6", "SELL", "sell", D("0.64"), "15"),
    ]


def test_an_object_with_predictions_and_other_key_spellings_is_read():
    parsed = parse_feed_body(fixture("wrapped.json"))

    assert [(p.external_id, p.symbol, p.action, p.confidence) for p in parsed.predictions] == [
        ("w-1", "NQ1!", "buy", D("0.9")),
        ("w-2", "ESZ6", "sell", D("0.55")),
    ]


def test_bad_items_are_skipped_with_a_reason_and_the_good_ones_kept():
    parsed = parse_feed_body(fixture("mixed.json"))

    assert [p.external_id for p in parsed.predictions] == ["m-ok", "m-low", "m-unknown"]
    assert [(s.index, s.code) for s in parsed.skipped] == [
        (1, "missing_id"),
        (2, "unknown_direction"),
        (3, "invalid_confidence"),
        (6, "not_an_object"),
        (7, "repeated_id"),
    ]
    assert parsed.received == 8
    assert parsed.skipped[1].reason == "item 2: direction 'HOLD' is not BUY, SELL or SHORT."


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<html>oops</html>", "malformed_body"),
        (fixture("not_a_list.json"), "no_predictions"),
        (b"42", "no_predictions"),
    ],
)
def test_a_body_that_is_no_feed_answer_is_refused_as_a_whole(body, code):
    with pytest.raises(FeedBodyError) as refused:
        parse_feed_body(body)

    assert refused.value.code == code


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0, D("0")), (1, D("1")), ("0.5", D("0.5")), ("50%", D("0.5")), (0.123456, D("0.1235"))],
)
def test_confidence_is_a_fraction_or_an_explicit_percentage(confidence, expected):
    item = {"id": "x", "symbol": "MES", "direction": "BUY", "confidence": confidence}
    assert parse_prediction(item).confidence == expected


@pytest.mark.parametrize("confidence", [-0.1, 1.01, 50, "NaN", "high", True, None, "150%"])
def test_confidence_outside_zero_to_one_is_refused(confidence):
    item = {"id": "x", "symbol": "MES", "direction": "BUY", "confidence": confidence}
    with pytest.raises(InvalidPrediction) as refused:
        parse_prediction(item)

    assert refused.value.code in {"invalid_confidence", "missing_confidence"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@given(
    items=st.lists(
        json_values
        | st.fixed_dictionaries(
            {
                "id": st.text(max_size=8),
                "symbol": st.text(max_size=8),
                "direction": st.sampled_from(["BUY", "sell", "x"]),
                "confidence": json_values,
            }
        ),
        max_size=8,
    )
)
def test_any_list_of_items_is_either_read_or_skipped_never_raised(items):
    parsed = parse_feed_body(json.dumps(items))

    assert parsed.received == len(items)
    assert all(D(0) <= p.confidence <= D(1) and p.action in {"buy", "sell"} for p in parsed.predictions)

"""GET /api/v1/signals/ and /signals/{id}/: who sees which signals and which accounts' outcomes."""

from decimal import Decimal

import pytest
from django.utils import timezone

from signals_in import fanout
from signals_in.models import OutcomeStatus, SignalStatus
from tests.conftest import client_for
from tests.signals_in.test_fanout import make_signal, make_strategy, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def fanned_out(alice, alice_account, bob_account, commit):  # type: ignore[no-untyped-def]
    """Alice's strategy, followed by her account and bob's; one buy signal processed."""
    strategy = make_strategy(owner=alice, name="Alice trend")
    subscribe(strategy, alice_account)
    subscribe(strategy, bob_account, fixed_quantity=2)
    signal = make_signal(strategy, action="buy", quantity=Decimal(1))
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    return strategy, signal


def test_owner_sees_signal_with_only_the_outcomes_of_accounts_they_can_see(alice_api, alice_account, fanned_out):
    strategy, signal = fanned_out
    listing = alice_api.get("/api/v1/signals/")
    assert listing.status_code == 200
    [row] = listing.json()["results"]
    assert (row["id"], row["strategy"], row["status"], row["symbol"], row["outcome_count"]) == (
        signal.pk,
        strategy.pk,
        SignalStatus.PROCESSED,
        "MESZ6",
        1,
    )
    detail = alice_api.get(f"/api/v1/signals/{signal.pk}/").json()
    [outcome] = detail["outcomes"]
    assert outcome["account"] == alice_account.pk and outcome["status"] == OutcomeStatus.ORDERED
    assert outcome["order"]["status"] == "filled" and outcome["order"]["client_order_id"].startswith("pd-")
    assert outcome["quantity"] == 1 and outcome["latency_ms"] is not None


def test_follower_sees_the_signal_that_reached_their_account(bob_api, bob_account, fanned_out):
    _, signal = fanned_out
    detail = bob_api.get(f"/api/v1/signals/{signal.pk}/")
    assert detail.status_code == 200
    assert [(o["account"], o["quantity"]) for o in detail.json()["outcomes"]] == [(bob_account.pk, 2)]


def test_trader_without_strategy_or_outcome_gets_404(charlie, fanned_out):
    _, signal = fanned_out
    api = client_for(charlie)
    assert api.get("/api/v1/signals/").json()["results"] == []
    response = api.get(f"/api/v1/signals/{signal.pk}/")
    assert response.status_code == 404
    assert response.json()["code"] == "signal_not_found"


def test_staff_sees_every_outcome(staff_api, fanned_out):
    _, signal = fanned_out
    assert len(staff_api.get(f"/api/v1/signals/{signal.pk}/").json()["outcomes"]) == 2


def test_filters_strategy_status_and_since(alice, alice_api, fanned_out):
    _, signal = fanned_out
    other = make_strategy(owner=alice, name="Alice other")
    old = make_signal(
        other, action="sell", received_at=timezone.now() - timezone.timedelta(days=2), status=SignalStatus.REJECTED
    )

    def ids(**params):  # type: ignore[no-untyped-def]
        response = alice_api.get("/api/v1/signals/", params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [signal.pk, old.pk]
    assert ids(strategy=other.pk) == [old.pk]
    assert ids(status="rejected") == [old.pk]
    assert ids(since=(timezone.now() - timezone.timedelta(days=1)).isoformat()) == [signal.pk]


def test_anonymous_is_refused(client, fanned_out):  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/signals/").status_code in (401, 403)

"""The copier in the admin: links validated with clear errors, drift shown, resume and check now
acting through the service, the copy actions listed read-only with filters."""

from decimal import Decimal

import pytest

from orders.domain import OrderSource
from orders.models import Order, Position
from signals_in.models import CopierLink, CopierStatus, CopyAction, CopyActionKind
from tests.conftest import admin_url as url

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(paper):  # type: ignore[no-untyped-def]
    return paper.open_account("Leader", ref="PAPER-L"), paper.open_account("Follower", ref="PAPER-F")


def link_form(leader, follower, **overrides) -> dict:  # type: ignore[no-untyped-def]
    return {
        "leader": leader.pk,
        "follower": follower.pk,
        "is_enabled": "on",
        "ratio": "1",
        "max_quantity": "",
        "symbol_map": '{"ES": "MES"}',
        "on_drift": "correct",
        "drift_tolerance": "0",
        "actions-TOTAL_FORMS": "0",
        "actions-INITIAL_FORMS": "0",
        **overrides,
    }


def test_staff_add_a_link_with_a_cleaned_symbol_map(staff_client, accounts):
    leader, follower = accounts

    response = staff_client.post(url(CopierLink, "add"), link_form(leader, follower, symbol_map='{"es": " mes"}'))

    assert response.status_code == 302
    link = CopierLink.objects.get()
    assert (link.leader, link.follower, link.symbol_map) == (leader, follower, {"ES": "MES"})


@pytest.mark.parametrize(
    ("overrides", "field", "sentence"),
    [
        ({"symbol_map": '["ES", "MES"]'}, "symbol_map", "must be an object of product roots"),
        ({"symbol_map": '{"ES": 5}'}, "symbol_map", "must map a product root to a product root"),
        ({"ratio": "0"}, "ratio", "The ratio must be above zero"),
    ],
)
def test_bad_link_input_is_refused_with_a_sentence_and_nothing_stored(
    staff_client, accounts, overrides, field, sentence
):
    leader, follower = accounts

    response = staff_client.post(url(CopierLink, "add"), link_form(leader, follower, **overrides))

    assert response.status_code == 200
    assert sentence in " ".join(response.context["adminform"].form.errors[field])
    assert not CopierLink.objects.exists()


def test_an_account_cannot_copy_itself_nor_close_a_loop(staff_client, accounts):
    leader, follower = accounts

    itself = staff_client.post(url(CopierLink, "add"), link_form(leader, leader))
    CopierLink.objects.create(leader=leader, follower=follower)
    loop = staff_client.post(url(CopierLink, "add"), link_form(follower, leader))

    assert "An account cannot copy itself" in " ".join(itself.context["adminform"].form.errors["follower"])
    assert "would close a loop" in " ".join(loop.context["adminform"].form.errors["follower"])
    assert CopierLink.objects.count() == 1


def test_list_shows_drift_and_check_now_corrects_it(staff_client, accounts, paper, commit):
    leader, follower = accounts
    link = CopierLink.objects.create(leader=leader, follower=follower, symbol_map={"ES": "MES"})
    Position.objects.create(account=leader, instrument=paper.es, quantity=2, avg_price=Decimal("5000"))

    listing = staff_client.get(url(CopierLink, "changelist")).content.decode()
    assert "MESZ6 wanted +2, has +0" in listing

    with commit():
        response = staff_client.post(
            url(CopierLink, "changelist"), {"action": "check_selected", "_selected_action": [link.pk]}, follow=True
        )

    messages_shown = [str(m) for m in response.context["messages"]]
    assert messages_shown == ["Checked 1 link(s): Follower: corrected drift."], messages_shown
    assert Position.objects.get(account=follower, instrument=paper.mes).quantity == 2
    assert Order.objects.filter(account=follower, source=OrderSource.COPIER).count() == 1
    assert "in line" in staff_client.get(url(CopierLink, "changelist")).content.decode()


def test_resume_lifts_a_quarantine(staff_client, accounts):
    leader, follower = accounts
    link = CopierLink.objects.create(
        leader=leader, follower=follower, status=CopierStatus.QUARANTINED, status_reason="Drift"
    )

    staff_client.post(url(CopierLink, "changelist"), {"action": "resume_selected", "_selected_action": [link.pk]})

    link.refresh_from_db()
    assert (link.status, link.status_reason) == (CopierStatus.ACTIVE, "")
    assert "Resumed by root" in CopyAction.objects.get(link=link).detail


def test_copy_actions_are_listed_read_only_with_filters_and_inline(staff_client, accounts):
    leader, follower = accounts
    link = CopierLink.objects.create(leader=leader, follower=follower)
    CopyAction.objects.create(link=link, kind=CopyActionKind.QUARANTINE, detail="Drift beyond the tolerance")
    CopyAction.objects.create(link=link, kind=CopyActionKind.SKIPPED, detail="Already in line")

    quarantines = staff_client.get(url(CopyAction, "changelist") + "?kind=quarantine").content.decode()
    page = staff_client.get(url(CopierLink, "change", link.pk)).content.decode()

    assert "Drift beyond the tolerance" in quarantines and "Already in line" not in quarantines
    assert page.index("Already in line") < page.index("Drift beyond the tolerance")  # newest first
    assert staff_client.get(url(CopyAction, "add")).status_code == 403

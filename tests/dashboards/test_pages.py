"""The server-rendered accounts page and its activity fragment."""

import pytest
from django.test import Client

from orders import services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderType

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_a_login(client, alice_account):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.get(f"/accounts/{alice_account.pk}/activity/").status_code == 302


def test_login_page_logs_a_trader_in(client, alice, alice_account):
    response = client.post("/login/", {"username": "alice", "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert "Alice 50K" in client.get("/").content.decode()


def test_home_lists_only_the_traders_accounts_with_figures_and_positions(alice, alice_account, bob_account, commit):
    with commit():
        services.submit_order(
            account=alice_account,
            intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=2, order_type=OrderType.MARKET),
            source=OrderSource.API,
        )
    page = logged_in(alice).get("/").content.decode()

    assert "Alice 50K" in page and "Bob 50K" not in page
    assert f'data-account="{alice_account.pk}"' in page
    assert 'data-field="equity"' in page and "49,999.26" not in page  # server sends plain decimals
    assert "49999.26" in page  # balance after 2 x $0.37 fees
    assert 'data-quote="MESZ6"' in page and ">2<" in page
    assert "/static/js/live.js" in page


def test_staff_see_every_account(staff, alice_account, bob_account):
    page = logged_in(staff).get("/").content.decode()
    assert "Alice 50K" in page and "Bob 50K" in page


def test_activity_fragment_is_scoped_to_the_user(alice, alice_account, bob_account):
    client = logged_in(alice)
    mine = client.get(f"/accounts/{alice_account.pk}/activity/")
    assert mine.status_code == 200 and "Positions" in mine.content.decode()
    assert client.get(f"/accounts/{bob_account.pk}/activity/").status_code == 404


def test_api_docs_and_schema_are_served(alice, db):
    client = logged_in(alice)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ("/api/v1/orders/", "/api/v1/positions/{position_id}/close/", "/api/v1/sim/prices/"):
        assert path in text
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and "swagger" in docs.content.decode().lower()

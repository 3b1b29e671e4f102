"""Trader pages: server-rendered, then kept current by /ws/live/ (see static/js/live.js)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.selectors import accounts_visible_to, get_account_for_user
from brokers.selectors import tradable_instruments
from config.errors import NotFoundError
from orders.selectors import recent_orders, value_account, value_accounts
from orders.serializers import AccountSerializer, OrderSerializer


def _activity(account_id: int, valuation_positions: list) -> dict:  # type: ignore[type-arg]
    return {
        "orders": OrderSerializer(recent_orders(account_id=account_id), many=True).data,
        "positions": valuation_positions,
    }


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    accounts = AccountSerializer(value_accounts(list(accounts_visible_to(request.user))), many=True).data
    for account in accounts:
        account["activity"] = _activity(account["id"], account["positions"])
    return render(request, "dashboards/home.html", {"accounts": accounts, "instruments": tradable_instruments()})


@login_required
@require_GET
def account_activity(request: HttpRequest, account_id: int) -> HttpResponse:
    """The positions-and-orders fragment of one account card, re-fetched when orders change."""
    try:
        account = get_account_for_user(user=request.user, account_id=account_id)
    except NotFoundError:
        return HttpResponse(status=404)
    data = AccountSerializer(value_account(account)).data
    return render(
        request, "dashboards/_activity.html", {"account": data, "activity": _activity(account.pk, data["positions"])}
    )

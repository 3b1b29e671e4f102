"""End to end on the real stack: a Celery worker killed between the broker call and recording its
answer leaves exactly one order at the venue, which the reconciliation at the next worker start
settles; drift made on the venue's side (a position closed or opened there, unheard) is found
and corrected by a reconciliation run in the stack's worker."""

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from celery import Celery
from django.conf import settings
from django.utils import timezone

from accounts.services import grant_account_access, open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.paper import venue
from brokers.paper.models import VenueOrder, VenuePosition
from orders import services, tasks
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import DiscrepancyKind, Fill, Order, Position, ReconciliationOutcome, ReconciliationRun
from tests.conftest import load_cme_instruments, token_for
from tests.e2e.conftest import ROOT, STACK_REDIS_URL, stack_environment
from tests.factories import BrokerConnectionFactory, ProgramFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STALL_QUEUE = "e2e-stall"
REF = "PAPER-E2E-R"


def eventually(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not met in {timeout} s")


def stack_celery() -> Celery:
    """A client of the stack's Celery broker: to hand its workers tasks the way beat would."""
    # Not the current app: shared tasks in this test process must stay on the test settings' app.
    client = Celery("e2e-client", broker=STACK_REDIS_URL, set_as_current=False)
    prefix = stack_environment()["REDIS_KEY_PREFIX"]
    client.conf.broker_transport_options = {"global_keyprefix": f"{prefix}:celery:"}
    client.conf.task_serializer = "json"
    return client


def start_worker(logs: Path, name: str, *args: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-c", *args],
        cwd=ROOT,
        env=stack_environment(),
        stdout=(logs / f"{name}.log").open("w"),
        stderr=subprocess.STDOUT,
    )


def run_stalling_worker(marker: str) -> None:
    """Body of a worker subprocess (Django set up) that dies between the broker call and recording
    its answer.

    Its venue takes the order (and commits it), the pushed events are lost, then the worker
    writes `marker` and sleeps until the test kills it with SIGKILL: no answer is ever recorded.
    A solo pool, so the task runs in the process that gets killed.
    """
    from config.celery import app

    place_orders = venue.place_orders

    def place_then_stall(tickets):  # type: ignore[no-untyped-def]
        venue.inject_fault("lose_events")  # else the venue's stream would record the answer for us
        answers = place_orders(tickets)
        Path(marker).write_text(answers[0]["orderId"])
        time.sleep(600)
        return answers

    venue.place_orders = place_then_stall
    app.worker_main(
        ["worker", "-Q", STALL_QUEUE, "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    )


@pytest.fixture
def world():  # type: ignore[no-untyped-def]
    load_cme_instruments()
    connection = BrokerConnectionFactory(name="Paper reconciliation e2e")
    trader, staff = UserFactory(username="recon-trader"), StaffFactory(username="recon-staff")
    account = open_trading_account(
        name="Reconciled 50K", program=ProgramFactory(), broker_connection=connection, broker_account_id=REF
    )
    PaperBroker(connection).open_account(account_ref=REF, cash=account.starting_balance)
    grant_account_access(user=trader, account=account)
    return {"account": account, "trader": trader, "staff": staff}


def api_for(live_stack, user) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(user)}"})


def runs_after(account, when, trigger: str) -> list[ReconciliationRun]:  # type: ignore[no-untyped-def]
    return list(ReconciliationRun.objects.filter(account=account, trigger=trigger, started_at__gt=when))


def test_worker_killed_between_broker_call_and_answer_leaves_one_order_that_reconciliation_settles(
    live_stack, world, tmp_path, monkeypatch
):
    account = world["account"]
    staff_api = api_for(live_stack, world["staff"])
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.25"}).status_code == 200

    # The order row is committed here; its send goes to the worker that will be killed.
    monkeypatch.setattr(tasks, "send_orders_to_broker_task", SimpleNamespace(delay_on_commit=lambda *args: None))
    intent = OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.MARKET)
    order = services.submit_order(account=account, intent=intent, source=OrderSource.API).order
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW

    marker = tmp_path / "venue-took-it"
    started = timezone.now()
    doomed = start_worker(
        live_stack.logs,
        "stalling-worker",
        "import django; django.setup(); from tests.e2e.test_reconciliation import run_stalling_worker; "
        f"run_stalling_worker({str(marker)!r})",
    )
    restarted = None
    try:
        # Its start triggers a reconciliation (run by the stack's worker); let it pass first, so
        # that it is not what finds the fill the venue is about to make.
        eventually(lambda: runs_after(account, started, "startup"), what="the doomed worker's startup run")
        celery = stack_celery()
        celery.send_task("orders.tasks.send_orders_to_broker_task", args=[[order.pk]], queue=STALL_QUEUE)
        eventually(marker.exists, what="the venue taking the order in the doomed worker")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        killed_at = Order.objects.get(pk=order.pk).submitted_at

        # Killed: the venue has the order (filled), our books have no answer at all.
        assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
        assert VenuePosition.objects.get(account__ref=REF, symbol="MESZ6").quantity == 1
        assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTED
        assert not Fill.objects.filter(order=order).exists()

        # A redelivered send (acks_late) finds the order already claimed: nothing goes out again.
        celery.send_task("orders.tasks.send_orders_to_broker_task", args=[[order.pk]], queue="orders")
        time.sleep(1)
        assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTED

        # The worker comes back; at start it reconciles every account. (It only asks about
        # submissions older than ORDER_UNRESOLVED_AFTER: younger ones may still be answered.)
        time.sleep(max(0.0, (killed_at + settings.ORDER_UNRESOLVED_AFTER).timestamp() - time.time()) + 0.5)
        restarted = start_worker(
            live_stack.logs,
            "restarted-worker",
            "from config.celery import app; app.worker_main(['worker', '-Q', 'celery,orders', '-c', '1', "
            "'--without-gossip', '--without-mingle', '--without-heartbeat'])",
        )
        run = eventually(
            lambda: next((r for r in runs_after(account, killed_at, "startup") if r.discrepancies), None),
            timeout=45,
            what="a startup reconciliation that settles the order",
        )
    finally:
        for process in (doomed, restarted):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)

    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, 1), live_stack.log_tail()
    assert run.outcome == ReconciliationOutcome.CORRECTED
    assert list(run.found.values_list("kind", "order_id")) == [(DiscrepancyKind.UNRESOLVED_ORDER, order.pk)]
    assert VenueOrder.objects.filter(account__ref=REF).count() == 1  # exactly one order at the venue
    assert order.events.filter(type="submitted").count() == 1
    assert Fill.objects.filter(order=order).count() == 1
    assert Position.objects.get(account=account).quantity == 1


def test_drift_on_the_venue_side_is_detected_and_corrected(live_stack, world):
    account = world["account"]
    staff_api, trader_api = api_for(live_stack, world["staff"]), api_for(live_stack, world["trader"])
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.25"}).status_code == 200
    response = trader_api.post(
        "/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 2, "type": "market"}
    )
    assert response.status_code == 201, response.text
    eventually(
        lambda: Position.objects.filter(account=account, quantity=2).exists(),
        what=f"the position of 2\n{live_stack.log_tail()}",
    )
    celery = stack_celery()

    # Someone closes the position on the venue's own platform, and its stream loses the news.
    venue.set_market_price(symbol="MESZ6", price=Decimal("5001.00"))
    venue.inject_fault("lose_events")
    venue.close_position(account_ref=REF, symbol="MESZ6")
    time.sleep(0.5)
    assert Position.objects.get(account=account).quantity == 2  # we heard nothing

    before = timezone.now()
    celery.send_task("orders.tasks.reconcile_all_connections_task", kwargs={"trigger": "beat"})
    run = eventually(lambda: next(iter(runs_after(account, before, "beat")), None), what="a beat reconciliation")

    assert run.outcome == ReconciliationOutcome.CORRECTED, run.error
    assert sorted(run.found.values_list("kind", flat=True)) == [
        DiscrepancyKind.EXTERNAL_ORDER,
        DiscrepancyKind.MISSED_FILL,
    ]
    assert Position.objects.get(account=account).quantity == 0
    closing = Order.objects.get(account=account, source=OrderSource.EXTERNAL)
    assert (closing.side, closing.quantity, closing.status) == (OrderSide.SELL, 2, OrderStatus.FILLED)

    # Then a position appears at the venue with no fill behind it: adopted as the broker has it.
    venue.open_position_directly(account_ref=REF, symbol="MESZ6", quantity=-1, avg_price=Decimal("5003.00"))
    before = run.started_at
    celery.send_task("orders.tasks.reconcile_all_connections_task", kwargs={"trigger": "beat"})
    run = eventually(lambda: next(iter(runs_after(account, before, "beat")), None), what="a second run")

    assert list(run.found.values_list("kind", flat=True)) == [DiscrepancyKind.POSITION]
    position = Position.objects.get(account=account)
    assert (position.quantity, position.avg_price) == (-1, Decimal("5003.00"))

    # In line now: the next run finds nothing.
    before = run.started_at
    celery.send_task("orders.tasks.reconcile_all_connections_task", kwargs={"trigger": "beat"})
    run = eventually(lambda: next(iter(runs_after(account, before, "beat")), None), what="a third run")
    assert (run.outcome, run.discrepancies) == (ReconciliationOutcome.CLEAN, 0)

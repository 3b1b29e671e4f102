"""Celery entry points of risk monitoring: thin wrappers around risk.enforcement."""

from celery import shared_task


# risk.enforcement places orders through orders.services, which imports the risk services
# this module is imported by; importing it when the task runs keeps that cycle out.
@shared_task(ignore_result=True)
def mark_to_market_task(symbol: str, trailing: bool = False) -> None:
    from risk import enforcement, services

    if trailing:
        services.release_mark_slot(symbol)
    enforcement.mark_and_monitor(symbol=symbol)


@shared_task(ignore_result=True)
def sweep_accounts_task() -> None:
    from risk import enforcement

    enforcement.monitor_accounts()


@shared_task(ignore_result=True)
def roll_trade_date_task() -> None:
    from risk import enforcement

    enforcement.roll_trade_date()


@shared_task(ignore_result=True)
def enforce_trading_hours_task() -> None:
    from risk import enforcement

    enforcement.enforce_trading_hours()

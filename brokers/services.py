"""Broker connections (enabling, disabling, health) and loading instruments from data."""

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from brokers import registry
from brokers.models import BrokerConnection, Health, Instrument

DEFAULT_INSTRUMENT_FILE = Path(__file__).resolve().parent / "data" / "cme_futures.json"

logger = logging.getLogger(__name__)


def disable_connection(*, connection: BrokerConnection, reason: str) -> None:
    BrokerConnection.objects.filter(pk=connection.pk).update(
        is_enabled=False, health=Health.DOWN, last_error=reason[:1000], updated_at=timezone.now()
    )
    logger.error("Broker connection %s disabled: %s", connection.pk, reason)


def check_connection_health(*, connection: BrokerConnection) -> Health:
    if reason := registry.unavailable_reason(connection.kind):
        health, detail = Health.UNKNOWN, reason
    else:
        report = registry.get_adapter(connection).health()
        health, detail = (Health.OK, "") if report.ok else (Health.DOWN, report.detail)
    fields = {"health": health, "health_checked_at": timezone.now()}
    if detail:
        fields["last_error"] = detail[:1000]
    BrokerConnection.objects.filter(pk=connection.pk).update(**fields)
    return health


def check_all_connections() -> None:
    for connection in BrokerConnection.objects.filter(is_enabled=True):
        check_connection_health(connection=connection)


# -- Instruments --------------------------------------------------------------------------

INSTRUMENT_FIELDS = (
    "root",
    "description",
    "exchange",
    "asset_class",
    "tick_size",
    "tick_value",
    "currency",
    "size_class",
    "mini_equivalent",
    "trading_hours",
    "expires_on",
    "rolls_on",
)


class InstrumentDataError(Exception):
    pass


def load_instruments(rows: list[dict[str, Any]]) -> list[Instrument]:
    """Create or update instruments from data rows (see brokers/data/cme_futures.json)."""
    loaded = []
    with transaction.atomic():
        for number, row in enumerate(rows, start=1):
            missing = {"symbol", "root", "exchange", "tick_size", "tick_value"} - set(row)
            if missing:
                raise InstrumentDataError(f"Row {number}: missing {', '.join(sorted(missing))}.")
            defaults = {f: row[f] for f in INSTRUMENT_FIELDS if f in row}
            for money in ("tick_size", "tick_value", "mini_equivalent"):
                if money in defaults:
                    defaults[money] = Decimal(str(defaults[money]))
            if defaults["tick_size"] <= 0 or defaults["tick_value"] <= 0:
                raise InstrumentDataError(f"Row {number} ({row['symbol']}): tick size and value must be above zero.")
            instrument, _ = Instrument.objects.update_or_create(symbol=row["symbol"].upper(), defaults=defaults)
            loaded.append(instrument)
    return loaded


def read_instrument_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InstrumentDataError(f"Cannot read {path}: {exc}") from exc
    rows = data.get("instruments") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise InstrumentDataError(f'{path} must hold {{"instruments": [...]}}.')
    return rows

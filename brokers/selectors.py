"""Reads of instruments and connections."""

from brokers.models import Instrument
from config.errors import DomainError


class UnknownSymbol(DomainError):
    code = "unknown_symbol"


def resolve_instrument(symbol: str) -> Instrument:
    """An exact contract (MESZ6) or a root (MES, meaning its front month) to a tradable instrument."""
    wanted = (symbol or "").strip().upper()
    instrument = (
        Instrument.objects.tradable().filter(symbol=wanted).first() or Instrument.objects.front_of(wanted).first()
    )
    if instrument is None:
        raise UnknownSymbol(
            f"No tradable instrument {symbol!r}: use a contract like MESZ6 or a root like MES.", field="symbol"
        )
    return instrument

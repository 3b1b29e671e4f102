"""Reads of instruments and connections."""

from datetime import date

from django.db.models import Q

from brokers.models import Instrument
from config.errors import DomainError


class UnknownSymbol(DomainError):
    code = "unknown_symbol"


def resolve_instrument(symbol: str) -> Instrument:
    """An exact contract (MESZ6) or a root (MES, meaning its front month) to a tradable instrument."""
    wanted = (symbol or "").strip().upper()
    candidates = Instrument.objects.tradable().filter(Q(symbol=wanted) | Q(root=wanted))
    # One query for both spellings: the exact contract wins, else the root's earliest expiry.
    ranked = sorted(candidates, key=lambda i: (i.symbol != wanted, i.expires_on or date.max, i.symbol))
    if not ranked:
        raise UnknownSymbol(
            f"No tradable instrument {symbol!r}: use a contract like MESZ6 or a root like MES.", field="symbol"
        )
    return ranked[0]


def tradable_instruments() -> list[Instrument]:
    return list(Instrument.objects.tradable().order_by("root", "expires_on"))


def known_symbols(symbols: list[str]) -> list[str]:
    """Which of these contract symbols exist (quotes may be subscribed for any of them)."""
    wanted = {s.strip().upper() for s in symbols}
    return list(Instrument.objects.filter(symbol__in=wanted).values_list("symbol", flat=True))

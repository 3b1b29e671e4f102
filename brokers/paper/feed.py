"""The simulated market's price feed: each new price reaches propdesk as a quote and the venue
as the market its working orders trade against."""

from datetime import datetime
from decimal import Decimal

from brokers.paper import venue
from brokers.paper.models import VenueContract
from brokers.ticks import is_on_tick, normalize_price
from config.errors import DomainError
from risk import services as risk_services


class NotOnPaperVenue(DomainError):
    code = "not_on_paper_venue"


def publish_price(*, symbol: str, price: Decimal, at: datetime | None = None) -> Decimal:
    contract = VenueContract.objects.filter(symbol=symbol, is_listed=True).first()
    if contract is None:
        raise NotOnPaperVenue(f"{symbol} is not listed on the paper venue.", field="symbol")
    if price <= 0 or not is_on_tick(price, contract.tick_size):
        raise DomainError(
            f"{price} is not a valid {symbol} price (tick {format(contract.tick_size.normalize(), 'f')}).",
            code="price_off_tick",
            field="price",
        )
    price = normalize_price(price, contract.tick_size)
    # Propdesk first, so fills the venue reports next are valued at the new price.
    risk_services.apply_price(symbol=symbol, price=price, at=at)
    venue.set_market_price(symbol=symbol, price=price)
    return price

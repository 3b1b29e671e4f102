"""Which adapter class serves which broker kind; imported lazily so unused SDKs never load."""

from django.conf import settings
from django.utils.module_loading import import_string

from brokers.errors import BrokerUnavailable
from brokers.interface import BrokerAdapter
from brokers.models import BrokerConnection, BrokerKind

ADAPTERS: dict[str, str] = {
    BrokerKind.PAPER: "brokers.adapters.paper.PaperBroker",
}


def unavailable_reason(kind: str) -> str | None:
    """Why connections of this kind cannot take orders on this deployment, or None."""
    if kind not in ADAPTERS:
        return f"Orders cannot be sent to {BrokerKind(kind).label} connections yet."
    if kind == BrokerKind.PAPER and not settings.PAPER_BROKER_ENABLED:
        return "The paper broker is disabled on this deployment (PAPER_BROKER_ENABLED)."
    return None


def get_adapter(connection: BrokerConnection) -> BrokerAdapter:
    reason = unavailable_reason(connection.kind)
    if reason:
        raise BrokerUnavailable(reason)
    adapter_class = import_string(ADAPTERS[connection.kind])
    adapter: BrokerAdapter = adapter_class(connection)
    return adapter

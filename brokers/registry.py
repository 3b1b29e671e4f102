"""Which adapter class serves which broker kind; imported lazily so unused SDKs never load."""

from django.utils.module_loading import import_string

from brokers.errors import BrokerUnavailable
from brokers.interface import BrokerAdapter
from brokers.models import BrokerConnection

ADAPTERS: dict[str, str] = {
    "paper": "brokers.adapters.paper.PaperBroker",
}


def has_adapter(kind: str) -> bool:
    return kind in ADAPTERS


def get_adapter(connection: BrokerConnection) -> BrokerAdapter:
    if not has_adapter(connection.kind):
        raise BrokerUnavailable(f"No adapter for broker kind {connection.kind!r} yet.")
    adapter_class = import_string(ADAPTERS[connection.kind])
    adapter: BrokerAdapter = adapter_class(connection)
    return adapter

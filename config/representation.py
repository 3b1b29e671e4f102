"""Live-event payloads from the API's own serializers, without DRF's per-call setup cost.

A Serializer instance deep-copies and binds every declared field the first time it is asked for
`.data`; for a one-object payload that setup was most of the CPU of publishing an order or a plan
event (bench/plans.py profile). Output-only serializers keep no per-object state, so one bound
instance per class serves every call: the payload is exactly what `.data` gives, built cheaper.
"""

from collections.abc import Iterable
from functools import cache
from typing import Any

from rest_framework.serializers import BaseSerializer


@cache
def _bound(serializer_class: type[BaseSerializer]) -> BaseSerializer:
    serializer = serializer_class()
    serializer.fields  # noqa: B018 - binds the fields once, now
    return serializer


def represent(serializer_class: type[BaseSerializer], instance: Any) -> dict[str, Any]:
    return _bound(serializer_class).to_representation(instance)


def represent_many(serializer_class: type[BaseSerializer], instances: Iterable[Any]) -> list[dict[str, Any]]:
    serializer = _bound(serializer_class)
    return [serializer.to_representation(instance) for instance in instances]

"""Celery entry points of signals_in (ids in, one service call each), one module per area.

Celery's autodiscovery imports this package; importing the modules registers their tasks."""

from signals_in.tasks import copier, fanout, feeds, rules  # noqa: F401

"""Connection parameters for the few places that need a PostgreSQL connection of their own, outside
Django's: LISTEN for received signals (signals_in.handoff) and the webhook intake on the event loop
(signals_in.intake_io). Taken from Django's connection, so they follow DATABASES and, under tests,
point at the test database."""

from typing import Any

from django.db import connections


def psycopg_params(alias: str = "default") -> dict[str, Any]:
    """Keyword arguments for psycopg's connect (sync or async) to the database `alias` uses."""
    params = dict(connections[alias].get_connection_params())
    params.pop("cursor_factory", None)  # Django's own (sync) cursor class; callers choose theirs
    return params

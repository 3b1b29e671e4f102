"""Staff screens of signals_in, one module per area."""

from signals_in.admin import copier, feeds, rules, signals, strategies  # noqa: F401

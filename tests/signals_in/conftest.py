"""Fixtures shared by the signals_in tests."""

import pytest

from signals_in import fanout


@pytest.fixture
def processed(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Signal ids that reached the fan-out (its own work is tested in test_fanout.py)."""
    reached: list[int] = []
    monkeypatch.setattr(fanout, "process_signal", lambda *, signal_id: reached.append(signal_id))
    return reached

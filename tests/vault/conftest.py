"""Fixtures shared by the vault tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def no_leaked_flushers() -> Iterator[None]:
    """Fail a test that leaves a WAL's flusher thread running (a WAL it never closed)."""
    before = {t for t in threading.enumerate() if t.name == "wal-flusher"}
    yield
    leaked = [t for t in threading.enumerate() if t.name == "wal-flusher" and t not in before]
    assert not leaked, f"{len(leaked)} WAL(s) left open: close every WAL a test opens"

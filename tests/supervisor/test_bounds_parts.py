"""The bounds' parts on their own: quotas under a fake clock, the event log's caps."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from project_o.errors import InvalidArgument
from project_o.supervisor import events as events_module
from project_o.supervisor.bounds import (
    QUOTA_EXCEEDED,
    InstanceQuota,
    Quotas,
    instance_frame_limits,
)
from project_o.supervisor.events import MAX_REASON_CHARS, EventLog
from project_o.wire import MessageType
from tests.supervisor.fakes import FakeClock


def test_writes_spend_the_burst_then_the_rate_refills_it() -> None:
    clock = FakeClock()
    quota = InstanceQuota(Quotas(wal_writes_burst=3, wal_writes_per_s=1.0), clock=clock)
    assert [quota.charge_write(10) for _ in range(3)] == [None, None, None]
    reason = quota.charge_write(10)
    assert reason is not None and reason.startswith(QUOTA_EXCEEDED)
    clock.advance(1.0)  # one write's worth refilled
    assert quota.charge_write(10) is None
    assert quota.charge_write(10) is not None


def test_bytes_are_charged_on_their_own_bucket() -> None:
    clock = FakeClock()
    quota = InstanceQuota(Quotas(wal_bytes_burst=100, wal_bytes_per_s=10.0), clock=clock)
    assert quota.charge_write(60) is None
    assert "byte quota" in (quota.charge_write(60) or "")
    clock.advance(2.0)
    assert quota.charge_write(60) is None


def test_stream_bytes_are_counted_per_request_and_forgotten_when_it_ends() -> None:
    quota = InstanceQuota(Quotas(stream_bytes_per_request=100), clock=FakeClock())
    assert quota.charge_stream("a", 60) is None and quota.charge_stream("b", 60) is None
    assert "'a' streamed more than 100 bytes" in (quota.charge_stream("a", 60) or "")
    quota.request_done("b")
    assert quota.charge_stream("b", 60) is None
    assert quota.charge_stray_stream(100) is None
    assert quota.charge_stray_stream(1) is not None


def test_quotas_refuse_nonsense() -> None:
    with pytest.raises(InvalidArgument):
        Quotas(wal_writes_burst=0)
    with pytest.raises(InvalidArgument):
        Quotas(stream_bytes_per_request=True)


def test_an_instance_may_send_only_its_types_each_small_but_the_checkpoint() -> None:
    limits = instance_frame_limits(256 << 20)
    assert limits.caps[MessageType.CHECKPOINT] == 256 << 20
    assert limits.caps[MessageType.HEARTBEAT] == 64 << 10
    assert max(cap for kind, cap in limits.caps.items() if kind != "checkpoint") == 16 << 20
    for refused in ("restore", "request", "wal_ack", "fork", "forked", "exited", "kill"):
        assert refused not in limits.caps
    assert instance_frame_limits(1 << 20).caps[MessageType.WAL_ENTRY] == 1 << 20


class SlowCatalog:
    """A catalog whose writes wait until released: the writer falls behind."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written: list[str] = []

    def record_event(self, kind: str, subject: str, reason: str, data: Any) -> None:
        self.release.wait(30)
        self.written.append(reason)


def test_the_event_log_cuts_reasons_and_bounds_the_catalog_backlog(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_PENDING_WRITES", 5)
    catalog = SlowCatalog()
    log = EventLog(catalog)  # type: ignore[arg-type]
    try:
        event = log.record("crash", "main-1", "x" * 100_000)
        assert len(event["reason"]) == MAX_REASON_CHARS
        for index in range(20):
            log.record("crash", "main-1", f"r{index}")
        assert log.dropped == 16  # 5 wait for the writer, the rest are only in memory
        assert len(log.recent(100)) == 21
    finally:
        catalog.release.set()
        log.close()
    assert len(catalog.written) == 5

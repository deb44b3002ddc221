"""WAL unit tests: the write path, replay, segments, durability modes, concurrency."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o.errors import InvalidArgument, VaultClosed, VaultError
from project_o.vault.fileio import FileLayer
from project_o.vault.wal import WAL, WALEntry, scan, segment_name
from project_o.vault.wal_record import (
    compute_checksum,
    encode,
    pack_payload,
    read_record,
    walk_segment,
)
from tests.vault.strategies import msgpack_values

pytestmark = pytest.mark.usefixtures("no_leaked_flushers")

#: Generous bound for background work (the batch flusher); never a speed claim.
PATIENCE_S = 10.0


def wait_until(condition: Callable[[], bool], timeout: float = PATIENCE_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class CountingLayer(FileLayer):
    """The real file layer, counting fsyncs (to see batch mode sync)."""

    def __init__(self) -> None:
        self.fsyncs = 0

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        self.fsyncs += 1




# ----------------------------------------------------------------- format


@settings(max_examples=200, deadline=None)
@given(
    sequence=st.integers(0, 2**64 - 1),
    timestamp=st.floats(allow_nan=False, allow_infinity=False),
    operation=st.text(max_size=40),
    data=msgpack_values,
)
def test_record_bytes_are_the_design_format(
    sequence: int, timestamp: float, operation: str, data: object
) -> None:
    record = encode(sequence, timestamp, operation, data)
    checksum = compute_checksum(sequence, timestamp, operation, data)
    entry = {
        "sequence": sequence,
        "timestamp": timestamp,
        "operation": operation,
        "data": data,
        "checksum": checksum,
    }
    expected = msgpack.packb(entry)
    assert record == len(expected).to_bytes(4, "big") + expected
    decoded, end = read_record(record, 0)
    assert end == len(record)
    assert decoded == WALEntry(sequence, timestamp, operation, data, checksum)


def test_checksum_is_sha256_of_the_packed_array() -> None:
    import hashlib

    expected = hashlib.sha256(msgpack.packb([7, 1.5, "memory_set", {"k": 1}])).hexdigest()
    assert compute_checksum(7, 1.5, "memory_set", {"k": 1}) == expected


def test_segments_are_named_by_first_sequence_20_digits(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal") as wal:
        wal.append("op", 1)
        assert [p.name for p in wal.segments()] == ["00000000000000000001.wal"]
    assert segment_name(4712) == "00000000000000004712.wal"


# -------------------------------------------------------------- round trip


def test_round_trip_and_reopen_continues_sequences(tmp_path: Path) -> None:
    values = [{"key": f"k{i}", "value": "v" * i} for i in range(20)]
    with WAL.open(tmp_path / "wal") as wal:
        seqs = [wal.append("memory_set", v) for v in values]
        assert seqs == list(range(1, 21))
        assert wal.last_sequence == wal.durable_sequence == 20
    with WAL.open(tmp_path / "wal") as wal:
        assert wal.torn_tail is None
        entries = list(wal.replay())
        assert [e.data for e in entries] == values
        assert [e.sequence for e in entries] == seqs
        assert all(e.operation == "memory_set" for e in entries)
        assert wal.append("memory_delete", {"key": "k0"}) == 21


def test_replay_from_a_sequence_across_segments(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal", segment_size=1024) as wal:
        for i in range(100):
            wal.append("op", {"i": i, "pad": "x" * 50})
        assert len(wal.segments()) > 3
        assert [e.data["i"] for e in wal.replay(57)] == list(range(56, 100))
        assert list(wal.replay(101)) == []
        assert [e.sequence for e in wal.replay()] == list(range(1, 101))


def test_rollover_keeps_segments_within_size_and_contiguous(tmp_path: Path) -> None:
    size = 2000
    with WAL.open(tmp_path / "wal", segment_size=size) as wal:
        for i in range(200):
            wal.append("op", {"i": i, "pad": "y" * 40})
        paths = wal.segments()
    report = scan(tmp_path / "wal")
    assert report.sound and report.entries == 200
    assert [s.path for s in report.segments] == paths
    for info, following in zip(report.segments, report.segments[1:]):
        assert info.size <= size
        assert following.first_sequence == info.first_sequence + info.entries
        assert info.path.name == segment_name(info.first_sequence)


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal", segment_size=256) as wal:
        wal.append("small", 1)
        wal.append("big", "z" * 1000)
        wal.append("small", 2)
        assert [p.name for p in wal.segments()] == [segment_name(s) for s in (1, 2, 3)]
        assert [e.data for e in wal.replay()] == [1, "z" * 1000, 2]


def test_truncate_through_deletes_only_fully_covered_segments(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal", segment_size=1024) as wal:
        for i in range(60):
            wal.append("op", {"i": i, "pad": "x" * 60})
        before = wal.segments()
        firsts = [int(p.stem) for p in before]
        # a sequence in the middle of segment 2 frees only segment 1
        assert wal.truncate_through(firsts[2] - 2) == 1
        assert wal.segments() == before[1:]
        assert wal.truncate_through(firsts[2] - 1) == 1
        assert wal.segments() == before[2:]
        # everything: all but the active segment go
        assert wal.truncate_through(10**9) == len(before) - 3
        assert wal.segments() == before[-1:]
        assert wal.truncate_through(10**9) == 0
        remaining = [e.sequence for e in wal.replay()]
        assert remaining == list(range(firsts[-1], 61))
        assert wal.append("op", "after") == 61
    with WAL.open(tmp_path / "wal") as wal:
        assert [e.sequence for e in wal.replay()][-1] == 61


def test_start_sequence_names_the_first_segment_of_an_empty_log(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal", start_sequence=501) as wal:
        assert wal.last_sequence == 500
        assert wal.append("op", "x") == 501
        assert wal.segments()[0].name == segment_name(501)
    with WAL.open(tmp_path / "wal", start_sequence=1) as wal:  # ignored: log not empty
        assert wal.append("op", "y") == 502


def test_start_sequence_past_the_log_never_reuses_covered_numbers(tmp_path: Path) -> None:
    # A checkpoint covers through 50 but the log ends at 10 (batch mode lost
    # its unsynced tail): new entries must not be numbered at or below 50.
    with WAL.open(tmp_path / "wal") as wal:
        for i in range(10):
            wal.append("op", i)
    with WAL.open(tmp_path / "wal", start_sequence=51) as wal:
        assert wal.append("op", "new") == 51
        assert [e.sequence for e in wal.replay()] == [51]


def test_submit_returns_sequence_and_a_future_resolved_when_durable(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal") as wal:
        submitted = [wal.submit("op", i) for i in range(50)]
        assert [seq for seq, _ in submitted] == list(range(1, 51))
        assert [f.result(timeout=PATIENCE_S) for _, f in submitted] == list(range(1, 51))
        assert wal.durable_sequence == 50


def test_operation_and_data_are_validated_before_a_sequence_is_spent(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal") as wal:
        with pytest.raises(InvalidArgument, match="MessagePack"):
            wal.append("op", {"not": object()})
        with pytest.raises(InvalidArgument, match="operation"):
            wal.append(3, "x")  # type: ignore[arg-type]
        assert wal.append("op", "fine") == 1


def test_invalid_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        WAL.open(tmp_path / "wal", durability="eventually")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        WAL.open(tmp_path / "wal", segment_size=0)
    with pytest.raises(InvalidArgument):
        WAL.open(tmp_path / "wal", start_sequence=0)


# --------------------------------------------------------------- lifecycle


def test_only_one_writer_may_hold_the_directory(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from project_o.errors import VaultError\n"
        "from project_o.vault.wal import WAL\n"
        "try:\n"
        "    WAL.open(sys.argv[1]).close()\n"
        "except VaultError:\n"
        "    sys.exit(3)\n"
    )
    wal = WAL.open(tmp_path / "wal")
    with pytest.raises(VaultError, match="already open"):
        WAL.open(tmp_path / "wal")
    other = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "wal")], check=False)
    assert other.returncode == 3
    wal.close()
    other = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "wal")], check=False)
    assert other.returncode == 0


def test_a_live_wal_has_padding_that_scan_reports_and_close_trims(tmp_path: Path) -> None:
    wal = WAL.open(tmp_path / "wal")
    for i in range(10):
        wal.append("op", i)
    live = scan(tmp_path / "wal", repair=True)
    assert live.sound and live.torn_tail is None and live.entries == 10
    assert live.padding > 0  # the preallocated rest of the active segment
    assert not live.repaired  # the open WAL owns its tail
    wal.append("op", 10)
    wal.close()
    closed = scan(tmp_path / "wal")
    assert closed.padding == 0 and closed.entries == 11
    assert closed.segments[0].size == sum(
        len(encode(e.sequence, e.timestamp, e.operation, e.data)) for e in replay_all(tmp_path)
    )


def replay_all(directory: Path) -> list[WALEntry]:
    with WAL.open(directory / "wal") as wal:
        return list(wal.replay())


def test_closed_wal_refuses_writes_and_close_is_idempotent(tmp_path: Path) -> None:
    wal = WAL.open(tmp_path / "wal")
    wal.append("op", 1)
    wal.close()
    wal.close()
    with pytest.raises(VaultClosed):
        wal.append("op", 2)
    with pytest.raises(VaultClosed):
        wal.submit("op", 2)
    with pytest.raises(VaultClosed):
        wal.flush()
    with WAL.open(tmp_path / "wal") as again:
        assert again.last_sequence == 1


def test_close_flushes_batch_mode_writes(tmp_path: Path) -> None:
    layer = CountingLayer()
    wal = WAL.open(
        tmp_path / "wal",
        durability="batch",
        batch_entries=1000,
        batch_interval=3600,
        file_layer=layer,
    )
    for i in range(5):
        wal.append("op", i)
    assert wal.durable_sequence == 0
    synced = layer.fsyncs
    wal.close()
    assert wal.durable_sequence == 5
    assert layer.fsyncs > synced


# -------------------------------------------------------------- batch mode


def test_batch_mode_syncs_every_batch_entries(tmp_path: Path) -> None:
    with WAL.open(
        tmp_path / "wal", durability="batch", batch_entries=10, batch_interval=3600
    ) as wal:
        submitted = [wal.submit("op", i) for i in range(10)]
        assert wait_until(lambda: wal.durable_sequence == 10)
        assert all(f.result(timeout=PATIENCE_S) == s for s, f in submitted)
        for i in range(5):
            wal.append("op", i)
        # 5 < batch_entries and the interval is an hour: nothing can trigger a sync
        assert wal.durable_sequence == 10
        assert wal.last_sequence == 15
        wal.flush()
        assert wal.durable_sequence == 15


def test_batch_mode_syncs_after_batch_interval(tmp_path: Path) -> None:
    with WAL.open(
        tmp_path / "wal", durability="batch", batch_entries=10_000, batch_interval=0.05
    ) as wal:
        for i in range(3):
            wal.append("op", i)
        assert wait_until(lambda: wal.durable_sequence == 3)
        wal.append("op", 3)
        assert wait_until(lambda: wal.durable_sequence == 4)


def test_batch_mode_append_writes_before_returning(tmp_path: Path) -> None:
    with WAL.open(tmp_path / "wal", durability="batch", batch_interval=3600) as wal:
        wal.append("op", "visible")
        # not fsynced, but written: another reader of the file sees it
        entries = list(walk_file(wal.segments()[-1]))
        assert [e.data for e in entries] == ["visible"]
        assert wal.durable_sequence == 0


def walk_file(path: Path) -> list[WALEntry]:
    return [e for e in walk_segment(path.read_bytes(), None) if isinstance(e, WALEntry)]


# -------------------------------------------------------------- concurrency


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_concurrent_writers_get_unique_contiguous_sequences(
    tmp_path: Path, durability: str
) -> None:
    threads, per_thread = 32, 40
    results: dict[int, list[int]] = {}
    futures: list[tuple[int, Future[int]]] = []
    lock = threading.Lock()
    with WAL.open(tmp_path / "wal", durability=durability, segment_size=8192) as wal:  # type: ignore[arg-type]

        def writer(w: int) -> None:
            mine = []
            for n in range(per_thread):
                if n % 4 == 0:
                    seq, future = wal.submit("op", {"w": w, "n": n})
                    with lock:
                        futures.append((seq, future))
                else:
                    seq = wal.append("op", {"w": w, "n": n})
                    if durability == "sync":
                        assert wal.durable_sequence >= seq
                mine.append(seq)
            results[w] = mine

        workers = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        for seq, future in futures:
            assert future.result(timeout=PATIENCE_S) == seq
        wal.flush()
        entries = list(wal.replay())
    all_seqs = sorted(s for seqs in results.values() for s in seqs)
    assert all_seqs == list(range(1, threads * per_thread + 1))
    by_seq = {e.sequence: e.data for e in entries}
    assert len(by_seq) == threads * per_thread
    for w, seqs in results.items():
        assert seqs == sorted(seqs)  # one writer's entries stay in its order
        assert [by_seq[s] for s in seqs] == [{"w": w, "n": n} for n in range(per_thread)]


# ------------------------------------------- submitting never waits on a round


class HeldSync(FileLayer):
    """Real I/O; each fdatasync announces itself, then waits until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def fdatasync(self, fd: int) -> None:
        self.entered.set()
        self.release.wait(PATIENCE_S)
        super().fdatasync(fd)


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_submitting_never_waits_for_a_round_in_progress(tmp_path: Path, durability: str) -> None:
    layer = HeldSync()
    wal = WAL.open(tmp_path / "wal", durability=durability, batch_entries=1,  # type: ignore[arg-type]
                   file_layer=layer)
    try:
        if durability == "sync":
            threading.Thread(target=wal.append, args=("op", 0), daemon=True).start()
        else:
            wal.append("op", 0)  # written; the flusher's fsync round starts (batch of 1)
        assert layer.entered.wait(PATIENCE_S)  # a round holds the write lock, in its fsync
        submitted: list[tuple[int, Future[int]]] = []
        submitter = threading.Thread(
            target=lambda: submitted.append(wal.submit_acknowledged("op", 1)), daemon=True)
        submitter.start()
        submitter.join(PATIENCE_S)
        # It returned while the round still sat in its fsync: it never took the write lock.
        assert not submitter.is_alive() and not layer.release.is_set()
        [(seq, acknowledged)] = submitted
        assert seq == 2 and not acknowledged.done()
        layer.release.set()
        assert acknowledged.result(timeout=PATIENCE_S) == 2
        wal.flush()
        assert [e.data for e in wal.replay()] == [0, 1]
    finally:
        layer.release.set()
        wal.close()


def test_batch_acknowledgement_comes_with_the_write_not_the_fsync(tmp_path: Path) -> None:
    layer = CountingLayer()
    with WAL.open(tmp_path / "wal", durability="batch", batch_entries=1000,
                  batch_interval=3600, file_layer=layer) as wal:
        acknowledged = [wal.submit_acknowledged("op", i) for i in range(5)]
        assert [f.result(timeout=PATIENCE_S) for _, f in acknowledged] == [1, 2, 3, 4, 5]
        assert wal.durable_sequence == 0 and layer.fsyncs == 0  # written, not yet synced
        assert [e.data for e in wal.replay()] == [0, 1, 2, 3, 4]
        _, durable = wal.submit("op", 5)
        wal.flush()
        assert durable.result(timeout=PATIENCE_S) == 6 and wal.durable_sequence == 6


# -- settling in batches: enqueue_payload + watch ---------------------------------


@pytest.mark.parametrize("durability", ["sync", "batch"])
def test_a_watcher_hears_once_the_enqueued_records_are_acknowledged(
    tmp_path: Path, durability: str,
) -> None:
    heard = threading.Event()
    with WAL.open(tmp_path / "wal", durability=durability, batch_interval=60) as wal:  # type: ignore[arg-type]
        unwatch = wal.watch(heard.set)
        sequences = [wal.enqueue_payload(pack_payload("set", {"n": n})) for n in range(50)]
        assert sequences == list(range(1, 51))
        deadline = time.monotonic() + 10
        while wal.acknowledged_sequence < 50 and time.monotonic() < deadline:
            assert heard.wait(10)
            heard.clear()
        assert wal.acknowledged_sequence == 50
        if durability == "sync":
            assert wal.durable_sequence == 50  # acknowledged means fsynced
        assert wal.failure is None
        unwatch()
        heard.clear()
        wal.append("set", {"n": 51})
        assert not heard.is_set()  # no calls once unwatched
    with WAL.open(tmp_path / "wal") as wal:
        assert [e.data["n"] for e in wal.replay()] == [*range(50), 51]


class _FailingSync(FileLayer):
    def fdatasync(self, fd: int) -> None:
        raise OSError(5, "injected EIO in fdatasync")


def test_a_watcher_hears_of_a_failure_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    heard = threading.Event()
    with contextlib.suppress(VaultError), WAL.open(
            tmp_path / "wal", file_layer=_FailingSync()) as wal:
        wal.watch(heard.set)
        wal.enqueue_payload(pack_payload("set", {"n": 1}))
        assert heard.wait(10)
        assert wal.failure is not None and "injected EIO" in str(wal.failure.__cause__)
        assert wal.acknowledged_sequence == 0
        with pytest.raises(VaultError):
            wal.enqueue_payload(pack_payload("set", {"n": 2}))  # refused from now on

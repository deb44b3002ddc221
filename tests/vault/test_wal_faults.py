"""Write and fsync failures are fatal: nothing unsynced is acknowledged, nothing is retried.

A catalogue of fault injectors (real file I/O, one call made to fail with a
real errno), then one real kernel error: RLIMIT_FSIZE makes write() fail
with EFBIG in a child process.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from project_o.errors import VaultClosed, WALFatalError
from project_o.vault.fileio import FileLayer
from project_o.vault.wal import PREALLOCATE_STEP, WAL

from .wal_child import digest, make_data

pytestmark = pytest.mark.usefixtures("no_leaked_flushers")

PATIENCE_S = 10.0
CHILD = Path(__file__).with_name("wal_child.py")


class FaultLayer(FileLayer):
    """Real file I/O; the ``fail_*`` call after ``after`` successes raises ``OSError(code)``."""

    def __init__(self, method: str, code: int, after: int = 0) -> None:
        self.method, self.code, self.remaining = method, code, after
        self.calls: dict[str, int] = {}
        self.gate: threading.Event | None = None  # if set, the failing call waits for it

    def _maybe_fail(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        if method != self.method:
            return
        if self.remaining > 0:
            self.remaining -= 1
            return
        if self.gate is not None:
            self.gate.wait(PATIENCE_S)
        raise OSError(self.code, f"injected {errno.errorcode[self.code]} in {method}")

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self._maybe_fail("pwrite")
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        self._maybe_fail("fdatasync")
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        super().fsync(fd)

    def open(self, path: Path, flags: int) -> int:
        self._maybe_fail("open")
        return super().open(path, flags)

    def fsync_directory(self, path: Path) -> None:
        self._maybe_fail("fsync_directory")
        super().fsync_directory(path)


class ShortWriteLayer(FileLayer):
    """After ``after`` writes, take half of one write, then fail the next with ENOSPC."""

    def __init__(self, after: int) -> None:
        self.after, self.short_done = after, False

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.after > 0:
            self.after -= 1
            return super().pwrite(fd, data, offset)
        if not self.short_done:
            self.short_done = True
            return super().pwrite(fd, data[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "injected ENOSPC after a short write")


def assert_fatal(exc: BaseException, code: int) -> None:
    assert isinstance(exc, WALFatalError)
    assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == code


def open_with(directory: Path, layer: FileLayer, **options: object) -> WAL:
    return WAL.open(directory, file_layer=layer, **options)  # type: ignore[arg-type]


# -------------------------------------------------------------- sync mode


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("pwrite", errno.EIO),
        ("pwrite", errno.ENOSPC),
        ("fdatasync", errno.EIO),
        ("fdatasync", errno.ENOSPC),
    ],
)
def test_a_failed_write_or_sync_is_fatal_to_the_appender_and_all_after(
    tmp_path: Path, method: str, code: int
) -> None:
    layer = FaultLayer(method, code, after=3)  # the first rounds succeed
    wal = open_with(tmp_path, layer)
    acked: list[int] = []
    with pytest.raises(WALFatalError) as caught:
        for i in range(10):
            acked.append(wal.append("op", i))
    assert_fatal(caught.value, code)
    assert len(acked) >= 2 and acked == list(range(1, len(acked) + 1))
    assert wal.durable_sequence == len(acked)  # the failed entry was never acknowledged
    calls = dict(layer.calls)
    for attempt in (lambda: wal.append("op", 99), lambda: wal.submit("op", 99), wal.flush):
        with pytest.raises(WALFatalError):
            attempt()
    assert layer.calls == calls  # refused up front: no write, and the sync is not retried
    with pytest.raises(WALFatalError):
        wal.close()  # a sequence was handed out but never made durable
    with pytest.raises(VaultClosed):
        wal.append("op", 100)
    with WAL.open(tmp_path) as reopened:
        assert [e.data for e in reopened.replay()][: len(acked)] == list(range(len(acked)))


def test_every_pending_future_fails_when_the_shared_fsync_fails(tmp_path: Path) -> None:
    layer = FaultLayer("fdatasync", errno.EIO, after=1)
    wal = open_with(tmp_path, layer)
    assert wal.append("op", "durable") == 1
    layer.gate = threading.Event()  # hold the failing fsync while more writers queue
    first: list[BaseException] = []
    blocked = threading.Thread(target=lambda: _capture(first, wal.append, "op", "in flight"))
    blocked.start()
    futures: list[Future[int]] = [wal.submit("op", i)[1] for i in range(20)]
    layer.gate.set()
    blocked.join(PATIENCE_S)
    assert_fatal(first[0], errno.EIO)
    for future in futures:
        assert_fatal(future.exception(timeout=PATIENCE_S), errno.EIO)  # type: ignore[arg-type]
    assert wal.durable_sequence == 1
    assert layer.calls["fdatasync"] == 2  # one success, one failure, no retry
    with pytest.raises(WALFatalError):
        wal.close()


def _capture(sink: list[BaseException], fn: object, *args: object) -> None:
    try:
        fn(*args)  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        sink.append(exc)


def test_a_short_write_then_enospc_leaves_a_torn_tail_that_reopen_cuts(tmp_path: Path) -> None:
    wal = open_with(tmp_path, ShortWriteLayer(after=6))  # 5 rounds + the zero-fill
    acked = [wal.append("op", {"i": i}) for i in range(5)]
    with pytest.raises(WALFatalError):
        wal.append("op", {"i": 5})
    with pytest.raises(WALFatalError):
        wal.close()  # releases the directory for the reopen
    with WAL.open(tmp_path) as reopened:
        assert reopened.torn_tail is not None
        assert [e.sequence for e in reopened.replay()] == acked
        assert reopened.append("op", "after repair") == 6


@pytest.mark.parametrize(("method", "after"), [("open", 1), ("fsync_directory", 0)])
def test_a_failed_rollover_is_fatal(tmp_path: Path, method: str, after: int) -> None:
    layer = FaultLayer(method, errno.EIO, after=after)  # reopening opens the active segment
    wal = open_with(tmp_path, FileLayer(), segment_size=512)
    wal.close()
    wal = open_with(tmp_path, layer, segment_size=512)
    acked = []
    with pytest.raises(WALFatalError) as caught:
        for i in range(100):
            acked.append(wal.append("op", {"i": i, "pad": "x" * 100}))
    assert_fatal(caught.value, errno.EIO)
    with pytest.raises(WALFatalError):
        wal.close()
    with WAL.open(tmp_path, segment_size=512) as reopened:
        assert [e.sequence for e in reopened.replay()][: len(acked)] == acked
        assert reopened.last_sequence >= len(acked)


class BrokenLayer(FileLayer):
    """A layer with a bug: pwrite raises something that is not an OSError."""

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        raise RuntimeError("a bug in the file layer")


def test_an_unexpected_error_mid_round_is_fatal_too_so_no_writer_hangs(tmp_path: Path) -> None:
    wal = open_with(tmp_path, BrokenLayer())
    _, future = wal.submit("op", "queued")
    with pytest.raises(WALFatalError) as caught:
        wal.append("op", "x")
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert isinstance(future.exception(timeout=PATIENCE_S), WALFatalError)
    with pytest.raises(WALFatalError):
        wal.close()


# ------------------------------------------------------------- batch mode


def test_batch_mode_write_failure_raises_to_the_appender(tmp_path: Path) -> None:
    layer = FaultLayer("pwrite", errno.ENOSPC, after=3)  # 2 records + the zero-fill
    wal = open_with(tmp_path, layer, durability="batch")
    wal.append("op", 1)
    wal.append("op", 2)
    with pytest.raises(WALFatalError) as caught:
        wal.append("op", 3)
    assert_fatal(caught.value, errno.ENOSPC)
    with pytest.raises(WALFatalError):
        wal.append("op", 4)
    with pytest.raises(WALFatalError):
        wal.close()  # 1 and 2 were written but never synced


def test_batch_mode_background_fsync_failure_fails_futures_and_later_appends(
    tmp_path: Path,
) -> None:
    layer = FaultLayer("fdatasync", errno.EIO)
    wal = open_with(tmp_path, layer, durability="batch", batch_entries=5, batch_interval=3600)
    futures = [wal.submit("op", i)[1] for i in range(5)]  # the 5th triggers the flusher
    for future in futures:
        assert_fatal(future.exception(timeout=PATIENCE_S), errno.EIO)  # type: ignore[arg-type]
    assert wal.durable_sequence == 0
    with pytest.raises(WALFatalError):
        wal.append("op", 6)
    with pytest.raises(WALFatalError):
        wal.close()


# ------------------------------------------------- a real kernel error: EFBIG


def test_rlimit_fsize_makes_writes_fail_with_efbig_and_acked_entries_survive(
    tmp_path: Path,
) -> None:
    wal_dir = tmp_path / "wal"
    limit = 2 * PREALLOCATE_STEP + 4096  # the third zero-filled step hits the limit
    child = subprocess.run(
        [
            sys.executable,
            str(CHILD),
            str(wal_dir),
            "1",
            "4",
            "--fsize",
            str(limit),
            "--segment-size",
            str(1 << 30),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    lines = [line.split() for line in child.stdout.splitlines()]
    failures = [line for line in lines if line[0] == "F"]
    acked = [line for line in lines if line[0] == "A"]
    assert failures and {int(f[4]) for f in failures} == {errno.EFBIG}
    assert acked, "the limit leaves room for some entries"
    with WAL.open(wal_dir) as wal:
        by_seq = {e.sequence: e.data for e in wal.replay()}
        assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    for _, run, writer, n, seq, fingerprint in acked:
        data = by_seq[int(seq)]
        assert data == make_data(int(run), int(writer), int(n))
        assert digest(data) == fingerprint
    assert sum(p.stat().st_size for p in wal_dir.iterdir()) <= limit

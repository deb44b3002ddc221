"""Atomic durable writes: the file is always the old or the new contents."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from project_o.vault.atomic import (
    TEMP_SUFFIX,
    fsync_directory,
    is_temp_name,
    remove_stale_temps,
    temp_path_for,
    write_atomic,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if is_temp_name(p.name)]


def test_write_creates_file_with_exact_contents(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    write_atomic(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert _temps(tmp_path) == []


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old contents that are longer")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"


def test_chunks_of_every_buffer_kind_are_written_in_order(tmp_path: Path) -> None:
    target = tmp_path / "chunks.bin"
    write_atomic(target, [b"ab", bytearray(b"cd"), memoryview(b"xefx")[1:3], b""])
    assert target.read_bytes() == b"abcdef"


def test_error_mid_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"new part"
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        write_atomic(target, chunks())
    assert target.read_bytes() == b"old"
    assert _temps(tmp_path) == []


def test_missing_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_temp_names_are_recognised_and_unique(tmp_path: Path) -> None:
    target = tmp_path / "a.ockpt"
    first, second = temp_path_for(target), temp_path_for(target)
    assert first != second
    assert first.parent == tmp_path
    assert first.name.startswith(".a.ockpt.") and first.name.endswith(TEMP_SUFFIX)
    assert f".{os.getpid()}." in first.name
    assert is_temp_name(first.name)
    assert not is_temp_name("a.ockpt")
    assert not is_temp_name(".a.ockpt.notapid.0123456789abcdef.tmp")


def test_remove_stale_temps_only_removes_temps_of_dead_writers(tmp_path: Path) -> None:
    dead = tmp_path / f".a.ockpt.{_dead_pid()}.0123456789abcdef.tmp"
    mine = temp_path_for(tmp_path / "b.ockpt")
    other = tmp_path / "c.ockpt"
    for path in (dead, mine, other):
        path.write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert removed == [dead]
    assert not dead.exists()
    assert mine.exists() and other.exists()


def test_fsync_directory_accepts_a_directory_and_rejects_a_file(tmp_path: Path) -> None:
    fsync_directory(tmp_path)
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        fsync_directory(tmp_path / "f")


# -- kill -9 in the middle of a write loop --------------------------------

_WRITER = r"""
import hashlib, sys
from pathlib import Path
from project_o.vault.atomic import write_atomic

path = Path(sys.argv[1])
generation = 0
while True:
    generation += 1
    body = bytes([generation % 251]) * (512 * 1024 + generation % 4096)
    head = generation.to_bytes(8, "big") + hashlib.sha256(body).digest()
    # several chunks, so a kill can land between them
    write_atomic(path, [head, body[:1000], body[1000:]])
    if generation == 1:
        print("ready", flush=True)
"""

_KILL_ROUNDS = 5


def _check_complete(path: Path) -> int:
    raw = path.read_bytes()
    generation = int.from_bytes(raw[:8], "big")
    body = raw[40:]
    assert hashlib.sha256(body).digest() == raw[8:40], "file holds a torn write"
    assert body == bytes([generation % 251]) * len(body)
    return generation


@pytest.mark.slow
def test_kill_minus_nine_mid_write_leaves_old_or_new_file(tmp_path: Path) -> None:
    rng = random.Random(1234)
    target = tmp_path / "state.bin"
    for _ in range(_KILL_ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        assert _check_complete(target) >= 1
        remove_stale_temps(tmp_path)
        assert _temps(tmp_path) == []

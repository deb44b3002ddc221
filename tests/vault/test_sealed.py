"""The sealed copy a checkpoint travels in: the same bytes, and nobody can change them."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from project_o.vault.checkpoint import CheckpointStore, read_checkpoint
from project_o.vault.sealed import SEALS, SealedCopies, sealed_copy


def test_a_sealed_copy_holds_the_checkpoint_and_refuses_every_change(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    info = store.write({"agent_state": {"kv": {"a": 1}}}, 7)
    fd = sealed_copy(info.path)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) == SEALS
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        # Reopened read-write through /proc (what a hostile holder would try): still sealed.
        with open(f"/proc/self/fd/{fd}", "r+b", buffering=0) as again, \
                pytest.raises(PermissionError):
            again.write(b"x")
        with pytest.raises(PermissionError):
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0)  # the seals themselves are final
        with open(os.dup(fd), "rb", buffering=0) as file:
            read, payload = read_checkpoint(file, "copy")
        assert (read.id, read.last_sequence) == (info.id, 7)
        assert payload["agent_state"] == {"kv": {"a": 1}}
        assert os.pread(fd, info.compressed_size + 256, 0) == info.path.read_bytes()
    finally:
        os.close(fd)


def test_the_original_can_go_once_the_copy_is_made(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    info = store.write({"agent_state": {"x": "y"}}, 1)
    fd = sealed_copy(info.path)
    info.path.unlink()  # pruned meanwhile: the copy does not care
    with open(fd, "rb", buffering=0) as file:
        assert read_checkpoint(file, "copy")[1]["agent_state"] == {"x": "y"}


def test_copies_are_made_once_and_each_reader_has_its_own_offset(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", keep=3)
    first = store.write({"agent_state": {"n": 1}}, 1)
    copies = SealedCopies()
    try:
        copies.prepare(first)
        first.path.unlink()  # the copy was made when prepared: the file is no longer read
        readers = [copies.reader(first), copies.reader(first)]
        for fd in readers:  # read one after the other: neither moved the other's offset
            with open(fd, "rb", buffering=0) as file:
                assert read_checkpoint(file, "copy")[1]["agent_state"] == {"n": 1}
        with pytest.raises(OSError):
            os.write(probe := copies.reader(first), b"x")  # read-only, and sealed anyway
        os.close(probe)
        second = store.write({"agent_state": {"n": 2}}, 2)
        with open(copies.reader(second), "rb", buffering=0) as file:
            assert read_checkpoint(file, "copy")[0].id == second.id
    finally:
        copies.close()

"""A vault is its owner's alone: directory 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.vault import Vault
from project_o.vault.fileio import private_umask


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: the modes below must not depend on the caller's."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_a_new_vault_and_everything_it_writes_are_private(tmp_path: Path) -> None:
    root = tmp_path / "vault"
    with Vault.open(root) as vault:
        vault.append("set", {"key": "k", "value": 1})
        vault.checkpoint({"agent_state": {"k": 1}})
    assert _mode(root) == 0o700
    written = [path for path in root.rglob("*") if path.is_file()]
    assert any(path.suffix == ".ockpt" for path in written)
    assert any(path.parent.name == "wal" for path in written)
    for path in written:
        if path.parent.name in ("wal", "checkpoints"):
            assert _mode(path) == 0o600, path


def test_an_existing_vault_open_to_others_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "vault"
    root.mkdir()
    root.chmod(0o755)
    Vault.open(root).close()
    assert _mode(root) == 0o700
    assert "made it 0700" in caplog.text


@pytest.mark.usefixtures("open_umask")
def test_private_umask_makes_new_files_private_and_gives_the_umask_back(tmp_path: Path) -> None:
    with private_umask():
        (tmp_path / "file").write_text("x")
        (tmp_path / "dir").mkdir()
    assert _mode(tmp_path / "file") == 0o600
    assert _mode(tmp_path / "dir") == 0o700
    assert os.umask(0) == 0  # given back: the fixture's 0, not 077

"""A real supervisor keeps its secrets: the token's path is printed, never the token."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.supervisor.harness import FAST_HEARTBEAT, Stack


def test_a_generated_token_is_never_printed_and_the_vault_is_private(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    stack = Stack(vault, FAST_HEARTBEAT, token_env=False)
    try:
        token_file = vault / "token"
        token = token_file.read_text().strip()
        assert stack.http is not None
        answer = stack.http.post("/v1/requests", json={"input": "hi"},
                                 headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    finally:
        output = stack.stop()
    assert f"API token written to {token_file}" in output
    assert token not in output
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(vault.stat().st_mode) == 0o700


def test_everything_the_heart_and_supervisor_write_is_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    vault = tmp_path / "vault"
    previous = os.umask(0)  # the loosest umask, inherited by `project-o run`
    try:
        stack = Stack(vault, FAST_HEARTBEAT, heart=True)
    finally:
        os.umask(previous)
    try:
        for n in range(3):
            assert stack.ask({"remember": f"fact {n}"}).status_code == 200
    finally:
        stack.stop()  # a final checkpoint on the way out
    written = list(vault.rglob("*"))
    assert {"catalog.sqlite", "supervisor.json", "heart.json"} <= {p.name for p in written}
    assert any(p.suffix == ".ockpt" for p in written)
    loose = {str(p.relative_to(vault)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in written
             if stat.S_IMODE(p.lstat().st_mode) & 0o077}
    assert loose == {}

"""What the supervisor process loads at start: nothing only a key or a command-line call uses.

Every module it imports stays resident for its whole life (and counts in the
``overhead`` bench's PSS figure), so what serves only an encrypted vault or
a command of the ``project-o`` tool is imported where it is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: module -> what alone needs it
NOT_AT_START = {
    "cryptography": "a vault key (vault/sealing.py imports the cipher for a keyring)",
    "httpx": "submitting a winning universe from the command line (evolution/universes.py)",
}


def _loaded_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get(
        "PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        env=env, capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", sorted(NOT_AT_START))
def test_the_supervisor_entry_point_does_not_load(module: str) -> None:
    loaded = _loaded_after("import project_o.supervisor.__main__")
    assert "project_o.supervisor.service" in loaded  # the entry point was imported
    assert module not in loaded, f"{module} is loaded at start; only {NOT_AT_START[module]}"


def test_a_keyring_loads_the_cipher_and_seals() -> None:
    loaded = _loaded_after(
        "from project_o.vault.sealing import Keyring\n"
        "ring = Keyring([bytes(32)])\n"
        "assert ring.open(ring.seal(bytes(12), b'x', b'a'), b'a', 'test') == b'x'")
    assert "cryptography" in loaded

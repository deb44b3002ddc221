"""Durable storage: the write-ahead log, checkpoints and the SQLite catalog.

``from project_o.vault import Vault`` is the stable API; see
:mod:`project_o.vault.vault` for the picture. Names are resolved lazily so
importing one submodule (the WAL, say) does not import them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from project_o.vault.checkpoint import CheckpointInfo
    from project_o.vault.vault import RestorePoint, Vault
    from project_o.vault.wal import WALEntry

__all__ = ["CheckpointInfo", "RestorePoint", "Vault", "WALEntry"]

_HOMES = {
    "Vault": "project_o.vault.vault",
    "RestorePoint": "project_o.vault.vault",
    "CheckpointInfo": "project_o.vault.checkpoint",
    "WALEntry": "project_o.vault.wal",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'project_o.vault' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)

"""The agent versions a vault has served, and the way back to a good one.

Each version is content-addressed (a hash of its source files) and its
source is stored in the catalog, so when a new version crash-loops — or
does not even import — the supervisor can write the last version that
served successfully back to ``VAULT/versions/<id>/`` and run that instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from project_o.vault.catalog import Catalog, VersionRecord

__all__ = ["VersionBook", "content_version", "read_sources"]

#: statuses this module writes
SERVING, GOOD, REJECTED = "serving", "good", "rejected"


def read_sources(agent: Path) -> dict[str, str]:
    """The agent's source files, by path relative to the agent (a file or a package)."""
    if agent.is_dir():
        return {str(p.relative_to(agent)): p.read_text() for p in sorted(agent.rglob("*.py"))}
    return {agent.name: agent.read_text()}


def content_version(sources: dict[str, str]) -> str:
    """A short content hash of ``sources``: the version id."""
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()[:12]


def _descends(record: VersionRecord, ancestor: str, records: dict[str, VersionRecord]) -> bool:
    seen: set[str] = set()
    frontier = list(record.parents)
    while frontier:
        parent = frontier.pop()
        if parent == ancestor:
            return True
        if parent not in seen and parent in records:
            seen.add(parent)
            frontier.extend(records[parent].parents)
    return False


class VersionBook:
    """Records versions in the catalog and finds one to fall back to."""

    def __init__(self, catalog: Catalog, vault: Path) -> None:
        self._catalog = catalog
        self._vault = vault

    def register(self, agent: Path) -> str:
        """Record the version at ``agent`` (if new) as serving; return its id."""
        sources = read_sources(agent)
        version = content_version(sources)
        self._catalog.add_version(version, source=sources, operator="user", status=SERVING,
                                  params={"path": str(agent)})
        return version

    def mark_good(self, version: str) -> None:
        """The version answered a request successfully: it may be fallen back to."""
        self._catalog.set_version_status(version, GOOD, "served requests successfully")

    def reject(self, version: str, reason: str) -> None:
        """Never fall back to ``version``."""
        self._catalog.set_version_status(version, REJECTED, reason)

    def previous_good(self, exclude: str) -> VersionRecord | None:
        """The newest good version other than ``exclude``."""
        good = [v for v in self._catalog.list_versions(status=GOOD) if v.id != exclude]
        return good[-1] if good else None

    def promoted_descendant(self, version: str) -> VersionRecord | None:
        """The newest version promoted over ``version`` (directly or through others).

        A supervisor restarted with the original ``--agent`` must keep serving
        what evolution promoted since, not silently undo it.
        """
        records = {v.id: v for v in self._catalog.list_versions()}
        for record in reversed(list(records.values())):
            if record.status == "promoted" and _descends(record, version, records):
                return record
        return None

    def materialize(self, record: VersionRecord) -> Path:
        """Write ``record`` (sources and params) under VAULT/versions/<id>/; the agent path."""
        from project_o.evolution.genome import Genome  # the evolution layer, only when needed

        return Genome.from_record(record).write_to(self._vault / "versions" / record.id)

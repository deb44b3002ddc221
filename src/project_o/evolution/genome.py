"""Genomes: immutable, content-addressed versions of an agent.

A genome is everything that makes one version of an agent: its source
files and the values of its evolvable params, plus where it came from::

    Genome
    ├── sources   {relative path: text}     "agent.py", or "__init__.py", "memory.py"...
    ├── params    {name: JSON value}         overrides of the agent.param(...) defaults
    ├── parents   (id, ...)                  () for a seed, 1 for a mutant, 2 for a crossover
    ├── operator  "seed" | "mut_*" | "cx_*" | "llm_rewrite" | "user" ...
    └── details   {JSON}                     what the operator did (site, old -> new, files)

    id = sha256(  name\\0text\\0  for each source, sorted by name
                [ \\0 canonical-json(params)\\0 ]   only when params is not empty
               ).hexdigest()[:12]

Names and texts never hold NUL and names are never empty, so the byte
string above decodes one way only: two genomes share an id exactly when
they share sources and params. A genome without params hashes like the
supervisor's ``content_version(sources)``, so versions recorded before
params existed keep their ids. Lineage (parents, operator, details) is not
part of the id: the same content reached twice is the same version, and
the catalog keeps the first lineage it was told.

In the catalog (:meth:`Genome.to_record`, :meth:`Genome.from_record`) the
``params`` column holds ``{"params": {...}, "details": {...}}``.

Materialized (:meth:`Genome.write_to`), the sources are written under a
directory and non-empty params go beside them in :data:`PARAMS_FILE`,
which :func:`read_params` (and :meth:`Genome.from_path`) read back.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Final, NoReturn

from project_o.errors import InvalidArgument
from project_o.runtime.params_file import PARAMS_FILE, params_file_for, read_params
from project_o.vault.atomic import write_atomic

__all__ = [
    "ID_LENGTH",
    "PARAMS_FILE",
    "Genome",
    "genome_id",
    "params_file_for",
    "read_params",
    "read_sources",
]

#: hex digits of a genome id: 48 bits, the length the catalog's versions already use
ID_LENGTH = 12


#: values with nothing inside to check
_SCALARS = frozenset({str, int, float, bool})

#: canonical JSON of no params: hashed as nothing, so such ids equal plain source hashes
_EMPTY_JSON = "{}"

#: the package entry point; a genome holding it is materialized as a package directory
_PACKAGE_INIT = "__init__.py"


def genome_id(sources: Mapping[str, str], params: Mapping[str, Any] | None = None) -> str:
    """The content id of ``sources`` + ``params`` (see the module docstring)."""
    return _content_id(sources, _canonical_json(dict(params or {})))


def _content_id(sources: Mapping[str, str], params_json: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    if params_json != _EMPTY_JSON:
        # The empty name before the params marks where the sources end.
        digest.update(b"\0" + params_json.encode() + b"\0")
    return digest.hexdigest()[:ID_LENGTH]


def read_sources(agent: str | Path) -> dict[str, str]:
    """The ``.py`` files of an agent (a file or a package directory), by relative path."""
    path = Path(agent)
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_text() for p in sorted(path.rglob("*.py"))}
    if path.is_file():
        return {path.name: path.read_text()}
    raise InvalidArgument(f"expected an agent file or package directory, {path} does not exist")


class Genome:
    """One immutable version of an agent: sources, params and lineage.

    Equality and hashing go by :attr:`id` (content), not by lineage.
    """

    __slots__ = ("_details", "_params", "_sources", "id", "operator", "parents")

    _sources: Mapping[str, str]
    # Params and details are kept as canonical JSON text, so no nested list or
    # dict handed out can be changed in place behind the content id.
    _params: str
    _details: str
    parents: tuple[str, ...]
    operator: str
    id: str

    def __init__(
        self,
        sources: Mapping[str, str],
        params: Mapping[str, Any] | None = None,
        *,
        parents: Sequence[str] = (),
        operator: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self._fill(_clean_sources(sources), _to_json("params", dict(params or {})), details,
                   tuple(str(p) for p in parents), operator)

    def _fill(self, sources: Mapping[str, str], params_json: str,
              details: Mapping[str, Any] | None, parents: tuple[str, ...],
              operator: str) -> None:
        """Set every field from checked, sorted ``sources`` and canonical ``params_json``."""
        set_ = object.__setattr__
        set_(self, "_sources", sources)
        set_(self, "_params", params_json)
        set_(self, "_details", _to_json("details", dict(details or {})))
        set_(self, "parents", parents)
        set_(self, "operator", str(operator))
        set_(self, "id", _content_id(sources, params_json))

    # -- construction ---------------------------------------------------

    @classmethod
    def from_path(
        cls, agent_path: str | Path, params: Mapping[str, Any] | None = None, *,
        operator: str = "seed",
    ) -> Genome:
        """The genome of the agent at ``agent_path`` (a ``.py`` file or package directory).

        ``params`` defaults to the materialized :data:`PARAMS_FILE` beside the
        agent, or ``{}`` (every param at its declared default).
        """
        chosen = read_params(agent_path) if params is None else params
        return cls(read_sources(agent_path), chosen, operator=operator)

    @classmethod
    def from_record(cls, record: Any) -> Genome:
        """Rebuild a genome from a catalog version (a ``VersionRecord`` or its dict).

        Raises :class:`InvalidArgument` if the stored id does not match the content.
        """
        fields = _record_fields(record)
        column = dict(fields.get("params") or {})
        if "params" in column or "details" in column:
            params, details = column.get("params") or {}, column.get("details") or {}
        else:
            # Versions recorded before genomes kept operator details in the column.
            params, details = {}, column
        genome = cls(fields["source"], params, parents=fields.get("parents") or (),
                     operator=fields.get("operator") or "", details=details)
        if fields["id"] and genome.id != fields["id"]:
            raise InvalidArgument(
                f"catalog version {fields['id']!r} has content that hashes to {genome.id!r}; "
                "the row was altered or written by another hashing scheme - do not run it"
            )
        return genome

    def derive(
        self,
        *,
        operator: str,
        sources: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        donors: Sequence[Genome] = (),
        details: Mapping[str, Any] | None = None,
    ) -> Genome:
        """A child of this genome: changed ``sources``/``params``, lineage filled in.

        Breeding calls this for every child: what the parent already checked and
        serialised (its sources' names, its params' canonical JSON) is reused,
        not worked out again.
        """
        parents = [self.id] + [d.id for d in donors if d.id != self.id]
        child = object.__new__(Genome)
        child._fill(self._sources if sources is None else _clean_sources(sources),
                    self._params if params is None else _to_json("params", dict(params)),
                    details, tuple(dict.fromkeys(parents)), operator)
        return child

    # -- views ----------------------------------------------------------

    @property
    def sources(self) -> Mapping[str, str]:
        """``{relative path: text}``, read-only, sorted by path."""
        return self._sources

    @property
    def params(self) -> Mapping[str, Any]:
        """``{name: value}`` overrides of the declared param defaults (a read-only copy)."""
        if self._params == _EMPTY_JSON:
            return MappingProxyType({})  # most genomes: no need to decode anything
        return MappingProxyType(json.loads(self._params))

    @property
    def details(self) -> Mapping[str, Any]:
        """What the operator that made this genome did (a read-only copy)."""
        return MappingProxyType(json.loads(self._details))

    @property
    def is_package(self) -> bool:
        """Whether the agent is a package directory (``__init__.py``, or several files)."""
        return _PACKAGE_INIT in self._sources or len(self._sources) > 1

    def to_record(self) -> dict[str, Any]:
        """Keyword arguments for ``Catalog.add_version(**genome.to_record())``."""
        return {
            "version_id": self.id,
            "source": dict(self._sources),
            "parents": list(self.parents),
            "operator": self.operator,
            "params": {"params": json.loads(self._params), "details": json.loads(self._details)},
        }

    def record_row(self) -> tuple[str, str, str, str, str]:
        """``(id, parents, operator, params column, source)``, JSON as the catalog stores it.

        The same text as ``json.dumps`` of :meth:`to_record`'s values (sorted
        keys, compact): written from the canonical JSON this genome keeps,
        without decoding and encoding it again (a run records every candidate).
        """
        if self._params.isascii() and self._details.isascii():
            # Canonical JSON of ASCII text is what json.dumps writes with its defaults.
            column = f'{{"details":{self._details},"params":{self._params}}}'
        else:
            column = _compact_json(self.to_record()["params"])
        return (self.id, _compact_json(list(self.parents)), self.operator, column,
                _compact_json(dict(self._sources)))

    def write_to(self, directory: str | Path, *, durable: bool = True) -> Path:
        """Materialize under ``directory``; return the path to load the agent from.

        That is ``directory`` for a package (``__init__.py`` present, or several
        files) and the single file otherwise. Refuses a directory holding ``.py``
        files that are not part of this genome, since a loader would pick them up.
        ``durable=False`` skips the fsyncs: for scratch copies that die with
        their process (an evaluator's), where a crash loses nothing of value.
        """
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        strangers = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
        strangers = [name for name in strangers if name not in self._sources]
        if strangers:
            raise InvalidArgument(
                f"{root} already holds {strangers[:3]} that are not in genome {self.id}; "
                "materialize into an empty directory (for example one named after the id)"
            )
        write = write_atomic if durable else Path.write_bytes
        for name, text in self._sources.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write(target, text.encode())
        if self._params != _EMPTY_JSON:
            write(root / PARAMS_FILE, self._params.encode())
        return root if self.is_package else root / next(iter(self._sources))

    def diff(self, other: Genome, *, context: int = 3) -> str:
        """Unified diff that turns this genome into ``other`` (``git diff self other``).

        Params changes appear as a pseudo-file named ``params`` (one JSON line each).
        """
        return "".join(self.file_diffs(other, context=context).values())

    def file_diffs(self, other: Genome, *, context: int = 3) -> dict[str, str]:
        """:meth:`diff`, one entry per changed file (and ``params``), in path order.

        A file only one side has shows as wholly added or removed.
        """
        diffs: dict[str, str] = {}
        for name in sorted(set(self._sources) | set(other._sources)):
            diffs[name] = "".join(_diff_text(
                self._sources.get(name, ""), other._sources.get(name, ""),
                f"{self.id}/{name}", f"{other.id}/{name}", context))
        # The params pseudo-file; a source that is itself named "params" keeps its name.
        diffs["(params)" if "params" in diffs else "params"] = "".join(_diff_text(
            _params_lines(self.params), _params_lines(other.params),
            f"{self.id}/params", f"{other.id}/params", context))
        return {name: text for name, text in diffs.items() if text}

    # -- value semantics ------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Genome) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        files = ", ".join(self._sources)
        return (f"Genome({self.id}, files=[{files}], params={self._params}, "
                f"operator={self.operator!r}, parents={list(self.parents)})")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Genome is immutable; use derive() to make a child ({name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Genome is immutable ({name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (process pools, Ray) rebuilds through __init__, re-checking the content.
        return (_rebuild, (dict(self._sources), json.loads(self._params), self.parents,
                           self.operator, json.loads(self._details)))


def _rebuild(sources: dict[str, str], params: dict[str, Any], parents: tuple[str, ...],
             operator: str, details: dict[str, Any]) -> Genome:
    return Genome(sources, params, parents=parents, operator=operator, details=details)


# -- helpers ------------------------------------------------------------


#: sort_keys + fixed separators + repr-exact floats: the same text in every process.
#: One encoder, built once: json.dumps with options builds a new one per call, and
#: every child bred is serialised (its details, its params).
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False, allow_nan=False)
#: what the catalog's JSON columns hold (json.dumps(..., separators, sort_keys))
_COMPACT: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _canonical_json(value: Mapping[str, Any]) -> str:
    return _CANONICAL.encode(value)


def _clean_sources(sources: Mapping[str, str]) -> Mapping[str, str]:
    """``sources`` checked, in name order, read-only."""
    _check_sources(sources)
    return MappingProxyType({name: sources[name] for name in sorted(sources)})


def _compact_json(value: Any) -> str:
    return _COMPACT.encode(value)


def _to_json(field: str, value: dict[str, Any]) -> str:
    """Canonical JSON of ``value``, refusing what JSON would not give back unchanged."""
    try:
        _require_str_keys(value)
        return _canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(
            f"genome {field} must be JSON with finite numbers and string keys: {exc}"
        ) from exc


def _require_str_keys(value: Any) -> None:
    # json.dumps would quietly turn {1: x} into {"1": x}: a different value, same text.
    if value is None or type(value) in _SCALARS:
        return  # most of what operators write; the ABC check below is slow
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"key {key!r} is not a string")
            if item is not None and type(item) not in _SCALARS:  # a call per scalar was
                _require_str_keys(item)                          # most of a child's details
    elif isinstance(value, list | tuple):
        for item in value:
            _require_str_keys(item)


def _check_sources(sources: Mapping[str, str]) -> None:
    if not sources:
        raise InvalidArgument("a genome needs at least one source file, got none")
    for name, text in sources.items():
        _check_source_name(name)
        if not isinstance(text, str) or "\0" in text:
            raise InvalidArgument(f"source {name!r} must be text without NUL characters")


@functools.lru_cache(maxsize=1024)  # the same few names, in every child of a run
def _check_source_name(name: object) -> None:
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise InvalidArgument(f"source names are non-empty relative paths with '/', got {name!r}")
    parts = PurePosixPath(name).parts
    # A name that climbs out (or is absolute) would let write_to() escape its directory.
    if name.startswith("/") or any(part in ("..", ".", "") for part in parts) \
            or PurePosixPath(name).as_posix() != name:
        raise InvalidArgument(
            f"source name {name!r} must be a plain relative path (no '..', no leading '/')"
        )
    if name == PARAMS_FILE:
        raise InvalidArgument(f"{PARAMS_FILE!r} is reserved for materialized params")


def _record_fields(record: Any) -> dict[str, Any]:
    if isinstance(record, Mapping):
        fields = dict(record)
        fields.setdefault("id", fields.get("version_id", ""))
    else:
        fields = {key: getattr(record, key, None)
                  for key in ("id", "source", "parents", "operator", "params")}
    if not isinstance(fields.get("source"), Mapping):
        raise InvalidArgument(f"a version record needs a 'source' mapping, got {record!r:.200}")
    return fields


def _params_lines(params: Mapping[str, Any]) -> str:
    return "".join(f"{json.dumps(k)}: {json.dumps(params[k], sort_keys=True)}\n"
                   for k in sorted(params))


def _diff_text(old: str, new: str, old_label: str, new_label: str, context: int) -> list[str]:
    if old == new:
        return []
    lines = list(difflib.unified_diff(old.splitlines(keepends=True),
                                      new.splitlines(keepends=True),
                                      old_label, new_label, n=context))
    # A last line without a newline would glue itself to the next hunk header.
    return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines]

"""What a zygote's sandbox must do (the policy) and what it did (the report).

The parent builds a :class:`SandboxPolicy` and hands it to the zygote on its
command line (``--sandbox JSON``); the zygote applies it before it imports
anything of the agent's and answers with a :class:`SandboxReport` in its
``hello``: one :class:`Layer` per layer, active or not, with why. A layer
that could not be applied is reported, never silently skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from project_o.errors import InvalidArgument

__all__ = [
    "DEFAULT_TMP_BYTES",
    "LAYERS",
    "Layer",
    "SandboxPolicy",
    "SandboxReport",
]

#: the private /tmp of a zygote and its children (a tmpfs): room for scratch
#: files, and a full /tmp stops there instead of filling the host's disk
DEFAULT_TMP_BYTES: Final = 64 << 20
#: the layers, in the order they are applied and reported
LAYERS: Final = ("identity", "mount", "pid", "ipc", "uts", "network", "no_new_privs",
                 "seccomp", "landlock", "limits", "cgroup")


@dataclass(frozen=True)
class SandboxPolicy:
    """How agent code is contained; paths are absolute (resolved when built)."""

    #: False: no containment beyond the per-child basics (session, fds, rlimits)
    enabled: bool = True
    #: the agent may use the network (else: a network namespace with nothing in it)
    network: bool = False
    #: directories made invisible (an empty directory in their place): the vault
    hidden: tuple[str, ...] = ()
    #: directories kept visible but read-only (the agent's own code, checkpoints)
    readonly: tuple[str, ...] = ()
    #: directories kept visible and writable (an evaluator's scratch space)
    writable: tuple[str, ...] = ()
    #: size of the private /tmp (bytes)
    tmp_bytes: int = DEFAULT_TMP_BYTES
    #: False: no namespaces, Landlock instead (what an unprivileged user without user
    #: namespaces gets; asked for explicitly, it tests that fallback)
    namespaces: bool = True
    #: when the parent is root: the uid and gid agent code runs as (None: chosen per zygote)
    uid: int | None = None
    gid: int | None = None

    def __post_init__(self) -> None:
        for name in ("hidden", "readonly", "writable"):
            paths = tuple(os.path.abspath(p) for p in getattr(self, name))
            object.__setattr__(self, name, paths)
        if self.tmp_bytes <= 0:
            raise InvalidArgument(f"tmp_bytes must be positive, got {self.tmp_bytes}")
        for name in ("uid", "gid"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value <= 0):
                raise InvalidArgument(f"sandbox {name} must be a positive int, got {value!r}")

    def to_json(self) -> str:
        """The policy as the zygote's ``--sandbox`` argument."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxPolicy:
        """Read a ``--sandbox`` argument; InvalidArgument if it is not one."""
        try:
            values = json.loads(text)
            for name in ("hidden", "readonly", "writable"):
                values[name] = tuple(values.get(name, ()))
            return cls(**values)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"not a sandbox policy: {exc}") from exc

    def with_paths(self, *, hidden: tuple[str, ...] = (), readonly: tuple[str, ...] = (),
                   writable: tuple[str, ...] = ()) -> SandboxPolicy:
        """This policy with more paths hidden, read-only or writable."""
        return replace(self, hidden=self.hidden + hidden, readonly=self.readonly + readonly,
                       writable=self.writable + writable)


@dataclass(frozen=True)
class Layer:
    """One layer of the sandbox as applied in one zygote."""

    name: str
    active: bool
    detail: str
    #: False: not applied because another layer does its work (Landlock under a mount
    #: namespace); not reported missing
    needed: bool = True


@dataclass
class SandboxReport:
    """What the sandbox of one zygote (and so of its children) is made of."""

    enabled: bool = True
    layers: list[Layer] = field(default_factory=list)

    def add(self, name: str, active: bool, detail: str, *, needed: bool = True) -> None:
        """Record one layer (a later record of the same name replaces it)."""
        self.layers = [layer for layer in self.layers if layer.name != name]
        self.layers.append(Layer(name, active, detail, needed))

    def active(self, name: str) -> bool:
        """Whether the layer ``name`` is in force."""
        return any(layer.name == name and layer.active for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The report as the zygote's hello and ``/v1/status`` carry it."""
        return {"enabled": self.enabled,
                "active": [layer.name for layer in self.layers if layer.active],
                "missing": {layer.name: layer.detail for layer in self.layers
                            if not layer.active and layer.needed},
                "layers": [asdict(layer) for layer in self.layers]}

"""Cgroups owned by the parent: every zygote in one with its children, limited, killable.

The process that starts zygotes (the supervisor, the evaluator pool) makes
the cgroups and moves each zygote in before it imports agent code; its
children are born there. The processes inside never write them (they
belong to root and agent code runs as another uid, and the sandbox's mount
namespace covers ``/sys/fs/cgroup``). In every hierarchy used (cgroup v2,
and the v1 ``pids``, ``memory`` and ``freezer`` hierarchies of a hybrid or
v1 host)::

    <the parent's own cgroup>/project-o/
        <pid>.<start time>/          one per parent process (stale ones are swept)
            z<zygote pid>/           one per zygote and all its children: pids.max and
                                     the memory limit are the zygote's allowance plus
                                     each live child's quota; killed and removed with it

Per zygote, not per child: moving a process between cgroups waits for an
RCU grace period (about 10 ms on a loaded machine), which would double the
sandbox's cost on every fork; a child born in its zygote's group costs
nothing, and its own bounds are its rlimits (address space, RLIMIT_NPROC in
the PID namespace) and its process group.

Killing a group takes every process in it, ``setsid()`` or not: v2's
``cgroup.kill``; on v1 without it, freeze (``freezer.state``), SIGKILL each
pid in ``cgroup.procs``, thaw; without a freezer, SIGKILL rounds until the
group is empty. What the machine lacks is in :attr:`CgroupHost.missing`.
See docs/design.md ("Sandbox").
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from project_o.runtime.confine import linux

__all__ = ["CgroupHost", "Group", "Hierarchy", "ZygoteCgroups", "discover", "host"]

_TOP: Final = "project-o"
_V1_WANTED: Final = ("pids", "memory", "freezer")
#: SIGKILL rounds on a group without cgroup.kill or a freezer (each round may race a fork)
_KILL_ROUNDS: Final = 50
#: a freezer reaches FROZEN within microseconds; give up after about 1 s
_FREEZE_TRIES: Final = 100
#: the zygote's own allowance in its group (its children's quotas are added to it)
ZYGOTE_PIDS: Final = 64
ZYGOTE_MEMORY: Final = 1 << 30


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy, seen from this process's own cgroup in it."""

    #: this process's cgroup directory in it
    own: Path
    #: 2 (unified) or 1
    version: int
    #: controllers children can get (v1: the hierarchy's; v2: enabled for them)
    controllers: frozenset[str]


def discover(mountinfo: str = "/proc/self/mountinfo",
             proc_cgroup: str = "/proc/self/cgroup") -> list[Hierarchy]:
    """The cgroup hierarchies mounted here that we would use, with our place in each."""
    try:
        mounts = Path(mountinfo).read_text().splitlines()
        own = _own_paths(Path(proc_cgroup).read_text())
    except OSError:
        return []
    found: list[Hierarchy] = []
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if len(fields) < 5 or len(after) < 3 or after[0] not in ("cgroup", "cgroup2"):
            continue
        root, point = fields[3], fields[4]
        if after[0] == "cgroup2":
            key, controllers = "", frozenset[str]()
        else:
            controllers = frozenset(after[2].split(",")) & frozenset(_V1_WANTED)
            key = next((k for k in own if k and set(k.split(",")) & controllers), "")
            if not controllers:
                continue
        path = own.get(key)
        if path is None or not (path + "/").startswith(root.rstrip("/") + "/"):
            continue  # our cgroup is outside what this mount shows
        directory = Path(point) / path[len(root.rstrip("/")):].lstrip("/")
        found.append(Hierarchy(directory, 2 if after[0] == "cgroup2" else 1, controllers))
    return found


def _own_paths(text: str) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller list ("" for v2): path}."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    return paths


class Group:
    """One cgroup, as a directory in each hierarchy used."""

    def __init__(self, dirs: tuple[tuple[Hierarchy, Path], ...]) -> None:
        self.dirs = dirs

    def child(self, name: str) -> Group:
        """The group ``name`` below this one (not made yet: :meth:`make`)."""
        return Group(tuple((h, d / name) for h, d in self.dirs))

    def make(self, delegate: frozenset[str] = frozenset()) -> None:
        """Create the directories; v2: give children the ``delegate`` controllers."""
        for hierarchy, directory in self.dirs:
            directory.mkdir(mode=0o755, exist_ok=True)
            wanted = delegate & hierarchy.controllers
            if hierarchy.version == 2 and wanted:
                linux.write_control(directory / "cgroup.subtree_control",
                                    " ".join(f"+{name}" for name in sorted(wanted)))

    def limit(self, *, pids: int | None, memory: int | None) -> None:
        """Set pids.max and the memory limit (None: no limit) where the controller is."""
        for hierarchy, directory in self.dirs:
            names = hierarchy.controllers
            if "pids" in names:
                linux.write_control(directory / "pids.max", _v2_value(pids))
            if "memory" in names and hierarchy.version == 2:
                linux.write_control(directory / "memory.max", _v2_value(memory))
                with contextlib.suppress(FileNotFoundError):  # no swap accounting
                    linux.write_control(directory / "memory.swap.max", "0")
            elif "memory" in names:
                _v1_memory(directory, "-1" if memory is None else str(memory))

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this group, in every hierarchy."""
        for _, directory in self.dirs:
            linux.write_control(directory / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        """Every process in this group and the groups below it."""
        found: set[int] = set()
        for _, top in self.dirs:
            for directory in _walk(top):
                with contextlib.suppress(OSError):
                    found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return found

    def kill(self) -> None:
        """SIGKILL every process in the group and below, even those that called setsid()."""
        for hierarchy, directory in self.dirs:
            if hierarchy.version == 2 and (directory / "cgroup.kill").exists():
                with contextlib.suppress(FileNotFoundError):
                    linux.write_control(directory / "cgroup.kill", "1")
                return
        freezer = next((d for h, d in self.dirs if "freezer" in h.controllers), None)
        if freezer is not None and freezer.is_dir():
            with _frozen(freezer):
                _kill_each(self.pids())
        for _ in range(_KILL_ROUNDS):
            left = self.pids()
            if not left:
                return
            _kill_each(left)
            time.sleep(0.001)

    def remove(self) -> bool:
        """Remove the directories (deepest first); False while a process is still inside."""
        done = True
        for _, top in self.dirs:
            for directory in reversed(list(_walk(top))):
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    done = False
        return done

    def destroy(self, tries: int = 1) -> bool:
        """Kill, then remove; ``tries`` removals 1 ms apart. Whether it is gone."""
        with contextlib.suppress(OSError):
            self.kill()
        for attempt in range(tries):
            with contextlib.suppress(OSError):
                if self.remove():
                    return True
            if attempt + 1 < tries:
                time.sleep(0.001)
        return False


class CgroupHost:
    """What this process can do with cgroups, and its own group for the zygotes it starts."""

    def __init__(self, hierarchies: list[Hierarchy], *, euid: int | None = None) -> None:
        self.missing: dict[str, str] = {}
        self.top: Group | None = None
        self.kill_by = ""
        used = self._usable(hierarchies)
        for feature in ("pids", "memory"):
            if not any(feature in h.controllers for _, h in used):
                self.missing.setdefault(feature, f"no {feature} controller in a writable "
                                        "cgroup hierarchy here")
        if not used:
            self.missing.setdefault("cgroup", self._why_none(hierarchies, euid))
            return
        self.kill_by = ("cgroup.kill (v2)" if any(h.version == 2 and (d / "cgroup.kill").exists()
                                                   for d, h in used)
                        else "freezer, then SIGKILL each (v1)"
                        if any("freezer" in h.controllers for _, h in used)
                        else "SIGKILL each process listed, until none is left")
        self._creator = os.getpid()
        mine = f"{self._creator}.{_start_time(self._creator)}"
        self._sweep(used)
        top = Group(tuple((h, d / mine) for d, h in used))
        try:  # the proof that we may: another user's project-o/ may be there already
            top.make(frozenset({"pids", "memory"}))
        except OSError as exc:
            self.missing["cgroup"] = f"{exc.filename} could not be made ({exc.strerror})"
            return
        self.top = top

    def _usable(self, hierarchies: list[Hierarchy]) -> list[tuple[Path, Hierarchy]]:
        """Each hierarchy we can write, with its ``project-o`` directory made."""
        used: list[tuple[Path, Hierarchy]] = []
        v2_seen = False
        for hierarchy in hierarchies:
            if hierarchy.version == 2:
                if v2_seen:
                    continue
                v2_seen = True
                hierarchy = self._v2_delegation(hierarchy)
            top = hierarchy.own / _TOP
            try:
                Group(((hierarchy, top),)).make(hierarchy.controllers)
            except OSError as exc:
                self.missing.setdefault(
                    "cgroup", f"{hierarchy.own} is not writable ({exc.strerror})")
                continue
            used.append((top, hierarchy))
        if any(h.version == 2 and (top / "cgroup.kill").exists() for top, h in used):
            # cgroup.kill does what the freezer is for
            for top, _ in [(t, h) for t, h in used if h.controllers == frozenset({"freezer"})]:
                with contextlib.suppress(OSError):
                    top.rmdir()  # busy: another parent of ours uses it
            used = [(t, h) for t, h in used if h.controllers != frozenset({"freezer"})]
        return used

    def _v2_delegation(self, hierarchy: Hierarchy) -> Hierarchy:
        """The controllers our children can get in v2: those our cgroup hands down."""
        try:
            available = set((hierarchy.own / "cgroup.controllers").read_text().split())
            enabled = set((hierarchy.own / "cgroup.subtree_control").read_text().split())
        except OSError:
            return Hierarchy(hierarchy.own, 2, frozenset())
        for name in sorted({"pids", "memory"} & available - enabled):
            try:
                linux.write_control(hierarchy.own / "cgroup.subtree_control", f"+{name}")
                enabled.add(name)
            except OSError as exc:
                # v2 gives no controller to the children of a cgroup that holds processes.
                self.missing[name] = (f"cgroup v2: {hierarchy.own} holds processes and does "
                                      f"not hand {name} down ({exc.strerror}); run under a "
                                      "delegated cgroup")
        return Hierarchy(hierarchy.own, 2, frozenset(enabled & {"pids", "memory"}))

    @staticmethod
    def _why_none(hierarchies: list[Hierarchy], euid: int | None) -> str:
        if not hierarchies:
            return "no cgroup hierarchy is mounted here"
        uid = os.geteuid() if euid is None else euid
        who = "root" if uid == 0 else f"uid {uid}"
        return f"no cgroup hierarchy here is writable by {who} (read-only or not delegated)"

    @property
    def available(self) -> bool:
        """Whether zygotes and children can be given cgroups of their own here."""
        return self.top is not None

    def describe(self) -> str:
        """The layer's detail: what each child gets, and what is missing and why."""
        if self.top is None:
            return self.missing.get("cgroup", "no cgroup")
        kinds = sorted("v2" if h.version == 2 else f"v1 {' '.join(sorted(h.controllers))}"
                       for h, _ in self.top.dirs)
        parts = [f"each zygote with its children in a cgroup of its parent's ({', '.join(kinds)})",
                 *(f"{n} limit (the zygote's and each child's quota)"
                   for n in ("pids", "memory") if n not in self.missing),
                 f"all killed with the zygote by {self.kill_by}"]
        gaps = [f"{name}: {why}" for name, why in sorted(self.missing.items())]
        return "; ".join(parts) + (f"; missing: {'; '.join(gaps)}" if gaps else "")

    def zygote_group(self, pid: int) -> Group:
        """Make zygote ``pid``'s group with its allowance and move it in; raises OSError."""
        if self.top is None:
            raise OSError(errno.ENOTSUP, self.describe())
        group = self.top.child(f"z{pid}")
        try:
            group.make()
            group.limit(pids=ZYGOTE_PIDS, memory=ZYGOTE_MEMORY)
            group.add(pid)
        except OSError:
            group.destroy()
            raise
        return group

    def close(self) -> None:
        """Remove this process's directories (at exit; what is still busy stays for a sweep)."""
        if self.top is not None and os.getpid() == self._creator:  # not in a forked copy
            self.top.destroy()

    def _sweep(self, used: list[tuple[Path, Hierarchy]]) -> None:
        """Kill and remove the groups of parents that are gone (a crashed supervisor's)."""
        for top, hierarchy in used:
            with contextlib.suppress(OSError):
                for entry in top.iterdir():
                    if entry.is_dir() and not _alive(entry.name):  # (never ours: we are alive)
                        Group(((hierarchy, entry),)).destroy(tries=10)


class ZygoteCgroups:
    """One zygote's cgroup, as the parent that started it keeps it.

    :meth:`start` moves the zygote in (before it imports agent code: the
    zygote waits for the parent's word). Its children are born there; before
    each fork :meth:`reserve` adds the child's quota (pids, memory) to the
    group's limits, and :meth:`release` takes it off when the child is gone.
    ``layer`` is the sandbox report's line for this zygote.
    """

    def __init__(self, group: Group | None, layer: tuple[bool, str],
                 gaps: dict[str, str] | None = None) -> None:
        self.group = group
        self.layer = layer
        #: what the active layer lacks here ("cgroup memory": why), for status to show
        self.gaps = gaps or {}
        self._quotas: dict[object, tuple[int | None, int | None]] = {}

    @classmethod
    def start(cls, pid: int, cgroups: CgroupHost | None) -> ZygoteCgroups:
        """Zygote ``pid``'s group (none where ``cgroups`` is None or cannot); never raises."""
        if cgroups is None:
            return cls(None, (False, "the sandbox is switched off (--no-sandbox)"))
        if not cgroups.available:
            return cls(None, (False, cgroups.describe()))
        try:
            group = cgroups.zygote_group(pid)
        except OSError as exc:
            return cls(None, (False, f"the zygote's cgroup could not be made: {exc}"))
        gaps = {f"cgroup {name}": why for name, why in cgroups.missing.items()}
        return cls(group, (True, cgroups.describe()), gaps)

    def reserve(self, key: object, *, pids: int | None, memory: int | None) -> None:
        """Add a child's quota (None: unlimited) before it is forked; OSError if refused."""
        if self.group is None:
            return
        self._quotas[key] = (pids, memory)
        try:
            self._apply()
        except OSError:
            self._quotas.pop(key, None)
            raise

    def rename(self, key: object, new: object) -> None:
        """The child reserved as ``key`` is known as ``new`` from now on (its pid)."""
        if key in self._quotas:
            self._quotas[new] = self._quotas.pop(key)

    def release(self, key: object) -> None:
        """The child is gone (or was never forked): its quota comes off the limits."""
        if self.group is not None and self._quotas.pop(key, None) is not None:
            # Lowering may be refused while memory is still charged: the next change retries.
            with contextlib.suppress(OSError):
                self._apply()

    def _apply(self) -> None:
        assert self.group is not None
        self.group.limit(pids=_total(ZYGOTE_PIDS, (p for p, _ in self._quotas.values())),
                         memory=_total(ZYGOTE_MEMORY, (m for _, m in self._quotas.values())))

    def close(self) -> bool:
        """The zygote is gone: kill everything left in its group, remove it; whether gone."""
        if self.group is None:
            return True
        return self.group.destroy(tries=100)


@functools.cache
def host() -> CgroupHost:
    """This process's cgroup host (detected once; its directories removed at exit)."""
    import atexit

    found = CgroupHost(discover())
    atexit.register(found.close)
    return found


def _total(allowance: int, quotas: Iterator[int | None]) -> int | None:
    """The allowance plus every quota; None (no limit) if any quota is unlimited."""
    total = allowance
    for quota in quotas:
        if quota is None:
            return None
        total += quota
    return total


def _alive(name: str) -> bool:
    """Whether ``<pid>.<start time>`` names a running process (the same one, not a reuse)."""
    pid, _, start = name.partition(".")
    if not pid.isdigit():
        return True  # not ours to judge
    return _start_time(int(pid)) == start


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks


def _walk(top: Path) -> Iterator[Path]:
    """``top`` and every directory below it, parents first."""
    if not top.is_dir():
        return
    yield top
    with contextlib.suppress(OSError):
        for entry in sorted(top.iterdir()):
            if entry.is_dir():
                yield from _walk(entry)


@contextlib.contextmanager
def _frozen(directory: Path) -> Iterator[None]:
    """v1 freezer: nothing in ``directory`` runs (nor forks) until the block ends."""
    try:
        linux.write_control(directory / "freezer.state", "FROZEN")
        for _ in range(_FREEZE_TRIES):
            if (directory / "freezer.state").read_text().strip() == "FROZEN":
                break
            time.sleep(0.01)
    except OSError:
        pass
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            linux.write_control(directory / "freezer.state", "THAWED")  # SIGKILL lands on thaw


def _v2_value(limit: int | None) -> str:
    return "max" if limit is None else str(limit)


def _v1_memory(directory: Path, value: str) -> None:
    """v1: memory and memory+swap limits alike (no swap), memsw never below the other."""
    memsw = directory / "memory.memsw.limit_in_bytes"
    if not memsw.exists():  # no swap accounting
        linux.write_control(directory / "memory.limit_in_bytes", value)
        return
    with contextlib.suppress(OSError):  # raising: memsw first; lowering: it fails here
        linux.write_control(memsw, value)
    linux.write_control(directory / "memory.limit_in_bytes", value)
    linux.write_control(memsw, value)


def _kill_each(pids: set[int]) -> None:
    own = os.getpid()
    for pid in pids - {0, 1, own}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

"""Entering the sandbox: every layer the policy asks for, in order, each one reported.

Called by the zygote before it imports a line of agent code, so whatever
runs at import time is already inside; every child the zygote forks
inherits all of it. In order::

    identity (1/2)   root: the uid/gid agent code will run as is chosen
                     unprivileged: a user namespace (the capabilities for what follows)
    namespaces       unshare(mount, PID, IPC, UTS[, network]): one call
    PID init         fork: the caller stays outside, waits and exits as the zygote
                     does; the zygote goes on as process 1 of the new PID namespace
    mounts           /proc of that namespace, private /tmp, hidden and exposed dirs
                     (root: exposed dirs id-mapped to the agent's uid)
    identity (2/2)   root: setgroups([]), setresgid, setresuid: no capability left
                     unprivileged: capabilities dropped
    no_new_privs     and the seccomp filter
    landlock         where the mount namespace could not be made, and where agent code
                     keeps the user's own uid (unprivileged: writes only to /tmp and
                     the scratch directories)

A layer the machine does not allow is reported with the reason and the
next one is tried; the sandbox never stops the zygote from starting (the
report says what is missing, and status shows it).
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass

from project_o.runtime.confine import identity, landlock, linux, mounts, syscall_filter
from project_o.runtime.confine.policy import LAYERS, SandboxPolicy, SandboxReport
from project_o.runtime.procctl import set_parent_death_signal

__all__ = ["Confinement", "confine"]

_HOSTNAME = "project-o-sandbox"
#: the layers one unshare makes (the mount one also carries the private view)
_NAMESPACES = ("mount", "pid", "ipc", "uts", "network")


@dataclass
class Confinement:
    """What the zygote keeps of its sandbox: the report, and how to name its children."""

    report: SandboxReport
    #: the host's /proc (O_PATH), kept when the zygote sees only its own PID namespace
    host_proc: int | None = None
    #: whether each child gets its own directory in the private /tmp
    private_tmp: bool = False
    #: whether the children's tasks are all in this PID namespace (RLIMIT_NPROC counts them)
    own_pids: bool = False

    def host_pid(self, pid: int) -> int:
        """The host's pid of our child ``pid`` (what the parent can signal and show)."""
        if self.host_proc is None:
            return pid
        pidfd = os.pidfd_open(pid)
        try:
            info = os.open(f"self/fdinfo/{pidfd}", os.O_RDONLY, dir_fd=self.host_proc)
            try:
                text = os.read(info, 4096).decode()
            finally:
                os.close(info)
        finally:
            os.close(pidfd)
        for line in text.splitlines():
            if line.startswith("Pid:"):
                return int(line.split()[1])
        raise OSError(f"no pid in the pidfd's fdinfo: {text!r}")


def confine(policy: SandboxPolicy, *, agent_paths: tuple[str, ...] = ()) -> Confinement:
    """Apply ``policy`` to this process; never raises for a layer the machine lacks."""
    report = SandboxReport(enabled=policy.enabled)
    if not policy.enabled:
        for name in LAYERS:
            report.add(name, False, "the sandbox is switched off (--no-sandbox)")
        return Confinement(report)
    seccomp_missing = syscall_filter.seccomp_available()  # imported while it can be read
    root = os.geteuid() == 0
    ids = identity.sandbox_ids(policy.uid, policy.gid) if root else None
    userns = root or _user_namespace(policy, report)
    namespaces = userns and policy.namespaces and _namespaces(policy, report)
    result = Confinement(report)
    if namespaces:
        _become_pid_init()
        result.host_proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        result.own_pids = result.private_tmp = _mounts(policy, report, ids, agent_paths)
    elif not (policy.namespaces and userns):  # (a refused unshare reported them itself)
        why = ("namespaces not asked for (policy)" if not policy.namespaces
               else "no user namespace to make them in (see identity)")
        for name in _NAMESPACES:
            report.add(name, False, why)
    if ids is not None:
        _switch(ids, report)
        if namespaces:
            # A change of credentials clears the parent-death signal: arm it again.
            # (Had the parent died in between, the control socket's EOF ends us.)
            set_parent_death_signal(signal.SIGKILL)
    elif userns:
        _drop_caps(report)
    _seccomp(report, seccomp_missing)
    if not report.active("mount"):
        _landlock(policy, report, agent_paths)
    elif ids is None:
        # Agent code runs as the user's own uid here: whatever the user owns outside
        # the hidden directories it could write. Landlock narrows writes to /tmp.
        _landlock(policy, report, agent_paths, scratch="/tmp")
    else:
        report.add("landlock", False, "not needed: the mount namespace and a uid of its own "
                   "confine files", needed=False)
    return result


def _user_namespace(policy: SandboxPolicy, report: SandboxReport) -> bool:
    if not policy.namespaces:
        report.add("identity", False, "not root and namespaces not asked for: "
                   f"agent code runs as uid {os.getuid()}")
        return False
    try:
        identity.enter_user_namespace()
    except OSError as exc:
        report.add("identity", False, f"not root, and no user namespace: {exc.strerror}; "
                   f"agent code runs as uid {os.getuid()}")
        return False
    report.add("identity", True, f"user namespace (uid {os.getuid()} mapped to itself)")
    return True


def _namespaces(policy: SandboxPolicy, report: SandboxReport) -> bool:
    flags = (linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS
             | (0 if policy.network else linux.CLONE_NEWNET))
    try:
        linux.unshare(flags)
    except OSError as exc:
        for name in _NAMESPACES:
            report.add(name, False, f"unshare refused: {exc.strerror}")
        return False
    report.add("pid", True, "own PID namespace: the zygote is its process 1, "
               "agent code sees only its own processes")
    report.add("ipc", True, "own IPC namespace")
    report.add("uts", True, f"own UTS namespace (hostname {_HOSTNAME})")
    if policy.network:
        report.add("network", False, "the network is allowed for this agent (--allow-network)")
    else:
        report.add("network", True, "own network namespace: no interface, loopback down")
    return True


def _become_pid_init() -> None:
    """Fork into the new PID namespace; the parent waits there and exits as the child does."""
    pid = os.fork()
    if pid == 0:
        # Our parent is outside the namespace (getppid() says 0): it is alive,
        # it waits for us; if it dies, so do we.
        set_parent_death_signal(signal.SIGKILL)
        return
    # The parent: the pid the zygote's own parent knows. It holds nothing
    # (descriptors closed) and mirrors the zygote's end as its own.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def _mounts(policy: SandboxPolicy, report: SandboxReport, ids: tuple[int, int] | None,
            agent_paths: tuple[str, ...]) -> bool:
    try:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        mounts.mount_proc()
        socket.sethostname(_HOSTNAME)
        userns_fd = identity.idmap_namespace(*ids) if ids is not None else None
        try:
            home = os.path.expanduser("~")  # (its Python and code are shown again)
            done = mounts.private_view(policy, home=home, userns_fd=userns_fd,
                                       agent_paths=agent_paths)
        finally:
            if userns_fd is not None:
                os.close(userns_fd)
    except OSError as exc:
        report.add("mount", False, f"the private file system view failed: {exc}")
        return False
    report.add("mount", True, "; ".join(done))
    return True


def _switch(ids: tuple[int, int], report: SandboxReport) -> None:
    try:
        identity.switch_user(*ids)
    except OSError as exc:
        report.add("identity", False, f"could not drop root: {exc}")
        return
    report.add("identity", True, f"uid {ids[0]} gid {ids[1]} of its own, no groups, "
               "no capabilities")


def _drop_caps(report: SandboxReport) -> None:
    try:
        identity.drop_capabilities()
    except OSError as exc:
        report.add("identity", False, f"capabilities of the user namespace kept: {exc}")


def _seccomp(report: SandboxReport, missing: str | None) -> None:
    try:
        linux.set_no_new_privs()
        report.add("no_new_privs", True, "PR_SET_NO_NEW_PRIVS")
    except OSError as exc:
        report.add("no_new_privs", False, str(exc))
    if missing is not None:
        report.add("seccomp", False, missing)
        return
    try:
        count = syscall_filter.install_filter()
    except OSError as exc:
        report.add("seccomp", False, f"the filter could not be loaded: {exc}")
        return
    report.add("seccomp", True, f"{count} rules: ptrace, process_vm_*, mount, bpf, "
               "perf_event_open, kexec, keyctl, setns/unshare, new namespaces refused")


def _landlock(policy: SandboxPolicy, report: SandboxReport,
              agent_paths: tuple[str, ...], scratch: str | None = None) -> None:
    hidden = tuple(os.path.realpath(p) for p in policy.hidden)
    readable = [p for p in mounts.exposed_paths(policy, agent_paths)
                if not any(h == p or h.startswith(p.rstrip("/") + "/") for h in hidden)]
    try:
        scratch = scratch or _private_tmp_dir()
        detail = landlock.restrict(readable=[*landlock.SYSTEM_READ, *readable],
                                   writable=[*policy.writable, scratch],
                                   network=policy.network)
    except OSError as exc:
        report.add("landlock", False, f"not applied: {exc}")
        return
    report.add("landlock", True, f"{detail}; writes only beneath {scratch} and the "
               "scratch directories")


def _private_tmp_dir() -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix="project-o-sandbox-")
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    return path


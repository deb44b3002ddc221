"""The seccomp filter: system calls agent code may never make (libseccomp, via pyseccomp).

Everything else is allowed: the filter is a deny list of the calls that
reach outside the sandbox or into the kernel's privileged corners::

    ptrace, process_vm_readv/writev     other processes' memory
    mount family, pivot_root, chroot    the file system view
    setns, unshare, clone(CLONE_NEW*)   leaving or making namespaces (clone3: ENOSYS,
                                        so libc falls back to clone, whose flags are seen)
    bpf, perf_event_open                kernel programs, performance counters
    kexec_*, init/finit/delete_module   the kernel itself
    keyctl, add_key, request_key        the kernel keyring
    open_by_handle_at, reboot, swap*    host-wide file handles and switches

A refused call fails with EPERM (clone3 with ENOSYS); the process lives.
The filter is inherited by every child and cannot be lifted; it needs
PR_SET_NO_NEW_PRIVS (set first).
"""

from __future__ import annotations

import errno
from typing import Any, Final

from project_o.runtime.confine import linux

__all__ = ["DENIED", "install_filter", "seccomp_available"]

#: refused with EPERM
DENIED: Final = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "setns", "unshare",
    "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at", "reboot", "swapon", "swapoff", "acct",
)


def _binding() -> Any:
    import pyseccomp

    return pyseccomp


def seccomp_available() -> str | None:
    """None if a filter can be installed here, else why not."""
    try:
        _binding()
    except (ImportError, OSError, RuntimeError) as exc:  # no package, or no libseccomp.so.2
        return f"libseccomp is not usable: {exc}"
    return None


def install_filter() -> int:
    """Load the filter into this process (and all it will fork); the number of rules."""
    seccomp = _binding()
    linux.set_no_new_privs()
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    count = 0
    for name in DENIED:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
            count += 1
        except (OSError, ValueError, RuntimeError):
            continue  # a call this architecture does not have
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in _flags(linux.NAMESPACE_FLAGS):
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone",
                       seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.load()
    return count + 1 + len(_flags(linux.NAMESPACE_FLAGS))


def _flags(mask: int) -> list[int]:
    return [1 << bit for bit in range(64) if mask & (1 << bit)]

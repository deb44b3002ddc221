"""Pids across the sandbox's PID namespace: the host sees one number, agent code another."""

from __future__ import annotations

__all__ = ["inner_pid"]


def inner_pid(host_pid: int) -> int:
    """The pid process ``host_pid`` sees itself as (its innermost PID namespace's).

    The same number outside a sandbox. Raises OSError if the process is gone.
    """
    with open(f"/proc/{host_pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return host_pid  # a kernel without NSpid has no nested PID namespaces either

"""The sandbox of every process that runs agent or candidate code, one module per layer.

``policy`` (what to do, what was done), ``enter`` (applies the layers in
order, in the zygote before agent code is imported), ``identity`` (uid/gid
or user namespace), ``mounts`` (the private file system view), ``linux``
(the system calls), ``syscall_filter`` (seccomp), ``landlock`` (the
unprivileged fallback). Per-child limits stay in ``runtime.sandbox``.
See docs/design.md ("Sandbox").
"""

from project_o.runtime.confine.policy import LAYERS, Layer, SandboxPolicy, SandboxReport

__all__ = ["LAYERS", "Layer", "SandboxPolicy", "SandboxReport"]

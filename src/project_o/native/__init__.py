"""Native modules: C source an agent proposes for a hot function, compiled and loaded by itself.

::

    from project_o import native

    SIEVE = native.build(C_SOURCE, cdef="long count_primes(long n);")
    SIEVE.lib.count_primes(100_000)

:func:`build` runs the C compiler as a child of the calling process (the
candidate's zygote or a sandboxed evaluator child, never the supervisor),
with a timeout, resource limits and a cap on its output, in a private
temporary directory; the library is loaded with cffi and its file deleted.
A native module that crashes, corrupts memory or loops takes down only the
process that loaded it, and the experiment machinery rejects that version.
"""

from __future__ import annotations

from project_o.errors import NativeBuildError
from project_o.native.compiler import ALLOWED_FLAGS, CompileLimits, compile_shared
from project_o.native.module import NativeModule, build

__all__ = [
    "ALLOWED_FLAGS",
    "CompileLimits",
    "NativeBuildError",
    "NativeModule",
    "build",
    "compile_shared",
]

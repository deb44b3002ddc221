"""A compiled native module, loaded with cffi: :func:`build` and :class:`NativeModule`.

::

    build(source, cdef)  ─► private temp dir (mode 0700) ─► compile_shared ─► cffi dlopen
                         ─► the directory removed (the mapping stays) ─► NativeModule(lib, ffi)

cffi in ABI mode: ``cdef`` declares the functions (plain C declarations),
calls convert Python ints and floats, and ``ffi.from_buffer`` passes arrays
(numpy, ``array.array``, bytes) without copying. Each build compiles afresh:
there is no cache another candidate could plant a library in.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from project_o.errors import NativeBuildError
from project_o.native.compiler import CompileLimits, compile_shared

__all__ = ["NativeModule", "build"]


@dataclass(frozen=True)
class NativeModule:
    """A loaded native module."""

    #: module name (the library's file name, without ``.so``)
    name: str
    #: the functions declared in ``cdef``, callable from Python
    lib: Any
    #: the cffi ``FFI`` that declared them (``ffi.new``, ``ffi.from_buffer``, ``ffi.cast``)
    ffi: Any
    #: sha256 of the C source, to tell versions apart in logs and metrics
    source_sha256: str
    #: how long compiling and loading took
    build_s: float


def build(source: str, cdef: str, *, name: str = "native", flags: Sequence[str] = (),
          limits: CompileLimits | None = None) -> NativeModule:
    """Compile C ``source``, load it and declare ``cdef``'s functions; a :class:`NativeModule`.

    Raises :class:`NativeBuildError` (with the compiler's output) when the
    source does not compile, the compiler passes its limits, a flag is not
    allowed, or ``cdef`` does not parse or names a symbol the library lacks.
    """
    try:
        from cffi import FFI
    except ImportError as exc:  # pragma: no cover - cffi is a dependency
        raise NativeBuildError("native modules need cffi: python3 -m pip install cffi") from exc
    started = time.perf_counter()
    ffi = FFI()
    try:
        ffi.cdef(cdef)
    except Exception as exc:
        raise NativeBuildError(f"cdef does not parse: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="project-o-native-") as directory:
        library = compile_shared(source, Path(directory), name=name, flags=flags, limits=limits)
        try:
            lib = ffi.dlopen(str(library))
        except OSError as exc:
            raise NativeBuildError(f"{name}.so does not load: {exc}") from exc
    _check_symbols(ffi, lib, cdef, name)
    digest = hashlib.sha256(source.encode()).hexdigest()
    return NativeModule(name, lib, ffi, digest, time.perf_counter() - started)


def _check_symbols(ffi: Any, lib: Any, cdef: str, name: str) -> None:
    # cffi resolves a symbol on first use; resolve all now, so a missing one fails the build.
    missing = []
    for symbol in dir(lib):
        try:
            getattr(lib, symbol)
        except AttributeError:
            missing.append(symbol)
    if missing:
        raise NativeBuildError(f"{name}.so lacks {missing} declared in cdef")

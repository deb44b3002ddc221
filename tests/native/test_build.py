"""Building native modules: a real C compiler, real limits, real failures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from project_o.native import CompileLimits, NativeBuildError, build

DOT = r"""
#include <stddef.h>
double dot(const double *a, const double *b, size_t n) {
    double total = 0.0;
    for (size_t i = 0; i < n; i++) total += a[i] * b[i];
    return total;
}
"""


def test_a_module_is_compiled_loaded_and_called_with_buffers() -> None:
    from array import array

    module = build(DOT, "double dot(const double *a, const double *b, size_t n);", name="dot")
    a, b = array("d", [1.0, 2.0, 3.0]), array("d", [4.0, -5.0, 6.0])
    ffi = module.ffi
    result = module.lib.dot(ffi.cast("double *", ffi.from_buffer(a)),
                            ffi.cast("double *", ffi.from_buffer(b)), len(a))
    assert result == 1.0 * 4.0 - 2.0 * 5.0 + 3.0 * 6.0
    assert len(module.source_sha256) == 64 and module.build_s > 0


def test_the_compiler_directory_is_gone_once_loaded(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    module = build("int one(void) { return 1; }", "int one(void);")
    assert module.lib.one() == 1
    assert list(tmp_path.iterdir()) == []


def test_a_syntax_error_gives_the_compiler_diagnostics() -> None:
    with pytest.raises(NativeBuildError) as caught:
        build("int one(void) { return 1 }", "int one(void);", name="broken")
    assert "broken.c did not compile" in str(caught.value)
    assert "error: expected ';'" in caught.value.log
    assert "broken.c:1:" in caught.value.log  # relative names, no temporary paths


def test_compiler_output_is_capped() -> None:
    source = "\n".join(f"int f{i}(void) {{ return undefined_{i}; }}" for i in range(200))
    with pytest.raises(NativeBuildError) as caught:
        build(source, "int f0(void);", limits=CompileLimits(max_log_chars=300))
    assert caught.value.log.endswith("[compiler output truncated]")
    assert len(caught.value.log) <= 300 + len("\n[compiler output truncated]")


def test_a_compiler_that_never_finishes_is_killed_at_the_timeout(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: none will
    with pytest.raises(NativeBuildError, match="ran past its 1 s"):
        build(f'#include "{fifo}"\n', "int one(void);", limits=CompileLimits(timeout_s=1.0))


def test_the_memory_limit_applies_to_the_compiler() -> None:
    with pytest.raises(NativeBuildError, match="did not compile"):
        build("int one(void) { return 1; }", "int one(void);",
              limits=CompileLimits(memory_bytes=8 << 20))
    # the same source under the default limits compiles
    assert build("int one(void) { return 1; }", "int one(void);").lib.one() == 1


@pytest.mark.parametrize("flags", [["-fplugin=./evil.so"], ["-wrapper", "sh"], ["-B/tmp"],
                                   ["-Wl,--script=x"], ["-include/etc/passwd"]])
def test_flags_outside_the_allowed_set_are_refused(flags: list[str]) -> None:
    with pytest.raises(NativeBuildError, match="flags not allowed"):
        build("int one(void) { return 1; }", "int one(void);", flags=flags)


def test_allowed_flags_reach_the_compiler() -> None:
    source = "int answer(void) { return ANSWER; }"
    module = build(source, "int answer(void);", flags=["-O3", "-DANSWER=42"])
    assert module.lib.answer() == 42


@pytest.mark.parametrize("name", ["../escape", "a b", "", "x" * 65])
def test_names_that_are_not_identifiers_are_refused(name: str) -> None:
    with pytest.raises(NativeBuildError, match="C identifier"):
        build("int one(void) { return 1; }", "int one(void);", name=name)


def test_a_cdef_that_does_not_parse_or_names_a_missing_symbol_fails_the_build() -> None:
    with pytest.raises(NativeBuildError, match="cdef does not parse"):
        build("int one(void) { return 1; }", "int one(void")
    with pytest.raises(NativeBuildError, match=r"lacks \['two'\]"):
        build("int one(void) { return 1; }", "int one(void); int two(void);")


class _Alarm(BaseException):
    """What an evaluator's alarm raises inside a candidate (a BaseException, like it)."""


def test_an_alarm_during_the_compile_leaves_no_compiler_running(tmp_path: Path) -> None:
    import signal

    import psutil

    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # other tests' own

    def ring(signum: int, frame: object) -> None:
        raise _Alarm()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(_Alarm):
            build(f'#include "{fifo}"\n', "int one(void);", limits=CompileLimits(timeout_s=30))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in before and p.status() != "zombie"]
    assert left == []  # neither the compiler driver nor cc1 outlived the interrupted build

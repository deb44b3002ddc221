"""Compiling a candidate module chunk by chunk runs exactly what compiling it whole runs."""

from __future__ import annotations

import traceback
from types import ModuleType
from typing import Any

import pytest

from project_o.evolution.module_code import ModuleCode, split_chunks

AGENT = '''"""Doc of the module."""
from __future__ import annotations

import math

SCALE = 3


def helper(x: "int") -> int:
    return x * SCALE


@staticmethod
def decorated(x):
    return helper(x) + 1


class Box:
    def area(self, side):
        return side * side


def fails(x):
    return 1 / x
'''


def _run(codes: list[Any]) -> dict[str, Any]:
    namespace: dict[str, Any] = ModuleType("m").__dict__
    for code in codes:
        exec(code, namespace)  # noqa: S102 - the test's own text
    return namespace


def test_chunks_start_at_definitions_after_a_blank_line_and_cover_the_text() -> None:
    chunks = split_chunks(AGENT)
    assert "".join(text for _, text in chunks) == AGENT
    assert [text.split("\n", 1)[0] for _, text in chunks[1:]] == [
        "def helper(x: \"int\") -> int:", "@staticmethod", "class Box:", "def fails(x):"]
    for line, text in chunks:  # each starts on its own line of the file
        assert AGENT.splitlines()[line - 1] == text.splitlines()[0]


def test_chunked_module_behaves_as_the_whole_one() -> None:
    compiler = ModuleCode()
    codes = compiler.compile(AGENT, "/x/agent.py")
    assert len(codes) == 5
    chunked, whole = _run(codes), _run([compile(AGENT, "/x/agent.py", "exec",
                                                dont_inherit=True)])
    assert chunked["__doc__"] == whole["__doc__"] == "Doc of the module."
    assert chunked["helper"](2) == whole["helper"](2) == 6
    assert chunked["Box"]().area(3) == 9
    # The future import of the first chunk holds in the others: annotations stay strings.
    assert chunked["helper"].__annotations__ == whole["helper"].__annotations__
    assert chunked["helper"].__annotations__["return"] == "int"
    assert chunked["fails"].__code__.co_firstlineno == whole["fails"].__code__.co_firstlineno
    with pytest.raises(ZeroDivisionError) as raised:
        chunked["fails"](0)
    last = traceback.extract_tb(raised.value.__traceback__)[-1]
    assert (last.filename, last.lineno) == ("/x/agent.py", AGENT.splitlines().index(
        "    return 1 / x") + 1)


def test_unchanged_chunks_are_compiled_once_and_named_after_each_file() -> None:
    compiler = ModuleCode()
    first = compiler.compile(AGENT, "/a/agent.py")
    changed = AGENT.replace("return 1 / x", "return 2 / x")
    second = compiler.compile(changed, "/b/agent.py")
    assert all(code.co_filename == "/b/agent.py" for code in second)
    assert _run(second)["fails"](1) == 2.0
    # same code, renamed: the unchanged chunks were not compiled again
    assert [c.co_code for c in first[:-1]] == [c.co_code for c in second[:-1]]
    assert _run(second)["helper"].__code__.co_filename == "/b/agent.py"


@pytest.mark.parametrize("text", [
    # a "def" at the start of a line inside a string: the split does not compile
    'x = 1\n\ns = """\n\ndef g():\n    pass\n"""\n',
    # else after a blank line is not a definition: one chunk
    "if True:\n    y = 1\n\nelse:\n    y = 2\n",
    # a decorator whose arguments span lines before its def
    "def d(*a):\n    return lambda f: f\n\n@d(\n    1)\ndef g():\n    return 2\n",
])
def test_what_does_not_split_into_statements_runs_whole(text: str) -> None:
    codes = ModuleCode().compile(text, "t.py")
    whole = _run([compile(text, "t.py", "exec", dont_inherit=True)])
    chunked = _run(codes)
    assert {k: v for k, v in chunked.items() if not callable(v)} == \
        {k: v for k, v in whole.items() if not callable(v)}


def test_a_syntax_error_is_the_whole_files() -> None:
    text = "x = 1\n\n\ndef g(:\n    pass\n"
    with pytest.raises(SyntaxError) as chunked:
        ModuleCode().compile(text, "bad.py")
    with pytest.raises(SyntaxError) as whole:
        compile(text, "bad.py", "exec", dont_inherit=True)
    assert (chunked.value.filename, chunked.value.lineno, chunked.value.msg) == \
        (whole.value.filename, whole.value.lineno, whole.value.msg)


def test_under_one_file_name_unchanged_chunks_are_shared_as_named() -> None:
    compiler = ModuleCode()
    first = compiler.compile(AGENT, "/batch/agent.py")
    changed = AGENT.replace("return 1 / x", "return 2 / x")
    second = compiler.compile(changed, "/batch/agent.py")
    assert all(a is b for a, b in zip(first[:-1], second[:-1], strict=True))
    assert first[-1] is not second[-1]
    assert _run(first)["fails"](1) == 1.0 and _run(second)["fails"](1) == 2.0
    # another name still gets its own copies, named after it
    third = compiler.compile(AGENT, "/other/agent.py")
    assert all(code.co_filename == "/other/agent.py" for code in third)
    assert all(a is not b for a, b in zip(first, third, strict=True))

"""A candidate module's code, compiled one top-level definition at a time, each text once.

::

    agent.py ─split before each line after a blank one that starts "@", "def ",
              "async def " or "class "─►
      chunk 0: docstring, imports, agent = Agent(...)   (the same in every candidate)
      chunk 1: @agent.evolvable def f ...                (what the operators changed)
      chunk 2: @agent.evolvable def blocks ...           (the same, or changed)
      ...
    each chunk ─► (its text, its first line) ─► code, compiled once per evaluator child
               ─► renamed to the candidate's file name, once per name (an evaluator names
                  its candidates' files alike) ─► exec'd in order, in one namespace

An evaluator child loads up to a batch of candidates that differ, most of
the time, in one function: compiling the whole file for each was a third
of a candidate's cost. Running a module's code is running its top-level
statements in order, so running each chunk's code in order in the same
namespace is running the module, as long as every chunk is whole
statements. That is checked, not assumed: a chunk is compiled on its own
(a split inside a string, a bracket or an ``if``/``else`` does not
compile on either side of it), every chunk is compiled before any runs,
and whatever does not compile chunk by chunk is compiled whole, so a
syntax error reads as it would. A chunk starts on its own line number (so
tracebacks and line numbers are the file's) and is compiled with the
``__future__`` features of the first chunk, where they must be.

The cache lives in the process that loads candidates (one evaluator child,
fresh for each batch), like every other module state a candidate can
reach; see :mod:`.tamper` for what a candidate can and cannot do to the
candidates after it in its batch.
"""

from __future__ import annotations
import __future__

import functools
import itertools
import operator
from types import CodeType
from typing import Final

__all__ = ["CACHE_SIZE", "ModuleCode", "split_chunks"]

#: chunks remembered per process: a batch's few distinct texts, many times over
CACHE_SIZE: Final = 2048

#: how a line that may start a chunk begins: a definition at the top level
_DEFINITIONS: Final = ("@", "def ", "async def ", "class ")

#: every flag a ``from __future__ import`` can set in a code object
_FUTURE_FLAGS: Final = functools.reduce(
    operator.or_, (getattr(__future__, name).compiler_flag
                   for name in __future__.all_feature_names), 0)


def split_chunks(text: str) -> list[tuple[int, str]]:
    """``(first line, text)`` of each chunk of ``text`` (see the module docstring).

    A chunk starts at a definition right after a blank line, so never between
    a decorator and its def (files with ``\\r\\n`` line ends stay one chunk).
    """
    bounds, at = [0], text.find("\n\n")
    while at >= 0:
        if text.startswith(_DEFINITIONS, at + 2):
            bounds.append(at + 2)
        at = text.find("\n\n", at + 1)
    bounds.append(len(text))
    chunks, line = [], 1
    for start, end in itertools.pairwise(bounds):
        piece = text[start:end]
        chunks.append((line, piece))
        line += piece.count("\n")
    return chunks


class ModuleCode:
    """Compiles module texts to a list of code objects to run in order, reusing chunks."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._codes: dict[tuple[int, str, int], CodeType] = {}
        # Renaming a chunk's code (and the functions inside it) costs as much as running
        # it: an evaluator names its candidates' files alike, so each is renamed once.
        self._named: dict[tuple[int, str, int, str], CodeType] = {}

    def compile(self, text: str, filename: str) -> list[CodeType]:
        """The code of the module ``text``, as ``filename``: run each, in order, in one dict.

        Raises SyntaxError (or ValueError for a NUL) as ``compile`` of the whole text would.
        """
        try:
            codes = self._chunked(text, filename)
        except (SyntaxError, ValueError):
            codes = None
        if codes is None:
            return [compile(text, filename, "exec", dont_inherit=True)]
        return codes

    def _chunked(self, text: str, filename: str) -> list[CodeType] | None:
        chunks = split_chunks(text)
        if len(chunks) < 2:
            return None  # nothing to share: the whole text is one chunk
        codes: list[CodeType] = []
        flags = 0
        for line, piece in chunks:
            key = (line, piece, flags, filename)
            named = self._named.get(key)
            if named is None:
                named = _renamed(self._code(line, piece, flags), filename)
                if len(self._named) >= self._size:
                    self._named.clear()
                self._named[key] = named
            if not codes:
                flags = named.co_flags & _FUTURE_FLAGS
            codes.append(named)
        return codes

    def _code(self, line: int, piece: str, flags: int) -> CodeType:
        """The chunk's code, compiled on its own lines with ``flags``, once."""
        code = self._codes.get((line, piece, flags))
        if code is None:
            # Line numbers are the file's; no inherited flags, only the file's futures.
            code = compile("\n" * (line - 1) + piece, "<chunk>", "exec", flags=flags,
                           dont_inherit=True)
            if len(self._codes) >= self._size:
                self._codes.clear()
            self._codes[line, piece, flags] = code
        return code


def _renamed(code: CodeType, filename: str) -> CodeType:
    """``code`` and the code objects inside it, as compiled from ``filename``."""
    consts = code.co_consts
    if any(isinstance(c, CodeType) for c in consts):
        consts = tuple(_renamed(c, filename) if isinstance(c, CodeType) else c for c in consts)
    return code.replace(co_filename=filename, co_consts=consts)

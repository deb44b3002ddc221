"""Read a function's docstring the way a tool schema needs it.

A tool's description is its docstring's prose; each parameter's
description comes from an ``Args:`` section (Google style) or a
``Parameters`` section (NumPy style)::

    def search(query: str, k: int = 5) -> list[str]:
        '''Search the notes.                    ─► summary (description)

        Args:                                   Google: "Args:", "Arguments:",
            query: what to look for.             "Parameters:", "Params:"
            k (int): how many hits; continued   ─► {"query": "what to look for.",
                on the next line.                    "k": "how many hits; continued
                                                      on the next line."}
        Returns:                                ─► ends the section
            the matching notes.
        '''

    NumPy:  Parameters            name : type
            ----------                description, indented
            query : str
                what to look for.

Sections other than the parameters (Returns, Raises, Examples...) are left
out of the description: they describe the Python function, not the call.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DocInfo", "parse_docstring"]

#: headers that open the parameter section, lower-cased, without the colon
_PARAM_HEADERS: Final = frozenset({"args", "arguments", "parameters", "params",
                                   "keyword args", "keyword arguments"})
#: headers that open some other section (they end the parameter section)
_OTHER_HEADERS: Final = frozenset({
    "returns", "return", "yields", "yield", "raises", "raise", "examples", "example",
    "notes", "note", "see also", "references", "warnings", "warning", "attributes",
    "todo", "other parameters",
})
# "name (type): text", "name: text", "*name: text"
_GOOGLE_ITEM: Final = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")
# "name : type" or a bare "name" (the NumPy item line; the text is indented below)
_NUMPY_ITEM: Final = re.compile(r"^\*{0,2}(?P<name>\w+)\s*(:.*)?$")
_UNDERLINE: Final = re.compile(r"^\s*-{3,}\s*$")


@dataclass(frozen=True)
class DocInfo:
    """What a docstring says: the prose, and one description per parameter."""

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> DocInfo:
    """Split ``doc`` into its prose and its per-parameter descriptions."""
    lines = inspect.cleandoc(doc or "").splitlines()
    prose: list[str] = []
    params: dict[str, str] = {}
    index = 0
    while index < len(lines):
        header = _header(lines, index)
        if header is None:
            prose.append(lines[index])
            index += 1
            continue
        kind, body_start, numpy = header
        body_end = _section_end(lines, body_start)
        if kind == "params":
            params.update(_parse_items(lines[body_start:body_end], numpy))
        index = body_end
    return DocInfo("\n".join(prose).strip(), params)


def _header(lines: list[str], index: int) -> tuple[str, int, bool] | None:
    """``(kind, first body line, numpy?)`` if a section opens at ``index``.

    ``kind`` is ``"params"`` or ``"other"``; ``numpy`` says the header was
    underlined (NumPy style) rather than ended by a colon (Google style).
    """
    line = lines[index]
    if line[:1].isspace():
        return None
    text = line.strip().rstrip(":").lower()
    numpy = index + 1 < len(lines) and _UNDERLINE.match(lines[index + 1]) is not None
    google = line.rstrip().endswith(":")
    if not (numpy or google):
        return None
    body_start = index + (2 if numpy else 1)
    if text in _PARAM_HEADERS:
        return "params", body_start, numpy
    if text in _OTHER_HEADERS:
        return "other", body_start, numpy
    return None


def _section_end(lines: list[str], start: int) -> int:
    """The index of the next section header (or the end) after ``start``."""
    for index in range(start, len(lines)):
        if _header(lines, index) is not None:
            return index
    return len(lines)


def _parse_items(body: list[str], numpy: bool) -> dict[str, str]:
    """Parse one parameter section: Google items or NumPy items."""
    indents = [len(line) - len(line.lstrip()) for line in body if line.strip()]
    if not indents:
        return {}
    base = min(indents)
    items: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = _item_start(line.strip(), numpy) if indent == base else None
        if item is not None:
            name, first = item
            current = items.setdefault(name, [])
            if first:
                current.append(first)
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(text).strip() for name, text in items.items()}


def _item_start(line: str, numpy: bool) -> tuple[str, str] | None:
    """``(name, text on the same line)`` if ``line`` opens a parameter's item."""
    if numpy:
        # NumPy: the type follows the colon; the description is indented below.
        item = _NUMPY_ITEM.match(line)
        return None if item is None else (item["name"], "")
    item = _GOOGLE_ITEM.match(line)
    return None if item is None else (item["name"], item["text"].strip())

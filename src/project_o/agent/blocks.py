"""Memory blocks: named, size-limited texts an agent keeps in its prompt (Letta-style).

::

    ctx.memory.blocks.define("human", limit=1000, description="what I know of the user")
    ctx.memory.blocks.append("human", "Prefers short answers.")
    ctx.memory.blocks.render()  ─►  <memory_blocks>
                                    <human>
                                    <description>what I know of the user</description>
                                    <metadata>chars_current=22 chars_limit=1000</metadata>
                                    <value>
                                    Prefers short answers.
                                    </value>
                                    </human>
                                    </memory_blocks>

Each write is journaled before it is applied (operations below); a write
that would push a block past its limit raises InvalidArgument *before*
anything is journaled, so the model (or the agent) can shorten it and
retry. Limits are what keep the prompt bounded however long the agent runs.

Operations journaled: ``memory_block_define {name, limit, description}``,
``memory_block_set {name, text}``, ``memory_block_append {name, text}``,
``memory_block_delete {name}``. A block written before it was defined gets
:data:`DEFAULT_BLOCK_LIMIT`. A checkpoint keeps every block under
``memory_blocks["blocks"]``, in definition order (the order they render in).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from project_o.agent.store import APPLIED, DurableWrite
from project_o.errors import InvalidArgument

__all__ = [
    "BLOCK_APPEND",
    "BLOCK_DEFINE",
    "BLOCK_DELETE",
    "BLOCK_OPERATIONS",
    "BLOCK_SET",
    "DEFAULT_BLOCK_LIMIT",
    "Block",
    "BlockStore",
    "Blocks",
]

BLOCK_DEFINE: Final = "memory_block_define"
BLOCK_SET: Final = "memory_block_set"
BLOCK_APPEND: Final = "memory_block_append"
BLOCK_DELETE: Final = "memory_block_delete"
BLOCK_OPERATIONS: Final = frozenset({BLOCK_DEFINE, BLOCK_SET, BLOCK_APPEND, BLOCK_DELETE})
#: characters a block holds unless defined otherwise (Letta's core-memory default)
DEFAULT_BLOCK_LIMIT: Final = 2000
#: the most any one block may be given: a block lives in every prompt
MAX_BLOCK_LIMIT: Final = 100_000
#: block names become tags in the rendered prompt, so they stay tag-safe
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class Block:
    """One block: its text, its size limit in characters and what it is for."""

    name: str
    text: str = ""
    limit: int = DEFAULT_BLOCK_LIMIT
    description: str = ""

    def render(self) -> str:
        """The block as a prompt section."""
        description = f"<description>{self.description}</description>\n" if self.description else ""
        return (
            f"<{self.name}>\n{description}"
            f"<metadata>chars_current={len(self.text)} chars_limit={self.limit}</metadata>\n"
            f"<value>\n{self.text}\n</value>\n</{self.name}>"
        )


class BlockStore:
    """Every block of one agent, in definition order; a durable Store."""

    name: Final = "blocks"
    section: Final = "memory_blocks"
    operations: Final = BLOCK_OPERATIONS

    def __init__(self) -> None:
        self.lock = threading.RLock()  # see SemanticStore.lock
        self._blocks: dict[str, Block] = {}

    def get(self, name: str) -> Block | None:
        """The block ``name``, or None."""
        return self._blocks.get(name)

    def names(self) -> list[str]:
        """Block names in definition order."""
        return list(self._blocks)

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled block operation."""
        if operation not in BLOCK_OPERATIONS or not isinstance(data, Mapping):
            raise InvalidArgument(
                f"{operation!r} with {type(data).__name__} data is not a block operation; "
                f"expected one of {sorted(BLOCK_OPERATIONS)} with a map"
            )
        name = check_name(data.get("name"))
        if operation == BLOCK_DELETE:
            self._blocks.pop(name, None)
            return
        block = self._blocks.get(name) or Block(name)
        if operation == BLOCK_DEFINE:
            block = dataclasses.replace(block, limit=check_limit(data.get("limit")),
                            description=_text(data, "description"))
        elif operation == BLOCK_SET:
            block = dataclasses.replace(block, text=_text(data, "text"))
        else:
            block = dataclasses.replace(block, text=block.text + _text(data, "text"))
        check_fits(block)
        self._blocks[name] = block

    def snapshot(self) -> list[dict[str, Any]]:
        """The blocks in order, as plain maps."""
        return [{"name": b.name, "text": b.text, "limit": b.limit, "description": b.description}
                for b in self._blocks.values()]

    def load(self, snapshot: Any) -> None:
        """Replace every block with ``snapshot`` (as :meth:`snapshot` made it)."""
        if not isinstance(snapshot, list):
            raise InvalidArgument(
                f"a blocks snapshot must be a list, got {type(snapshot).__name__}"
            )
        blocks: dict[str, Block] = {}
        for item in snapshot:
            if not isinstance(item, Mapping):
                raise InvalidArgument(f"a block in a snapshot must be a map, got {item!r:.80}")
            block = Block(check_name(item.get("name")), _text(item, "text"),
                          check_limit(item.get("limit")), _text(item, "description"))
            blocks[block.name] = block
        self._blocks = blocks


class Blocks:
    """What agent code sees as ``ctx.memory.blocks``: journaled writes, local reads."""

    def __init__(self, store: BlockStore, journal: DurableWrite) -> None:
        self._store = store
        self._journal = journal

    @property
    def store(self) -> BlockStore:
        """The store behind this facade."""
        return self._store

    def define(self, name: str, *, limit: int = DEFAULT_BLOCK_LIMIT,
               description: str = "") -> None:
        """Create block ``name`` (empty) or change its limit and description.

        Calling it again with the same values journals nothing, so a handler
        may define its blocks on every request.
        """
        check_name(name)
        check_limit(limit)
        if not isinstance(description, str):
            raise InvalidArgument(f"a block description must be a str, got {description!r:.80}")
        with self._store.lock:
            current = self._store.get(name)
            if current and (current.limit, current.description) == (limit, description):
                return
            after = dataclasses.replace(current or Block(name), limit=limit,
                                        description=description)
            data = {"name": name, "limit": limit, "description": description}
            self._write(BLOCK_DEFINE, data, after)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The text of block ``name``, or ``default`` if there is no such block."""
        block = self._store.get(check_name(name))
        return default if block is None else block.text

    def block(self, name: str) -> Block | None:
        """Block ``name`` with its limit and description, or None."""
        return self._store.get(check_name(name))

    def set(self, name: str, text: str) -> None:
        """Replace the text of block ``name`` (defined with the default limit if new)."""
        text = _check_text(text)
        with self._store.lock:
            current = self._store.get(check_name(name)) or Block(name)
            after = dataclasses.replace(current, text=text)
            self._write(BLOCK_SET, {"name": name, "text": text}, after)

    def append(self, name: str, text: str, *, separator: str = "\n") -> None:
        """Add ``text`` at the end of block ``name`` (after ``separator`` if it holds text)."""
        text = _check_text(text)
        with self._store.lock:
            current = self._store.get(check_name(name)) or Block(name)
            added = (separator + text) if current.text else text
            self._write(BLOCK_APPEND, {"name": name, "text": added},
                        dataclasses.replace(current, text=current.text + added))

    def replace(self, name: str, old: str, new: str) -> None:
        """Replace the first ``old`` in block ``name`` with ``new`` (Letta's
        core_memory_replace)."""
        with self._store.lock:
            current = self._store.get(check_name(name))
            if current is None or not old or old not in current.text:
                raise InvalidArgument(
                    f"block {name!r} does not contain {old!r:.80}; read it with "
                    "blocks.get() and pass text that is in it"
                )
            self.set(name, current.text.replace(old, _check_text(new), 1))

    def delete(self, name: str) -> bool:
        """Remove block ``name``; False (nothing journaled) if there is none."""
        with self._store.lock:
            if self._store.get(check_name(name)) is None:
                return False
            data = {"name": name}
            if self._journal(BLOCK_DELETE, data) is not APPLIED:
                self._store.apply(BLOCK_DELETE, data)
            return True

    # -- awaitable forms (an async def handler): the write runs on a worker thread

    async def adefine(self, name: str, *, limit: int = DEFAULT_BLOCK_LIMIT,
                      description: str = "") -> None:
        """:meth:`define`, awaitable."""
        await asyncio.to_thread(functools.partial(self.define, name, limit=limit,
                                                  description=description))

    async def aset(self, name: str, text: str) -> None:
        """:meth:`set`, awaitable."""
        await asyncio.to_thread(self.set, name, text)

    async def aappend(self, name: str, text: str, *, separator: str = "\n") -> None:
        """:meth:`append`, awaitable."""
        await asyncio.to_thread(functools.partial(self.append, name, text, separator=separator))

    async def areplace(self, name: str, old: str, new: str) -> None:
        """:meth:`replace`, awaitable."""
        await asyncio.to_thread(self.replace, name, old, new)

    async def adelete(self, name: str) -> bool:
        """:meth:`delete`, awaitable."""
        return await asyncio.to_thread(self.delete, name)

    def names(self) -> list[str]:
        """Block names in definition (and render) order."""
        return self._store.names()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._store.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.names())

    def __len__(self) -> int:
        return len(self._store.names())

    def render(self, names: list[str] | None = None) -> str:
        """The blocks (all, or ``names`` in that order) as one prompt section; "" if none."""
        chosen = self._store.names() if names is None else [check_name(n) for n in names]
        blocks = [b for b in map(self._store.get, chosen) if b is not None]
        if not blocks:
            return ""
        body = "\n".join(block.render() for block in blocks)
        return f"<memory_blocks>\n{body}\n</memory_blocks>"

    def _write(self, operation: str, data: dict[str, Any], after: Block) -> None:
        check_fits(after)  # before journaling: a write that cannot apply is never durable
        if self._journal(operation, data) is not APPLIED:
            self._store.apply(operation, data)


def check_name(name: object) -> str:
    """``name`` if it is a valid block name, else InvalidArgument."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"a block name must be a letter or _ then up to 63 letters, digits, _ or -, "
            f"got {name!r:.80}"
        )
    return name


def check_limit(limit: object) -> int:
    """``limit`` if it is a valid block size limit, else InvalidArgument."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BLOCK_LIMIT:
        raise InvalidArgument(
            f"a block limit must be an int in [1, {MAX_BLOCK_LIMIT}] characters, got {limit!r}"
        )
    return limit


def check_fits(block: Block) -> None:
    """InvalidArgument unless ``block``'s text is within its limit."""
    if len(block.text) > block.limit:
        raise InvalidArgument(
            f"block {block.name!r} holds at most {block.limit} characters; this write would "
            f"make it {len(block.text)}. Shorten the text, replace or remove old content "
            f"(blocks.set / blocks.replace), or raise the limit with "
            f"blocks.define({block.name!r}, limit=...)"
        )


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidArgument(f"block text must be a str, got {type(text).__name__}")
    return text


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"block {key} must be a str, got {value!r:.80}")
    return value

"""``project-o bench checkpoint``: how fast a state is written and restored.

::

    synthetic agent state (10 MB, 100 MB of MessagePack)
      memory_blocks  many entries: text + a float32 embedding as bytes + metadata
      llm_history    chat messages            agent_state  a key-value store
      tool_registry  tool schemas             metrics      counters, latency lists
        │
        ├─ write    CheckpointStore.write: pack, zstd, hash, temp, fsync, rename, prune
        └─ restore  CheckpointStore.latest_valid: scan headers, read, verify both
                    hashes, decompress, unpack (what recovery does)

Each size is measured twice in the same run, plain and sealed (encryption
at rest: AES-256-GCM over the zstd frame), the two alternating repeat by
repeat so both see the same machine; the sealed row's "× plain" columns
are its write and restore medians over the plain ones.

Figures are medians over a few repeats. Restores read files just written,
so they come from the page cache: that is the common case (a restart on
the same machine); a cold disk adds compressed size / disk bandwidth.
Target (docs/design.md, "Targets"): restore a 10 MB state in at most 50 ms.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zstandard

from project_o.bench.report import Report
from project_o.vault.checkpoint import CheckpointStore
from project_o.vault.sealing import Keyring

__all__ = ["make_state", "run"]

MB = 1_000_000
#: (state size, repeats) for the full run; --quick runs only the first, twice
_FULL = ((10 * MB, 7), (100 * MB, 3))
_QUICK = ((10 * MB, 2),)
#: the goal for restoring a 10 MB state (docs/design.md, "Targets")
_RESTORE_10MB_GOAL_MS = 50.0
#: a common sentence-embedding width (all-MiniLM-L6-v2 and friends)
_EMBEDDING_DIM = 384
#: share of the state taken by chat history; the rest is mostly memory entries
_HISTORY_SHARE = 0.1
_SEED = 20240601
#: the row column the target is read from
RESTORE_MS = "restore ms"

_WORDS = (
    "agent", "memory", "user", "asked", "about", "the", "weather", "in", "paris", "yesterday",
    "and", "prefers", "short", "answers", "tool", "search", "returned", "three", "results",
    "latency", "budget", "exceeded", "retry", "with", "smaller", "model", "summary", "of",
    "meeting", "notes", "project", "deadline", "friday", "invoice", "pending", "review",
    "approved", "customer", "wants", "refund", "order", "shipped", "tracking", "number",
    "delayed", "apologise", "schedule", "call",
)
_TAGS = ("preference", "fact", "task", "episode", "tool", "feedback", "profile")


def run(quick: bool, progress: Callable[[str], None]) -> Report:
    """Measure checkpoint write and restore for realistic 10 MB (and 100 MB) states."""
    report = Report(name="checkpoint", quick=quick)
    for size, repeats in _QUICK if quick else _FULL:
        progress(f"building a {size // MB} MB state")
        state = make_state(size, random.Random(_SEED))
        progress(f"writing and restoring it {repeats} times, plain and sealed")
        row, sealed = _measure(state, size, repeats)
        report.rows += [row, sealed]
        if size == 10 * MB:
            ms = row[RESTORE_MS]
            report.target(
                "restore 10 MB state (p50)", ms, f"<= {_RESTORE_10MB_GOAL_MS:.0f} ms",
                ms <= _RESTORE_10MB_GOAL_MS,
            )
    report.notes.append("times are medians over `runs` repeats; state MB is the msgpack size")
    report.notes.append(
        "restore = latest_valid(): header scan, read, SHA-256 of header and payload, "
        "zstd decompress, msgpack unpack; files read from the page cache"
    )
    report.notes.append("verify = scan()'s check of one file: header + streamed payload SHA-256")
    report.notes.append(
        "sealed = encryption at rest: the zstd frame sealed with AES-256-GCM on write, opened "
        "on restore (tag checked); × plain = its median over the plain one, same run; "
        "frame CPU ms = thread CPU time to read the file, hash it and (sealed) open the seal: "
        "the difference between the rows is what opening costs, steady under load"
    )
    report.notes.append(
        "write = pack, zstd level 3 (threaded from 32 MiB), hash, temp file, fsync, rename, "
        "fsync dir, prune to 2 kept (which re-hashes the kept files)"
    )
    return report


def make_state(size: int, rng: random.Random) -> dict[str, Any]:
    """An agent state whose MessagePack encoding is about ``size`` bytes.

    Memory entries carry text, a unit-norm float32 embedding (as bytes, as
    the runtime stores vectors) and metadata; chat history takes about
    :data:`_HISTORY_SHARE` of the size. Deterministic for a given ``rng``.
    """
    vectors = np.random.default_rng(rng.getrandbits(64))
    history = _history(int(size * _HISTORY_SHARE), rng)
    state: dict[str, Any] = {
        "agent_state": {"kv": {f"key-{i}": _sentence(rng, 3, 12) for i in range(500)}},
        "memory_blocks": {},
        "tool_registry": _tools(rng),
        "llm_history": history,
        "metrics": {"requests": 123_456, "errors": 17,
                    "latency_ms": [round(rng.lognormvariate(3, 0.5), 2) for _ in range(2000)]},
    }
    budget = size - len(msgpack.packb(state))
    memory: dict[str, Any] = state["memory_blocks"]
    while budget > 0:
        key, entry = f"mem-{len(memory):07d}", _memory_entry(len(memory), rng, vectors)
        memory[key] = entry
        budget -= len(msgpack.packb(key)) + len(msgpack.packb(entry))
    return state


def _memory_entry(i: int, rng: random.Random, vectors: np.random.Generator) -> dict[str, Any]:
    vector = vectors.standard_normal(_EMBEDDING_DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    return {
        "text": _sentence(rng, 40, 120),
        "embedding": vector.tobytes(),
        "created_at": 1.7e9 + i * 37.5,
        "importance": round(rng.random(), 3),
        "tags": rng.sample(_TAGS, 2),
        "source": rng.choice(("conversation", "tool", "reflection")),
    }


def _history(size: int, rng: random.Random) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    used = 0
    while used < size:
        content = _sentence(rng, 10, 200)
        messages.append({"role": rng.choice(("user", "assistant")), "content": content,
                         "tokens": len(content) // 4})
        used += len(content) + 30
    return messages


def _tools(rng: random.Random) -> dict[str, Any]:
    return {
        f"tool_{i}": {"description": _sentence(rng, 8, 20),
                      "parameters": {"type": "object", "properties": {
                          f"arg{j}": {"type": "string"} for j in range(rng.randint(1, 5))}},
                      "side_effects": rng.random() < 0.3}
        for i in range(20)
    }


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(low, high)))


def _measure(
    state: dict[str, Any], size: int, repeats: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rows for the plain and the sealed store, their repeats alternating."""
    with tempfile.TemporaryDirectory(prefix="project-o-bench-") as tmp:
        stores = {"plain": CheckpointStore(Path(tmp) / "plain"),
                  "sealed": CheckpointStore(Path(tmp) / "sealed",
                                            keyring=Keyring([os.urandom(32)]))}
        times: dict[str, dict[str, list[float]]] = {
            name: {"write": [], "restore": [], "verify": [], "frame": []} for name in stores}
        for sequence in range(1, repeats + 1):
            for name, store in stores.items():
                write = functools.partial(store.write, state, last_sequence=sequence)
                times[name]["write"].append(_timed(write))
                times[name]["restore"].append(_timed(store.latest_valid))
        rows = {}
        for name, store in stores.items():
            newest = store.latest_valid()
            assert newest is not None and newest[1] == state, "restore returned a different state"
            info = newest[0]
            for _ in range(repeats):
                times[name]["verify"].append(_timed(functools.partial(store.verify, info.path)))
                times[name]["frame"].append(_cpu_timed(functools.partial(store.plain_image,
                                                                         info.path)))
            rows[name] = _row(name, state, info, times[name], repeats)
        compressed = stores["plain"].latest_valid()[0].path.read_bytes()[256:]  # type: ignore[index]
    rows["plain"]["unzstd ms"], rows["plain"]["unpack ms"] = _components(compressed, repeats)
    sealed = rows["sealed"]
    sealed["write × plain"] = sealed["write ms"] / rows["plain"]["write ms"]
    sealed["restore × plain"] = sealed[RESTORE_MS] / rows["plain"][RESTORE_MS]
    return rows["plain"], sealed


def _row(name: str, state: dict[str, Any], info: Any, times: dict[str, list[float]],
         repeats: int) -> dict[str, Any]:
    return {
        "state MB": info.uncompressed_size / MB,
        "sealed": name == "sealed",
        "entries": len(state["memory_blocks"]),
        "file MB": (info.compressed_size + 256) / MB,
        "ratio": info.uncompressed_size / info.compressed_size,
        "write ms": _p50(times["write"]),
        RESTORE_MS: _p50(times["restore"]),
        "verify ms": _p50(times["verify"]),
        "frame CPU ms": _p50(times["frame"]),
        "runs": repeats,
    }


def _components(compressed: bytes, repeats: int) -> tuple[float, float]:
    """Median time of the two CPU-bound steps of a restore, on their own."""
    hashlib.sha256(compressed)  # warm up, like the restore path
    unzstd, unpack = [], []
    packed = b""
    for _ in range(repeats):
        start = time.perf_counter()
        packed = zstandard.ZstdDecompressor().decompress(compressed)
        unzstd.append(time.perf_counter() - start)
        start = time.perf_counter()
        msgpack.unpackb(packed, raw=False, strict_map_key=False)
        unpack.append(time.perf_counter() - start)
    return _p50(unzstd), _p50(unpack)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _cpu_timed(action: Callable[[], object]) -> float:
    start = time.thread_time()
    action()
    return time.thread_time() - start


def _p50(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0

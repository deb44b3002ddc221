"""``project-o bench shadows``: 100 concurrent shadows of the built-in agent, from one zygote.

::

    ZygoteHandle.start(assistant.py)        imports once, gc.freeze()      (timed apart)
    t0 ─► fork × N (role "shadow")           concurrently over the control socket
          each:  ◄── hello
                 ──► restore {checkpoint: None, entries: [], last_sequence: 0}
                 ◄── heartbeat               (the first one means "restored")
                 ──► request "calc 6 * 7"    wal_entry ──► wal_ack (as the vault would)
                 ◄── response
    t1 ─► all answered: seconds = t1 - t0
          PSS of every instance (psutil memory_full_info().pss; shared copy-on-write
          pages are split between the processes that share them)

Targets (docs/design.md, "Targets"): <= 2 s until 100 shadows answer,
<= 10 MB PSS per shadow. ``--quick`` starts 20.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any, Final

import psutil

from project_o.bench.report import Report
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ForkedInstance, ZygoteHandle
from project_o.supervisor.options import builtin_agent_path
from project_o.wire import Message, MessageType, read_message_async, write_message_async

__all__ = ["FULL_SHADOWS", "QUICK_SHADOWS", "expect", "measure", "pss", "run"]

#: concurrent shadows, the size of a population evaluated side by side
FULL_SHADOWS: Final = 100
QUICK_SHADOWS: Final = 20
#: start-up time and memory per shadow targets (docs/design.md, "Targets")
TARGET_SECONDS: Final = 2.0
TARGET_PSS_MB: Final = 10.0
MB: Final = 1_000_000
#: a request every shadow can answer offline, through a tool
REQUEST: Final = "calc 6 * 7"
#: a step that takes longer means something is broken, not slow
STEP_TIMEOUT_S: Final = 60.0

Progress = Callable[[str], None]


def run(quick: bool, progress: Progress) -> Report:
    """Measure ``QUICK_SHADOWS`` or ``FULL_SHADOWS`` shadows; report against the targets."""
    count = QUICK_SHADOWS if quick else FULL_SHADOWS
    progress(f"starting {count} shadows of the built-in assistant from one zygote")
    figures = asyncio.run(measure(count))
    report = Report(name="shadows", quick=quick)
    report.rows.append(figures)
    report.target(f"seconds until {count} shadows answer", figures["seconds_all_answered"],
                  f"<= {TARGET_SECONDS:g} s for {FULL_SHADOWS}",
                  figures["seconds_all_answered"] <= TARGET_SECONDS * count / FULL_SHADOWS
                  if quick else figures["seconds_all_answered"] <= TARGET_SECONDS)
    report.target("PSS per shadow (MB, median)", figures["pss_mb_median"],
                  f"<= {TARGET_PSS_MB:g} MB", figures["pss_mb_median"] <= TARGET_PSS_MB)
    report.notes.append("time runs from the first fork request to the last response; the "
                        "zygote's start (imports + gc.freeze) is reported apart as "
                        "zygote_start_s")
    if quick:
        report.notes.append(f"quick: {count} shadows; the time target is scaled to "
                            f"{TARGET_SECONDS * count / FULL_SHADOWS:g} s")
    return report


async def measure(count: int) -> dict[str, Any]:
    """Start ``count`` shadows, time them until all answer, measure their PSS."""
    started = time.perf_counter()
    zygote = await ZygoteHandle.start(builtin_agent_path(), "bench", env=scrubbed_env())
    zygote_start = time.perf_counter() - started
    try:
        t0 = time.perf_counter()
        shadows = await asyncio.gather(*(_shadow(zygote, i) for i in range(count)))
        elapsed = time.perf_counter() - t0
        sizes = [pss(shadow.pid) for shadow in shadows]
        zygote_pss = pss(zygote.pid)
        await asyncio.gather(*(_stop(shadow) for shadow in shadows))
    finally:
        await zygote.close()
    return {
        "shadows": count, "seconds_all_answered": round(elapsed, 4),
        "zygote_start_s": round(zygote_start, 4),
        "pss_mb_median": round(statistics.median(sizes) / MB, 3),
        "pss_mb_max": round(max(sizes) / MB, 3), "pss_mb_total": round(sum(sizes) / MB, 3),
        "zygote_pss_mb": round(zygote_pss / MB, 3),
    }


async def _shadow(zygote: ZygoteHandle, index: int) -> ForkedInstance:
    forked = await zygote.fork("shadow", f"shadow-{index}")
    await asyncio.wait_for(expect(forked, MessageType.HELLO), STEP_TIMEOUT_S)
    await _send(forked, MessageType.RESTORE, checkpoint=None, entries=[], last_sequence=0)
    await asyncio.wait_for(expect(forked, MessageType.HEARTBEAT), STEP_TIMEOUT_S)
    await _send(forked, MessageType.REQUEST, id=f"q{index}", input=REQUEST, deadline_ms=60_000)
    await asyncio.wait_for(_answer(forked), STEP_TIMEOUT_S)
    return forked


async def _send(forked: ForkedInstance, message_type: str, **data: Any) -> None:
    await write_message_async(forked.writer, Message(message_type, data))


async def expect(forked: ForkedInstance, message_type: str) -> Message:
    """The next ``message_type`` frame of a forked instance, heartbeats skipped."""
    while True:
        message = await read_message_async(forked.reader)
        if message.type == message_type:
            return message
        if message.type != MessageType.HEARTBEAT:
            raise RuntimeError(f"shadow {forked.pid}: expected {message_type}, got {message}")


async def _answer(forked: ForkedInstance) -> Message:
    sequence = 0
    while True:
        message = await read_message_async(forked.reader)
        if message.type == MessageType.WAL_ENTRY:  # acknowledged as the vault would
            sequence += 1
            await _send(forked, MessageType.WAL_ACK, id=message.data["id"], sequence=sequence)
        elif message.type == MessageType.RESPONSE:
            return message
        elif message.type != MessageType.HEARTBEAT:
            raise RuntimeError(f"shadow {forked.pid} failed the request: {message.data}")


async def _stop(forked: ForkedInstance) -> None:
    """``shutdown``, as the supervisor retires a shadow, and wait for the exit report."""
    await _send(forked, MessageType.SHUTDOWN)
    await asyncio.wait_for(asyncio.shield(forked.exited), STEP_TIMEOUT_S)
    forked.writer.close()


def pss(pid: int) -> int:
    """A process's proportional set size, in bytes."""
    return int(psutil.Process(pid).memory_full_info().pss)

"""SupervisionTree with real processes: strategies, restart types, shutdown, intensity, nesting.

Children are small ``python -S -c`` programs: sleepers, exiters, programs
that fail their first N runs (counted in a directory), and programs that
ignore SIGTERM. Crashes are real ``kill -9``. Waits poll with a generous
guard: they bound a deadlock, they do not measure speed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import InvalidArgument
from project_o.supervisor import (
    Child,
    ChildInfo,
    ChildSpec,
    ChildStatus,
    EventKind,
    ExitReason,
    Restart,
    SupervisionTree,
)
from tests.supervisor.process_child import ProcessChild

#: Deadlock guards, not speed limits.
TEST_GUARD_S = 60.0
WAIT_GUARD_S = 30.0

SLEEPER = "import time; time.sleep(120)"
EXITER = "import sys; sys.exit(int(sys.argv[1]))"
#: Fails (with exit code argv[3]) on its first argv[2] runs, counted as files in
#: directory argv[1]; after that it sleeps like a healthy child.
FAIL_FIRST_RUNS = """
import os, sys, time
runs, fail_runs, code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
done = len(os.listdir(runs))
if done < fail_runs:
    open(os.path.join(runs, str(done)), "w").close()
    sys.exit(code)
time.sleep(120)
"""
#: Says "ready" once its SIGTERM handler is in place (so a test cannot race it).
IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""
EXITS_ON_SIGTERM = """
import signal, sys, time
def on_term(signum, frame):
    open(sys.argv[1], "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(120)
"""

Start = Callable[[], Awaitable[Child]]


def python(code: str, *args: object) -> Start:
    """A ChildSpec.start that runs ``code`` in a fresh interpreter each time."""
    return lambda: ProcessChild.spawn(sys.executable, "-S", "-c", code, *map(str, args))


def python_ready(code: str, *args: object) -> Start:
    """Like :func:`python`, but start() returns only after the child prints "ready"."""

    async def start() -> Child:
        child = await ProcessChild.spawn(
            sys.executable, "-S", "-c", code, *map(str, args), stdout=asyncio.subprocess.PIPE
        )
        assert child.process.stdout is not None
        assert await child.process.stdout.readline() == b"ready\n"
        return child

    return start


def sleepers(*ids: str, **spec: Any) -> list[ChildSpec]:
    return [ChildSpec(i, python(SLEEPER), **spec) for i in ids]


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop, under a deadlock guard."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), TEST_GUARD_S))

    return wrapper


class Events:
    """Records every on_event call."""

    def __init__(self) -> None:
        self.log: list[tuple[EventKind, str | None, str]] = []

    def __call__(self, kind: EventKind, child_id: str | None, reason: str) -> None:
        self.log.append((kind, child_id, reason))

    def ids(self, kind: EventKind) -> list[str | None]:
        return [child_id for k, child_id, _ in self.log if k is kind]

    def reasons(self, kind: EventKind, child_id: str) -> list[str]:
        return [r for k, c, r in self.log if k is kind and c == child_id]


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_GUARD_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        await asyncio.sleep(0.01)


def info(tree: SupervisionTree, child_id: str) -> ChildInfo:
    return next(c for c in tree.which_children() if c.id == child_id)


def pids(tree: SupervisionTree) -> dict[str, object]:
    return {c.id: c.handle for c in tree.which_children()}


def kill9(tree: SupervisionTree, child_id: str) -> None:
    handle = info(tree, child_id).handle
    assert isinstance(handle, int)
    os.kill(handle, signal.SIGKILL)


def restarted(tree: SupervisionTree, *ids: str, times: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        children = {c.id: c for c in tree.which_children()}
        return all(
            children[i].restarts == times and children[i].status is ChildStatus.RUNNING for i in ids
        )

    return check


def frozen_clock() -> float:
    """Every restart happens "at the same instant": the window never slides."""
    return 0.0


# -- strategies ---------------------------------------------------------------


@async_test
async def test_children_start_in_spec_order_and_stop_in_reverse() -> None:
    events = Events()
    tree = SupervisionTree(sleepers("a", "b", "c"), on_event=events)
    await tree.start()
    assert [c.status for c in tree.which_children()] == [ChildStatus.RUNNING] * 3
    assert all(isinstance(c.handle, int) for c in tree.which_children())
    await tree.stop()
    assert events.ids(EventKind.START) == ["a", "b", "c"]
    assert events.ids(EventKind.STOP) == ["c", "b", "a"]
    assert [c.status for c in tree.which_children()] == [ChildStatus.STOPPED] * 3
    assert (await tree.wait()).normal


@async_test
async def test_one_for_one_restarts_only_the_child_that_died() -> None:
    events = Events()
    tree = SupervisionTree(sleepers("a", "b", "c"), strategy="one_for_one", on_event=events)
    await tree.start()
    try:
        before = pids(tree)
        kill9(tree, "b")
        await until(restarted(tree, "b"), "b restarted")
        after = pids(tree)
        assert after["a"] == before["a"] and after["c"] == before["c"]
        assert after["b"] != before["b"]
        assert events.reasons(EventKind.EXIT, "b") == ["killed by SIGKILL"]
        assert info(tree, "b").last_exit == ExitReason(False, "killed by SIGKILL", None, 9)
        assert info(tree, "a").restarts == info(tree, "c").restarts == 0
    finally:
        await tree.stop()


@async_test
async def test_one_for_all_restarts_every_child() -> None:
    events = Events()
    tree = SupervisionTree(sleepers("a", "b", "c"), strategy="one_for_all", on_event=events)
    await tree.start()
    try:
        before = pids(tree)
        kill9(tree, "b")
        await until(restarted(tree, "a", "b", "c"), "all three restarted")
        after = pids(tree)
        assert all(after[i] != before[i] for i in "abc")
        assert events.ids(EventKind.STOP) == ["c", "a"]  # the others, in reverse order
        assert events.ids(EventKind.RESTART) == ["a", "b", "c"]  # everyone, in spec order
    finally:
        await tree.stop()


@async_test
async def test_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    events = Events()
    tree = SupervisionTree(sleepers("a", "b", "c"), strategy="rest_for_one", on_event=events)
    await tree.start()
    try:
        before = pids(tree)
        kill9(tree, "b")
        await until(restarted(tree, "b", "c"), "b and c restarted")
        after = pids(tree)
        assert after["a"] == before["a"] and info(tree, "a").restarts == 0
        assert after["b"] != before["b"] and after["c"] != before["c"]
        assert events.ids(EventKind.STOP) == ["c"]
        assert events.ids(EventKind.RESTART) == ["b", "c"]
    finally:
        await tree.stop()


@async_test
async def test_group_restart_leaves_temporary_siblings_down() -> None:
    specs = [
        ChildSpec("temp", python(SLEEPER), restart="temporary"),
        ChildSpec("crashy", python(SLEEPER)),
    ]
    tree = SupervisionTree(specs, strategy="one_for_all")
    await tree.start()
    try:
        kill9(tree, "crashy")
        await until(restarted(tree, "crashy"), "crashy restarted")
        assert info(tree, "temp").status is ChildStatus.STOPPED  # stopped by the group, not back
    finally:
        await tree.stop()


# -- restart types --------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "exit_code", "restarts"),
    [
        ("permanent", 0, True),
        ("permanent", 1, True),
        ("transient", 0, False),
        ("transient", 1, True),
        ("temporary", 0, False),
        ("temporary", 1, False),
    ],
)
@async_test
async def test_restart_types(
    tmp_path: Path, restart: Restart, exit_code: int, restarts: bool
) -> None:
    events = Events()
    spec = ChildSpec("w", python(FAIL_FIRST_RUNS, tmp_path, 1, exit_code), restart=restart)
    tree = SupervisionTree([spec], on_event=events)
    await tree.start()
    try:
        await until(lambda: events.ids(EventKind.EXIT) == ["w"], "w's first run ended")
        if restarts:
            await until(restarted(tree, "w"), "w restarted")
    finally:
        # The exit is handled (and any restart started) under the tree's lock,
        # before stop() can take it: after stop() the decision is final.
        await tree.stop()
    assert events.ids(EventKind.RESTART) == (["w"] if restarts else [])
    assert info(tree, "w").restarts == (1 if restarts else 0)


@async_test
async def test_a_child_that_ends_without_restart_is_reported_exited() -> None:
    tree = SupervisionTree([ChildSpec("once", python(EXITER, 0), restart="transient")])
    await tree.start()
    try:
        await until(lambda: info(tree, "once").status is ChildStatus.EXITED, "once exited")
        exited = info(tree, "once")
        assert exited.handle is None
        assert exited.last_exit is not None and exited.last_exit.normal
        assert exited.last_exit.exit_code == 0
    finally:
        await tree.stop()


# -- shutdown -------------------------------------------------------------------


@async_test
async def test_timeout_shutdown_kills_a_child_that_ignores_sigterm() -> None:
    events = Events()
    spec = ChildSpec("stubborn", python_ready(IGNORES_SIGTERM), shutdown=200)
    tree = SupervisionTree([spec], on_event=events)
    await tree.start()
    await tree.stop()
    assert events.ids(EventKind.KILL) == ["stubborn"]
    assert "200 ms after terminate()" in events.reasons(EventKind.KILL, "stubborn")[0]
    last = info(tree, "stubborn").last_exit
    assert last is not None and last.signal == signal.SIGKILL


@async_test
async def test_timeout_shutdown_lets_a_cooperative_child_finish(tmp_path: Path) -> None:
    events = Events()
    marker = tmp_path / "got-sigterm"
    spec = ChildSpec("polite", python_ready(EXITS_ON_SIGTERM, marker), shutdown=30_000)
    tree = SupervisionTree([spec], on_event=events)
    await tree.start()
    await tree.stop()
    assert marker.exists()  # its handler ran: it was asked, not shot
    assert events.ids(EventKind.KILL) == []
    last = info(tree, "polite").last_exit
    assert last is not None and last.exit_code == 0


@async_test
async def test_brutal_kill_gives_no_chance_to_clean_up(tmp_path: Path) -> None:
    marker = tmp_path / "got-sigterm"
    spec = ChildSpec("doomed", python_ready(EXITS_ON_SIGTERM, marker), shutdown="brutal_kill")
    tree = SupervisionTree([spec])
    await tree.start()
    await tree.stop()
    assert not marker.exists()
    last = info(tree, "doomed").last_exit
    assert last is not None and last.signal == signal.SIGKILL


# -- intensity ------------------------------------------------------------------


@async_test
async def test_crash_loop_escalates_once_and_stops_everything() -> None:
    events = Events()
    escalations: list[str] = []
    specs = [ChildSpec("calm", python(SLEEPER)), ChildSpec("crashy", python(EXITER, 1))]
    tree = SupervisionTree(
        specs,
        max_restarts=3,
        max_seconds=5,
        on_event=events,
        on_escalate=escalations.append,
        clock=frozen_clock,
    )
    await tree.start()
    reason = await tree.wait()
    assert not reason.normal and reason.detail.startswith("escalated")
    assert len(escalations) == 1
    assert "'crashy'" in escalations[0] and "more than 3 restarts within 5 s" in escalations[0]
    assert events.ids(EventKind.ESCALATE) == ["crashy"]
    assert events.ids(EventKind.RESTART) == ["crashy"] * 3  # 1 start + 3 restarts, no 5th run
    assert events.ids(EventKind.STOP) == ["calm"]
    assert [c.status for c in tree.which_children()] == [ChildStatus.STOPPED, ChildStatus.EXITED]
    await tree.stop()  # a no-op now
    assert len(escalations) == 1


@async_test
async def test_crashes_spread_over_time_are_restarted_forever(tmp_path: Path) -> None:
    events = Events()
    escalations: list[str] = []
    ticks = iter(range(0, 10_000, 10))  # ten seconds pass between any two restarts
    spec = ChildSpec("flaky", python(FAIL_FIRST_RUNS, tmp_path, 5, 1))
    tree = SupervisionTree(
        [spec],
        max_restarts=3,
        max_seconds=5,
        on_event=events,
        on_escalate=escalations.append,
        clock=lambda: float(next(ticks)),
    )
    await tree.start()
    try:
        await until(restarted(tree, "flaky", times=5), "five restarts, then a healthy run")
        assert escalations == [] and events.ids(EventKind.ESCALATE) == []
    finally:
        await tree.stop()


@async_test
async def test_failed_restarts_count_towards_the_intensity() -> None:
    events = Events()
    escalations: list[str] = []
    calls = 0

    async def start_once() -> Child:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("cannot fork")
        return await python(EXITER, 1)()

    tree = SupervisionTree(
        [ChildSpec("w", start_once)],
        max_restarts=3,
        on_event=events,
        on_escalate=escalations.append,
        clock=frozen_clock,
    )
    await tree.start()
    reason = await tree.wait()
    assert not reason.normal and "failed to restart" in reason.detail
    assert calls == 4  # the first run, then 3 attempts; the 4th failure escalates
    assert len(events.ids(EventKind.START_FAILED)) == 3
    assert len(escalations) == 1


# -- nesting --------------------------------------------------------------------


@async_test
async def test_nested_tree_restarts_inside_without_disturbing_the_outside() -> None:
    outer_events, inner_events = Events(), Events()

    def subtree() -> Awaitable[SupervisionTree]:
        return SupervisionTree(sleepers("y1", "y2"), name="inner", on_event=inner_events).start()

    outer = SupervisionTree(
        [ChildSpec("x", python(SLEEPER)), ChildSpec("sub", subtree, shutdown="infinity")],
        name="outer",
        on_event=outer_events,
    )
    await outer.start()
    inner = info(outer, "sub").handle
    assert isinstance(inner, SupervisionTree)
    x_pid = info(outer, "x").handle
    kill9(inner, "y1")
    await until(restarted(inner, "y1"), "y1 restarted by the inner tree")
    assert info(outer, "sub").handle is inner and info(outer, "sub").restarts == 0
    assert info(outer, "x").handle == x_pid
    await outer.stop()
    assert outer_events.ids(EventKind.STOP) == ["sub", "x"]
    assert [c.status for c in inner.which_children()] == [ChildStatus.STOPPED] * 2
    assert (await inner.wait()).normal


@async_test
async def test_an_escalating_subtree_is_a_crash_for_its_parent(tmp_path: Path) -> None:
    outer_events = Events()
    inner_escalations: list[str] = []

    def subtree() -> Awaitable[SupervisionTree]:
        # Its child fails 4 runs: 1 start + 3 restarts, the 4th failure escalates.
        # The subtree the parent starts next finds the child healthy.
        spec = ChildSpec("c", python(FAIL_FIRST_RUNS, tmp_path, 4, 1))
        inner = SupervisionTree(
            [spec],
            max_restarts=3,
            name="inner",
            clock=frozen_clock,
            on_escalate=inner_escalations.append,
        )
        return inner.start()

    outer = SupervisionTree([ChildSpec("sub", subtree)], name="outer", on_event=outer_events)
    await outer.start()
    try:
        first = info(outer, "sub").handle
        await until(restarted(outer, "sub"), "the parent restarted the subtree")
        second = info(outer, "sub").handle
        assert isinstance(second, SupervisionTree) and second is not first
        assert info(second, "c").status is ChildStatus.RUNNING
        assert len(inner_escalations) == 1
        assert outer_events.reasons(EventKind.EXIT, "sub")[0].startswith("escalated")
    finally:
        await outer.stop()


@async_test
async def test_brutally_killing_a_subtree_kills_its_children_at_once() -> None:
    # The inner child would wait forever for a SIGTERM it ignores ("infinity");
    # brutal_kill of the subtree must SIGKILL it instead.
    def subtree() -> Awaitable[SupervisionTree]:
        spec = ChildSpec("stubborn", python_ready(IGNORES_SIGTERM), shutdown="infinity")
        return SupervisionTree([spec], name="inner").start()

    outer = SupervisionTree([ChildSpec("sub", subtree, shutdown="brutal_kill")])
    await outer.start()
    inner = info(outer, "sub").handle
    assert isinstance(inner, SupervisionTree)
    await outer.stop()
    last = info(inner, "stubborn").last_exit
    assert last is not None and last.signal == signal.SIGKILL


# -- errors ---------------------------------------------------


@async_test
async def test_a_failed_initial_start_stops_the_children_already_started() -> None:
    async def broken() -> Child:
        raise RuntimeError("no such agent version")

    tree = SupervisionTree([ChildSpec("a", python(SLEEPER)), ChildSpec("b", broken)])
    with pytest.raises(RuntimeError, match="no such agent version") as caught:
        await tree.start()
    assert any("started child 'b'" in note for note in caught.value.__notes__)
    assert info(tree, "a").status is ChildStatus.STOPPED
    assert info(tree, "a").last_exit is not None
    assert not (await tree.wait()).normal


@async_test
async def test_start_must_return_a_child() -> None:
    async def not_a_child() -> Any:
        return 42

    tree = SupervisionTree([ChildSpec("a", not_a_child)])
    with pytest.raises(InvalidArgument, match="must return a Child"):
        await tree.start()


@async_test
async def test_a_raising_event_callback_does_not_break_the_tree() -> None:
    def explode(kind: EventKind, child_id: str | None, reason: str) -> None:
        raise ValueError("observer bug")

    tree = SupervisionTree(sleepers("a"), on_event=explode)
    await tree.start()
    kill9(tree, "a")
    await until(restarted(tree, "a"), "a restarted despite the callback")
    await tree.stop()
    assert (await tree.wait()).normal


@async_test
async def test_start_twice_and_duplicate_ids_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unique"):
        SupervisionTree(sleepers("a", "a"))
    with pytest.raises(InvalidArgument, match="strategy"):
        SupervisionTree(sleepers("a"), strategy="all_for_none")
    tree = SupervisionTree(sleepers("a"))
    await tree.start()
    try:
        with pytest.raises(InvalidArgument, match="called once"):
            await tree.start()
    finally:
        await tree.stop()


# -- who owns the tree's tasks ------------------------------------------------


class InMemoryChild:
    """A child that ends when told (or crashes at once): no process."""

    def __init__(self, crash: bool = False) -> None:
        self.ended: asyncio.Future[ExitReason] = asyncio.get_running_loop().create_future()
        if crash:
            self.ended.set_result(ExitReason.crashed("crashed at once"))

    @property
    def handle(self) -> object:
        return self

    async def wait(self) -> ExitReason:
        return await asyncio.shield(self.ended)

    def terminate(self) -> None:
        if not self.ended.done():
            self.ended.set_result(ExitReason.shutdown())

    def kill(self) -> None:
        self.terminate()


def tree_tasks(tree: SupervisionTree) -> list[asyncio.Task[Any]]:
    """The tasks still running that belong to ``tree`` (its monitors and its stop)."""
    names = {f"watch {c.id}" for c in tree.which_children()} | {f"stop {tree.name}"}
    return [t for t in asyncio.all_tasks() if t.get_name() in names and not t.done()]


@async_test
async def test_an_escalation_from_a_monitor_ends_the_tree_and_every_task_it_ran() -> None:
    async def crashing() -> Child:
        return InMemoryChild(crash=True)

    async def steady() -> Child:
        return InMemoryChild()

    escalations: list[str] = []
    tree = SupervisionTree([ChildSpec("steady", steady), ChildSpec("crashing", crashing)],
                           max_restarts=2, max_seconds=60.0, clock=frozen_clock,
                           on_escalate=escalations.append, name="loop")
    await tree.start()
    reason = await tree.wait()  # no deadlock: the monitor that escalates ends the tree
    assert not reason.normal and reason.detail.startswith("escalated")
    assert len(escalations) == 1
    assert info(tree, "steady").status is ChildStatus.STOPPED
    assert tree_tasks(tree) == []


@async_test
async def test_terminate_stops_in_a_task_of_the_tree_that_wait_outlives() -> None:
    async def steady() -> Child:
        return InMemoryChild()

    tree = SupervisionTree([ChildSpec("a", steady), ChildSpec("b", steady)], name="calm")
    await tree.start()
    assert {t.get_name() for t in tree_tasks(tree)} == {"watch a", "watch b"}
    tree.terminate()
    assert (await tree.wait()).normal
    assert tree_tasks(tree) == []


@async_test
async def test_a_tree_never_started_ends_at_once_when_killed() -> None:
    tree = SupervisionTree(sleepers("a"))
    tree.kill()
    reason = await tree.wait()
    assert reason.normal and reason.detail == "stopped before it was started"

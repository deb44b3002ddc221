"""An OTP-style supervision tree for asyncio.

A tree starts its children in spec order, watches each one, restarts the
ones that end according to their restart type and the tree's strategy, and
stops them in reverse order. It never imports what it supervises: a child
is anything that implements :class:`~project_o.supervisor.spec.Child`,
including another tree, so trees nest::

    SupervisionTree(one_for_one)
     ├─ a   permanent      (an OS process, say)
     ├─ b   transient      (an in-process part, as the supervisor's own are)
     └─ sub permanent      SupervisionTree(rest_for_one)
                            ├─ c
                            └─ d

Semantics (Erlang/OTP's ``supervisor``, with the differences marked *):

* **Restart types.** ``permanent`` children are always restarted,
  ``transient`` ones only after an abnormal exit (anything but exit code 0
  or an orderly shutdown), ``temporary`` ones never.
* **Strategies.** When a child has to be restarted, ``one_for_one``
  restarts just it; ``one_for_all`` stops every other running child (in
  reverse spec order) and starts them all again (in spec order);
  ``rest_for_one`` does the same for the children started after it. A
  temporary sibling stopped by such a group restart stays down.
* **Shutdown.** ``"brutal_kill"`` kills at once. An int is a grace period
  in milliseconds: ``terminate()``, wait, then ``kill()`` if the child is
  still there (reported as a ``kill`` event). ``"infinity"`` waits as long
  as it takes, as OTP advises for a child that is itself a tree.
* **Intensity.** More than ``max_restarts`` restarts within
  ``max_seconds`` (a group restart counts once; a failed restart attempt
  counts too) and the tree *escalates*: it reports an ``escalate`` event,
  stops all its children, calls ``on_escalate(reason)`` once, and ends
  abnormally. It never crash-loops. A parent tree sees that abnormal end
  like any other child exit. (*OTP ends an escalated supervisor with reason
  ``shutdown``, which a transient parent would not restart; here it is
  abnormal, because giving up is a failure.)
* **Events.** Every start, exit, stop, kill, restart, failed start and
  escalation is passed to ``on_event(kind, child_id, reason)`` with a
  human reason; without ``on_event`` it is logged instead. A callback that
  raises is logged, never fatal.

Concurrency: every decision (an exit, a shutdown) runs under
one lock, so the tree acts like an OTP process handling one message at a
time. An exit seen from a child that the tree has already replaced or is
stopping is ignored, as OTP drops the ``EXIT`` of an unlinked child.

Every task the tree runs (one monitor per child run, and the stop that
:meth:`~SupervisionTree.terminate` or :meth:`~SupervisionTree.kill`
starts) belongs to the tree's :class:`~project_o.supervisor.nursery.Nursery`,
one :class:`asyncio.TaskGroup` held from :meth:`~SupervisionTree.start`
until the tree ends; :meth:`~SupervisionTree.wait` returns only once every
one of them has ended. An escalation runs inside a monitor, so it ends the
nursery without waiting for it (the monitor would wait for itself); a
monitor waiting for the lock meanwhile has nothing left to decide and is
cancelled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from project_o.errors import InvalidArgument
from project_o.supervisor.intensity import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_MAX_SECONDS,
    RestartIntensity,
)
from project_o.supervisor.nursery import Nursery, NurseryClosed
from project_o.supervisor.spec import (
    Child,
    ChildInfo,
    ChildSpec,
    ChildStatus,
    EventKind,
    ExitReason,
    Strategy,
)

__all__ = ["EscalateCallback", "EventCallback", "SupervisionTree"]

logger = logging.getLogger("project_o.supervisor")

EventCallback = Callable[[EventKind, str | None, str], object]
"""``on_event(kind, child_id, reason)``; its return value is ignored."""

EscalateCallback = Callable[[str], object]
"""``on_escalate(reason)``; may be a coroutine function (it is then awaited)."""

_LOG_LEVELS = {
    EventKind.START: logging.INFO,
    EventKind.RESTART: logging.WARNING,
    EventKind.EXIT: logging.WARNING,
    EventKind.STOP: logging.INFO,
    EventKind.KILL: logging.WARNING,
    EventKind.START_FAILED: logging.ERROR,
    EventKind.ESCALATE: logging.ERROR,
}


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(eq=False)
class _Run:
    """One run of a child: from a successful start() to its exit."""

    child: Child
    exited: asyncio.Future[ExitReason]


@dataclass(eq=False)
class _Slot:
    """A child spec and what the tree knows of its current run."""

    spec: ChildSpec
    run: _Run | None = None
    status: ChildStatus = ChildStatus.STOPPED
    starts: int = 0
    last_exit: ExitReason | None = None


class SupervisionTree:
    """Starts, watches, restarts and stops children; implements :class:`Child` itself."""

    def __init__(
        self,
        specs: Iterable[ChildSpec],
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        on_event: EventCallback | None = None,
        on_escalate: EscalateCallback | None = None,
        name: str = "supervision tree",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.strategy = _parse_strategy(strategy)
        self._slots = [_Slot(spec) for spec in specs]
        _check_unique_ids(self._slots)
        self._intensity = RestartIntensity(max_restarts, max_seconds, clock=clock)
        self._on_event = on_event
        self._on_escalate = on_escalate
        self._state = _State.NEW
        self._killed = False
        self._lock = asyncio.Lock()
        self._ended = asyncio.Event()
        self._exit: ExitReason | None = None
        #: owns the monitors and background stops (opened by start())
        self._tasks: Nursery | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> SupervisionTree:
        """Start every child in spec order; returns the tree (handy in a ChildSpec.start).

        If a child fails to start, the ones already started are stopped in
        reverse order and the child's exception propagates, with a note.
        """
        if self._state is not _State.NEW:
            raise InvalidArgument(
                f"{self.name}: start() may be called once; it is {self._state.value}"
            )
        self._state = _State.RUNNING
        self._tasks = Nursery(self.name)
        await self._tasks.open()
        async with self._lock:
            for slot in self._slots:
                if self._state is not _State.RUNNING:
                    break  # stopped or killed while starting: stop() takes it from here
                await self._start_or_unwind(slot)
        return self

    async def stop(self) -> None:
        """Stop every child in reverse spec order (each by its shutdown spec); idempotent."""
        if self._state is _State.NEW:
            self._finish(ExitReason.shutdown("stopped before it was started"))
            return
        if self._state is not _State.RUNNING:
            await self._ended.wait()  # another stop or an escalation is under way
            return
        self._state = _State.STOPPING  # before the lock: a restart in progress sees it and yields
        async with self._lock:
            if not self._ended.is_set():
                await self._stop_slots(reversed(self._slots), "tree shutdown")
                self._finish(ExitReason.shutdown())

    async def wait(self) -> ExitReason:
        """Resolve when the tree has ended: normal after stop(), abnormal after escalating.

        It returns once every task of the tree has ended too.
        """
        await self._ended.wait()
        if self._tasks is not None:
            await self._tasks.close()
        assert self._exit is not None  # set before _ended
        return self._exit

    def terminate(self) -> None:
        """Child protocol: stop in the background (each child by its shutdown spec)."""
        self._stop_in_background()

    def kill(self) -> None:
        """Child protocol: kill every child now, whatever its shutdown spec, then end."""
        self._killed = True
        for slot in self._slots:
            if slot.run is not None:
                slot.run.child.kill()
        self._stop_in_background()

    @property
    def handle(self) -> SupervisionTree:
        """Child protocol: a tree is its own handle."""
        return self

    # -- what runs ---------------------------------------------------------

    def which_children(self) -> list[ChildInfo]:
        """One :class:`ChildInfo` per child, in spec order."""
        return [
            ChildInfo(
                id=slot.spec.id,
                handle=slot.run.child.handle if slot.run is not None else None,
                restarts=max(0, slot.starts - 1),
                status=slot.status,
                last_exit=slot.last_exit,
            )
            for slot in self._slots
        ]

    # -- starting ----------------------------------------------------------

    async def _start_or_unwind(self, slot: _Slot) -> None:
        """Initial start of one child; on failure stop the others and re-raise."""
        try:
            await self._start_slot(slot, EventKind.START, "initial start")
        except BaseException as exc:
            self._state = _State.STOPPING
            await self._stop_slots(reversed(self._slots), f"start of {slot.spec.id!r} failed")
            self._finish(ExitReason.crashed(f"child {slot.spec.id!r} failed to start: {exc!r}"))
            if isinstance(exc, Exception):
                exc.add_note(
                    f"while {self.name} started child {slot.spec.id!r}; the children "
                    "started before it were stopped"
                )
            raise

    async def _start_slot(self, slot: _Slot, kind: EventKind, why: str) -> None:
        slot.status = ChildStatus.STARTING
        try:
            child = await slot.spec.start()
            _check_child(slot.spec.id, child)
        except BaseException as exc:
            slot.status = ChildStatus.STOPPED
            self._emit(EventKind.START_FAILED, slot.spec.id, f"start() raised {exc!r}")
            raise
        run = _Run(child, asyncio.get_running_loop().create_future())
        slot.run, slot.status = run, ChildStatus.RUNNING
        slot.starts += 1
        assert self._tasks is not None  # opened by start(), before any child starts
        self._tasks.spawn(self._monitor(slot, run), name=f"watch {slot.spec.id}")
        verb = "started" if kind is EventKind.START else "restarted"
        self._emit(kind, slot.spec.id, f"{verb} ({_describe(child.handle)}): {why}")
        if self._killed:
            child.kill()  # kill() came while start() was awaited; stop() will collect it

    async def _start_group(self, slots: list[_Slot], why: str) -> None:
        """Restart ``slots`` in order; a failed start counts as one more restart."""
        pending = list(slots)
        while pending and self._state is _State.RUNNING:
            try:
                await self._start_slot(pending[0], EventKind.RESTART, why)
            except Exception as exc:  # noqa: BLE001 -- whatever start() raised is a failed start
                if not self._intensity.record():
                    reason = ExitReason.crashed(f"failed to restart: start() raised {exc!r}")
                    await self._escalate(pending[0], reason)
                    return
                await asyncio.sleep(0)  # let exits and stop() in before the next attempt
                continue
            pending.pop(0)

    # -- watching and restarting ----------------------------------------------

    async def _monitor(self, slot: _Slot, run: _Run) -> None:
        """Await one run's end; then let the tree decide, under the lock."""
        try:
            reason = await run.child.wait()
        except Exception as exc:  # noqa: BLE001 -- a broken Child must not break the tree
            reason = ExitReason.crashed(f"wait() raised {exc!r}")
        run.exited.set_result(reason)
        async with self._lock:
            if slot.run is not run or self._state is not _State.RUNNING:
                return  # stopped or replaced by the tree meanwhile: not a crash to act on
            try:
                await self._on_exit(slot, reason)
            except Exception:
                logger.exception(
                    "%s: internal error handling the exit of %r", self.name, slot.spec.id
                )

    async def _on_exit(self, slot: _Slot, reason: ExitReason) -> None:
        slot.run, slot.status, slot.last_exit = None, ChildStatus.EXITED, reason
        self._emit(EventKind.EXIT, slot.spec.id, reason.detail)
        if not _wants_restart(slot.spec, reason):
            return
        if not self._intensity.record():
            await self._escalate(slot, reason)
            return
        await self._restart(slot, f"{slot.spec.id!r} {reason.detail}")

    async def _restart(self, slot: _Slot, why: str) -> None:
        siblings = self._siblings(slot)
        await self._stop_slots(reversed(siblings), f"{self.strategy.value} restart after {why}")
        again = [s for s in self._slots if s is slot or (s in siblings and _restartable(s))]
        await self._start_group(again, f"after {why}")

    def _siblings(self, slot: _Slot) -> list[_Slot]:
        """The running children that the strategy restarts along with ``slot``."""
        if self.strategy is Strategy.ONE_FOR_ONE:
            return []
        first = 0 if self.strategy is Strategy.ONE_FOR_ALL else self._slots.index(slot) + 1
        return [s for s in self._slots[first:] if s is not slot and s.run is not None]

    async def _escalate(self, slot: _Slot, reason: ExitReason) -> None:
        why = (
            f"child {slot.spec.id!r} {reason.detail}: more than {self._intensity.max_restarts} "
            f"restarts within {self._intensity.max_seconds:g} s; {self.name} gives up "
            "and stops all its children"
        )
        self._state = _State.STOPPING
        self._emit(EventKind.ESCALATE, slot.spec.id, why)
        await self._stop_slots(reversed(self._slots), "escalation")
        await self._call_on_escalate(why)
        self._finish(ExitReason.crashed(f"escalated: {why}"))

    # -- stopping ------------------------------------------------------------

    async def _stop_slots(self, slots: Iterable[_Slot], why: str) -> None:
        for slot in list(slots):
            await self._stop_slot(slot, why)

    async def _stop_slot(self, slot: _Slot, why: str) -> None:
        run = slot.run
        if run is None:
            return
        if run.exited.done():  # it ended on its own before we got to it
            reason = run.exited.result()
            self._emit(EventKind.EXIT, slot.spec.id, reason.detail)
        else:
            slot.status = ChildStatus.STOPPING
            reason = await self._shutdown(slot.spec, run)
            self._emit(EventKind.STOP, slot.spec.id, f"stopped ({why}): {reason.detail}")
        slot.run, slot.status, slot.last_exit = None, ChildStatus.STOPPED, reason

    async def _shutdown(self, spec: ChildSpec, run: _Run) -> ExitReason:
        """Stop one child as its spec says; trio-style staged terminate -> grace -> kill."""
        # shield(): the monitor owns the future and sets it; a timeout here must not cancel it.
        exited = asyncio.shield(run.exited)
        if self._killed or spec.shutdown == "brutal_kill":
            run.child.kill()
            return await exited
        run.child.terminate()
        if spec.shutdown == "infinity":
            return await exited
        assert isinstance(spec.shutdown, int)
        try:
            return await asyncio.wait_for(exited, spec.shutdown / 1000)
        except TimeoutError:
            self._emit(
                EventKind.KILL,
                spec.id,
                f"still running {spec.shutdown} ms after terminate(); killing it "
                "(make it exit on SIGTERM, or give it a longer shutdown)",
            )
            run.child.kill()
            return await asyncio.shield(run.exited)

    def _finish(self, reason: ExitReason) -> None:
        self._state = _State.STOPPED
        self._exit = reason
        self._ended.set()
        if self._tasks is not None:
            self._tasks.close_nowait()  # maybe from a monitor: wait() awaits the end

    # -- helpers -------------------------------------------------------------

    def _emit(self, kind: EventKind, child_id: str | None, reason: str) -> None:
        if self._on_event is None:  # nobody listens: the log is where it goes
            logger.log(_LOG_LEVELS[kind], "%s: %s %s: %s", self.name, kind.value, child_id, reason)
            return
        try:
            self._on_event(kind, child_id, reason)
        except Exception:
            logger.exception("%s: on_event callback raised; ignored", self.name)

    async def _call_on_escalate(self, why: str) -> None:
        if self._on_escalate is None:
            return
        try:
            result = self._on_escalate(why)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("%s: on_escalate callback raised; ignored", self.name)

    def _stop_in_background(self) -> None:
        """stop(), as a task of the tree (terminate() and kill() cannot await)."""
        if self._tasks is None:  # never started: nothing runs, nothing to wait for
            self._finish(ExitReason.shutdown("stopped before it was started"))
            return
        try:
            self._tasks.spawn(self.stop(), name=f"stop {self.name}")
        except NurseryClosed:
            pass  # the tree has ended already

    def __repr__(self) -> str:
        return (
            f"<SupervisionTree {self.name!r} {self.strategy.value} "
            f"children={len(self._slots)} {self._state.value}>"
        )


def _wants_restart(spec: ChildSpec, reason: ExitReason) -> bool:
    if spec.restart == "permanent":
        return True
    return spec.restart == "transient" and not reason.normal


def _restartable(slot: _Slot) -> bool:
    """A sibling stopped by a group restart comes back unless it is temporary."""
    return slot.spec.restart != "temporary"


def _parse_strategy(strategy: Strategy | str) -> Strategy:
    try:
        return Strategy(strategy)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise InvalidArgument(f"strategy must be one of {choices}; got {strategy!r}") from None


def _check_unique_ids(slots: list[_Slot]) -> None:
    seen: set[str] = set()
    for slot in slots:
        if slot.spec.id in seen:
            raise InvalidArgument(f"two children have the id {slot.spec.id!r}; ids must be unique")
        seen.add(slot.spec.id)


def _check_child(child_id: str, child: object) -> None:
    if not isinstance(child, Child):
        raise InvalidArgument(
            f"child {child_id!r}: start() must return a Child (handle, wait, terminate, "
            f"kill), got {type(child).__name__}"
        )


def _describe(handle: object) -> str:
    return f"pid {handle}" if isinstance(handle, int) else repr(handle)

"""Running tools: ``ctx.tools``, timeouts, structured errors, stubbed side effects.

Every durable write is a request/ack round trip on the instance's
socket, made by the thread that serves the request. A tool with a
timeout runs in a worker thread while the calling thread waits; writes the
tool makes (``ctx.memory.set`` inside it) and the events it emits are
*forwarded* to the waiting thread, which makes them, so they count as that
request's and an abandoned tool cannot make them::

    caller thread (the instance's)                 worker thread (daemon)
    ──────────────────────────────                 ──────────────────────
    ctx.tools.call("fetch", url=...)
      validate arguments (pydantic) ── invalid ──► {"error": {"type": "invalid_arguments"}}
      side effect and stubbed? ─────────────────► {"stubbed": true, ...}
      start worker ─────────────────────────────► tool(ctx, url=...)
      wait on the job's inbox ◄── journal(op, data) ──── ctx.memory.set(...)
        journal(op, data) (durable) ── reply ──►   returns once durable
        every IDLE_SLICE: idle()  (the runtime's heartbeat hook)
      ◄──────────────────────────── DONE ───────── returns / raises
      result made JSON-able ────────────────────► value, or {"error": {...}}
      timeout passed first ─────────────────────► {"error": {"type": "timeout"}}

A timed-out thread cannot be killed (Python has no safe way to stop a
thread); it is abandoned. It runs on in the background until it returns,
and any durable write it tries after its timeout is refused with
:class:`~project_o.agent.tools.ToolError`, so an abandoned tool can never
write behind the caller's back. Tools that must not outlive their caller
should use ``timeout=None``, which runs them inline on the caller's thread.
"""

from __future__ import annotations

import asyncio
import functools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import pydantic
import pydantic_core

from project_o.agent.store import DurableWrite
from project_o.agent.tools import (
    EXCEPTION,
    INVALID_ARGUMENTS,
    INVALID_RESULT,
    TIMEOUT,
    TOOL_ERROR,
    UNKNOWN_TOOL,
    Tool,
    ToolError,
    tool_error,
)

if TYPE_CHECKING:
    from project_o.agent.context import Context

__all__ = ["IDLE_SLICE", "BoundTool", "HasTools", "JournalGate", "ToolBox", "ToolRunner",
           "on_owner_thread"]


class HasTools(Protocol):
    """What a :class:`ToolRunner` reads of an agent (a :class:`~project_o.agent.dsl.Agent`).

    A protocol, not the class: the DSL builds on this module, so this
    module must not import the DSL (see "Layers" in docs/design.md).
    """

    @property
    def tools(self) -> Mapping[str, Tool]: ...

_R = TypeVar("_R")

#: longest stretch a waiting thread goes without calling ``idle()``: well
#: under the default 1 s heartbeat interval, so a runtime that beats from
#: ``idle`` never looks hung while it waits on a slow tool
IDLE_SLICE: Final = 0.1

_local = threading.local()  # .job: the _Job a worker thread runs (unset elsewhere)


def _nothing() -> None:
    """The default idle hook."""


@dataclass(eq=False)
class _Forwarded:
    """A call a worker hands to its waiting thread, and the answer it gets back."""

    call: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


_DONE: Final = object()


class _Job:
    """One tool call in a worker thread, shared by the worker and its waiter."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.abandoned = False
        self.result: Any = None
        self.raised: BaseException | None = None

    def forward(self, call: Callable[[], Any], what: str) -> Any:
        """From the worker: have the waiting thread make ``call``; its result."""
        item = _Forwarded(call)
        with self.lock:  # so a call cannot slip in after the waiter gave up
            if self.abandoned:
                raise ToolError(
                    f"refused to {what}: the tool ran past its timeout and its caller "
                    "has moved on"
                )
            self.inbox.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.value

    def abandon(self) -> bool:
        """From the waiter: give up; False if the tool finished after all."""
        with self.lock:
            self.abandoned = True
        finished = False
        while True:  # answer writes queued before we gave up, or the worker waits forever
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return not finished
            if item is _DONE:
                finished = True
            else:
                item.error = ToolError("the tool ran past its timeout; call refused")
                item.done.set()


def on_owner_thread(function: Callable[..., _R], what: str = "call it") -> Callable[..., _R]:
    """Wrap ``function`` so a tool's worker thread never runs it itself.

    Called from a worker, the call is forwarded to the thread waiting for
    that tool (and on up, for nested tools); called anywhere else, it runs
    at once. For what touches the instance's socket: the journal,
    ``ctx.emit``. ``what`` names the call in the error an abandoned tool gets.
    """

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> _R:
        job: _Job | None = getattr(_local, "job", None)
        if job is None:
            return function(*args, **kwargs)
        # Forward the wrapper, not the function: if the waiting thread is
        # itself a worker (a tool calling a tool), it forwards once more.
        return job.forward(lambda: call(*args, **kwargs), what)  # type: ignore[no-any-return]

    return call


class JournalGate:
    """The kit's journal, safe to call from a tool's worker thread.

    On any thread that is not a tool worker it calls ``journal`` directly;
    on a worker it forwards the write to the thread waiting for that tool.
    """

    def __init__(self, journal: DurableWrite) -> None:
        self._call = on_owner_thread(journal, "make a durable write")

    def __call__(self, operation: str, data: dict[str, Any]) -> object:
        return self._call(operation, data)


class ToolRunner:
    """The kit's tool machinery: one per agent per process.

    ``stub_side_effects`` (settable at any time) makes tools declared with
    ``side_effects=True`` return ``{"stubbed": true, ...}`` without running:
    a shadow instance evaluating new code must not send real e-mails.
    ``idle`` is called at least every :data:`IDLE_SLICE` seconds while a
    tool runs in its worker thread.
    """

    def __init__(
        self,
        agent: HasTools,
        *,
        stub_side_effects: bool = False,
        idle: Callable[[], None] = _nothing,
    ) -> None:
        self.agent = agent
        self.stub_side_effects = stub_side_effects
        self.idle = idle

    def box(self) -> ToolBox:
        """A fresh ``ctx.tools`` for one request (bind it to the context)."""
        return ToolBox(self)

    def call(self, ctx: Context | None, name: str, arguments: object) -> Any:
        """Validate, run and wrap one call; never raises for the tool's failures."""
        tool = self.agent.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.agent.tools)) or "none"
            return tool_error(str(name), UNKNOWN_TOOL, f"no tool named {name!r}; known: {known}")
        values, error = _validated(tool, arguments)
        if error is not None:
            return error
        if tool.side_effects and self.stub_side_effects:
            return {"stubbed": True, "tool": tool.name, "arguments": _jsonable(values)}
        return self._run(tool, ctx, values)

    def _run(self, tool: Tool, ctx: Context | None, values: dict[str, Any]) -> Any:
        if tool.timeout is None:
            try:
                result = tool.invoke(ctx, values)
            except Exception as exc:  # noqa: BLE001 - a tool may raise anything
                return _raised(tool, exc)
            return _result(tool, result)
        return self._run_in_worker(tool, ctx, values, tool.timeout)

    def _run_in_worker(
        self, tool: Tool, ctx: Context | None, values: dict[str, Any], timeout: float
    ) -> Any:
        job = _Job()
        worker = threading.Thread(
            target=_work, args=(job, tool, ctx, values), name=f"tool:{tool.name}", daemon=True
        )
        worker.start()
        if not self._wait(job, timeout):
            return tool_error(
                tool.name, TIMEOUT,
                f"tool {tool.name!r} did not finish within {timeout:g} s; it was abandoned "
                "(it may still be running)", timeout_s=timeout,
            )
        if job.raised is not None:
            if not isinstance(job.raised, Exception):
                raise job.raised  # SystemExit, KeyboardInterrupt: not the tool's to swallow
            return _raised(tool, job.raised)
        return _result(tool, job.result)

    def _wait(self, job: _Job, timeout: float) -> bool:
        """Serve the worker's writes until it is done (True) or time is up (False)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return not job.abandon()
            try:
                item = job.inbox.get(timeout=min(left, IDLE_SLICE))
            except queue.Empty:
                self.idle()
                continue
            if item is _DONE:
                return True
            self._serve(job, item)

    @staticmethod
    def _serve(job: _Job, item: _Forwarded) -> None:
        try:
            item.value = item.call()
        except Exception as exc:  # noqa: BLE001 - handed to the tool that called
            item.error = exc
        except BaseException:
            # The runtime is going down (its own exit signal): release the
            # worker with an error, then let the exit go on.
            job.abandon()
            item.error = ToolError("the instance is stopping; call refused")
            raise
        finally:
            item.done.set()


def _work(job: _Job, tool: Tool, ctx: Context | None, values: dict[str, Any]) -> None:
    _local.job = job
    try:
        job.result = tool.invoke(ctx, values)
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
        job.raised = exc
    finally:
        job.inbox.put(_DONE)


def _decode(tool: Tool, arguments: object) -> tuple[Mapping[str, Any] | None, str]:
    """Arguments as a map (a JSON string, as a model sends it, decoded), or why not."""
    if arguments is None:
        return {}, ""
    if isinstance(arguments, (str, bytes)):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError as exc:
            return None, f"arguments for {tool.name!r} are not valid JSON: {exc}"
    if not isinstance(arguments, Mapping):
        return None, (f"arguments for {tool.name!r} must be an object of named values, "
                      f"got {type(arguments).__name__}")
    return arguments, ""


def _validated(tool: Tool, arguments: object) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(values, None)``, or ``({}, structured invalid_arguments error)``."""
    parsed, problem = _decode(tool, arguments)
    if parsed is None:
        return {}, tool_error(tool.name, INVALID_ARGUMENTS, problem)
    try:
        return tool.validate(parsed), None
    except pydantic.ValidationError as exc:
        details = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False)
        ]
        summary = "; ".join(f"{'.'.join(map(str, d['loc'])) or '(root)'}: {d['msg']}"
                            for d in details)
        return {}, tool_error(tool.name, INVALID_ARGUMENTS,
                              f"invalid arguments for {tool.name!r}: {summary}", details=details)


def _raised(tool: Tool, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ToolError):
        return tool_error(tool.name, TOOL_ERROR, str(exc))
    return tool_error(tool.name, EXCEPTION, f"{type(exc).__name__}: {exc}",
                      exception=type(exc).__name__)


def _jsonable(value: Any) -> Any:
    return pydantic_core.to_jsonable_python(value)


def _result(tool: Tool, result: Any) -> Any:
    """The tool's result as JSON-like data (models, dataclasses, tuples converted)."""
    try:
        return _jsonable(result)
    except pydantic_core.PydanticSerializationError as exc:
        return tool_error(tool.name, INVALID_RESULT,
                          f"tool {tool.name!r} returned {type(result).__name__}, which cannot "
                          f"be turned into JSON: {exc}")


@dataclass(frozen=True, eq=False)
class BoundTool:
    """One tool as an LLM loop sees it: ``name``, ``description``, ``parameters``, ``call``."""

    name: str
    description: str
    parameters: dict[str, Any]
    side_effects: bool
    timeout: float | None
    _box: ToolBox = field(repr=False)

    def call(self, arguments: Mapping[str, Any] | str | None = None) -> Any:
        """Run the tool with ``arguments`` (a dict or a JSON string); errors are values."""
        return self._box.call(self.name, arguments)

    def openai(self) -> dict[str, Any]:
        """This tool in OpenAI's ``tools=[...]`` shape."""
        spec = {"name": self.name, "description": self.description,
                "parameters": self.parameters}
        return {"type": "function", "function": spec}


class ToolBox:
    """``ctx.tools``: the agent's tools, callable by name within one request."""

    def __init__(self, runner: ToolRunner) -> None:
        self._runner = runner
        self._ctx: Context | None = None

    def bind(self, ctx: Context) -> ToolBox:
        """Attach the request's context (tools that take ``ctx`` receive it)."""
        self._ctx = ctx
        return self

    def call(self, name: str, arguments: Mapping[str, Any] | str | None = None, /,
             **kwargs: Any) -> Any:
        """Call a tool: ``call("add", a=1, b=2)`` or ``call("add", {"a": 1, "b": 2})``.

        Returns the tool's result as JSON-like data, or a structured error
        ``{"error": {"type", "message", "tool", ...}}``; never raises for
        what the tool or its arguments did.
        """
        if arguments is None:
            return self._runner.call(self._ctx, name, kwargs)
        if kwargs and isinstance(arguments, Mapping):
            return self._runner.call(self._ctx, name, {**arguments, **kwargs})
        if kwargs:
            return tool_error(str(name), INVALID_ARGUMENTS,
                              "pass arguments either as one map or as keywords, not a string "
                              "and keywords")
        return self._runner.call(self._ctx, name, arguments)

    async def acall(self, name: str, arguments: Mapping[str, Any] | str | None = None, /,
                    **kwargs: Any) -> Any:
        """:meth:`call`, awaitable: the tool runs on a worker thread, so an ``async
        def`` handler's event loop serves other requests meanwhile."""
        return await asyncio.to_thread(functools.partial(self.call, name, arguments, **kwargs))

    def specs(self) -> list[BoundTool]:
        """Every tool, as objects with ``name``, ``description``, ``parameters``, ``call``."""
        return [
            BoundTool(tool.name, tool.description, tool.spec()["parameters"],
                      tool.side_effects, tool.timeout, self)
            for tool in self._runner.agent.tools.values()
        ]

    def openai(self) -> list[dict[str, Any]]:
        """Every tool in OpenAI's ``tools=[...]`` shape."""
        return [tool.openai() for tool in self.specs()]

    def get(self, name: str) -> BoundTool | None:
        """One tool by name, or None."""
        return next((tool for tool in self.specs() if tool.name == name), None)

    def names(self) -> list[str]:
        """The tools' names, in declaration order."""
        return list(self._runner.agent.tools)

    def __contains__(self, name: object) -> bool:
        return name in self._runner.agent.tools

    def __len__(self) -> int:
        return len(self._runner.agent.tools)

    def __iter__(self) -> Iterator[BoundTool]:
        return iter(self.specs())

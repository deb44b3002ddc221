"""The agent DSL: declare an agent and its handler.

::

    from project_o import Agent

    agent = Agent("echo")

    @agent.handler
    def handle(ctx, request):          # request: JSON-like input
        ctx.memory.set("last", request)
        return {"echo": request}       # JSON-like output

Beyond the handler an agent declares (each in its own module)::

    @agent.tool(timeout=5.0, side_effects=False)    tools      ctx.tools.call(name, ...)
    agent.param("top_k", 5, low=1, high=20)         genes      ctx.params.top_k
    wf = agent.workflow("ingest"); @wf.step(...)    workflows  ctx.workflows.run("ingest", ...)
    @agent.evolvable                                functions mutation may rewrite
    @agent.on_feedback                              hooks      hook(ctx, feedback)
    @agent.chat                                     chat       chat(ctx, {"messages", ...})
                                                    (POST /v1/chat/completions; see agent.chat)

The runtime imports the module, finds ``agent`` and calls ``agent.handle``
for each request. Outside the runtime, :meth:`Agent.test_client` runs the
handler in-process with an in-memory journal, so handlers can be unit
tested with plain pytest::

    client = agent.test_client()
    assert client.call("hi") == {"echo": "hi"}
    assert client.memory.get("last") == "hi"
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar, overload

import msgpack

from project_o.agent.chat import ChatHandler, default_input
from project_o.agent.context import Context
from project_o.agent.kit import AgentKit
from project_o.agent.params import Param
from project_o.agent.tools import DEFAULT_TIMEOUT, Tool, make_tool
from project_o.agent.workflow import Workflow
from project_o.errors import InvalidArgument
from project_o.wire import ensure_packable
from project_o.wire.chat import chat_request

__all__ = ["DEFAULT_ASYNC_CONCURRENCY", "DEFAULT_SYNC_CONCURRENCY", "Agent", "Evolvable", "FeedbackHook", "Handler", "TestClient", "check_feedback"]

#: ``handler(ctx, request) -> response``; request and response are JSON-like.
Handler = Callable[[Context, Any], Any]
#: ``hook(ctx, feedback)``; feedback = {"request_id", "score", "comment", "version"}
FeedbackHook = Callable[[Context, dict[str, Any]], Any]
_H = TypeVar("_H", bound=Handler)
_F = TypeVar("_F", bound=Callable[..., Any])
_FB = TypeVar("_FB", bound=FeedbackHook)
_C = TypeVar("_C", bound=ChatHandler)
#: how much of a failing hook's traceback a feedback report carries
_MAX_TRACEBACK_CHARS: Final = 8 * 1024
#: the version TestClient reports in feedback (no catalog behind it)
TEST_VERSION: Final = "test"
#: requests in flight per instance for an ``async def`` handler (one event loop)
DEFAULT_ASYNC_CONCURRENCY: Final = 64
#: worker threads per instance for a plain handler: under the sandbox's default
#: process limit (64 tasks), each thread reserving its stack in the address space
DEFAULT_SYNC_CONCURRENCY: Final = 32
#: the most ``max_concurrency`` may ask for
MAX_CONCURRENCY: Final = 4096


@dataclass(frozen=True)
class Evolvable:
    """A function mutation may rewrite: where its source lives."""

    name: str
    qualname: str
    module: str
    file: str | None
    line: int | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for the evolution layer and the catalog."""
        return {"name": self.name, "qualname": self.qualname, "module": self.module,
                "file": self.file, "line": self.line}


class Agent:
    """One agent: a name and the handler that answers its requests."""

    def __init__(self, name: str, *, embedder: Any = None,
                 history_limit: int | None = None, max_concurrency: int | None = None) -> None:
        """``embedder``: how ``ctx.memory.recall`` embeds text (default: the offline
        hashing embedder, see :mod:`project_o.agent.embedding`); ``history_limit``:
        conversation entries kept in ``ctx.history``; ``max_concurrency``: requests
        one instance serves at once (default :data:`DEFAULT_ASYNC_CONCURRENCY` for an
        ``async def`` handler, :data:`DEFAULT_SYNC_CONCURRENCY` threads for a plain one;
        the supervisor queues the rest)."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument(f"an agent needs a non-empty name, got {name!r}")
        if history_limit is not None and (not isinstance(history_limit, int) or history_limit < 1):
            raise InvalidArgument(f"history_limit must be a positive int, got {history_limit!r}")
        if max_concurrency is not None and (
                isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                or not 1 <= max_concurrency <= MAX_CONCURRENCY):
            raise InvalidArgument(f"max_concurrency must be an int from 1 to {MAX_CONCURRENCY}, "
                                  f"got {max_concurrency!r}")
        self._max_concurrency = max_concurrency
        self.name = name
        self.embedder = embedder
        self.history_limit = history_limit
        self._handler: Handler | None = None
        self._chat: ChatHandler | None = None
        self._tools: dict[str, Tool] = {}
        self._params: dict[str, Param] = {}
        self._workflows: dict[str, Workflow] = {}
        self._feedback_hooks: list[FeedbackHook] = []
        #: ``@agent.check`` functions: quick checks a new version must pass before it serves
        self.checks: list[Callable[[Any], None]] = []
        #: functions marked ``@agent.evolvable``, by qualified name
        self.evolvables: dict[str, Evolvable] = {}

    def __repr__(self) -> str:
        handler = getattr(self._handler, "__qualname__", None)
        return f"Agent({self.name!r}, handler={handler})"

    def handler(self, function: _H) -> _H:
        """Decorator: make ``function(ctx, request)`` this agent's handler."""
        if not callable(function):
            raise InvalidArgument(f"@{self.name}.handler needs a function, got {function!r}")
        if self._handler is not None:
            raise InvalidArgument(
                f"agent {self.name!r} already has a handler "
                f"({self._handler.__qualname__}); an agent has exactly one — "
                "dispatch inside it"
            )
        self._handler = function
        return function

    @property
    def has_handler(self) -> bool:
        """Whether a handler has been declared."""
        return self._handler is not None

    @property
    def is_async(self) -> bool:
        """Whether the handler is an ``async def`` (it runs on the instance's event loop)."""
        return self._handler is not None and inspect.iscoroutinefunction(self._handler)

    @property
    def max_concurrency(self) -> int:
        """Requests one instance serves at once (declared, or the default for the handler)."""
        if self._max_concurrency is not None:
            return self._max_concurrency
        return DEFAULT_ASYNC_CONCURRENCY if self.is_async else DEFAULT_SYNC_CONCURRENCY

    def chat(self, function: _C) -> _C:
        """Decorator: make ``function(ctx, request)`` this agent's chat handler.

        It answers ``POST /v1/chat/completions`` with the whole OpenAI request
        (``messages``, ``model``, ``stream``...); without one, the handler gets
        the last user message's text (:mod:`project_o.agent.chat`). It may be
        an ``async def`` whatever the main handler is.
        """
        if not callable(function):
            raise InvalidArgument(f"@{self.name}.chat needs a function, got {function!r}")
        if self._chat is not None:
            raise InvalidArgument(f"agent {self.name!r} already has a chat handler "
                                  f"({self._chat.__qualname__})")
        self._chat = function
        return function

    def runs_async(self, request: Any) -> bool:
        """Whether the function that serves ``request`` is an ``async def``."""
        if self._chat is not None and chat_request(request) is not None:
            return inspect.iscoroutinefunction(self._chat)
        return self.is_async

    def handle(self, ctx: Context, request: Any) -> Any:
        """Run the handler on one request (a chat envelope: the chat handler, if declared).

        An ``async def`` handler's coroutine is returned, for the caller to await.
        """
        chat = chat_request(request)
        if chat is not None:
            if self._chat is not None:
                return self._chat(ctx, chat)
            request = default_input(chat.get("messages") or [])
        if self._handler is None:
            raise InvalidArgument(
                f"agent {self.name!r} has no handler; decorate a function with @agent.handler"
            )
        return self._handler(ctx, request)

    # -- tools ----------------------------------------------------------

    @overload
    def tool(self, function: _F, /) -> _F: ...
    @overload
    def tool(self, function: None = None, /, *, name: str | None = None,
             timeout: float | None = DEFAULT_TIMEOUT,
             side_effects: bool = False, description: str | None = None
             ) -> Callable[[_F], _F]: ...

    def tool(self, function: Callable[..., Any] | None = None, /, *, name: str | None = None,
             timeout: float | None = DEFAULT_TIMEOUT, side_effects: bool = False,
             description: str | None = None) -> Any:
        """Decorator: declare a tool (``@agent.tool`` or ``@agent.tool(...)``).

        The JSON schema comes from the type hints, the description and the
        parameters' descriptions from the docstring (see
        :mod:`project_o.agent.tools`). ``side_effects=True`` marks a tool
        that changes the world, so shadows can stub it; ``timeout=None``
        runs it inline with no timeout. The function is returned unchanged.
        """
        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            tool = make_tool(fn, name=name, timeout=timeout, side_effects=side_effects,
                             description=description)
            if tool.name in self._tools:
                raise InvalidArgument(f"agent {self.name!r} already has a tool {tool.name!r}; "
                                      "pass name=... to tell them apart")
            self._tools[tool.name] = tool
            return fn

        return register(function) if function is not None else register

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The declared tools, by name (read-only, declaration order)."""
        return MappingProxyType(self._tools)

    # -- params ---------------------------------------------------------

    def param(self, name: str, default: Any, *, low: float | None = None,
              high: float | None = None, choices: Sequence[Any] | None = None,
              description: str = "") -> Param:
        """Declare an evolvable parameter, read as ``ctx.params.<name>``.

        Its type is the default's (bool, int, float, str); ``low``/``high``
        bound a number, ``choices`` lists the allowed values. Raises
        InvalidArgument for a declaration the default itself breaks.
        """
        if name in self._params:
            raise InvalidArgument(f"agent {self.name!r} already declares param {name!r}")
        param = Param.declare(name, default, low=low, high=high, choices=choices,
                              description=description)
        self._params[name] = param
        return param

    def params_spec(self) -> dict[str, Param]:
        """Every declared param, by name (``Param.to_dict()`` gives plain data)."""
        return dict(self._params)

    # -- evolvable code -------------------------------------------------

    def check(self, function: _F) -> _F:
        """Decorator: a quick check ``check(client)`` every new version must pass.

        ``client`` is :meth:`test_client` of the candidate; raise (or fail an
        assert) to reject it. Checks run in a sandboxed process before the
        candidate's shadow starts (see :mod:`project_o.evolution.quick_checks`).
        """
        if not callable(function):
            raise InvalidArgument(f"@{self.name}.check needs a function, got {function!r}")
        self.checks.append(function)
        return function

    def evolvable(self, function: _F) -> _F:
        """Decorator: record ``function`` as code mutation may rewrite; nothing else changes."""
        if not inspect.isfunction(function):
            raise InvalidArgument(f"@agent.evolvable needs a function, got {function!r}")
        code = function.__code__
        self.evolvables[function.__qualname__] = Evolvable(
            name=function.__name__, qualname=function.__qualname__,
            module=function.__module__, file=code.co_filename or None,
            line=code.co_firstlineno,
        )
        return function

    # -- feedback -------------------------------------------------------

    def on_feedback(self, function: _FB) -> _FB:
        """Decorator: call ``function(ctx, feedback)`` for every piece of feedback."""
        if not callable(function):
            raise InvalidArgument(f"@agent.on_feedback needs a function, got {function!r}")
        if inspect.iscoroutinefunction(function):
            raise InvalidArgument(f"@agent.on_feedback needs a plain function, got the async "
                                  f"{function.__qualname__}: hooks run on a worker thread")
        self._feedback_hooks.append(function)
        return function

    def feedback(self, ctx: Context, feedback: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Deliver ``feedback`` to every hook; one hook's error never stops the others.

        Returns one report per hook: ``{"hook", "ok": True}`` or ``{"hook",
        "ok": False, "error": {"type", "message", "traceback"}}``. Raises
        InvalidArgument for malformed feedback (see :func:`check_feedback`).
        """
        checked = check_feedback(feedback)
        return [_deliver(hook, ctx, dict(checked)) for hook in self._feedback_hooks]

    # -- workflows ------------------------------------------------------

    def workflow(self, name: str) -> Workflow:
        """Declare a workflow; add steps to it with ``@wf.step``."""
        if name in self._workflows:
            raise InvalidArgument(f"agent {self.name!r} already has a workflow {name!r}")
        workflow = Workflow(name)
        self._workflows[name] = workflow
        return workflow

    @property
    def workflows(self) -> Mapping[str, Workflow]:
        """The declared workflows, by name (read-only)."""
        return MappingProxyType(self._workflows)

    def test_client(self, *, params: Mapping[str, Any] | None = None,
                    stub_side_effects: bool = False) -> TestClient:
        """An in-process client with in-memory memory, for unit tests.

        ``params`` overrides declared params (as a version would);
        ``stub_side_effects`` stubs side-effecting tools (as a shadow would).
        """
        return TestClient(self, params=params, stub_side_effects=stub_side_effects)


def check_feedback(feedback: Mapping[str, Any]) -> dict[str, Any]:
    """Feedback as hooks receive it: ``{"request_id", "score", "comment", "version"}``.

    ``score`` is a number in [-1, 1]; ``comment`` and ``version`` are str
    or None. Raises InvalidArgument naming the bad field.
    """
    if not isinstance(feedback, Mapping):
        raise InvalidArgument(f"feedback must be a map, got {type(feedback).__name__}")
    request_id, score = feedback.get("request_id"), feedback.get("score")
    if request_id is None or request_id == "":
        raise InvalidArgument("feedback needs the request_id of the answer it rates")
    if isinstance(score, bool) or not isinstance(score, (int, float)) \
            or not math.isfinite(score) or not -1 <= score <= 1:
        raise InvalidArgument(f"feedback score must be a number from -1 to 1, got {score!r}")
    checked = {"request_id": request_id, "score": float(score)}
    for key in ("comment", "version"):
        value = feedback.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"feedback {key} must be a str or None, got {value!r}")
        checked[key] = value
    return checked


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _deliver(hook: FeedbackHook, ctx: Context, feedback: dict[str, Any]) -> dict[str, Any]:
    name = getattr(hook, "__qualname__", repr(hook))
    try:
        hook(ctx, feedback)
    except Exception as exc:  # noqa: BLE001 - one hook's failure must not reach the others
        text = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK_CHARS:]
        return {"hook": name, "ok": False,
                "error": {"type": type(exc).__name__, "message": str(exc), "traceback": text}}
    return {"hook": name, "ok": True}


class TestClient:
    """Runs an agent's handler in this process, as the runtime would.

    Memory writes go to ``journal`` (a list of ``(operation, data)``, the
    WAL's view) and are applied at once. Request and response are checked
    and round-tripped through MessagePack, so what a test sees is what a
    supervisor would receive.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, agent: Agent, *, params: Mapping[str, Any] | None = None,
                 stub_side_effects: bool = False) -> None:
        self.agent = agent
        self.journal: list[tuple[str, dict[str, Any]]] = []
        self.kit = AgentKit(agent, self._record, params=params,
                            stub_side_effects=stub_side_effects)
        self.memory = self.kit.memory
        self._ids = itertools.count(1)

    def call(self, request: Any, *, request_id: Any = None) -> Any:
        """Send one request to the handler; return its (round-tripped) response."""
        ensure_packable(request, "request")
        rid = request_id if request_id is not None else f"test-{next(self._ids)}"
        output = self.agent.handle(self.kit.context(rid), request)
        if inspect.isawaitable(output):  # an async def handler
            output = asyncio.run(_awaited(output))
        ensure_packable(output, "response")
        return msgpack.unpackb(msgpack.packb(output, use_bin_type=True), raw=False)

    def context(self, request_id: Any = None) -> Context:
        """A request's context, to call ``ctx.tools`` or ``ctx.workflows`` directly."""
        rid = request_id if request_id is not None else f"test-{next(self._ids)}"
        return self.kit.context(rid)

    def feedback(self, request_id: Any, score: float, comment: str | None = None, *,
                 version: str | None = TEST_VERSION) -> list[dict[str, Any]]:
        """Deliver feedback on ``request_id`` to the agent's hooks; their reports."""
        feedback = {"request_id": request_id, "score": score, "comment": comment,
                    "version": version}
        return self.agent.feedback(self.kit.context(f"feedback:{request_id}"), feedback)

    def _record(self, operation: str, data: dict[str, Any]) -> None:
        packed = msgpack.packb(data, use_bin_type=True)
        self.journal.append((operation, msgpack.unpackb(packed, raw=False)))

"""``ctx.llm``: chat with an OpenAI-compatible model, tools and durable history.

::

    ctx.llm.chat("question", system=blocks, tools=True, stream=True, on_token=show)
      │
      ├─ messages = [system] + history(conversation) + new      (system is never stored)
      ├─ loop (at most max_steps tool rounds):
      │     LLMClient.complete(messages, tools) ── HTTP ──► model
      │     the model asks for tools?  call each with its JSON arguments,
      │                                 append the results, ask again
      │     else: the final answer
      ├─ journal("llm_exchange", {conversation, messages added, model, usage, ...})
      │     durable before chat returns; LLMHistory.apply() then keeps it
      └─ LLMReply(text, tool_calls, usage, model, finish_reason, tool_results)

No LLM configured means ``ctx.llm is None``: an agent then answers without
one and says so; nothing here ever invents model output. A chat that
fails raises :class:`~project_o.errors.LLMError` (after the retries
described in :mod:`project_o.llm.client`); tokens it had already
spent are journaled as ``llm_usage``.

A tool is anything with ``name``, ``description``, ``parameters`` (a JSON
schema) and ``call(arguments: dict)`` (:class:`LLMTool`). Its arguments
are validated by the tool (the DSL's tools validate with pydantic); a bad
call, an unknown tool or an exception becomes a structured error the model
reads and can correct, never a crash of the chat.
"""

from __future__ import annotations

import asyncio
import copy
import json
import queue
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from project_o.errors import InvalidArgument, LLMError, VaultError
from project_o.llm.client import Completion, LLMClient, TokenCallback, ToolCall, Usage
from project_o.llm.config import LLMConfig
from project_o.llm.history import LLM_EXCHANGE, LLM_FORGET, LLM_USAGE, LLMHistory
from project_o.vault.applied import APPLIED
from project_o.wire import ensure_packable

#: makes one write durable, returning once it is: the agent's journal
#: (``project_o.agent.store.DurableWrite``), spelled out because ``llm`` sits below ``agent``
#: (it returns ``APPLIED`` when it applied the write itself, in WAL order)
DurableWrite = Callable[[str, dict[str, Any]], object]
#: the same, awaited (what an ``async`` handler's journal offers)
DurableWriteAsync = Callable[[str, dict[str, Any]], Awaitable[object]]

__all__ = [
    "DEFAULT_CONVERSATION",
    "IDLE_SLICE",
    "LLM",
    "CompletionClient",
    "FunctionTool",
    "LLMConfig",
    "LLMError",
    "LLMReply",
    "LLMTool",
    "ToolCall",
    "ToolResult",
    "Usage",
]

#: the conversation a chat continues unless told otherwise
DEFAULT_CONVERSATION: Final = "default"
#: longest stretch the calling thread goes without ``idle()`` while a call
#: runs: the same slice as project_o.agent.toolbox, far below the 1 s beat
IDLE_SLICE: Final = 0.1
#: what the OpenAI API accepts as a function name
_TOOL_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})
#: chat() arguments the client sets itself
_RESERVED: Final = frozenset({"messages", "tools", "stream", "stream_options"})


class CompletionClient(Protocol):
    """Makes one completion: :class:`~project_o.llm.client.LLMClient` over HTTP, or
    :class:`~project_o.llm.remote.RemoteClient` through the supervisor (inside an instance)."""

    def complete(
        self, messages: Sequence[Mapping[str, Any]], *,
        tools: Sequence[Mapping[str, Any]] | None = None, stream: bool = False,
        on_token: TokenCallback | None = None, options: Mapping[str, Any] | None = None,
    ) -> Completion: ...

    async def complete_async(
        self, messages: Sequence[Mapping[str, Any]], *,
        tools: Sequence[Mapping[str, Any]] | None = None, stream: bool = False,
        on_token: TokenCallback | None = None, options: Mapping[str, Any] | None = None,
    ) -> Completion: ...


@runtime_checkable
class LLMTool(Protocol):
    """A tool the model may call; ``call`` validates its arguments itself."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Any]: ...

    def call(self, arguments: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class FunctionTool:
    """The simplest :class:`LLMTool`: a function and its JSON schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[[dict[str, Any]], Any]

    def call(self, arguments: dict[str, Any]) -> Any:
        """Run the function on the model's arguments."""
        return self.function(arguments)


@dataclass(frozen=True)
class ToolResult:
    """One tool call of a chat and what the model was told it returned."""

    call: ToolCall
    content: str
    error: bool = False


@dataclass(frozen=True)
class LLMReply:
    """The model's final answer to one chat, and what it took to get there.

    ``tool_calls`` holds calls the model made in its *final* message (only
    when no tools were offered to answer them); ``tool_results`` every
    tool run of the loop; ``messages`` what the exchange added to its
    conversation; ``usage`` the tokens of every step together.
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    tool_results: tuple[ToolResult, ...] = ()
    messages: tuple[dict[str, Any], ...] = ()
    steps: int = 1

    def __str__(self) -> str:
        return self.text


class LLM:
    """What agent code sees as ``ctx.llm``.

    ``tools`` supplies the agent's own tools (used by ``chat(tools=True)``);
    ``client`` makes the completions (default: an HTTP
    :class:`~project_o.llm.client.LLMClient` for ``config``; inside an
    instance, a :class:`~project_o.llm.remote.RemoteClient`: the supervisor
    calls the model, and the key never enters the process).
    ``journal_async`` is the awaited form of ``journal`` that :meth:`achat` uses
    when given.
    With ``idle`` (the runtime's heartbeat hook), each HTTP call runs on a
    worker thread while the calling thread calls ``idle()`` at least every
    :data:`IDLE_SLICE` seconds and delivers the streamed tokens itself, so
    a minute-long completion does not look like a hung instance.
    :meth:`bind` gives the per-request view (request id, token callback).
    """

    def __init__(
        self,
        config: LLMConfig,
        history: LLMHistory,
        journal: DurableWrite,
        *,
        tools: Callable[[], Sequence[LLMTool]] | None = None,
        client: CompletionClient | None = None,
        clock: Callable[[], float] = time.time,
        idle: Callable[[], None] | None = None,
        journal_async: DurableWriteAsync | None = None,
    ) -> None:
        self.config = config
        self._history = history
        self._journal = journal
        self._journal_async = journal_async
        self._tools = tools
        self._client: CompletionClient = client if client is not None else LLMClient(config)
        self._clock = clock
        self._idle = idle
        self._request_id: Any = None
        self._on_token: TokenCallback | None = None

    def __repr__(self) -> str:
        return f"LLM(model={self.config.model!r}, base_url={self.config.base_url!r})"

    @property
    def model(self) -> str:
        """The model chats go to unless ``model=`` says otherwise."""
        return self.config.model

    @property
    def usage(self) -> dict[str, int]:
        """Cumulative calls, failures and tokens (durable, survives restarts)."""
        return self._history.usage

    def bind(
        self,
        request_id: Any,
        *,
        on_token: TokenCallback | None = None,
        tools: Callable[[], Sequence[LLMTool]] | None = None,
    ) -> LLM:
        """This client for one request.

        Its id goes into the journal, streamed text to ``on_token`` (unless
        a chat names its own), and ``tools`` (when given) replaces the
        agent's tools offered by ``chat(tools=True)``.
        """
        bound = copy.copy(self)
        bound._request_id = request_id
        bound._on_token = on_token
        if tools is not None:
            bound._tools = tools
        return bound

    def history(self, conversation: str = DEFAULT_CONVERSATION) -> list[dict[str, Any]]:
        """The kept messages of ``conversation``, oldest first."""
        return self._history.messages(conversation)

    def forget(self, conversation: str = DEFAULT_CONVERSATION) -> None:
        """Durably drop a conversation's messages (usage totals stay)."""
        self._keep(LLM_FORGET, {"conversation": conversation})

    def chat(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        system: str | None = None,
        tools: bool | Sequence[LLMTool] = False,
        stream: bool = False,
        on_token: TokenCallback | None = None,
        conversation: str | None = DEFAULT_CONVERSATION,
        max_steps: int | None = None,
        **options: Any,
    ) -> LLMReply:
        """Ask the model; run the tools it asks for; return its final answer.

        ``messages``: a user message, or chat messages (``role``,
        ``content``...). ``system``: a system prompt put first and not
        stored (render memory blocks into it). ``tools``: True for the
        agent's tools, or a list of :class:`LLMTool`. ``stream``: text
        arrives in pieces, each passed to ``on_token`` (default: the bound
        request's callback) as it comes. ``conversation``: whose history
        to continue and extend (None: a one-off chat that neither reads
        nor keeps messages). ``options`` go to the API as they are
        (``temperature``, ``max_tokens``, ``model``...).

        Raises LLMError when the model cannot be reached or answers
        nonsense, InvalidArgument for a bad call.
        """
        run, steps = self._start(messages, system, tools, stream, on_token, conversation,
                                 max_steps, options)
        reply = run.loop(steps)
        self._keep(LLM_EXCHANGE, self._record(conversation, reply))
        return reply

    async def achat(
        self,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        system: str | None = None,
        tools: bool | Sequence[LLMTool] = False,
        stream: bool = False,
        on_token: TokenCallback | None = None,
        conversation: str | None = DEFAULT_CONVERSATION,
        max_steps: int | None = None,
        **options: Any,
    ) -> LLMReply:
        """:meth:`chat` for ``async`` handlers: the event loop serves others while it waits.

        Tools run as in :meth:`chat`, each on a worker thread (a tool may block);
        ``on_token`` is called on the loop.
        """
        run, steps = self._start(messages, system, tools, stream, on_token, conversation,
                                 max_steps, options)
        reply = await run.aloop(steps)
        data = self._record(conversation, reply)
        if self._journal_async is None:
            self._keep(LLM_EXCHANGE, data)
        elif await self._journal_async(LLM_EXCHANGE, data) is not APPLIED:
            self._history.apply(LLM_EXCHANGE, data)
        return reply

    # -- internals ----------------------------------------------------------

    def _keep(self, operation: str, data: dict[str, Any]) -> None:
        """Journal one history change; apply it here unless the journal already did."""
        if self._journal(operation, data) is not APPLIED:
            self._history.apply(operation, data)

    def _start(
        self, messages: str | Sequence[Mapping[str, Any]], system: str | None,
        tools: bool | Sequence[LLMTool], stream: bool, on_token: TokenCallback | None,
        conversation: str | None, max_steps: int | None, options: Mapping[str, Any],
    ) -> tuple[_Run, int]:
        """Check one chat's arguments; its tool loop, and how many tool rounds it may take."""
        new = _user_messages(messages)
        toolbox = self._toolbox(tools)
        _check_options(options)
        steps = self.config.max_tool_steps if max_steps is None else max_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise InvalidArgument(f"max_steps must be an int >= 0, got {max_steps!r}")
        head = ([{"role": "system", "content": system}] if system else []) + (
            self._history.messages(conversation) if conversation is not None else [])
        token_sink = on_token if on_token is not None else self._on_token
        run = _Run(self, head, new, toolbox, token_sink if stream else None, stream, options)
        return run, steps

    def _toolbox(self, tools: bool | Sequence[LLMTool]) -> dict[str, LLMTool]:
        if tools is False:
            return {}
        chosen = (list(self._tools()) if self._tools is not None else []) if tools is True \
            else list(tools)
        toolbox: dict[str, LLMTool] = {}
        for tool in chosen:
            if not isinstance(tool, LLMTool):
                raise InvalidArgument(f"a tool needs name, description, parameters and "
                                      f"call(arguments); got {tool!r}")
            if not isinstance(tool.name, str) or not _TOOL_NAME.match(tool.name):
                raise InvalidArgument(f"tool name {tool.name!r} must match {_TOOL_NAME.pattern}")
            if tool.name in toolbox:
                raise InvalidArgument(f"two tools are named {tool.name!r}")
            toolbox[tool.name] = tool
        return toolbox

    def _record(self, conversation: str | None, reply: LLMReply) -> dict[str, Any]:
        """The ``llm_exchange`` entry of ``reply`` (journaled by the caller, then applied)."""
        data = {
            "conversation": conversation,
            "messages": _redacted(list(reply.messages), self.config),
            "model": reply.model,
            "usage": reply.usage.to_dict(),
            "finish_reason": reply.finish_reason,
            "request_id": self._request_id,
            "at": self._clock(),
        }
        ensure_packable(data, "llm exchange")
        return data

    def _record_failure(self, usage: Usage, model: str, error: LLMError) -> None:
        data = {"model": model, "usage": usage.to_dict(), "error": str(error),
                "request_id": self._request_id, "at": self._clock()}
        self._keep(LLM_USAGE, data)


class _Run:
    """One chat's tool loop; ``transcript`` is what the exchange adds."""

    def __init__(self, llm: LLM, head: list[dict[str, Any]], new: list[dict[str, Any]],
                 toolbox: dict[str, LLMTool], on_token: TokenCallback | None, stream: bool,
                 options: Mapping[str, Any]) -> None:
        self.llm = llm
        self.head = head
        self.transcript = list(new)
        self.toolbox = toolbox
        self.specs = [_tool_spec(tool) for tool in toolbox.values()] or None
        self.on_token = on_token
        self.stream = stream
        self.options = options
        self.usage = Usage()
        self.results: list[ToolResult] = []

    def loop(self, max_steps: int) -> LLMReply:
        step = 1
        while (reply := self._step(self._ask(), step, max_steps)) is None:
            step += 1
        return reply

    async def aloop(self, max_steps: int) -> LLMReply:
        step = 1
        while True:
            completion = await self._ask_async()
            calls = self._tool_round(completion, step, max_steps)
            if calls is None:
                return self._reply(completion, step)
            for call in calls:  # a tool may block: never on the loop
                self.transcript.append(await asyncio.to_thread(self._run_tool, call))
            step += 1

    def _step(self, completion: Completion, step: int, max_steps: int) -> LLMReply | None:
        """Take one answer: the final reply, or None once the tools it asked for have run."""
        calls = self._tool_round(completion, step, max_steps)
        if calls is None:
            return self._reply(completion, step)
        for call in calls:
            self.transcript.append(self._run_tool(call))
        return None

    def _tool_round(self, completion: Completion, step: int,
                    max_steps: int) -> tuple[ToolCall, ...] | None:
        """Record one answer; the tool calls to run next, or None if it is the final one."""
        if not completion.tool_calls or not self.toolbox:
            # Calls nobody answers stay out of the history: the API refuses
            # an assistant's tool call that no tool message follows.
            self.transcript.append({"role": "assistant", "content": completion.text})
            return None
        self.transcript.append(completion.message())
        if step > max_steps:
            error = LLMError(f"the model still asked for tools after {max_steps} tool rounds; "
                             "raise max_steps or simplify the task")
            self._fail(error, completion.model)
            raise error
        return completion.tool_calls

    async def _ask_async(self) -> Completion:
        try:
            completion = await self.llm._client.complete_async(
                self.head + self.transcript, tools=self.specs, stream=self.stream,
                on_token=self.on_token, options=self.options)
        except LLMError as error:
            self._fail(error, self.llm.model)
            raise
        self.usage += completion.usage
        return completion

    def _ask(self) -> Completion:
        messages = self.head + self.transcript

        def complete(on_token: TokenCallback | None) -> Completion:
            return self.llm._client.complete(messages, tools=self.specs, stream=self.stream,
                                             on_token=on_token, options=self.options)

        idle = self.llm._idle
        try:
            completion = (complete(self.on_token) if idle is None
                          else _off_thread(complete, self.on_token, idle))
        except LLMError as error:
            self._fail(error, self.llm.model)
            raise
        self.usage += completion.usage
        return completion

    def _fail(self, error: LLMError, model: str) -> None:
        if self.usage.total_tokens or self.usage.prompt_tokens:
            self.llm._record_failure(self.usage, model, error)

    def _run_tool(self, call: ToolCall) -> dict[str, Any]:
        content, failed = _call_tool(self.toolbox, call)
        content = self.llm.config.redact(content)
        self.results.append(ToolResult(call, content, failed))
        return {"role": "tool", "tool_call_id": call.id, "content": content}

    def _reply(self, completion: Completion, step: int) -> LLMReply:
        return LLMReply(
            text=completion.text,
            tool_calls=completion.tool_calls,
            usage=self.usage,
            model=completion.model,
            finish_reason=completion.finish_reason,
            tool_results=tuple(self.results),
            messages=tuple(self.transcript),
            steps=step,
        )


def _off_thread(
    complete: Callable[[TokenCallback | None], Completion],
    on_token: TokenCallback | None,
    idle: Callable[[], None],
) -> Completion:
    """Run ``complete`` on a worker thread; deliver its tokens and call ``idle`` here."""
    inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def work() -> None:
        forward = (lambda piece: inbox.put(("token", piece))) if on_token else None
        try:
            inbox.put(("done", complete(forward)))
        except BaseException as exc:  # noqa: BLE001  handed to the waiting thread
            inbox.put(("raised", exc))

    threading.Thread(target=work, name="llm-call", daemon=True).start()
    next_idle = time.monotonic() + IDLE_SLICE
    while True:
        try:
            kind, value = inbox.get(timeout=max(0.0, next_idle - time.monotonic()))
        except queue.Empty:
            kind, value = "idle", None
        if time.monotonic() >= next_idle:
            idle()
            next_idle = time.monotonic() + IDLE_SLICE
        if kind == "token" and on_token is not None:
            on_token(value)
        elif kind == "done":
            return value  # type: ignore[no-any-return]
        elif kind == "raised":
            raise value


def _call_tool(toolbox: Mapping[str, LLMTool], call: ToolCall) -> tuple[str, bool]:
    """Run one call; return (content for the model, whether it failed)."""
    tool = toolbox.get(call.name)
    if tool is None:
        return _tool_error("UnknownTool", f"no tool named {call.name!r}; "
                           f"available: {sorted(toolbox)}"), True
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError as exc:
        return _tool_error("InvalidArguments", f"arguments are not valid JSON: {exc}"), True
    if not isinstance(arguments, dict):
        return _tool_error("InvalidArguments", "arguments must be a JSON object"), True
    try:
        result = tool.call(arguments)
    except VaultError:
        raise  # durable storage broke: not something the model can fix
    except Exception as exc:  # noqa: BLE001  the model reads the error and may correct its call
        return _tool_error(type(exc).__name__, str(exc)), True
    # The DSL's tools return their failures as values: {"error": {...}}.
    failed = isinstance(result, Mapping) and isinstance(result.get("error"), Mapping)
    return (result if isinstance(result, str) else
            json.dumps(result, default=str, ensure_ascii=False)), failed


def _tool_error(kind: str, message: str) -> str:
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)


def _tool_spec(tool: LLMTool) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": tool.name, "description": tool.description or "",
        "parameters": dict(tool.parameters or {"type": "object", "properties": {}})}}


def _user_messages(messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or not messages:
        raise InvalidArgument(f"chat needs a str or a non-empty list of messages, "
                              f"got {messages!r}")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise InvalidArgument(f"message {index} needs a role in {sorted(_ROLES)}; "
                                  f"got {message!r}")
        ensure_packable(dict(message), f"message {index}")
        checked.append(dict(message))
    return checked


def _check_options(options: Mapping[str, Any]) -> None:
    clash = sorted(_RESERVED & options.keys())
    if clash:
        raise InvalidArgument(f"chat() sets {clash} itself; use its own arguments "
                              "(messages, tools=, stream=)")


def _redacted(value: Any, config: LLMConfig) -> Any:
    """``value`` with the API key cut out of every string (for the journal)."""
    if isinstance(value, str):
        return config.redact(value)
    if isinstance(value, list):
        return [_redacted(item, config) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item, config) for key, item in value.items()}
    return value


"""The LLM proxy: the supervisor calls the model for its instances; the key stays here.

::

    instance ── llm_call {id, messages, tools, stream, options} ──► LLMProxy.serve
                                                      checked (malformed: protocol violation)
                                                      over a bound: answered with an error
                                                      else a task in the host's nursery:
        worker thread (one of max_concurrency) ── LLMClient.complete ── HTTP ──► the model
             │ each streamed piece ──► asyncio queue ──► llm_token {id, text}      (in order)
             └ done ─► the usage row written (catalog ``llm_calls``, same thread)
    instance ◄── llm_result {id, completion} | {id, error: {message, status, attempts}}
                 metrics: project_o_llm_calls_total, project_o_llm_tokens_total

Agent code holds neither the key nor the endpoint (instances are told the
model's name only); what it sends is untrusted, so options that steer the
HTTP request itself (headers, query, timeouts) are refused. Whatever
happens on the way -- the model down or slow, a reply that makes no sense,
the instance dying meanwhile -- ends as an ``llm_result`` error for the
call (a clean :class:`~project_o.errors.LLMError` in the agent), never as
an exception in the supervisor.

Bounds: at most ``max_concurrency`` calls reach the model at once (a
worker thread each: the client is synchronous and a stuck call cannot be
interrupted, only abandoned once ``timeout`` passes; a call whose time
runs out while it waits for a thread is dropped unmade); at most
``max_per_instance`` in flight per instance and ``max_pending`` in all,
queued ones included, beyond which a call is answered at once with an
error saying so.

Usage is recorded per call in the vault's catalog (table ``llm_calls``,
shared with evolution runs: ``run_id`` is ``instance:<instance id>``,
``parent_id`` the instance's version, ``outcome`` ``ok`` or
``error: ...``), with its cost when a price for the model is known. The
agent's own history journals the same exchange in the WAL
(``llm_exchange``), so the two can be compared.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from project_o.errors import LLMError, ProjectOError, ProtocolError
from project_o.evolution.llm_budget import Prices
from project_o.llm.client import Completion, LLMClient, Usage
from project_o.llm.config import LLMConfig
from project_o.llm.remote import completion_data, error_data
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.vault.catalog import Catalog
from project_o.wire import Message, MessageType

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PER_INSTANCE",
    "REFUSED_OPTIONS",
    "LLMProxy",
]

logger = logging.getLogger(__name__)

#: model calls in flight at once (one worker thread each): enough for an
#: instance serving 32 concurrent requests that each wait on the model
DEFAULT_MAX_CONCURRENCY: Final = 32
#: calls one instance may have in flight, queued ones included
DEFAULT_MAX_PER_INSTANCE: Final = 64
#: calls in flight for all instances together, queued ones included
DEFAULT_MAX_PENDING: Final = 256
#: a call still unanswered after this long is answered with an error (its thread
#: is abandoned and ends with the client's own HTTP timeouts): the openai SDK's
#: own request timeout, long enough for a long streamed answer
DEFAULT_CALL_TIMEOUT: Final = 600.0
#: chat() options an instance may not set: the call's own fields, and what would
#: steer the HTTP request rather than the model (headers, query, timeouts)
REFUSED_OPTIONS: Final = frozenset({
    "messages", "tools", "stream", "stream_options", "extra_headers", "extra_query",
    "extra_body", "timeout",
})
#: characters of an error kept in the catalog's outcome column
_OUTCOME_CHARS: Final = 200

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


@dataclass(frozen=True)
class _Call:
    """One ``llm_call`` as checked: who asked, and what."""

    id: str
    instance: InstanceHandle
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    stream: bool
    options: dict[str, Any]


class LLMProxy:
    """Makes the completions instances ask for, with the supervisor's own client.

    ``config`` None: no model is configured and every call is answered
    with an error saying so. ``spawn`` runs a call's task (the agent host's
    nursery, which owns it); ``catalog`` receives a usage row per call;
    ``client`` is for tests (default: an :class:`LLMClient` for ``config``).
    """

    def __init__(
        self, config: LLMConfig | None, spawn: Spawn, *,
        metrics: SupervisorMetrics | None = None, catalog: Callable[[], Catalog] | None = None,
        prices: Prices | None = None, client: LLMClient | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_per_instance: int = DEFAULT_MAX_PER_INSTANCE,
        max_pending: int = DEFAULT_MAX_PENDING, timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        self.config = config
        self._spawn = spawn
        self._metrics = metrics
        self._catalog = catalog
        self._prices = prices or Prices()
        self._client = client if client is not None or config is None else LLMClient(config)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="llm-proxy")
        self.max_per_instance = max_per_instance
        self.max_pending = max_pending
        self.timeout = timeout
        self._pending: Counter[InstanceHandle] = Counter()

    @property
    def pending(self) -> int:
        """Calls received and not yet answered, for every instance."""
        return sum(self._pending.values())

    def serve(self, instance: InstanceHandle, message: Message) -> None:
        """Take one ``llm_call``; raises ProtocolError if it is malformed (the instance dies)."""
        call = _checked(instance, message.data)
        refusal = self._refusal(call)
        if refusal is not None:
            self._answer_later(call, {"error": error_data(LLMError(refusal))})
            return
        self._pending[instance] += 1
        try:
            self._spawn(self._run(call), f"llm-{instance.instance_id}-{call.id}")
        except BaseException:
            self._done(instance)
            raise

    def close(self) -> None:
        """Stop taking calls to the model; threads still running are abandoned."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- one call ---------------------------------------------------------

    def _refusal(self, call: _Call) -> str | None:
        if self._client is None:
            return ("no LLM is configured for this supervisor; set PROJECT_O_LLM_BASE_URL, "
                    "PROJECT_O_LLM_MODEL and PROJECT_O_LLM_API_KEY before it starts")
        refused = sorted(REFUSED_OPTIONS & call.options.keys())
        if refused:
            return f"the options {refused} may not be set by agent code"
        if self._pending[call.instance] >= self.max_per_instance:
            return (f"this instance already has {self.max_per_instance} LLM calls in flight "
                    "(the limit); wait for one to finish")
        if self.pending >= self.max_pending:
            return (f"the supervisor already has {self.max_pending} LLM calls in flight "
                    "(the limit); try again shortly")
        return None

    def _answer_later(self, call: _Call, result: dict[str, Any]) -> None:
        self._spawn(self._answer(call, result), f"llm-refusal-{call.id}")

    async def _run(self, call: _Call) -> None:
        started = time.monotonic()
        try:
            result = await self._result(call)
        finally:
            self._done(call.instance)
        self._observe(call, result, time.monotonic() - started)
        await self._answer(call, result)

    async def _result(self, call: _Call) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                return {"completion": completion_data(await self._complete(call))}
        except LLMError as exc:
            error = exc
        except TimeoutError:
            error = LLMError(f"the LLM call took longer than {self.timeout:g} s "
                             "(the supervisor's limit); it was abandoned")
        except Exception as exc:  # a bug here must never reach the supervisor
            logger.exception("LLM call %s of %s failed", call.id, call.instance.instance_id)
            error = LLMError(f"the supervisor could not make the call: "
                             f"{type(exc).__name__}: {exc}")
        return {"error": error_data(error)}

    async def _complete(self, call: _Call) -> Completion:
        """Run the call on a worker thread; forward its streamed pieces as they come."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def forward(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        try:
            work = loop.run_in_executor(self._executor, functools.partial(
                self._complete_and_record, call, forward if call.stream else None))
        except RuntimeError as exc:  # the executor is shut down: the supervisor is stopping
            raise LLMError(f"the supervisor is stopping ({exc})") from None
        # Done after every piece: the pieces were queued on the loop before the result.
        work.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            while (piece := await pieces.get()) is not None:
                with contextlib.suppress(InstanceDied):  # the call still finishes, counted
                    await call.instance.send(Message(MessageType.LLM_TOKEN,
                                                     {"id": call.id, "text": piece}))
            return await work
        finally:
            # Past the limit: a call still queued for a thread never reaches the model;
            # one already running is abandoned (its outcome is nobody's any more).
            work.cancel()

    def _complete_and_record(self, call: _Call,
                             forward: Callable[[str], None] | None) -> Completion:
        """On a worker thread: the completion, and its usage row in the catalog."""
        assert self._client is not None
        model = str(call.options.get("model") or self._client.config.model)
        try:
            completion = self._client.complete(call.messages, tools=call.tools,
                                               stream=call.stream, on_token=forward,
                                               options=call.options)
        except LLMError as exc:
            self._record(call, model, Usage(), f"error: {exc}")
            raise
        self._record(call, completion.model or model, completion.usage, "ok")
        return completion

    def _record(self, call: _Call, model: str, usage: Usage, outcome: str) -> None:
        if self._catalog is None:
            return
        instance = call.instance
        try:
            with self._catalog().transaction("record an LLM call", sync=False) as conn:
                conn.execute(
                    "INSERT INTO llm_calls (run_id, generation, model, parent_id, version_id,"
                    " outcome, prompt_tokens, completion_tokens, cost_usd, created_at)"
                    " VALUES (?, 0, ?, ?, NULL, ?, ?, ?, ?, ?)",
                    (f"instance:{instance.instance_id}", model, instance.version,
                     outcome[:_OUTCOME_CHARS], usage.prompt_tokens, usage.completion_tokens,
                     self._prices.cost(model, usage), time.time()))
        except ProjectOError:  # an accounting failure must not fail the agent's call
            logger.exception("could not record the LLM call of %s", instance.instance_id)

    def _observe(self, call: _Call, result: Mapping[str, Any], seconds: float) -> None:
        if self._metrics is None:
            return
        usage = result.get("completion", {}).get("usage", {})
        self._metrics.observe_llm_call(
            call.instance.version, call.instance.role, "ok" if "completion" in result else
            "failed", seconds, int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)))

    async def _answer(self, call: _Call, result: dict[str, Any]) -> None:
        with contextlib.suppress(InstanceDied):  # nobody is left to tell
            await call.instance.send(Message(MessageType.LLM_RESULT, {"id": call.id, **result}))

    def _done(self, instance: InstanceHandle) -> None:
        self._pending[instance] -= 1
        if self._pending[instance] <= 0:
            del self._pending[instance]


def _checked(instance: InstanceHandle, data: Mapping[str, Any]) -> _Call:
    """The call an ``llm_call`` frame describes; ProtocolError if it is malformed."""
    call_id, messages, tools = data.get("id"), data.get("messages"), data.get("tools")
    stream, options = data.get("stream", False), data.get("options") or {}
    if not isinstance(call_id, str) or not call_id or len(call_id) > 128:
        raise ProtocolError("llm_call needs a short string id")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) for m in messages):
        raise ProtocolError("llm_call needs messages: a non-empty list of maps")
    if tools is not None and (not isinstance(tools, list) or not all(
            isinstance(t, dict) for t in tools)):
        raise ProtocolError("llm_call tools must be None or a list of maps")
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ProtocolError("llm_call stream must be a bool and options a map")
    return _Call(call_id, instance, messages, tools or None, stream, options)

"""One chat completion over HTTP, with retries: :class:`LLMClient`.

::

    complete(messages, tools, stream, on_token)
      └─ attempt 1..1+max_retries ── openai SDK (its own retries off) ── POST /chat/completions
           ├─ reply / SSE chunks ──► parsed by hand into a Completion (text, tool calls, usage)
           ├─ transient failure  ──► sleep(backoff), try again
           │    timeout, connection lost, HTTP 408 / 409 / 429 / 5xx
           └─ anything else      ──► LLMError at once
                other 4xx, malformed JSON, a reply without choices

Backoff before retry n (n = 1, 2, ...): ``d = min(backoff_max,
backoff_base * 2**(n-1))``, then "equal jitter": a wait drawn uniformly
from ``[d/2, d]`` with the injected ``random.Random``, so clients that
failed together do not retry together. A ``Retry-After`` header raises
the wait (capped at ``backoff_max``).

A stream is retried only while no token has reached ``on_token``: once
the caller has shown text, a second attempt would show it twice.

The SDK's retries are turned off so the policy above is the only one, in
one place, and tested. Replies are parsed from plain dicts rather than
trusted SDK objects: the SDK builds objects without validating them, so
a reply with no ``choices`` would otherwise surface later as a confusing
AttributeError. The ``openai`` package is imported on first use.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from project_o.errors import LLMError
from project_o.llm.config import LLMConfig

__all__ = [
    "RETRYABLE_STATUS",
    "Completion",
    "LLMClient",
    "ToolCall",
    "Usage",
]

#: request timeout, conflict, rate limited, server errors: worth another try
#: (the same set the openai SDK retries)
RETRYABLE_STATUS: Final = frozenset({408, 409, 429})
_INSTALL_HINT: Final = "the openai package is not installed; pip install project-o[llm]"

TokenCallback = Callable[[str], None]


@dataclass(frozen=True)
class Usage:
    """Tokens spent, as the server reported them (zeros when it did not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.total_tokens + other.total_tokens)

    def to_dict(self) -> dict[str, int]:
        """The usage as the history journals it."""
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class ToolCall:
    """The model asking for a tool: ``arguments`` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str

    def to_message(self) -> dict[str, Any]:
        """This call as it appears in an assistant message."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Completion:
    """One answer of the model (one step of a tool loop)."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.to_message() for call in self.tool_calls]
        return message


class _Transient(Exception):
    """A failure worth retrying; ``tokens_sent``: text already reached the caller."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.tokens_sent = False


class LLMClient:
    """Chat completions against one OpenAI-compatible endpoint.

    ``rng`` draws the backoff jitter and ``sleep`` waits it out: both are
    injected so tests can check the schedule without waiting for it.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        self._sdk: Any = None
        self._sdk_lock = threading.Lock()  # the supervisor calls from several threads

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The reply text to ``messages`` (what the ``llm_rewrite`` operator needs)."""
        return self.complete(messages).text

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
        on_token: TokenCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Ask the model once (retrying transient failures); raise LLMError if it cannot."""
        request = self._request(messages, tools, stream, options or {})
        attempts = 1 + self.config.max_retries
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(request, on_token)
            except _Malformed as exc:
                raise self._error(f"answered with a malformed reply: {exc}") from None
            except _Transient as failure:
                if attempt == attempts or failure.tokens_sent:
                    raise self._give_up(failure, attempt) from failure
                self._sleep(self.backoff(attempt, failure.retry_after))
        raise AssertionError("unreachable: the loop returns or raises")

    async def complete_async(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
        on_token: TokenCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Completion:
        """:meth:`complete` on a worker thread; ``on_token`` is called on the event loop."""
        loop = asyncio.get_running_loop()
        forward: TokenCallback | None = None
        if on_token is not None:
            sink = on_token

            def forward(piece: str) -> None:
                loop.call_soon_threadsafe(sink, piece)
        # The tokens are scheduled before the result is, so all arrive before it.
        return await asyncio.to_thread(self.complete, messages, tools=tools, stream=stream,
                                       on_token=forward, options=options)

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); see the module docstring."""
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2 ** (retry - 1))
        wait = self._rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.config.backoff_max))
        return wait

    def close(self) -> None:
        """Close the HTTP connections (a later call opens new ones)."""
        if self._sdk is not None:
            self._sdk.close()
            self._sdk = None

    # -- one attempt --------------------------------------------------------

    def _request(self, messages: Sequence[Mapping[str, Any]],
                 tools: Sequence[Mapping[str, Any]] | None, stream: bool,
                 options: Mapping[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.config.model, **options,
                                   "messages": [dict(m) for m in messages]}
        if tools:
            request["tools"] = [dict(t) for t in tools]
        if stream:
            # Without this a streamed reply carries no token counts.
            request.update(stream=True, stream_options={"include_usage": True})
        return request

    def _attempt(self, request: dict[str, Any], on_token: TokenCallback | None) -> Completion:
        sdk = self._client()
        reply = self._call(lambda: sdk.chat.completions.create(**request))
        if not request.get("stream"):
            return _parse_completion(_as_dict(reply), request["model"])
        return self._consume(reply, request["model"], on_token)

    def _consume(self, stream: Any, model: str, on_token: TokenCallback | None) -> Completion:
        builder = _StreamBuilder(model)
        chunks = iter(stream)
        while True:
            try:
                chunk = self._call(lambda: next(chunks))
            except StopIteration:
                break
            except _Transient as failure:
                failure.tokens_sent = builder.tokens > 0
                raise
            for piece in builder.add(_as_dict(chunk)):
                if on_token is not None:
                    on_token(piece)  # outside _call: the caller's errors stay the caller's
        return builder.finish()

    def _call(self, thunk: Callable[[], Any]) -> Any:
        """Run one SDK operation, translating its failures (and only its)."""
        import openai

        try:
            return thunk()
        except StopIteration:
            raise
        except openai.APITimeoutError as exc:
            raise _Transient(f"no answer within {self.config.timeout} s") from exc
        except openai.APIConnectionError as exc:
            raise _Transient(f"connection failed ({_cause(exc)})") from exc
        except openai.APIStatusError as exc:
            raise self._status_failure(exc) from exc
        except (openai.APIResponseValidationError, ValueError) as exc:
            raise self._error(f"answered with malformed JSON ({exc})") from exc
        except openai.OpenAIError as exc:
            raise self._error(f"failed: {exc}") from exc
        except Exception as exc:
            # Older SDKs let the transport's errors escape while a stream is read.
            if type(exc).__module__.startswith(("httpx", "httpcore", "h11")):
                raise _Transient(f"connection failed ({type(exc).__name__}: {exc})") from exc
            raise

    def _status_failure(self, exc: Any) -> Exception:
        status = int(exc.status_code)
        detail = _server_message(exc)
        if status in RETRYABLE_STATUS or status >= 500:
            return _Transient(f"answered HTTP {status}: {detail}", status=status,
                              retry_after=_retry_after(exc))
        hint = {401: "check the API key (PROJECT_O_LLM_API_KEY)",
                403: "check the API key's permissions",
                404: "check the base URL and the model name (PROJECT_O_LLM_MODEL)"}.get(
                    status, "the request was refused; fix it before retrying")
        return self._error(f"answered HTTP {status}: {detail}; {hint}", status=status)

    def _client(self) -> Any:
        with self._sdk_lock:
            if self._sdk is None:
                try:
                    import openai
                except ImportError as exc:
                    raise LLMError(_INSTALL_HINT) from exc
                self._sdk = openai.OpenAI(api_key=self.config.sdk_api_key,
                                          base_url=self.config.base_url,
                                          timeout=self.config.timeout, max_retries=0)
            return self._sdk

    # -- errors ---------------------------------------------------------------

    def _where(self) -> str:
        return f"the LLM at {self.config.base_url or 'api.openai.com'} ({self.config.model})"

    def _error(self, what: str, *, status: int | None = None, attempts: int = 1) -> LLMError:
        return LLMError(self.config.redact(f"{self._where()} {what}"),
                        status=status, attempts=attempts)

    def _give_up(self, failure: _Transient, attempts: int) -> LLMError:
        if failure.tokens_sent:
            tail = "; the stream broke after text was already delivered, so it was not retried"
        else:
            tail = f" after {attempts} attempt(s); check that the server is up, or raise " \
                   "the timeout / max_retries"
        return self._error(f"{failure}{tail}", status=failure.status, attempts=attempts)


class _StreamBuilder:
    """Folds SSE chunks into one Completion; ``add`` returns the new text pieces."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage = Usage()
        self.finish_reason: str | None = None
        self.chunks = 0

    @property
    def tokens(self) -> int:
        return len(self.parts)

    def add(self, chunk: Mapping[str, Any]) -> Iterator[str]:
        self.chunks += 1
        self.model = _str(chunk.get("model")) or self.model
        if chunk.get("usage"):
            self.usage = _parse_usage(chunk["usage"])
        for choice in _list(chunk.get("choices"), "chunk choices"):
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            self.finish_reason = _str(choice.get("finish_reason")) or self.finish_reason
            delta = choice.get("delta") or {}
            for call in _list(delta.get("tool_calls"), "delta tool_calls"):
                self._add_call(call)
            piece = delta.get("content")
            if isinstance(piece, str) and piece:
                self.parts.append(piece)
                yield piece

    def _add_call(self, call: Any) -> None:
        if not isinstance(call, Mapping):
            raise _malformed(f"a streamed tool call is {type(call).__name__}, not an object")
        slot = self.calls.setdefault(int(call.get("index", 0)),
                                     {"id": "", "name": "", "arguments": ""})
        slot["id"] = _str(call.get("id")) or slot["id"]
        function = call.get("function") or {}
        slot["name"] += _str(function.get("name"))
        slot["arguments"] += _str(function.get("arguments"))

    def finish(self) -> Completion:
        if self.chunks == 0:
            raise _malformed("the stream ended before any chunk")
        calls = tuple(_tool_call(slot, index) for index, slot in sorted(self.calls.items()))
        return Completion("".join(self.parts), calls, self.usage, self.model, self.finish_reason)


# -- parsing a reply --------------------------------------------------------


def _parse_completion(reply: Mapping[str, Any], model: str) -> Completion:
    choices = _list(reply.get("choices"), "choices")
    if not choices or not isinstance(choices[0], Mapping):
        raise _malformed(f"the reply has no choices (keys: {sorted(reply)[:8]})")
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise _malformed("the first choice has no message object")
    calls = tuple(_tool_call(call, i)
                  for i, call in enumerate(_list(message.get("tool_calls"), "tool_calls")))
    return Completion(
        text=_content(message.get("content")),
        tool_calls=calls,
        usage=_parse_usage(reply.get("usage")),
        model=_str(reply.get("model")) or model,
        finish_reason=_str(choices[0].get("finish_reason")) or None,
    )


def _tool_call(call: Any, index: int) -> ToolCall:
    if not isinstance(call, Mapping):
        raise _malformed(f"tool call {index} is {type(call).__name__}, not an object")
    function = call.get("function", call)  # streamed slots are flat
    if not isinstance(function, Mapping) or not _str(function.get("name")):
        raise _malformed(f"tool call {index} names no function")
    arguments = function.get("arguments")
    if isinstance(arguments, Mapping):  # some servers send an object, not JSON text
        arguments = json.dumps(arguments)
    return ToolCall(id=_str(call.get("id")) or f"call_{index}", name=_str(function["name"]),
                    arguments=_str(arguments))


def _parse_usage(usage: Any) -> Usage:
    if not isinstance(usage, Mapping):
        return Usage()
    counts = [usage.get(key) for key in ("prompt_tokens", "completion_tokens", "total_tokens")]
    prompt, completion, total = (c if isinstance(c, int) and c >= 0 else 0 for c in counts)
    return Usage(prompt, completion, total or prompt + completion)


def _content(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(_str(part.get("text")) for part in content if isinstance(part, Mapping))
    raise _malformed(f"message content is {type(content).__name__}, not text")


def _as_dict(reply: Any) -> Mapping[str, Any]:
    if hasattr(reply, "model_dump"):
        # The SDK builds its objects unvalidated: dump them as they came,
        # without pydantic's warnings about fields of the wrong type.
        reply = reply.model_dump(warnings=False)
    if not isinstance(reply, Mapping):
        raise _malformed(f"expected a JSON object, got {type(reply).__name__}: "
                         f"{str(reply)[:80]!r}")
    return reply


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _malformed(f"{what} is {type(value).__name__}, not a list")
    return value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class _Malformed(Exception):
    """A reply that parses as JSON but is not a chat completion (made an LLMError above)."""


def _malformed(what: str) -> _Malformed:
    return _Malformed(what)


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    raw = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model servers, the backoff will do


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(exc)

"""``POST /v1/chat/completions``: the convention OpenAI clients speak, routed to the agent.

::

    OpenAI SDK ── Bearer <token> as the API key ──► POST /v1/chat/completions
        read_body(ChatCompletionRequest)          415 / 400 / 422 as every body
        service.submit(wrap_chat(request))        the agent's chat handler, or its handler
                                                  with the last user message (agent.chat)
        "stream": false ─► 200 ChatCompletion      the reply as the assistant's message
        "stream": true  ─► 200 text/event-stream   data: {chunk} per piece the handler
                                                   emits (ctx.emit("text") or {"token"}),
                                                   the rest of the reply, a stop chunk,
                                                   then data: [DONE]

A failure before the first byte of a stream is answered like any other
(502, 503, 504 with the usual error body); once the stream has begun, it is
one ``data: {"error": {...}}`` event, which the OpenAI SDK raises as an
``APIError``. ``GET /v1/models`` lists the one model a client may name.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from project_o.errors import ServiceError
from project_o.gateway.auth import BearerAuth
from project_o.gateway.bodies import dump_json, read_body
from project_o.gateway.chat_models import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelInfo,
    ModelList,
)
from project_o.gateway.problems import APIError, error_body
from project_o.gateway.stream import MAX_BUFFERED_EVENTS
from project_o.supervisor.api import AgentService, RequestResult
from project_o.wire.chat import wrap_chat
from project_o.wire.packable import Packed

__all__ = ["MODEL_ID", "chat_router", "chat_schemas", "event_text", "read_chat", "reply_text"]

logger = logging.getLogger(__name__)

#: the model id ``GET /v1/models`` lists (any name is answered by the agent)
MODEL_ID: Final = "project-o"
#: what a map's text is read from, in order: a reply's, then an event's
_REPLY_KEYS: Final = ("content", "answer", "text")
_EVENT_KEYS: Final = ("token", "delta", "content")
#: marks the end of a request's events in the queue
_END: Final = object()
#: one server-sent event of a streaming answer (OpenAPI 3.1: the schema of each event)
_SSE_EVENT: Final = {
    "type": "object", "required": ["data"],
    "properties": {"data": {"type": "string", "description":
                            "a ChatCompletionChunk as JSON, an error body, or the final [DONE]"},
                   "event": {"type": "string"}},
    "description": "With `stream: true`: one `data:` event per chunk, then `data: [DONE]`.",
}
#: any JSON the agent's wire carries (a component of the gateway's OpenAPI document)
_JSON_VALUE: Final = {"$ref": "#/components/schemas/JSONValue"}


def reply_text(output: Any, request_id: str) -> str:
    """The assistant's message for ``output``: a str, a map's content/answer/text, or JSON."""
    text = _text_in(output, _REPLY_KEYS)
    return dump_json(output, request_id=request_id).decode("utf-8") if text is None else text


def event_text(event: Any) -> str | None:
    """The piece of the reply an emitted event carries, or None if it is not text."""
    return _text_in(event, _EVENT_KEYS)


def _text_in(value: Any, keys: tuple[str, ...]) -> str | None:
    """``value`` if it is a str, else the first of ``keys`` of a map holding a str."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str):
                return str(value[key])
    return None


def chat_router(service: AgentService, auth: BearerAuth,
                responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """The OpenAI-compatible routes; ``responses``: the documented errors of a chat call."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], tags=["openai"],
                       responses={401: responses[401], 500: responses[500]})

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        responses={**responses, 200: {"content": {"text/event-stream": {"schema": _SSE_EVENT}}}},
        openapi_extra=_chat_body_schema(),
    )
    async def chat_completions(
        body: Annotated[ChatCompletionRequest, Depends(read_chat)],
    ) -> Response:
        """OpenAI's chat completion, answered by the agent (streaming as server-sent events).

        The agent's `@agent.chat` handler gets the whole request; without one, its
        handler gets the text of the last user message.
        """
        request = body.model_dump(exclude_none=True)
        request_id = uuid.uuid4().hex
        if body.stream:
            return await _stream(service, request, request_id, body.model)
        result = await service.submit(Packed.of(wrap_chat(request)), request_id=request_id)
        return Response(dump_json(_completion(result, body.model)),
                        media_type="application/json")

    @router.get("/models", response_model=ModelList)
    async def models() -> ModelList:
        """The model a client may name: the supervised agent (any name reaches it)."""
        return ModelList(data=[ModelInfo(id=MODEL_ID, created=0, owned_by="project-o")])

    return router


async def read_chat(request: Request) -> ChatCompletionRequest:
    """Parse and validate a chat completion body (415, 400, 422)."""
    return await read_body(request, ChatCompletionRequest,
                           '{"model": "project-o", "messages": [{"role": "user", "content": "hi"}]}')


@functools.cache
def _chat_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat request body's schema, and the component schemas it refers to."""
    schema = _json_values(
        ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}"))
    return schema, schema.pop("$defs", {})


def _chat_body_schema() -> dict[str, Any]:
    # the body is read by read_chat (auth first, our errors), hidden from FastAPI
    schema, _ = _chat_body()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _json_values(schema: Any) -> Any:
    """``schema`` with every open map's values (extra fields, content parts) as JSONValue."""
    if isinstance(schema, list):
        return [_json_values(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: _JSON_VALUE if key == "additionalProperties" and value is True
            else _json_values(value) for key, value in schema.items()}


def chat_schemas() -> dict[str, Any]:
    """Component schemas the chat request body refers to (the app adds them to its document)."""
    _, defs = _chat_body()
    return dict(defs)


def _completion(result: RequestResult, model: str) -> dict[str, Any]:
    text = reply_text(result.output, result.request_id)
    return {
        "id": f"chatcmpl-{result.request_id}", "object": "chat.completion",
        "created": int(time.time()), "model": model, "system_fingerprint": result.version,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop", "logprobs": None}],
    }


async def _stream(service: AgentService, request: dict[str, Any], request_id: str,
                  model: str) -> Response:
    """Submit, wait for the first piece or the end, then stream the rest as events."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(event: Any) -> None:  # the service's on_event: never blocks
        text = event_text(event)
        if text is not None and queue.qsize() < MAX_BUFFERED_EVENTS:
            queue.put_nowait(text)

    task = asyncio.ensure_future(
        service.submit(Packed.of(wrap_chat(request)), request_id=request_id, on_event=put))
    task.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        first = await queue.get()
    except BaseException:
        task.cancel()
        raise
    if first is _END and not task.cancelled() and task.exception() is not None:
        task.result()  # raises: a failure before any text is an ordinary error answer
    chunks = _Chunks(f"chatcmpl-{request_id}", model)
    return StreamingResponse(chunks.events(first, queue, task), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


class _Chunks:
    """Server-sent events of one streaming answer."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.id, self.model, self.created = completion_id, model, int(time.time())

    def event(self, delta: dict[str, Any], finish: str | None = None,
              version: str | None = None) -> bytes:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model, "system_fingerprint": version,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + dump_json(chunk) + b"\n\n"

    async def events(self, first: Any, queue: asyncio.Queue[Any],
                     task: asyncio.Future[RequestResult]) -> AsyncIterator[bytes]:
        try:
            yield self.event({"role": "assistant", "content": ""})
            sent: list[str] = []
            item = first
            while item is not _END:
                sent.append(item)
                yield self.event({"content": item})
                item = await queue.get()
            yield self._ending(task, "".join(sent))
        finally:
            task.cancel()  # the client left mid-answer: nobody waits for it

    def _ending(self, task: asyncio.Future[RequestResult], streamed: str) -> bytes:
        """What is left of the reply and the stop chunk, or an error event."""
        try:
            result = task.result()
            text = reply_text(result.output, result.request_id)
        except ServiceError as exc:
            return _error_event(type(exc).__name__, str(exc), exc.details())
        except APIError as exc:
            return _error_event(exc.error_type, exc.detail, exc.extra)
        except Exception:  # a service bug: the headers are sent, so say it in the stream
            logger.exception("the service failed while streaming chat %s", self.id)
            return _error_event("InternalError", "the gateway hit an unexpected error; the "
                                "server log has the details", {})
        rest = text[len(streamed):] if text.startswith(streamed) else ""
        tail = self.event({"content": rest}) if rest else b""
        return tail + self.event({}, "stop", result.version) + b"data: [DONE]\n\n"


def _error_event(error_type: str, message: str, extra: dict[str, Any]) -> bytes:
    return b"data: " + dump_json(error_body(error_type, message, **extra)) + b"\n\n"

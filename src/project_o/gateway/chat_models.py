"""The bodies of the OpenAI-compatible routes, as pydantic models (and so in the OpenAPI).

::

    POST /v1/chat/completions  {"model", "messages": [ChatMessage], "stream"?, ...}
                  200 ◀──      ChatCompletion, or with "stream": true server-sent
                               events, one ChatCompletionChunk each, then [DONE]
    GET /v1/models     ◀──     {"object": "list", "data": [ModelInfo]}

Fields the gateway does not use (``temperature``, ``tools``...) are kept
and handed to the agent's chat handler: the request is OpenAI's, not ours.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChunkChoice",
    "Delta",
    "ModelInfo",
    "ModelList",
]

#: the roles OpenAI's chat API knows
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
#: extra fields are kept for the agent (the OpenAPI document says they are JSON
#: values, which the wire carries); strict: a "stream": 0 or "n": "1" is a client
#: bug to name, not to guess at
_OPEN: Final = ConfigDict(extra="allow", strict=True)
#: one part of a message's content, e.g. {"type": "text", "text": "..."}
ContentPart = dict[str, Any]


class ChatMessage(BaseModel):
    """One message of the conversation; ``content`` a string or a list of parts."""

    model_config = _OPEN

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request; the agent answers it."""

    model_config = _OPEN

    model: str = Field(description="Echoed in the answer; the supervised agent answers "
                                   "whatever model is named.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = Field(default=False, description="Answer as server-sent events.")
    n: int | None = Field(default=1, ge=1, le=1, description="Only one choice is made.")


class AssistantMessage(BaseModel):
    """The agent's reply."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """The one choice of a completion."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    """The answer to a non-streaming request."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    system_fingerprint: str = Field(description="The agent version that answered.")


class Delta(BaseModel):
    """A piece of the reply."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a chunk."""

    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streaming answer (``data: {chunk}``)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | None = None


class ModelInfo(BaseModel):
    """A model a client may name: the supervised agent."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelInfo]

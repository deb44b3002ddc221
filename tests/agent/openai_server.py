"""A small OpenAI-compatible chat-completions server for tests, on 127.0.0.1.

Real HTTP on a real socket, scripted per test: each request to
``POST /v1/chat/completions`` takes the next action from the script::

    with OpenAIServer() as server:               listens on 127.0.0.1:<free port>
        server.script(Status(500), Reply("hi"))  first call: HTTP 500, second: "hi"
        ... client(base_url=server.base_url) ...
        server.requests                          what the client sent (JSON bodies)

Actions:

    Reply(text, tool_calls=..., usage=...)   a chat.completion; when the request asks for
                                             ``stream: true`` the same reply goes out as
                                             SSE chunks (``chunks`` or one per word)
    Status(code, body)                       an HTTP error with a JSON error body
    Delay(seconds, then)                     wait, then perform ``then`` (for timeouts)
    Raw(body, content_type, status)          exact bytes (malformed replies)
    BrokenStream(chunks)                     SSE text deltas, then the connection drops

A request that finds the script empty gets HTTP 400 ("script exhausted"),
which a client does not retry, so a test that under-scripts fails loudly --
unless a responder is set: ``server.respond_with(fn)`` answers every such
request with ``fn(body)`` (an action, usually a Reply), for tests whose
requests are too many or too varied to script (an evolution run asking
several model names for edits to whatever parent it picked). Replies name
the model the request asked for unless they set one.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = [
    "BrokenStream",
    "Delay",
    "OpenAIServer",
    "Raw",
    "Reply",
    "Status",
]

CHAT_PATH = "/v1/chat/completions"
DEFAULT_MODEL = "test-model"


@dataclass
class Reply:
    """A chat completion: text and/or tool calls ``{"name", "arguments"}``."""

    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: tuple[int, int] = (10, 5)
    finish_reason: str | None = None
    model: str = ""  # default: the model the request named, else DEFAULT_MODEL
    chunks: list[str] | None = None  # streamed deltas; default: text split into words


@dataclass
class Status:
    """An HTTP error status with an OpenAI-style error body."""

    code: int
    message: str = "scripted failure"


@dataclass
class Delay:
    """Sleep ``seconds`` (cut short when the server closes), then do ``then``."""

    seconds: float
    then: Any = field(default_factory=lambda: Reply("late"))


@dataclass
class Raw:
    """Exactly these bytes as the body."""

    body: bytes
    content_type: str = "application/json"
    status: int = 200


@dataclass
class BrokenStream:
    """Stream these text deltas, then cut the connection without [DONE]."""

    chunks: list[str]


class OpenAIServer:
    """The server; a context manager that starts and stops it on a thread."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[Any] = deque()
        self._responder: Callable[[dict[str, Any]], Any] | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        """What a client's ``base_url`` should be."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *actions: Any) -> None:
        """Queue the actions the next requests get, in order."""
        with self._lock:
            self._script.extend(actions)

    def respond_with(self, responder: Callable[[dict[str, Any]], Any] | None) -> None:
        """Answer requests the script does not cover with ``responder(body)``."""
        with self._lock:
            self._responder = responder

    @property
    def pending(self) -> int:
        """Scripted actions not yet used."""
        with self._lock:
            return len(self._script)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Any:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if self._script:
                return self._script.popleft()
            responder = self._responder
        return responder(body) if responder is not None else None

    def _call_id(self) -> str:
        return f"call_{next(self._ids)}"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up on a kept-alive connection is normal here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_ChatHandler):
        owner = server

    return Handler


class _ChatHandler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``server.requests`` instead of a log."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if self.path != CHAT_PATH:
            self._json(404, _error(f"no route {self.path}"))
            return
        body = json.loads(raw)
        action = self.owner._next(body, {k.lower(): v for k, v in self.headers.items()})
        try:
            self._perform(action, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a timeout test): nothing to answer

    def _perform(self, action: Any, body: dict[str, Any]) -> None:
        if action is None:
            self._json(400, _error("script exhausted: the test scripted fewer replies"))
        elif isinstance(action, Delay):
            self.owner._closing.wait(action.seconds)
            self._perform(action.then, body)
        elif isinstance(action, Status):
            self._json(action.code, _error(action.message))
        elif isinstance(action, Raw):
            self._send(action.status, action.body, action.content_type)
        elif isinstance(action, BrokenStream):
            self._broken_stream(action, body)
        else:
            if not action.model:
                action = dataclasses.replace(action, model=body.get("model") or DEFAULT_MODEL)
            if body.get("stream"):
                self._stream(action, body)
            else:
                self._json(200, self._completion(action))

    def _completion(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        calls = self._tool_calls(reply)
        if calls:
            message["tool_calls"] = calls
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
            "usage": _usage(reply),
        }

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        calls = []
        for call in reply.tool_calls:
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            calls.append({
                "id": call.get("id") or self.owner._call_id(),
                "type": "function",
                "function": {"name": call["name"], "arguments": arguments},
            })
        return calls

    def _stream(self, reply: Reply, body: dict[str, Any]) -> None:
        self._start_sse()
        chunks = reply.chunks if reply.chunks is not None else _words(reply.text or "")
        self._event(_chunk(reply, {"role": "assistant"}))
        for piece in chunks:
            self._event(_chunk(reply, {"content": piece}))
        for index, call in enumerate(self._tool_calls(reply)):
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            self._event(_chunk(reply, {"tool_calls": [head]}))
            arguments = call["function"]["arguments"]
            for half in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
                self._event(_chunk(reply, {"tool_calls": [
                    {"index": index, "function": {"arguments": half}}]}))
        self._event(_chunk(reply, {}, finish_reason=_finish(reply)))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**_chunk(reply, {}), "choices": [], "usage": _usage(reply)})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _broken_stream(self, action: BrokenStream, body: dict[str, Any]) -> None:
        self._start_sse()
        for piece in action.chunks:
            self._event(_chunk(Reply(), {"content": piece}))
        self.close_connection = True
        self.connection.shutdown(2)  # mid-body: the client sees the stream cut

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _chunk(reply: Reply, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _words(text: str) -> list[str]:
    """Split so that joining the pieces gives back ``text`` exactly."""
    pieces = text.split(" ")
    return [piece + " " for piece in pieces[:-1]] + [pieces[-1]] if text else []


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": None}}

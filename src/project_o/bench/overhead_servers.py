"""The servers ``project-o bench overhead`` measures Project O against.

::

    plain     a plain FastAPI app on uvicorn serving the agent's handler, as a user would
              write it without Project O: a pydantic body, a bearer-token check, a sync
              handler in a `def` route (FastAPI's thread pool), an async one in an
              `async def` route; uvicorn's defaults (uvloop and httptools when installed)
    trivial   an asyncio protocol answering every request with a fixed 200 (no parsing
              beyond the end of the headers): the ceiling of the load generator, the
              fastest a Python server on this machine answers

Each runs as ``python -m project_o.bench.overhead_servers KIND ...`` in a
process of its own (:class:`ServerProcess`), on a free 127.0.0.1 port it
writes to a file; the token comes in ``PROJECT_O_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import inspect
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Self

import httpx
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

from project_o.stack import start_process, stop_process

__all__ = ["ServerProcess", "plain_app", "serve_plain", "serve_trivial"]

_READY_TIMEOUT_S = 30.0
_TRIVIAL_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 11\r\n\r\n{\"ok\":true}")


class ServerProcess:
    """One of this module's servers, in a process of its own."""

    def __init__(self, kind: str, root: Path, *args: str, token: str = "") -> None:
        self.kind = kind
        self._port_file = root / f"{kind}.port"
        self._port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "project_o.bench.overhead_servers", kind,
                str(self._port_file), *args]
        env = {**os.environ, "PROJECT_O_TOKEN": token}
        self.process = start_process(argv, root / f"{kind}.log", env=env)
        self.url = ""

    @property
    def pid(self) -> int:
        """The server's pid (one process serves)."""
        return self.process.pid

    def __enter__(self) -> Self:
        try:
            self._wait()
        except BaseException:
            stop_process(self.process, grace_s=5.0)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process, grace_s=5.0)

    def _wait(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.kind} server exited early; see {self.kind}.log")
            with contextlib.suppress(OSError, ValueError, httpx.HTTPError):
                self.url = f"http://127.0.0.1:{int(self._port_file.read_text())}"
                if httpx.get(f"{self.url}/healthz", timeout=1.0).is_success:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"the {self.kind} server was not ready within {_READY_TIMEOUT_S:g} s")


class _Submit(BaseModel):
    input: Any
    deadline_ms: float | None = None


def plain_app(handler: Any, token: str) -> FastAPI:
    """The app a user would write around ``handler(ctx, input)`` without Project O."""
    app = FastAPI()
    expected = f"Bearer {token}".encode()

    def authorized(authorization: Annotated[str, Header()] = "") -> None:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "missing or wrong token")

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    if inspect.iscoroutinefunction(handler):
        @app.post("/v1/requests", dependencies=[Depends(authorized)])
        async def submit_async(body: _Submit) -> dict[str, Any]:
            started = time.perf_counter()
            output = await handler(None, body.input)
            return {"request_id": "plain", "output": output, "version": "plain",
                    "latency_ms": (time.perf_counter() - started) * 1000}
    else:
        @app.post("/v1/requests", dependencies=[Depends(authorized)])
        def submit(body: _Submit) -> dict[str, Any]:
            started = time.perf_counter()
            output = handler(None, body.input)
            return {"request_id": "plain", "output": output, "version": "plain",
                    "latency_ms": (time.perf_counter() - started) * 1000}
    return app


def serve_plain(agent_path: Path, port_file: Path) -> None:
    """Serve the handler of the agent at ``agent_path`` as :func:`plain_app` does."""
    from project_o.runtime.loader import load_agent  # the plain server imports agent code

    agent = load_agent(agent_path)
    app = plain_app(agent._handler, os.environ.get("PROJECT_O_TOKEN", ""))
    sock = _listening_socket(port_file)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(
        sockets=[sock])


class _Trivial(asyncio.Protocol):
    """Answers each request (one per end of headers) with a fixed 200."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport  # uvloop's transports are not asyncio.Transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        chunk = self.tail + data
        count = chunk.count(b"\r\n\r\n")
        self.tail = chunk[-3:]
        if count:
            self.transport.write(_TRIVIAL_REPLY * count)


def serve_trivial(port_file: Path) -> None:
    """Serve :class:`_Trivial` (uvloop when installed) until killed."""
    sock = _listening_socket(port_file)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Trivial, sock=sock)
        await server.serve_forever()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def _listening_socket(port_file: Path) -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it Nagle + delayed ACK add 40 ms to each answer
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    tmp = port_file.with_suffix(".tmp")  # temp + rename: the parent never reads half a number
    tmp.write_text(str(sock.getsockname()[1]))
    os.replace(tmp, port_file)
    return sock


def _main() -> None:
    parser = argparse.ArgumentParser(description="a server the overhead benchmark compares")
    parser.add_argument("kind", choices=("plain", "trivial"))
    parser.add_argument("port_file", type=Path)
    parser.add_argument("agent", type=Path, nargs="?")
    args = parser.parse_args()
    if args.kind == "plain":
        serve_plain(args.agent, args.port_file)
    else:
        serve_trivial(args.port_file)


if __name__ == "__main__":
    _main()

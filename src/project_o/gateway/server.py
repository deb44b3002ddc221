"""Running the gateway as a guest inside the supervisor's asyncio loop.

uvicorn is written to own its process; as a guest it must not::

    supervisor loop
     ├─ supervisor tasks ...
     └─ GatewayServer task ── _GuestServer(uvicorn.Server).serve([socket we bound])
          · we bind the socket ourselves: a busy port raises GatewayError here
            instead of uvicorn calling sys.exit() inside the supervisor
          · capture_signals() does nothing: SIGINT/SIGTERM belong to the host
          · startup() reports "accepting connections" (the ready event) and turns
            uvicorn's SystemExit on a failed app startup into GatewayError
          · aclose() / cancellation: stop listening, let requests in flight
            finish (at most graceful_shutdown_s), then return

httptools parses HTTP where it is installed (a dependency; h11 otherwise).
uvloop runs the supervisor's loop only when asked (``PROJECT_O_LOOP=uvloop``
and uvloop installed; :func:`loop_factory`, used by the process that owns
the loop: a guest server cannot choose its host's loop): under a storm of
``kill -9`` of instances it reset client connections in the test suite,
where the standard loop does not, and it gained little once the hot route
was fast (docs/design.md, "HTTP").

``port=0`` picks a free port; :attr:`GatewayServer.port` tells which.
``ws_max_size`` caps one WebSocket message at the protocol level (the
connection closes with 1009 past it), before the application buffers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from project_o.errors import GatewayError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_WS_MAX_SIZE",
    "GRACEFUL_SHUTDOWN_S",
    "GatewayServer",
    "http_implementation",
    "loop_factory",
    "serve",
]

# Loopback only: the API hands inputs to the agent, so exposing it beyond this
# machine is a choice the operator makes explicitly (--host).
DEFAULT_HOST = "127.0.0.1"
# Unassigned by IANA and clear of the usual development ports (8000, 8080, 8888).
DEFAULT_PORT = 8700
# How long shutdown waits for requests in flight before cancelling them: longer
# than a typical request, short enough that a restart is not held up.
GRACEFUL_SHUTDOWN_S = 5
# uvicorn's own default cap on one WebSocket message (16 MiB).
DEFAULT_WS_MAX_SIZE = 16 * 1024 * 1024


#: set to "uvloop" to run the supervisor on uvloop's loop (where it is installed)
LOOP_ENV = "PROJECT_O_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when ``PROJECT_O_LOOP=uvloop`` asks for it and it is installed."""
    if os.environ.get(LOOP_ENV, "").lower() != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def http_implementation() -> str:
    """``"httptools"`` (a C parser) when it is installed, else ``"h11"``."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


class _GuestServer(uvicorn.Server):
    """uvicorn.Server, made to behave inside a loop it does not own."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would replace the host's SIGINT/SIGTERM handlers for the whole
        # time it serves, then re-raise the signal; the host decides instead.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit as exc:
            # uvicorn exits the process when the app's lifespan startup fails;
            # a guest must fail its own task, not the supervisor.
            raise GatewayError(
                "the gateway application failed to start; the log above says why"
            ) from exc
        if self.started:
            self._on_started()


class GatewayServer:
    """An HTTP server for ``app`` that runs as a task in the current loop.

    Use as ``async with GatewayServer(app, port=0) as server: ...`` or
    ``await server.start()`` ... ``await server.aclose()``; or await
    :meth:`serve` in a task of your own.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        log_level: str = "warning",
        access_log: bool = False,
        graceful_shutdown_s: int = GRACEFUL_SHUTDOWN_S,
        ws_max_size: int = DEFAULT_WS_MAX_SIZE,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            http=http_implementation(),
            log_level=log_level,
            # The host process configures logging; uvicorn must not replace it.
            log_config=None,
            access_log=access_log,
            server_header=False,
            timeout_graceful_shutdown=graceful_shutdown_s,
            ws_max_size=ws_max_size,
        )
        self._socket: socket.socket | None = None
        self._bound_port: int | None = None
        self._server: _GuestServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def host(self) -> str:
        """The host the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for), once bound."""
        return self._requested_port if self._bound_port is None else self._bound_port

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8700``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        """True once the server accepts connections."""
        return self._started

    async def start(self) -> None:
        """Start serving in a background task; return once connections are accepted.

        Raises :class:`~project_o.errors.GatewayError` if the address cannot
        be bound or the application fails to start.
        """
        if self._task is not None:
            raise GatewayError("this GatewayServer was already started; create a new one")
        self._bind()
        ready = asyncio.Event()
        self._task = asyncio.create_task(self.serve(ready=ready), name=f"gateway {self.url}")
        waiter = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._task.cancel()  # whoever wanted it started no longer does
            raise
        finally:
            waiter.cancel()
        if not ready.is_set():
            self._task.result()  # raises what stopped it
            raise GatewayError("the gateway stopped before it accepted connections")

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Serve until :meth:`aclose` or cancellation; set ``ready`` once accepting."""
        if self._server is not None:
            raise GatewayError("this GatewayServer is already serving; create a new one")
        sock = self._bind()
        self._server = server = _GuestServer(self._config, lambda: self._mark_started(ready))
        try:
            await server.serve(sockets=[sock])
        except asyncio.CancelledError:
            if server.started:
                # Cancelled by the host: still stop listening and let requests
                # in flight finish before giving up the loop.
                await server.shutdown(sockets=[sock])
            raise
        finally:
            sock.close()

    def ended(self) -> asyncio.Future[None]:
        """A future that resolves when serving ends: after :meth:`aclose`, or on its own.

        It holds the error that ended it, if one did; whoever supervises the
        gateway learns from it that the gateway is gone. Call after :meth:`start`.
        """
        task = self._task
        if task is None:
            raise GatewayError("the gateway is not started; start() it first")
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task.add_done_callback(lambda done: _copy_outcome(done, ended))
        return ended

    async def aclose(self) -> None:
        """Stop accepting connections, finish requests in flight, and return."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
        elif self._server is None and self._socket is not None:
            self._socket.close()  # bound, never served

    async def stop(self) -> None:
        """The same as :meth:`aclose`."""
        await self.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _mark_started(self, ready: asyncio.Event | None) -> None:
        self._started = True
        if ready is not None:
            ready.set()

    def _bind(self) -> socket.socket:
        if self._socket is None:
            self._socket = _listening_socket(self._host, self._requested_port)
            self._bound_port = self._socket.getsockname()[1]
        return self._socket


def _copy_outcome(task: asyncio.Task[None], ended: asyncio.Future[None]) -> None:
    if ended.done():
        return
    if task.cancelled():
        ended.set_exception(GatewayError("the gateway's server task was cancelled"))
    elif (error := task.exception()) is not None:
        ended.set_exception(error)
    else:
        ended.set_result(None)


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise GatewayError(f"cannot listen on {host}:{port}: {exc}; check the host name") from exc
    try:
        # A restart can bind at once even while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise GatewayError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another "
            "project-o (or other server) using it? pick another port"
        ) from exc
    return sock


async def serve(
    app: ASGIApp,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until cancelled; ``ready`` is set once connections are accepted."""
    await GatewayServer(app, host, port).serve(ready=ready)

"""The agent DSL: declare an agent and its handler.

::

    from project_o import Agent

    agent = Agent("echo")

    @agent.handler
    def handle(ctx, request):          # request: JSON-like input
        ctx.memory.set("last", request)
        return {"echo": request}       # JSON-like output

The runtime imports the module, finds ``agent`` and calls ``agent.handle``
for each request. Outside the runtime, :meth:`Agent.test_client` runs the
handler in-process with an in-memory journal, so handlers can be unit
tested with plain pytest::

    client = agent.test_client()
    assert client.call("hi") == {"echo": "hi"}
    assert client.memory.get("last") == "hi"
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from project_o.agent.context import Context
from project_o.agent.kit import AgentKit
from project_o.errors import InvalidArgument
from project_o.wire import ensure_packable

__all__ = ["Agent", "Handler", "TestClient"]

#: ``handler(ctx, request) -> response``; request and response are JSON-like.
Handler = Callable[[Context, Any], Any]
_H = TypeVar("_H", bound=Handler)


class Agent:
    """One agent: a name and the handler that answers its requests."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument(f"an agent needs a non-empty name, got {name!r}")
        self.name = name
        self._handler: Handler | None = None

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

    def handle(self, ctx: Context, request: Any) -> Any:
        """Run the handler on one request."""
        if self._handler is None:
            raise InvalidArgument(
                f"agent {self.name!r} has no handler; decorate a function with @agent.handler"
            )
        return self._handler(ctx, request)

    def test_client(self) -> TestClient:
        """An in-process client with in-memory memory, for unit tests."""
        return TestClient(self)


class TestClient:
    """Runs an agent's handler in this process, as the runtime would.

    Memory writes go to ``journal`` (a list of ``(operation, data)``, the
    WAL's view) and are applied at once. Request and response are checked
    and round-tripped through MessagePack, so what a test sees is what a
    supervisor would receive.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.journal: list[tuple[str, dict[str, Any]]] = []
        self.kit = AgentKit(agent, self._record)
        self.memory = self.kit.memory
        self._ids = itertools.count(1)

    def call(self, request: Any, *, request_id: Any = None) -> Any:
        """Send one request to the handler; return its (round-tripped) response."""
        ensure_packable(request, "request")
        rid = request_id if request_id is not None else f"test-{next(self._ids)}"
        output = self.agent.handle(self.kit.context(rid), request)
        ensure_packable(output, "response")
        return msgpack.unpackb(msgpack.packb(output, use_bin_type=True), raw=False)

    def _record(self, operation: str, data: dict[str, Any]) -> None:
        packed = msgpack.packb(data, use_bin_type=True)
        self.journal.append((operation, msgpack.unpackb(packed, raw=False)))

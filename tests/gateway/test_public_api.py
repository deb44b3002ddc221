"""The gateway's public names, and that it stays light: no agent code, no numpy."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from project_o import gateway

EXPECTED = {
    "AgentService",
    "RequestResult",
    "create_app",
    "GatewayServer",
    "serve",
    "resolve_token",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_DEADLINE_MS",
    "TOKEN_ENV",
    "TOKEN_FILENAME",
}
# What the gateway's own modules may import besides the standard library.
# uvloop: the supervisor's loop where installed and asked for (gateway.server.loop_factory)
ALLOWED_THIRD_PARTY = {"fastapi", "starlette", "uvicorn", "pydantic", "uvloop"}
# wire.packable: a body is refused up front if the agent's wire cannot carry it.
# wire.chat: the envelope a chat completion travels in to the agent.
# supervisor.api: the protocol the gateway serves lives a layer below it.
ALLOWED_PROJECT = {"project_o", "project_o.errors", "project_o.wire.packable",
                   "project_o.wire.chat", "project_o.supervisor.api"}


def test_public_names() -> None:
    assert set(gateway.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(gateway, name) is not None


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_gateway_imports_only_the_light_stack() -> None:
    package = Path(gateway.__file__).parent
    sources = sorted(package.glob("*.py"))
    assert len(sources) >= 5
    for source in sources:
        for name in imported_modules(source):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY:
                continue
            assert name in ALLOWED_PROJECT or name.startswith("project_o.gateway"), (
                f"{source.name} imports {name}"
            )


def test_the_service_protocol_imports_only_the_standard_library() -> None:
    from project_o.supervisor import api

    names = imported_modules(Path(api.__file__))
    assert names and all(n.split(".")[0] in sys.stdlib_module_names for n in names), names

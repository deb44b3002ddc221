"""Tools: plain functions an agent (or its LLM) may call by name with JSON arguments.

::

    @agent.tool(timeout=5.0, side_effects=True)
    def send_mail(to: str, body: str, cc: list[str] | None = None) -> str:
        '''Send an e-mail.

        Args:
            to: the recipient's address.
            body: the text.
            cc: more recipients.
        '''

    signature + type hints ──► pydantic model (aliases = parameter names) ──► JSON schema
    docstring prose        ──► description          "Args:" items ──► property descriptions

    Tool.spec()   {"name", "description", "parameters"}       (OpenAI function calling)
    Tool.validate(arguments)  pydantic validation; raises pydantic.ValidationError
    Tool.invoke(ctx, values)  calls the function (ctx first if it asks for one)

A tool asks for the request's context by naming its first parameter
``ctx`` (or annotating it :class:`~project_o.agent.context.Context`); that
parameter is not part of the schema. Running tools (timeouts, structured
errors, stubbing side effects) is :mod:`project_o.agent.toolbox`.

Errors reach the caller as values, never as exceptions, so an LLM loop can
hand them back to the model::

    {"error": {"type": "invalid_arguments", "message": "...", "tool": "send_mail",
               "details": [{"loc": ["to"], "msg": "Field required"}]}}

``type`` is one of :data:`ERROR_TYPES`. :class:`ToolRegistry` records the
tool specs in the checkpoint (``tool_registry["tools"]``), for the record:
the code's tools always win over what a checkpoint held.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pydantic

from project_o.agent.context import Context
from project_o.agent.docstrings import parse_docstring
from project_o.errors import InvalidArgument, ProjectOError

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_TYPES",
    "EXCEPTION",
    "INVALID_ARGUMENTS",
    "INVALID_RESULT",
    "TIMEOUT",
    "TOOL_ERROR",
    "UNKNOWN_TOOL",
    "Tool",
    "ToolError",
    "ToolRegistry",
    "is_tool_error",
    "make_tool",
    "tool_error",
]

#: seconds a tool may run before its caller stops waiting; long enough for a
#: web request or a small computation, short enough that an LLM turn stays
#: interactive. A tool that needs longer says so: ``@agent.tool(timeout=60)``.
DEFAULT_TIMEOUT: Final = 10.0
#: OpenAI's rule for function names (the strictest of the usual providers)
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

INVALID_ARGUMENTS: Final = "invalid_arguments"  # the arguments failed validation
TIMEOUT: Final = "timeout"  # the tool ran past its timeout
UNKNOWN_TOOL: Final = "unknown_tool"  # no tool has that name
TOOL_ERROR: Final = "tool_error"  # the tool raised ToolError on purpose
EXCEPTION: Final = "exception"  # the tool raised something else ("exception": class name)
INVALID_RESULT: Final = "invalid_result"  # the result cannot be turned into JSON
#: every value an error's ``type`` may take
ERROR_TYPES: Final = frozenset(
    {INVALID_ARGUMENTS, TIMEOUT, UNKNOWN_TOOL, TOOL_ERROR, EXCEPTION, INVALID_RESULT}
)
#: schema keys whose values are data, not schemas (never tidied)
_DATA_KEYS: Final = frozenset({"default", "enum", "const", "examples"})
#: version of the tool_registry snapshot layout
_REGISTRY_FORMAT: Final = 1


class ToolError(ProjectOError):
    """Raised by a tool to fail with a message meant for its caller (or the LLM).

    The caller receives ``{"error": {"type": "tool_error", "message": ...}}``;
    no traceback, since the tool chose its words.
    """


def tool_error(tool: str, type: str, message: str, **details: Any) -> dict[str, Any]:
    """The structured error value a tool call returns instead of raising."""
    return {"error": {"type": type, "message": message, "tool": tool, **details}}


def is_tool_error(value: object) -> bool:
    """Whether ``value`` is a structured tool error (as :func:`tool_error` makes)."""
    error = value.get("error") if isinstance(value, dict) else None
    return isinstance(error, dict) and error.get("type") in ERROR_TYPES and "tool" in error


@dataclass(frozen=True, eq=False)
class Tool:
    """One declared tool: its function, schema and validation model."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    side_effects: bool
    timeout: float | None
    takes_ctx: bool
    model: type[pydantic.BaseModel] = field(repr=False)
    positional: tuple[str, ...] = field(repr=False, default=())

    def spec(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}``: what a model is shown."""
        return {"name": self.name, "description": self.description,
                "parameters": json.loads(json.dumps(self.parameters))}

    def openai(self) -> dict[str, Any]:
        """The spec in OpenAI's ``tools=[...]`` shape."""
        return {"type": "function", "function": self.spec()}

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The validated arguments, by parameter name; raises pydantic.ValidationError."""
        model = self.model.model_validate(dict(arguments))
        return {info.alias or key: getattr(model, key)
                for key, info in type(model).model_fields.items()}

    def invoke(self, ctx: Context | None, values: Mapping[str, Any]) -> Any:
        """Call the function with validated ``values`` (and ``ctx`` if it takes one)."""
        args = [values[name] for name in self.positional]
        kwargs = {k: v for k, v in values.items() if k not in self.positional}
        if self.takes_ctx:
            args.insert(0, ctx)
        return self.function(*args, **kwargs)

    def fingerprint(self) -> str:
        """A short hash of the spec: changes whenever the schema or description does."""
        text = json.dumps(self.spec(), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_tool(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    side_effects: bool = False,
    description: str | None = None,
) -> Tool:
    """Build a :class:`Tool` from a function's signature, type hints and docstring.

    ``timeout=None`` runs the tool inline, with no timeout (for tools that
    must stay on the instance's thread). Raises InvalidArgument for what
    cannot become a schema (``*args``, unresolvable hints, bad names).
    """
    if not callable(function):
        raise InvalidArgument(f"@agent.tool needs a function, got {function!r}")
    tool_name = name if name is not None else getattr(function, "__name__", "")
    _check_name(tool_name)
    _check_timeout(tool_name, timeout)
    doc = parse_docstring(inspect.getdoc(function))
    params, takes_ctx = _parameters(function, tool_name)
    hints = _hints(function, tool_name, params)
    model, positional = _arguments_model(tool_name, params, doc.params, hints)
    return Tool(
        name=tool_name,
        description=description if description is not None else doc.description,
        parameters=_schema(model),
        function=function,
        side_effects=bool(side_effects),
        timeout=timeout,
        takes_ctx=takes_ctx,
        model=model,
        positional=positional,
    )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"a tool name must be 1-64 letters, digits, '_' or '-', got {name!r}; "
            "pass name=... to @agent.tool"
        )


def _check_timeout(name: str, timeout: object) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgument(
            f"tool {name!r}: timeout must be a positive number of seconds or None, "
            f"got {timeout!r}"
        )


def _hints(function: Callable[..., Any], name: str,
           params: list[inspect.Parameter]) -> dict[str, Any]:
    """The resolved type hints of the schema's parameters only.

    Only those: the ``ctx`` parameter's annotation may name a type that is
    imported under ``TYPE_CHECKING`` alone, and it is never validated.
    """
    wanted = {p.name: p.annotation for p in params if p.annotation is not p.empty}
    holder = types.SimpleNamespace(__annotations__=wanted)
    namespace = getattr(inspect.unwrap(function), "__globals__", {})
    try:
        return typing.get_type_hints(holder, globalns=namespace, include_extras=True)
    except Exception as exc:  # NameError, TypeError... from the author's annotations
        raise InvalidArgument(
            f"tool {name!r}: cannot resolve its type hints ({exc}); import the types "
            "its parameters name at module level"
        ) from exc


def _parameters(function: Callable[..., Any], name: str) -> tuple[list[inspect.Parameter], bool]:
    """The schema's parameters, and whether the first one is the request context."""
    params = list(inspect.signature(function).parameters.values())
    takes_ctx = bool(params) and _is_ctx(params[0])
    if takes_ctx:
        params = params[1:]
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidArgument(
                f"tool {name!r}: *{param.name} / **{param.name} cannot be described by "
                "a schema; give each argument a name"
            )
    return params, takes_ctx


def _is_ctx(param: inspect.Parameter) -> bool:
    annotation = param.annotation
    return param.name == "ctx" or annotation is Context or annotation == "Context"


def _arguments_model(
    tool: str, params: list[inspect.Parameter], docs: Mapping[str, str], hints: Mapping[str, Any]
) -> tuple[type[pydantic.BaseModel], tuple[str, ...]]:
    # Fields get neutral names and the parameter names as aliases, so a
    # parameter may be called ``json`` or ``model_config`` without
    # shadowing pydantic's own attributes.
    fields: dict[str, Any] = {}
    for index, param in enumerate(params):
        default = ... if param.default is param.empty else param.default
        info = pydantic.Field(default, alias=param.name, description=docs.get(param.name))
        fields[f"arg{index}"] = (hints.get(param.name, Any), info)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    try:
        model = pydantic.create_model(f"{tool}_arguments", __config__=config, **fields)
    except (pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise InvalidArgument(
            f"tool {tool!r}: its parameter types cannot be validated ({exc}); use JSON-like "
            "types, dataclasses or pydantic models"
        ) from exc
    positional = tuple(p.name for p in params if p.kind == p.POSITIONAL_ONLY)
    return model, positional


def _schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    try:
        schema = model.model_json_schema(by_alias=True)
    except pydantic.PydanticUserError as exc:  # pragma: no cover - guarded by create_model
        raise InvalidArgument(f"cannot describe {model.__name__}: {exc}") from exc
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return _tidy(schema)  # type: ignore[no-any-return]


def _tidy(node: Any) -> Any:
    """Drop pydantic's generated titles (noise to a model); keep everything else."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    tidy: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        tidy[key] = value if key in _DATA_KEYS else _tidy(value)
    if "properties" in node:  # property names are names, not schema keys
        tidy["properties"] = {name: _tidy(sub) for name, sub in node["properties"].items()}
    return tidy


class ToolRegistry:
    """The agent's tool specs in the checkpoint (``tool_registry["tools"]``).

    Informational: applies no operations. ``snapshot()`` describes the
    tools the running code declares; ``load()`` keeps what a checkpoint
    held in :attr:`restored`, so a new version can tell what changed.
    """

    name: Final = "tools"
    section: Final = "tool_registry"
    operations: Final = frozenset[str]()

    def __init__(self, tools: Callable[[], Mapping[str, Tool]]) -> None:
        self._tools = tools
        self.restored: Any = None

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """No operation is journaled for tools."""
        raise InvalidArgument(f"the tool registry applies no operations, got {operation!r}")

    def snapshot(self) -> dict[str, Any]:
        """``{"format", "tools": {name: spec + side_effects, timeout, fingerprint}}``."""
        return {
            "format": _REGISTRY_FORMAT,
            "tools": {
                name: {**tool.spec(), "side_effects": tool.side_effects,
                       "timeout": tool.timeout, "fingerprint": tool.fingerprint()}
                for name, tool in self._tools().items()
            },
        }

    def load(self, snapshot: Any) -> None:
        """Remember what the checkpoint held (the code's tools stay in charge)."""
        self.restored = snapshot

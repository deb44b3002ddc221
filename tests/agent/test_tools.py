"""Tools: schemas from signatures and docstrings, validation, timeouts, errors, stubs."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pydantic
import pytest

from project_o.agent import Agent, Context
from project_o.agent.docstrings import parse_docstring
from project_o.agent.tools import (
    DEFAULT_TIMEOUT,
    ERROR_TYPES,
    ToolError,
    is_tool_error,
    make_tool,
)
from project_o.errors import InvalidArgument


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


def search(
    query: str,
    k: int = 5,
    mode: Literal["fast", "exact"] = "fast",
    tags: list[str] | None = None,
    near: Point | None = None,
    limit: Annotated[int, pydantic.Field(ge=1)] = 3,
) -> list[str]:
    """Search the notes for a query.

    Longer prose about searching.

    Args:
        query: what to look for.
        k (int): how many hits to return;
            at most 50.
        tags: only notes with these tags.

    Returns:
        the matching notes.
    """
    return [query] * k


def _agent_with(*functions: Any, **options: Any) -> Agent:
    agent = Agent("tooling")
    for function in functions:
        agent.tool(**options)(function)
    return agent


# -- schemas ---------------------------------------------------------------


def test_schema_types_defaults_and_required() -> None:
    params = make_tool(search).spec()["parameters"]
    props = params["properties"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    assert props["query"]["type"] == "string"
    assert props["k"] == {"type": "integer", "default": 5,
                          "description": "how many hits to return; at most 50."}
    assert props["mode"]["enum"] == ["fast", "exact"]
    assert props["tags"]["anyOf"] == [{"type": "array", "items": {"type": "string"}},
                                      {"type": "null"}]
    assert props["limit"]["minimum"] == 1
    assert props["near"]["anyOf"][0] == {"$ref": "#/$defs/Point"}
    assert params["$defs"]["Point"]["required"] == ["x"]


def test_description_from_docstring_prose_only() -> None:
    spec = make_tool(search).spec()
    assert spec["name"] == "search"
    assert spec["description"] == "Search the notes for a query.\n\nLonger prose about searching."
    assert spec["parameters"]["properties"]["query"]["description"] == "what to look for."
    assert "description" not in spec["parameters"]["properties"]["mode"]


def test_no_pydantic_titles_leak_but_a_property_named_title_stays() -> None:
    def note(title: str, body: str = "") -> str:
        """Write a note."""
        return title

    params = make_tool(note).spec()["parameters"]
    assert "title" not in params
    assert set(params["properties"]) == {"title", "body"}
    assert "title" not in params["properties"]["title"]


def test_openai_shape() -> None:
    tool = make_tool(search, name="find")
    shaped = tool.openai()
    assert shaped["type"] == "function"
    assert shaped["function"]["name"] == "find"
    assert set(shaped["function"]) == {"name", "description", "parameters"}


def test_ctx_parameter_is_not_in_the_schema() -> None:
    def remember(ctx: Context, text: str) -> str:
        """Remember."""
        return text

    def plain(ctx, n: int) -> int:  # type: ignore[no-untyped-def]
        """Named ctx: also the context."""
        return n

    assert list(make_tool(remember).parameters["properties"]) == ["text"]
    assert make_tool(remember).takes_ctx and make_tool(plain).takes_ctx
    assert list(make_tool(plain).parameters["properties"]) == ["n"]


def test_numpy_docstring() -> None:
    doc = parse_docstring("""Add numbers.

    Parameters
    ----------
    a : int
        The first,
        continued.
    b : int
        The second.

    Returns
    -------
    int
        The sum.
    """)
    assert doc.description == "Add numbers."
    assert doc.params == {"a": "The first, continued.", "b": "The second."}


def test_google_item_whose_text_has_a_colon() -> None:
    doc = parse_docstring("Do it.\n\nArgs:\n    when: a time, as HH : MM.\n")
    assert doc.params == {"when": "a time, as HH : MM."}


@pytest.mark.parametrize(
    ("function", "options", "needle"),
    [
        (lambda *args: None, {"name": "star"}, r"\*args"),
        (search, {"name": "has space"}, "tool name"),
        (search, {"timeout": 0}, "timeout"),
        (search, {"timeout": True}, "timeout"),
        ("not callable", {}, "needs a function"),
    ],
)
def test_bad_declarations_are_refused(function: Any, options: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        make_tool(function, **options)


def test_unresolvable_hint_is_refused_with_advice() -> None:
    def odd(x: NotImported) -> None:  # type: ignore[name-defined]  # noqa: F821
        """Odd."""

    with pytest.raises(InvalidArgument, match="import the types"):
        make_tool(odd)


def test_duplicate_tool_name_is_refused() -> None:
    agent = _agent_with(search)
    with pytest.raises(InvalidArgument, match="already has a tool"):
        agent.tool(search)


def test_decorator_without_parentheses_returns_the_function() -> None:
    agent = Agent("bare")

    @agent.tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    assert ping() == "pong"
    assert agent.tools["ping"].timeout == DEFAULT_TIMEOUT
    assert agent.tools["ping"].side_effects is False


# -- calling ---------------------------------------------------------------


def test_call_validates_and_converts_arguments() -> None:
    tools = _agent_with(search).test_client().context().tools
    assert tools.call("search", query="a", k="2") == ["a", "a"]
    assert tools.call("search", {"query": "b", "k": 1}) == ["b"]
    assert tools.call("search", '{"query": "c", "k": 1}') == ["c"]


def test_validation_errors_are_structured() -> None:
    tools = _agent_with(search).test_client().context().tools
    result = tools.call("search", {"k": "many", "bogus": 1})
    assert is_tool_error(result)
    error = result["error"]
    assert error["type"] == "invalid_arguments" and error["tool"] == "search"
    locs = {tuple(d["loc"]): d["type"] for d in error["details"]}
    assert locs == {("query",): "missing", ("k",): "int_parsing", ("bogus",): "extra_forbidden"}
    assert "query" in error["message"]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", 42])
def test_arguments_that_are_not_an_object(arguments: Any) -> None:
    tools = _agent_with(search).test_client().context().tools
    assert tools.call("search", arguments)["error"]["type"] == "invalid_arguments"


def test_unknown_tool_lists_the_known_ones() -> None:
    tools = _agent_with(search).test_client().context().tools
    error = tools.call("serch", query="x")["error"]
    assert error["type"] == "unknown_tool" and "search" in error["message"]


def test_exceptions_become_structured_errors_inline_and_threaded() -> None:
    def divide(a: int, b: int) -> float:
        """Divide."""
        return a / b

    def refuse(reason: str) -> None:
        """Refuse politely."""
        raise ToolError(f"cannot: {reason}")

    for timeout in (None, 5.0):
        tools = _agent_with(divide, refuse, timeout=timeout).test_client().context().tools
        error = tools.call("divide", a=1, b=0)["error"]
        assert (error["type"], error["exception"]) == ("exception", "ZeroDivisionError")
        assert tools.call("refuse", reason="no")["error"] == {
            "type": "tool_error", "message": "cannot: no", "tool": "refuse"}


def test_results_become_json_like() -> None:
    @dataclass
    class Hit:
        text: str
        score: float

    def hits() -> list[Any]:
        """Hits."""
        return [Hit("a", 1.0), Point(x=1), (1, 2)]

    def bad() -> object:
        """Returns something that is not data."""
        return object()

    tools = _agent_with(hits, bad).test_client().context().tools
    assert tools.call("hits") == [{"text": "a", "score": 1.0}, {"x": 1, "y": 0}, [1, 2]]
    assert tools.call("bad")["error"]["type"] == "invalid_result"


def test_timeout_returns_a_structured_error_and_abandons_the_thread() -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        """Wait until released."""
        release.wait(30)
        finished.set()
        return "late"

    tools = _agent_with(slow, timeout=0.2).test_client().context().tools
    result = tools.call("slow")
    assert result["error"]["type"] == "timeout"
    assert result["error"]["timeout_s"] == 0.2
    assert not finished.is_set()  # it was abandoned, not awaited
    release.set()
    assert finished.wait(10)


def test_tool_with_ctx_writes_memory_from_its_worker_thread() -> None:
    agent = Agent("writer")

    @agent.tool(timeout=5.0)
    def note(ctx: Context, text: str) -> str:
        """Store a note."""
        ctx.memory.set("note", text)
        return threading.current_thread().name

    client = agent.test_client()
    thread_name = client.context().tools.call("note", text="hello")
    assert thread_name == "tool:note"  # it did run in a worker
    assert client.memory.get("note") == "hello"
    assert client.journal == [("memory_set", {"key": "note", "value": "hello"})]


def test_writes_after_the_timeout_are_refused() -> None:
    agent = Agent("late-writer")
    go, recorded = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    @agent.tool(timeout=0.2)
    def late(ctx: Context) -> None:
        """Write after the caller gave up."""
        go.wait(30)
        try:
            ctx.memory.set("late", 1)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)
        recorded.set()

    client = agent.test_client()
    assert client.context().tools.call("late")["error"]["type"] == "timeout"
    go.set()
    assert recorded.wait(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ToolError)
    assert "late" not in client.memory and client.journal == []


def test_nested_tool_calls_forward_writes_up_the_chain() -> None:
    agent = Agent("nested")

    @agent.tool(timeout=5.0)
    def inner(ctx: Context, n: int) -> int:
        """Inner."""
        ctx.memory.set("inner", n)
        return n + 1

    @agent.tool(timeout=5.0)
    def outer(ctx: Context, n: int) -> Any:
        """Outer."""
        return ctx.tools.call("inner", n=n)

    client = agent.test_client()
    assert client.context().tools.call("outer", n=1) == 2
    assert client.memory.get("inner") == 1


def test_side_effect_tools_are_stubbed_when_asked() -> None:
    sent: list[str] = []
    agent = Agent("mailer")

    @agent.tool(side_effects=True)
    def send(to: str) -> str:
        """Send mail."""
        sent.append(to)
        return "sent"

    @agent.tool
    def peek() -> str:
        """No side effect."""
        return "peeked"

    shadow = agent.test_client(stub_side_effects=True).context().tools
    assert shadow.call("send", to="a@b") == {"stubbed": True, "tool": "send",
                                             "arguments": {"to": "a@b"}}
    assert shadow.call("peek") == "peeked"
    assert shadow.call("send")["error"]["type"] == "invalid_arguments"  # still validated
    assert sent == []
    assert agent.test_client().context().tools.call("send", to="c@d") == "sent"
    assert sent == ["c@d"]


def test_specs_are_what_an_llm_loop_consumes() -> None:
    tools = _agent_with(search).test_client().context().tools
    (spec,) = tools.specs()
    assert (spec.name, spec.side_effects) == ("search", False)
    assert spec.parameters["required"] == ["query"]
    assert spec.call({"query": "z", "k": 1}) == ["z"]
    assert spec.call('{"query": "z", "k": 1}') == ["z"]
    assert tools.openai() == [spec.openai()]
    assert "search" in tools and len(tools) == 1 and tools.names() == ["search"]


def test_system_exit_in_a_threaded_tool_is_not_swallowed() -> None:
    def leave() -> None:
        """Exit."""
        raise SystemExit(3)

    tools = _agent_with(leave).test_client().context().tools
    with pytest.raises(SystemExit):
        tools.call("leave")


def test_registry_lands_in_the_checkpoint() -> None:
    client = _agent_with(search, timeout=2.5).test_client()
    section = client.kit.state.payload()["tool_registry"]["tools"]
    entry = section["tools"]["search"]
    assert entry["timeout"] == 2.5 and entry["side_effects"] is False
    assert entry["parameters"]["required"] == ["query"]
    assert len(entry["fingerprint"]) == 16

    other = _agent_with(search).test_client()
    other.kit.state.load(client.kit.state.payload())
    assert other.kit.tool_registry.restored == section


def test_error_types_are_the_documented_ones() -> None:
    assert ERROR_TYPES == {"invalid_arguments", "timeout", "unknown_tool", "tool_error",
                           "exception", "invalid_result"}


def test_events_a_threaded_tool_emits_are_sent_from_the_callers_thread() -> None:
    agent = Agent("emitter")

    @agent.tool(timeout=5.0)
    def chatty(ctx: Context) -> str:
        """Emit progress."""
        ctx.emit({"progress": 0.5})
        return threading.current_thread().name

    senders: list[tuple[Any, str]] = []
    client = agent.test_client()
    ctx = client.kit.context(
        "r", emit=lambda event: senders.append((event, threading.current_thread().name))
    )
    assert ctx.tools.call("chatty") == "tool:chatty"
    assert senders == [({"progress": 0.5}, threading.current_thread().name)]

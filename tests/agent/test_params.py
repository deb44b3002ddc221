"""Evolvable params: declarations checked, read as ctx.params.name, overridden per version."""

from __future__ import annotations

from typing import Any

import pytest

from project_o.agent import Agent
from project_o.agent.params import Param, Params, resolve
from project_o.errors import InvalidArgument


def _agent() -> Agent:
    agent = Agent("genes")
    agent.param("top_k", 5, low=1, high=20, description="hits to consider")
    agent.param("temperature", 0.7, low=0.0, high=2.0)
    agent.param("style", "short", choices=["short", "long"])
    agent.param("cite", True)

    @agent.handler
    def handle(ctx: Any, request: Any) -> dict[str, Any]:
        return {"top_k": ctx.params.top_k, "style": ctx.params["style"],
                "all": ctx.params.as_dict()}

    return agent


def test_types_are_inferred_from_defaults() -> None:
    spec = _agent().params_spec()
    assert {name: p.type for name, p in spec.items()} == {
        "top_k": "int", "temperature": "float", "style": "str", "cite": "bool"}
    assert spec["top_k"].to_dict() == {"name": "top_k", "type": "int", "default": 5, "low": 1,
                                       "high": 20, "choices": None,
                                       "description": "hits to consider"}
    assert spec["style"].choices == ("short", "long")


def test_ctx_params_reads_defaults() -> None:
    output = _agent().test_client().call("x")
    assert output["top_k"] == 5 and output["style"] == "short"
    assert output["all"] == {"top_k": 5, "temperature": 0.7, "style": "short", "cite": True}


def test_overrides_replace_defaults_and_are_checked() -> None:
    agent = _agent()
    assert agent.test_client(params={"top_k": 9, "temperature": 1}).call("x")["all"][
        "temperature"] == 1.0
    assert agent.test_client(params={"top_k": 9}).call("x")["top_k"] == 9
    with pytest.raises(InvalidArgument, match="above high"):
        agent.test_client(params={"top_k": 21})
    with pytest.raises(InvalidArgument, match="not one of"):
        agent.test_client(params={"style": "medium"})
    with pytest.raises(InvalidArgument, match="int gene"):
        agent.test_client(params={"top_k": 2.5})
    with pytest.raises(InvalidArgument, match="undeclared params"):
        agent.test_client(params={"top_p": 0.9})


def test_unknown_param_is_an_attribute_error_listing_the_known() -> None:
    params = resolve(_agent().params_spec())
    with pytest.raises(AttributeError, match="top_k") as caught:
        _ = params.top_p
    assert "no param 'top_p'" in str(caught.value)
    with pytest.raises(AttributeError, match="read-only"):
        params.top_k = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        (("k", 50), {"low": 1, "high": 20}, "above high"),
        (("k", 0), {"low": 1}, "below low"),
        (("k", 5), {"low": 10, "high": 1}, "low"),
        (("k", "a"), {"choices": ["b", "c"]}, "not one of"),
        (("k", "a"), {"choices": ["a", 1]}, "every choice"),
        (("k", "a"), {"choices": []}, "non-empty"),
        (("k", 1), {"choices": [1, 2], "low": 0}, "not both"),
        (("k", "a"), {"low": 0}, "low/high"),
        (("k", [1]), {}, "must be a bool, int, float or str"),
        (("k", float("nan")), {}, "float gene"),
        (("k", 1.0), {"high": float("inf")}, "finite"),
        (("2k", 1), {}, "identifier"),
        (("_k", 1), {}, "identifier"),
        (("as_dict", 1), {}, "taken"),
    ],
)
def test_bad_declarations_are_refused(args: tuple[Any, ...], kwargs: dict[str, Any],
                                      needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        Param.declare(*args, **kwargs)


def test_duplicate_declaration_is_refused() -> None:
    agent = _agent()
    with pytest.raises(InvalidArgument, match="already declares"):
        agent.param("top_k", 3)


def test_bool_is_not_an_int_and_int_widens_to_float() -> None:
    int_gene = Param.declare("n", 1)
    float_gene = Param.declare("x", 0.5)
    with pytest.raises(InvalidArgument):
        int_gene.check(True)
    assert float_gene.check(2) == 2.0 and isinstance(float_gene.check(2), float)


def test_params_mapping_protocol() -> None:
    params = Params({"a": 1, "b": "x"})
    assert list(params) == ["a", "b"] and len(params) == 2 and "a" in params
    assert params.as_dict() == {"a": 1, "b": "x"}

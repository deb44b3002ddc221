"""Loading agent code from a file or a package, and the errors when it cannot be done."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from project_o import Agent
from project_o.errors import AgentLoadError
from project_o.runtime.loader import load_agent
from tests.runtime.harness import CHAOS_AGENT

HEADER = "from project_o import Agent\n"
HANDLER = "@{name}.handler\ndef handle(ctx, request):\n    return request\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_loads_the_agent_attribute_of_a_file() -> None:
    agent = load_agent(CHAOS_AGENT)
    assert isinstance(agent, Agent) and agent.name == "chaos"
    assert agent.test_client().call({"do": "echo", "input": 5}) == 5


def test_loads_a_package_with_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg_agent"
    _write(package / "helpers.py", "def shout(text):\n    return text.upper()\n")
    _write(
        package / "__init__.py",
        HEADER + "from .helpers import shout\n"
        "bot = Agent('pkg')\n@bot.handler\ndef handle(ctx, request):\n"
        "    return shout(request)\n",
    )
    agent = load_agent(package)
    assert agent.name == "pkg"  # found as the single Agent, though not named `agent`
    assert agent.test_client().call("hi") == "HI"


def test_each_load_is_a_fresh_module(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "counter.py", HEADER + "agent = Agent('c')\n" + HANDLER.format(name="agent")
    )
    first, second = load_agent(path), load_agent(path)
    assert first is not second
    modules = [m for m in sys.modules if m.startswith("project_o_agent_") and m.endswith("counter")]
    assert len(modules) >= 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("VALUE = 1\n", "defines no Agent"),
        (HEADER + "a = Agent('a')\nb = Agent('b')\n", "defines 2 Agents"),
        (HEADER + "agent = 'not an agent'\n", "is a str, expected an Agent"),
        (HEADER + "agent = Agent('lazy')\n", "has no handler"),
        ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    ],
)
def test_unusable_agent_code_is_a_clear_error(tmp_path: Path, source: str, message: str) -> None:
    path = _write(tmp_path / "bad_agent.py", source)
    with pytest.raises(AgentLoadError, match=message):
        load_agent(path)


def test_import_error_keeps_the_traceback_and_leaves_no_module(tmp_path: Path) -> None:
    path = _write(tmp_path / "raising.py", "x = 1\nraise KeyError('missing config')\n")
    before = set(sys.modules)
    with pytest.raises(AgentLoadError) as caught:
        load_agent(path)
    assert caught.value.traceback is not None and "raising.py" in caught.value.traceback
    assert isinstance(caught.value.__cause__, KeyError)
    assert set(sys.modules) == before


@pytest.mark.parametrize("name", ["missing.py", "notes.txt", "plain_dir"])
def test_paths_that_are_not_agent_code(tmp_path: Path, name: str) -> None:
    _write(tmp_path / "notes.txt", "hello")
    (tmp_path / "plain_dir").mkdir()
    with pytest.raises(AgentLoadError):
        load_agent(tmp_path / name)

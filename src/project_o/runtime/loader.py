"""Loading agent code: a ``.py`` file or a package directory -> its :class:`Agent`.

::

    path ─► agent.py             ─► module "project_o_agent_<n>_agent"
         └► pkg/ (__init__.py)   ─► package "project_o_agent_<n>_pkg" (relative imports work)
    text, filename               ─► module "project_o_agent_<n>_<stem>", never on disk
                                    (load_agent_source: an evaluator's single-file candidates)
                                      │
                                      ▼
         module.agent if it is an Agent, else the single Agent among its globals

Every load imports under a fresh module name, so two versions of the same
agent (or the same file loaded twice) never share a module object. For a
single file, its directory is put on ``sys.path`` (as ``python agent.py``
would) so it can import sibling helper modules.

Only the zygote (and tests) call this: the supervisor never imports agent
code.
"""

from __future__ import annotations

import importlib.util
import itertools
import linecache
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import CodeType, ModuleType
from typing import Final

from project_o.agent.dsl import Agent
from project_o.errors import AgentLoadError

__all__ = ["AGENT_ATTRIBUTE", "find_agent", "load_agent", "load_agent_source"]

#: the module attribute looked up first
AGENT_ATTRIBUTE: Final = "agent"
_MODULE_PREFIX: Final = "project_o_agent"
_counter = itertools.count(1)


def load_agent(path: str | Path) -> Agent:
    """Import the agent code at ``path`` and return its Agent.

    Raises :class:`~project_o.errors.AgentLoadError` if the path is not a
    ``.py`` file or package directory, if importing raises (the traceback
    is kept on the error), or if the module holds no Agent, several, or
    one without a handler.
    """
    source = Path(path).resolve()
    init, search = _entry_point(source)
    module = _import(source, init, search)
    return find_agent(module, source)


def load_agent_source(text: str, filename: str, *,
                      compiler: Callable[[str, str], Sequence[CodeType]] | None = None) -> Agent:
    """Run one file's agent code from memory and return its Agent (errors as :func:`load_agent`).

    Nothing touches the disk: the code is compiled with ``filename`` as its
    name and registered with :mod:`linecache`, so tracebacks still show its
    lines. For single-file agents only (a package needs its files for
    relative imports); ``__file__`` names a file that need not exist.
    ``compiler(text, filename)``, if given, returns code objects that run
    the module when run in order (an evaluator's cache of unchanged parts).
    """
    stem = os.path.splitext(os.path.basename(filename))[0]  # Path(filename).stem, sooner
    name = f"{_MODULE_PREFIX}_{next(_counter)}_{_identifier(stem)}"
    module = ModuleType(name)
    module.__file__ = filename
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)

    def run() -> None:
        codes = compiler(text, filename) if compiler is not None else \
            [compile(text, filename, "exec", dont_inherit=True)]
        for code in codes:
            exec(code, module.__dict__)  # noqa: S102

    return find_agent(_execute(name, module, run, filename), filename)


def find_agent(module: ModuleType, source: Path | str = "") -> Agent:
    """The Agent of an imported module (``module.agent`` or the only one)."""
    where = source or module.__name__
    named = getattr(module, AGENT_ATTRIBUTE, None)
    if named is not None and not isinstance(named, Agent):
        raise AgentLoadError(
            f"{where}: the attribute {AGENT_ATTRIBUTE!r} is a {type(named).__name__}, "
            f'expected an Agent; write `{AGENT_ATTRIBUTE} = Agent("name")`'
        )
    found = named if named is not None else _single_agent(module, where)
    if not found.has_handler:
        raise AgentLoadError(
            f"{where}: agent {found.name!r} has no handler; decorate a function "
            f"with @{AGENT_ATTRIBUTE}.handler"
        )
    return found


def _single_agent(module: ModuleType, where: Path | str) -> Agent:
    agents = {name: value for name, value in vars(module).items() if isinstance(value, Agent)}
    unique = {id(value): value for value in agents.values()}
    if not unique:
        raise AgentLoadError(
            f"{where} defines no Agent; create one at module level: "
            f'`{AGENT_ATTRIBUTE} = Agent("name")`'
        )
    if len(unique) > 1:
        raise AgentLoadError(
            f"{where} defines {len(unique)} Agents ({', '.join(sorted(agents))}); "
            f"name the one to serve `{AGENT_ATTRIBUTE}`"
        )
    return next(iter(unique.values()))


def _entry_point(source: Path) -> tuple[Path, list[str] | None]:
    if source.is_dir():
        init = source / "__init__.py"
        if not init.is_file():
            raise AgentLoadError(
                f"{source} is a directory without __init__.py; point to a package "
                "directory or to the agent's .py file"
            )
        return init, [str(source)]
    if source.is_file() and source.suffix == ".py":
        return source, None
    if not source.exists():
        raise AgentLoadError(f"agent path {source} does not exist; pass a .py file or a package")
    raise AgentLoadError(f"{source} is neither a .py file nor a package directory")


def _import(source: Path, init: Path, search: list[str] | None) -> ModuleType:
    name = f"{_MODULE_PREFIX}_{next(_counter)}_{_identifier(source.stem)}"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise AgentLoadError(f"cannot build an import spec for {init}")
    module, loader = importlib.util.module_from_spec(spec), spec.loader
    if search is None and str(source.parent) not in sys.path:
        sys.path.insert(0, str(source.parent))
    return _execute(name, module, lambda: loader.exec_module(module), source)


def _execute(name: str, module: ModuleType, run: Callable[[], None],
             source: Path | str) -> ModuleType:
    """Run a module's code with the module registered; import errors become AgentLoadError."""
    # Registered before execution, as a normal import does: dataclasses,
    # pickle and relative imports look the module up by name.
    sys.modules[name] = module
    try:
        run()
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AgentLoadError(
            f"importing agent code from {source} raised {type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        ) from exc
    return module


def _identifier(stem: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in stem)
    return cleaned or "agent"

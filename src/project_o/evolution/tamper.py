"""Catching a candidate that changes the evaluator it runs beside.

A candidate runs in the same process as the task that scores it (an
evaluator child), so its module code can rebind the task's helpers
(``task.mse_of = lambda f: 0``), patch a function's code in place, or
swap a builtin, and score itself perfectly, or make the candidates after
it in the batch score what it likes. The child takes a snapshot once,
before any candidate runs, and compares after each one::

    snapshot (references, so no id is reused)      after each candidate
      task module, every module it imported,  ──►  same objects bound to the same names?
      builtins, the evaluator's own modules        functions: same __code__, same defaults?
                                                     └─ no: "gamed" (what changed), and the
                                                        batch stops: the rest get a fresh child

This raises the bar; it is not a wall. Code that patches and restores
within one call, or reaches into frames, can still fool an in-process
score: a task that must hold against a determined adversary computes its
score from outputs returned over a process boundary (``agent.call``).
"""

from __future__ import annotations

import builtins
import operator
import sys
from types import FunctionType, ModuleType
from typing import Any, Final

__all__ = ["EVALUATOR_MODULES", "Snapshot", "describe"]

#: the child's own modules that carry a result out: patched, they could forge one
EVALUATOR_MODULES: Final = ("project_o.evolution.task", "project_o.evolution.evaluator",
                            "project_o.wire.framing", "project_o.wire.messages",
                            "project_o.wire.packable", "msgpack")

#: at most this many changes are named in a failure
_NAMED: Final = 3


class Snapshot:
    """The evaluator's modules as they were, to tell whether a candidate changed them.

    Two checks, because a task may keep state of its own in module globals:

    * around a candidate's *load* (its module code runs; the task does not),
      no binding of a watched module may change at all;
    * after its *evaluation* (the task runs too), the functions, classes and
      modules bound there must still be the ones of the snapshot, with the
      same code and defaults.
    """

    def __init__(self, task_module: ModuleType | None) -> None:
        self._modules = _watched(task_module)
        # Fast paths compare whole tuples and lists in C (identity first, then ==);
        # the slow, naming pass only runs once something differs.
        self._keys = {name: tuple(key for key, value in vars(module).items()
                                  if isinstance(value, _CODE))
                      for name, module in self._modules.items()}
        # itemgetter/attrgetter read every watched binding in C: this runs after every
        # candidate, and a Python loop over builtins was most of an evaluation's cost.
        self._getters = [(name, vars(module), _getter(self._keys[name]))
                         for name, module in self._modules.items()]
        self._code = self._code_now()
        self._functions = [value for module in self._modules.values()
                           for value in vars(module).values() if isinstance(value, FunctionType)]
        self._states = self._function_states()

    def bindings(self) -> dict[str, dict[str, Any]]:
        """Every watched module's bindings now (for :meth:`changed_since`)."""
        return {name: dict(vars(module)) for name, module in self._modules.items()}

    def changed_since(self, bindings: dict[str, dict[str, Any]]) -> list[str]:
        """``module.name`` for each binding rebound or deleted since ``bindings``."""
        if all(vars(module) == bindings[name] for name, module in self._modules.items()):
            return []
        return [f"{name}.{key}" for name, module in self._modules.items()
                for key, value in bindings[name].items()
                if vars(module).get(key, _GONE) is not value]

    def code_changed(self) -> list[str]:
        """``module.name`` for each function, class or module no longer as snapshotted."""
        if self._code_now() == self._code and self._function_states() == self._states:
            return []
        changed = [f"{name}.{key}" for name, module in self._modules.items()
                   for key, value in zip(self._keys[name], self._code[name], strict=True)
                   if vars(module).get(key, _GONE) is not value]
        changed += [f"{function.__module__}.{function.__qualname__} (its code)"
                    for function, state in zip(self._functions, self._states, strict=True)
                    if _function_state(function) != state]
        return changed or ["(unnamed)"]

    def _code_now(self) -> dict[str, tuple[Any, ...]]:
        try:
            return {name: getter(namespace) for name, namespace, getter in self._getters}
        except KeyError:  # a binding was deleted: the slow pass names it
            return {name: tuple(vars(module).get(key, _GONE) for key in self._keys[name])
                    for name, module in self._modules.items()}

    def _function_states(self) -> list[tuple[Any, ...]]:
        return list(map(_function_state, self._functions))


def describe(changes: list[str]) -> str:
    """A failure reason naming the first few changes."""
    more = f" and {len(changes) - _NAMED} more" if len(changes) > _NAMED else ""
    return f"changed the evaluator it runs beside: {', '.join(changes[:_NAMED])}{more}"


_GONE: Final = object()
#: bindings whose replacement is tampering even while the task runs
_CODE: Final = (FunctionType, type, ModuleType)


#: (code, defaults, keyword defaults) of a function: what patching it in place changes
_function_state: Final = operator.attrgetter("__code__", "__defaults__", "__kwdefaults__")


def _getter(keys: tuple[str, ...]) -> Any:
    """A callable: namespace -> the tuple of its values for ``keys`` (KeyError if one is gone)."""
    if len(keys) > 1:
        return operator.itemgetter(*keys)
    if keys:
        item = operator.itemgetter(keys[0])
        return lambda namespace: (item(namespace),)
    return lambda namespace: ()


def _watched(task_module: ModuleType | None) -> dict[str, ModuleType]:
    modules: dict[str, ModuleType] = {"builtins": builtins}
    for name in EVALUATOR_MODULES:
        if name in sys.modules:
            modules[name] = sys.modules[name]
    if task_module is not None:
        modules[task_module.__name__] = task_module
        for value in vars(task_module).values():
            if isinstance(value, ModuleType):
                modules.setdefault(value.__name__, value)
    return modules

"""Param mutation: tweak the values of ``agent.param(...)`` genes within their bounds.

The supervisor never imports agent code, so the declarations are read
statically from the source with ``ast``::

    agent = Agent("assistant")
    THRESHOLD = agent.param("threshold", 0.5, low=0.0, high=1.0)   ─► ParamSpec float [0, 1]
    TOP_K = agent.param("top_k", 5, low=1, high=20)                ─► ParamSpec int   [1, 20]
    MODE = agent.param("mode", "bm25", choices=["bm25", "vector"])  ─► ParamSpec choice

Only literal arguments are understood (numbers, strings, lists, tuples,
``True``/``False``/``None``); a declaration with any other argument is
skipped. The receiver is any name bound to ``Agent(...)`` in the sources,
or ``agent``.

A genome's value for a param is ``genome.params[name]`` if present, else
the declared default. Children keep only values that differ from the
default, so the same behaviour always gets the same genome id.

    mut_param_gauss    numeric: value + N(0, (sigma * (high - low))^2), clipped;
                       ints round, and move by at least 1
    mut_param_uniform  numeric: a fresh uniform draw in [low, high]
    both               choices / bools: flip to another value, uniformly
"""

from __future__ import annotations

import ast
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from project_o.evolution.genome import Genome
from project_o.evolution.operators.base import NoChild, OperatorBase
from project_o.evolution.operators.content_cache import ContentCache, sources_key

__all__ = [
    "DEFAULT_SIGMA",
    "ParamGaussian",
    "ParamSpec",
    "ParamUniform",
    "agent_names",
    "declared_names",
    "effective_params",
    "param_specs",
]

#: Gaussian step as a fraction of the bound range (low..high): 10% moves a
#: value noticeably while mostly staying near the parent, the usual
#: choice for real-valued GA mutation
DEFAULT_SIGMA = 0.1

#: the DSL's declaration method and the name an agent is conventionally bound to
_PARAM_METHOD = "param"
_DEFAULT_AGENT_NAME = "agent"
_AGENT_CLASS = "Agent"


#: significant digits kept for mutated floats, so the source and the catalog stay readable
_FLOAT_DIGITS = 6


@dataclass(frozen=True)
class ParamSpec:
    """One ``agent.param`` declaration, as read from the source."""

    name: str
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def kind(self) -> str:
        """``"choice"``, ``"bool"``, ``"int"``, ``"float"`` or ``"other"`` (not mutable).

        As in the DSL, the default's type decides: ``param("n", 3, high=9.5)`` is an int.
        """
        if self.choices is not None:
            return "choice"
        return {bool: "bool", int: "int", float: "float"}.get(type(self.default), "other")

    @property
    def bounded(self) -> bool:
        """Whether both ``low`` and ``high`` are declared."""
        return self.low is not None and self.high is not None

    def allows(self, value: Any) -> bool:
        """Whether ``value`` fits this declaration (type, bounds, choices)."""
        kind = self.kind
        if kind == "choice":
            return value in (self.choices or ())
        if kind == "bool":
            return isinstance(value, bool)
        if kind in ("int", "float"):
            # The DSL widens ints for float genes, and never takes a bool for a number.
            wanted = int if kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, wanted):
                return False
            return math.isfinite(value) and self._within(value)
        return type(value) is type(self.default)

    def _within(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


def agent_names(sources: Mapping[str, str]) -> set[str]:
    """Names bound to ``Agent(...)`` anywhere in ``sources``, plus ``agent``."""
    return set(AGENT_NAMES.get(sources))


def _find_agent_names(sources: Mapping[str, str]) -> frozenset[str]:
    names = {_DEFAULT_AGENT_NAME}
    for tree in _trees(sources):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and _is_agent_call(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return frozenset(names)


def param_specs(genome: Genome | Mapping[str, str]) -> list[ParamSpec]:
    """The param declarations in a genome's sources, in file then line order, unique by name."""
    sources = genome.sources if isinstance(genome, Genome) else genome
    return list(PARAM_SPECS.get(sources))


def _find_specs(sources: Mapping[str, str]) -> tuple[ParamSpec, ...]:
    receivers = agent_names(sources)
    specs: dict[str, ParamSpec] = {}
    for tree in _trees(sources):
        calls = [n for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and _is_param_call(n, receivers)]
        for call in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
            spec = _spec_from_call(call)
            if spec is not None and spec.name not in specs:
                specs[spec.name] = spec
    return tuple(specs.values())


#: what was read from each genome's sources (an operator may hand a child's over)
AGENT_NAMES: ContentCache[Mapping[str, str], frozenset[str]] = ContentCache(_find_agent_names, key=sources_key)
PARAM_SPECS: ContentCache[Mapping[str, str], tuple[ParamSpec, ...]] = ContentCache(_find_specs, key=sources_key)


def declared_names(genome: Genome | Mapping[str, str]) -> set[str]:
    """Names of every ``agent.param("name", ...)`` call, whether its other arguments are
    literal or not (a name not here is one the runtime would refuse a value for)."""
    sources = genome.sources if isinstance(genome, Genome) else genome
    receivers = agent_names(sources)
    names = {_declared_name(call) for tree in _trees(sources) for call in ast.walk(tree)
             if isinstance(call, ast.Call) and _is_param_call(call, receivers)}
    return {name for name in names if name is not None}


def _declared_name(call: ast.Call) -> str | None:
    first = call.args[0] if call.args else next(
        (k.value for k in call.keywords if k.arg == "name"), None)
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def effective_params(genome: Genome, specs: Sequence[ParamSpec] | None = None) -> dict[str, Any]:
    """Every declared param's value in ``genome`` (its own, else the default), plus extras."""
    declared = param_specs(genome) if specs is None else specs
    values = {spec.name: spec.default for spec in declared}
    values.update(genome.params)
    return values


class _ParamMutation(OperatorBase):
    """Mutates ``count`` randomly chosen mutable params; subclasses say how numbers move."""

    def __init__(self, *, count: int = 1) -> None:
        super().__init__()
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.count = count

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        specs = param_specs(parent)
        values = effective_params(parent, specs)
        mutable = [s for s in specs if _can_move(s)]
        if not mutable:
            raise NoChild("the agent declares no mutable agent.param(...)")
        changes: dict[str, list[Any]] = {}
        for spec in rng.sample(mutable, min(self.count, len(mutable))):
            old = values[spec.name]
            new = self._move(spec, old, rng)
            values[spec.name] = new
            changes[spec.name] = [old, new]
        return parent.derive(operator=self.name, params=_overrides(values, specs),
                             details={"changes": changes})

    def _move(self, spec: ParamSpec, value: Any, rng: random.Random) -> Any:
        if spec.kind in ("choice", "bool"):
            options = list(spec.choices or ()) if spec.kind == "choice" else [False, True]
            others = [option for option in options if option != value]
            return rng.choice(others)
        if not isinstance(value, int | float) or isinstance(value, bool):
            value = spec.default  # a stale non-number restarts from the declaration
        return self._move_number(spec, value, rng)

    def _move_number(self, spec: ParamSpec, value: float, rng: random.Random) -> float:
        raise NotImplementedError


class ParamGaussian(_ParamMutation):
    """Gaussian step, ``sigma`` relative to the bound range (or to the value if unbounded)."""

    name: ClassVar[str] = "mut_param_gauss"

    def __init__(self, *, sigma: float = DEFAULT_SIGMA, count: int = 1) -> None:
        super().__init__(count=count)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = sigma

    def _move_number(self, spec: ParamSpec, value: float, rng: random.Random) -> float:
        return _gauss_step(spec, value, self.sigma, rng)


class ParamUniform(_ParamMutation):
    """A fresh uniform draw within the bounds (a Gaussian step when unbounded)."""

    name: ClassVar[str] = "mut_param_uniform"

    def _move_number(self, spec: ParamSpec, value: float, rng: random.Random) -> float:
        if spec.low is None or spec.high is None:
            return _gauss_step(spec, value, DEFAULT_SIGMA, rng)
        if spec.kind == "int":
            low, high = (int(b) for b in _int_bounds(spec))
            # Redraw until it moves: _can_move() guarantees two values, so this ends.
            while (drawn := rng.randint(low, high)) == value:
                pass
            return drawn
        return _fit(spec, rng.uniform(spec.low, spec.high))


# -- helpers ------------------------------------------------------------


def _trees(sources: Mapping[str, str]) -> Iterator[ast.Module]:
    for name in sorted(sources):
        if name.endswith(".py"):
            try:
                yield ast.parse(sources[name], name)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue  # validation reports broken files; declarations there do not count


def _is_agent_call(node: ast.AST | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == _AGENT_CLASS) or (
        isinstance(func, ast.Attribute) and func.attr == _AGENT_CLASS)


def _is_param_call(node: ast.Call, receivers: set[str]) -> bool:
    return (isinstance(node.func, ast.Attribute)
            and node.func.attr == _PARAM_METHOD and isinstance(node.func.value, ast.Name)
            and node.func.value.id in receivers)


def _spec_from_call(call: ast.Call) -> ParamSpec | None:
    try:
        positional = [ast.literal_eval(arg) for arg in call.args]
        keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None  # not literal: cannot be known without running the code
    fields = dict(zip(("name", "default"), positional, strict=False)) | keywords
    name, low, high, choices = (fields.get(k) for k in ("name", "low", "high", "choices"))
    if not isinstance(name, str) or "default" not in fields:
        return None
    if choices is not None:
        if not isinstance(choices, list | tuple) or not choices:
            return None
        return ParamSpec(name, fields["default"], choices=tuple(choices))
    if not (_number_or_none(low) and _number_or_none(high)):
        return None
    if low is not None and high is not None and low > high:
        return None
    return ParamSpec(name, fields["default"], low=low, high=high)


def _can_move(spec: ParamSpec) -> bool:
    kind = spec.kind
    if kind == "choice":
        return len(set(map(repr, spec.choices or ()))) > 1
    if kind == "int":
        low, high = _int_bounds(spec)
        return high > low
    if kind == "float":
        return spec.low is None or spec.high is None or spec.high > spec.low
    return kind == "bool"


def _overrides(values: Mapping[str, Any], specs: Sequence[ParamSpec]) -> dict[str, Any]:
    defaults = {spec.name: spec.default for spec in specs}
    return {k: v for k, v in values.items() if k not in defaults or not _same(v, defaults[k])}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _gauss_step(spec: ParamSpec, value: float, sigma: float, rng: random.Random) -> float:
    scale = (spec.high - spec.low) if spec.low is not None and spec.high is not None \
        else max(abs(value), 1.0)
    step = rng.gauss(0.0, sigma * scale)
    if spec.kind == "int":
        # A step that rounds to zero would waste an evaluation on the parent again.
        jump = round(step) or (1 if step >= 0 else -1)
        return _reflect_int(spec, int(value), jump)
    return _fit(spec, _reflect(spec, value + step))


def _reflect(spec: ParamSpec, value: float) -> float:
    """Mirror a step that left [low, high] back inside, so a value at a bound can still move."""
    low = -math.inf if spec.low is None else float(spec.low)
    high = math.inf if spec.high is None else float(spec.high)
    if value < low:
        value = low + (low - value)
    elif value > high:
        value = high - (value - high)
    return min(max(value, low), high)


def _reflect_int(spec: ParamSpec, old: int, jump: int) -> int:
    low, high = _int_bounds(spec)
    moved = min(max(round(_reflect(spec, float(old + jump))), low), high)
    if moved == old:
        # A reflection landed back on the start: take one step inwards instead.
        moved = old + 1 if old < high else old - 1
    return int(moved)


def _int_bounds(spec: ParamSpec) -> tuple[float, float]:
    """The smallest and largest whole numbers within the bounds (infinite if unbounded)."""
    low = -math.inf if spec.low is None else math.ceil(spec.low)
    high = math.inf if spec.high is None else math.floor(spec.high)
    return low, high


def _fit(spec: ParamSpec, value: float) -> float:
    """``value`` rounded for readability, then clamped (rounding may cross a bound)."""
    rounded = float(f"{value:.{_FLOAT_DIGITS}g}")
    low = -math.inf if spec.low is None else spec.low
    high = math.inf if spec.high is None else spec.high
    return float(min(max(rounded, low), high))


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                             and math.isfinite(value))



"""Evolvable parameters ("genes"): declared once, read as ``ctx.params.name``.

::

    agent.param("top_k", 5, low=1, high=20)            int gene in [1, 20]
    agent.param("temperature", 0.7, low=0.0, high=2.0) float gene
    agent.param("style", "short", choices=["short", "long"])
    agent.param("cite", True)                          bool gene

    declarations (agent.params_spec()) ──┐
    a version's values (overrides)     ──┴─► resolve() ──► Params ──► ctx.params.top_k

A gene's type is its default's (bool, int, float or str). Bounds apply to
numbers, choices to any type; the default must satisfy them. A version's
values, set by the evolution layer, are checked against the same
declarations, so a mutation can never hand an agent a value its author did
not allow. :class:`Params` is read-only: genes change between versions,
never during a request.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from project_o.errors import InvalidArgument

__all__ = ["PARAM_TYPES", "Param", "Params", "resolve"]

#: the types a gene may have, by name (the name is what a spec records)
PARAM_TYPES: Final[dict[str, type]] = {"bool": bool, "int": int, "float": float, "str": str}
_NUMERIC: Final = ("int", "float")


@dataclass(frozen=True)
class Param:
    """One declared gene: its type, default and what values it allows."""

    name: str
    default: Any
    type: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    description: str = ""

    @classmethod
    def declare(
        cls,
        name: str,
        default: Any,
        *,
        low: float | None = None,
        high: float | None = None,
        choices: Sequence[Any] | None = None,
        description: str = "",
    ) -> Param:
        """Check a declaration and build it; InvalidArgument says what is wrong."""
        _check_name(name)
        kind = _type_of(name, default)
        param = cls(name, default, kind, _bound(name, "low", low), _bound(name, "high", high),
                    _choices(name, kind, choices, low, high), str(description))
        param._check_range()
        param.check(default)
        return param

    def _check_range(self) -> None:
        if (self.low is not None or self.high is not None) and self.type not in _NUMERIC:
            raise InvalidArgument(
                f"param {self.name!r}: low/high apply to int and float genes, not {self.type}"
            )
        if self.low is not None and self.high is not None and self.low > self.high:
            raise InvalidArgument(
                f"param {self.name!r}: low ({self.low}) is above high ({self.high})"
            )

    def check(self, value: Any) -> Any:
        """``value`` if this gene allows it (ints widened for floats), else InvalidArgument."""
        value = self._coerce(value)
        if self.choices is not None and value not in self.choices:
            raise InvalidArgument(
                f"param {self.name!r}: {value!r} is not one of {list(self.choices)}"
            )
        if self.low is not None and value < self.low:
            raise InvalidArgument(f"param {self.name!r}: {value!r} is below low={self.low}")
        if self.high is not None and value > self.high:
            raise InvalidArgument(f"param {self.name!r}: {value!r} is above high={self.high}")
        return value

    def _coerce(self, value: Any) -> Any:
        wanted = PARAM_TYPES[self.type]
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not wanted or (self.type == "float" and not math.isfinite(
                cast(float, value))):
            raise InvalidArgument(
                f"param {self.name!r} is a {self.type} gene; got {value!r} "
                f"({type(value).__name__})"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """The declaration as plain data (what mutation operators and the catalog read)."""
        return {"name": self.name, "type": self.type, "default": self.default,
                "low": self.low, "high": self.high,
                "choices": None if self.choices is None else list(self.choices),
                "description": self.description}


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise InvalidArgument(
            f"a param name must be a Python identifier not starting with '_' "
            f"(it is read as ctx.params.<name>), got {name!r}"
        )
    if name in _RESERVED:
        raise InvalidArgument(f"param name {name!r} is taken by Params itself; pick another")


def _type_of(name: str, default: Any) -> str:
    for kind, cls in PARAM_TYPES.items():
        if type(default) is cls:
            return kind
    raise InvalidArgument(
        f"param {name!r}: the default decides the gene's type and must be a bool, int, "
        f"float or str; got {type(default).__name__}"
    )


def _bound(name: str, which: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"param {name!r}: {which} must be a finite number, got {value!r}")
    return float(value) if isinstance(value, float) else value


def _choices(name: str, kind: str, choices: Sequence[Any] | None,
             low: object, high: object) -> tuple[Any, ...] | None:
    if choices is None:
        return None
    if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or not choices:
        raise InvalidArgument(f"param {name!r}: choices must be a non-empty list, got {choices!r}")
    if low is not None or high is not None:
        raise InvalidArgument(f"param {name!r}: give choices or low/high, not both")
    wanted = PARAM_TYPES[kind]
    odd = [c for c in choices if type(c) is not wanted]
    if odd:
        raise InvalidArgument(f"param {name!r}: every choice must be a {kind}, got {odd!r}")
    return tuple(choices)


class Params:
    """``ctx.params``: the gene values of this version, by attribute.

    ``ctx.params.top_k``; ``params.as_dict()`` for all of them. An unknown
    name raises AttributeError listing the declared ones.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        try:
            return values[name]
        except KeyError:
            known = ", ".join(sorted(values)) or "none declared"
            raise AttributeError(
                f"no param {name!r}; declared params: {known} (declare it with agent.param)"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("params are read-only; a new version brings new values")

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def as_dict(self) -> dict[str, Any]:
        """Every gene's value, by name (a copy)."""
        return dict(self._values)


#: names a param may not take: they are Params' own attributes
_RESERVED: Final = frozenset(name for name in dir(Params) if not name.startswith("_"))


def resolve(declared: Mapping[str, Param], overrides: Mapping[str, Any] | None = None) -> Params:
    """The values a version runs with: defaults, replaced by checked ``overrides``."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise InvalidArgument(
            f"values given for undeclared params {unknown}; declared: {sorted(declared)}"
        )
    return Params({name: param.check(overrides[name]) if name in overrides else param.default
                   for name, param in declared.items()})

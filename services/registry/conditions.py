"""Evaluating a parsed filter against field values: whether it holds, and which comparisons failed,
with their values, for promotion gates (`metrics.f1 > 0.8 (0.7 > 0.8)`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from services.registry.filters import (
    And,
    Comparison,
    Expr,
    Field,
    Literal,
    Lookup,
    Not,
    Or,
    Present,
    render_value,
)

_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_MISSING = object()


def comparisons(expr: Expr | None) -> list[Comparison]:
    """Every comparison in the filter, in text order."""
    if expr is None:
        return []
    if isinstance(expr, Comparison):
        return [expr]
    if isinstance(expr, Not):
        return comparisons(expr.item)
    return [c for item in expr.items for c in comparisons(item)]


def evaluate(expr: Expr | None, lookup: Lookup) -> bool:
    """Whether the filter holds; `lookup` raises KeyError (or returns None) for an absent field."""
    if expr is None:
        return True
    if isinstance(expr, And):
        return all(evaluate(item, lookup) for item in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(item, lookup) for item in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, lookup)
    return _holds(expr.op, *_operands(expr, lookup))


def failed_conditions(expr: Expr | None, lookup: Lookup) -> list[str]:
    """Each failing comparison with its values, e.g. `metrics.f1 > 0.8 (0.7 > 0.8)`, for refusals."""
    if expr is None or evaluate(expr, lookup):
        return []
    if isinstance(expr, Comparison):
        return [f"{expr} ({_explain(expr, lookup)})"]
    if isinstance(expr, And | Or):
        return [failure for item in expr.items for failure in failed_conditions(item, lookup)]
    return [f"{expr} ({', '.join(_explain(c, lookup) for c in comparisons(expr.item))})"]


def _get(lookup: Lookup, field: Field) -> object:
    try:
        value = lookup(field)
    except KeyError:
        return _MISSING
    return _MISSING if value is None else value


def _operands(comparison: Comparison, lookup: Lookup) -> tuple[object, object]:
    actual, value = _get(lookup, comparison.field), comparison.value
    if isinstance(value, Field):
        return actual, _get(lookup, value)
    return actual, value.value if isinstance(value, Literal) else value


def _explain(comparison: Comparison, lookup: Lookup) -> str:
    actual, expected = _operands(comparison, lookup)
    if actual is _MISSING:
        return f"{comparison.field} is missing"
    if expected is _MISSING:
        return f"{comparison.value} is missing"
    if isinstance(expected, Present):
        return f"{comparison.field} is present"
    return f"{_shown(actual)} {comparison.op} {_shown(expected)}"


def _shown(value: object) -> str:
    """A value in a refusal message: floats to 6 significant digits, the rest as written."""
    return f"{value:.6g}" if isinstance(value, float) else render_value(value)


def _kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Real):
        return "number"
    return "string" if isinstance(value, str) else None


def _equal(a: object, b: object) -> bool:
    return _kind(a) is not None and _kind(a) == _kind(b) and bool(a == b)


def _holds(op: str, actual: object, expected: object) -> bool:
    if actual is _MISSING or expected is _MISSING:
        return False
    if isinstance(expected, Present):
        return True
    if op == ":" and isinstance(actual, list | tuple | set | frozenset | Mapping):
        return any(_equal(item, expected) for item in actual)
    if op in ("=", ":"):
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    comparable = _kind(actual) in ("number", "string") and _kind(actual) == _kind(expected)
    return comparable and bool(_ORDER[op](actual, expected))

"""A tiny, safe expression language over input fields, for fallback rules; never ``eval``.

An expression is parsed by Python's own parser (``ast.parse(mode="eval")``) and then only a strict
whitelist of node types is compiled, into numpy operations over a whole batch of columns:

    amount > 1000 and not card_present
    country in ["US", "GB"] or merchant is None
    hour >= 22 or hour < 6

Allowed: field names of the schema, number/string/bool/None literals, lists/tuples of literals,
``and`` / ``or`` / ``not``, comparisons (``== != < <= > >= in not in is is not``, chains too),
unary ``-`` and ``+ - * / %``. Anything else (calls, attributes, subscripts, lambdas, comprehensions)
is refused when the policy is loaded, with the position of the offending part. A null input value
makes every comparison with it false (as in SQL), except ``is None``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from rtserve.errors import SchemaDefinitionError
from rtserve.types import AnyArray, Columns

#: A compiled expression: columns of n rows -> a value (array of n, or a scalar for literals).
Compiled = Callable[[Columns, int], Any]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
_LITERAL = (int, float, str, bool, type(None))


class Rule:
    """One compiled expression; ``matches(columns)`` gives a boolean per row."""

    def __init__(self, source: str, fields: Collection[str]) -> None:
        self.source = source
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise self._error(f"is not a valid expression ({exc.msg})", exc.offset) from exc
        self._fields = frozenset(fields)
        self._compiled = self._compile(tree.body)

    def __repr__(self) -> str:
        return f"Rule({self.source!r})"

    def matches(self, columns: Columns) -> AnyArray:
        """True for the rows where the expression holds (false where an input is null)."""
        n = len(next(iter(columns.values()))) if columns else 0
        with np.errstate(all="ignore"):
            result = self._compiled(columns, n)
        return _broadcast(_truth(result), n)

    # --- compilation ----------------------------------------------------------------------

    def _compile(self, node: ast.expr) -> Compiled:
        if isinstance(node, ast.Constant) and isinstance(node.value, _LITERAL):
            value = node.value
            return lambda columns, n: value
        if isinstance(node, ast.Name):
            return self._field(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            raise self._error("a list is only allowed after 'in' / 'not in'", node.col_offset)
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(value) for value in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return lambda columns, n: combine.reduce(
                [_broadcast(_truth(part(columns, n)), n) for part in parts]
            )
        if isinstance(node, ast.UnaryOp):
            operand = self._compile(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda columns, n: ~_broadcast(_truth(operand(columns, n)), n)
            if isinstance(node.op, ast.USub):
                return lambda columns, n: -_numeric(operand(columns, n))
            if isinstance(node.op, ast.UAdd):
                return lambda columns, n: _numeric(operand(columns, n))
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            op = _ARITHMETIC[type(node.op)]
            left, right = self._compile(node.left), self._compile(node.right)
            return lambda columns, n: op(_numeric(left(columns, n)), _numeric(right(columns, n)))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        raise self._error(
            f"uses {type(node).__name__}, which rules do not allow (fields, literals, and/or/not, "
            "comparisons, in, is None, + - * / % only)",
            node.col_offset,
        )

    def _field(self, node: ast.Name) -> Compiled:
        name = node.id
        if name not in self._fields:
            raise self._error(
                f"names {name!r}, which is not an input field; fields: {sorted(self._fields)}",
                node.col_offset,
            )
        return lambda columns, n: columns[name]

    def _compare(self, node: ast.Compare) -> Compiled:
        steps: list[Compiled] = []
        left = self._compile(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            steps.append(self._comparison(left, op, right_node))
            left = (
                self._compile(right_node)
                if not isinstance(right_node, ast.List | ast.Tuple)
                else left
            )
        if len(steps) == 1:
            return steps[0]
        return lambda columns, n: np.logical_and.reduce(
            [_broadcast(_truth(step(columns, n)), n) for step in steps]
        )

    def _comparison(self, left: Compiled, op: ast.cmpop, right_node: ast.expr) -> Compiled:
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right_node, (ast.List, ast.Tuple)) or not all(
                isinstance(e, ast.Constant) and isinstance(e.value, _LITERAL)
                for e in right_node.elts
            ):
                raise self._error("'in' needs a list of literals, e.g. [\"US\", \"GB\"]",
                                  right_node.col_offset)  # fmt: skip
            options = frozenset(e.value for e in right_node.elts if isinstance(e, ast.Constant))
            negate = isinstance(op, ast.NotIn)
            return lambda columns, n: _member(left(columns, n), options, negate, n)
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(right_node, ast.Constant) and right_node.value is None):
                raise self._error("'is' compares only with None", right_node.col_offset)
            negate = isinstance(op, ast.IsNot)
            return lambda columns, n: _is_null(left(columns, n), n) ^ negate
        compare = _COMPARE[type(op)]
        right = self._compile(right_node)
        return lambda columns, n: _elementwise(compare, left(columns, n), right(columns, n), n)

    def _error(self, message: str, offset: int | None) -> SchemaDefinitionError:
        where = f" (at column {offset + 1})" if offset is not None else ""
        return SchemaDefinitionError(
            f"fallback rule {self.source!r} {message}{where}", field="fallback.rules"
        )


def _broadcast(values: Any, n: int) -> AnyArray:
    array = np.asarray(values, dtype=bool)
    return np.broadcast_to(array, (n,)).copy() if array.ndim == 0 else array


def _truth(values: Any) -> Any:
    """Truthiness where null is false."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "b":
            return values
        if values.dtype.kind in "iuf":
            return (values != 0) & ~np.isnan(values.astype(np.float64))
        return np.array([bool(v) and not _null(v) for v in values.tolist()], dtype=bool)
    return bool(values) and not _null(values)


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _is_null(values: Any, n: int) -> AnyArray:
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            return np.isnan(values)
        if values.dtype.kind in "iub":
            return np.zeros(n, dtype=bool)
        return np.array([_null(v) for v in values.tolist()], dtype=bool)
    return _broadcast(_null(values), n)


def _numeric(values: Any) -> Any:
    if isinstance(values, np.ndarray) and values.dtype.kind not in "iufb":
        return np.array([np.nan if _null(v) else _to_float(v) for v in values.tolist()])
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    if isinstance(values, str) or values is None:
        return np.nan
    return float(values)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _elementwise(compare: Callable[[Any, Any], Any], left: Any, right: Any, n: int) -> AnyArray:
    """``compare`` row by row; false where either side is null or the types do not compare."""
    fast = all(
        not isinstance(v, np.ndarray) or v.dtype.kind in "iufb" for v in (left, right)
    ) and not any(isinstance(v, str) or v is None for v in (left, right))
    if fast:  # numbers against numbers: numpy (NaN compares false, except !=)
        result = _broadcast(compare(left, right), n)
        return result & ~_is_null(left, n) & ~_is_null(right, n)
    lefts = left.tolist() if isinstance(left, np.ndarray) else [left] * n
    rights = right.tolist() if isinstance(right, np.ndarray) else [right] * n
    out = np.zeros(n, dtype=bool)
    for i, (a, b) in enumerate(zip(lefts, rights, strict=True)):
        if _null(a) or _null(b):
            continue
        try:
            out[i] = bool(compare(a, b))
        except TypeError:
            out[i] = False
    return out


def _member(values: Any, options: frozenset[Any], negate: bool, n: int) -> AnyArray:
    items = values.tolist() if isinstance(values, np.ndarray) else [values] * n
    found = np.array([not _null(v) and v in options for v in items], dtype=bool)
    nulls = np.array([_null(v) for v in items], dtype=bool)
    return (~found & ~nulls) if negate else found

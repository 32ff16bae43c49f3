"""Cohorts: slices of the data a service is judged on, and their conditions.

A cohort is either the rows matching ``where`` (a small, safe expression language:
comparisons of a column with literals, ``in``, ``and``/``or``/``not``, parsed with
:mod:`ast` and never evaluated as Python) or one cohort per value of column ``by``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass(frozen=True)
class Condition:
    """A parsed cohort condition; :meth:`mask` evaluates it on a DataFrame."""

    text: str
    tree: ast.expr = field(repr=False, compare=False)
    columns: frozenset[str] = frozenset()

    def mask(self, frame: Any) -> Any:
        """A boolean Series: which rows of *frame* belong to the cohort."""
        return _evaluate(self.tree, frame)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether one row (a request's input) belongs to the cohort, by the rule
        :meth:`mask` applies to a frame: a missing or null value, or one a comparison
        cannot order, does not match."""
        return _holds(self.tree, row)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    raise ValueError(f"expected a number, string or list, not {ast.unparse(node)!r}")


def _check(node: ast.expr, columns: set[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, columns)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, columns)
    elif isinstance(node, ast.Compare):
        if not isinstance(node.left, ast.Name) or len(node.ops) != 1:
            raise ValueError("each comparison is COLUMN OP VALUE, e.g. claim_amount >= 20000")
        columns.add(node.left.id)
        op = node.ops[0]
        value = _literal(node.comparators[0])
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(value, list):
                raise ValueError("'in' needs a list, e.g. region in ['north', 'south']")
        elif type(op) not in _COMPARE:
            raise ValueError(f"unsupported operator {type(op).__name__}")
    elif isinstance(node, ast.Name):
        columns.add(node.id)  # a boolean column
    else:
        raise ValueError(f"not a condition: {ast.unparse(node)!r}")


def _evaluate(node: ast.expr, frame: Any) -> Any:
    if isinstance(node, ast.BoolOp):
        parts = [_evaluate(v, frame) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp):
        return ~_evaluate(node.operand, frame)
    if isinstance(node, ast.Name):
        return frame[node.id].fillna(False).astype(bool)
    # _check admitted only comparisons of a column beyond this point.
    assert isinstance(node, ast.Compare)
    assert isinstance(node.left, ast.Name)
    column = frame[node.left.id]
    op = node.ops[0]
    value = _literal(node.comparators[0])
    if isinstance(op, ast.In):
        return column.isin(value)
    if isinstance(op, ast.NotIn):
        return ~column.isin(value)
    result = _COMPARE[type(op)](column, value)
    return result.fillna(False).astype(bool)


def _holds(node: ast.expr, row: Mapping[str, Any]) -> bool:
    """:func:`_evaluate` for one row."""
    if isinstance(node, ast.BoolOp):
        parts = (_holds(v, row) for v in node.values)
        return all(parts) if isinstance(node.op, ast.And) else any(parts)
    if isinstance(node, ast.UnaryOp):
        return not _holds(node.operand, row)
    if isinstance(node, ast.Name):
        return bool(row.get(node.id))
    assert isinstance(node, ast.Compare)
    assert isinstance(node.left, ast.Name)
    value = row.get(node.left.id)
    op = node.ops[0]
    literal = _literal(node.comparators[0])
    if isinstance(op, (ast.In, ast.NotIn)):
        inside = value is not None and value in literal
        return inside if isinstance(op, ast.In) else not inside
    if value is None:  # as a frame's null compares: unequal to everything, in no order
        return isinstance(op, ast.NotEq)
    try:
        return bool(_COMPARE[type(op)](value, literal))
    except TypeError:  # text against a number: no order, as a frame's comparison fails
        return False


def parse_condition(text: str) -> Condition:
    """Parse a cohort condition; ValueError says what is wrong."""
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {text!r}: {exc.msg}") from None
    columns: set[str] = set()
    _check(tree, columns)
    return Condition(text, tree, frozenset(columns))


@dataclass(frozen=True)
class Cohort:
    """Either rows matching ``where``, or one cohort per value of column ``by``."""

    name: str
    where: Condition | None = None
    by: str | None = None

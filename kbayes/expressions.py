"""Estimand expressions and label texts: arithmetic over named values (parameters, constants,
derived values), checked when a spec is read and evaluated per draw, and the ``{name}``
placeholders of labels, units and questions."""

from __future__ import annotations

import ast
import functools
import string
from collections.abc import Mapping
from types import CodeType
from typing import Any

import numpy as np

from kbayes.config import TrialConfig

_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(32)


def p_above(threshold: Any, mean: Any, between_sd: Any, sigma: Any, nu: Any) -> Any:
    """P(mean + between_sd Z + sigma T >= threshold), Z standard normal, T Student-t with
    ``nu`` degrees of freedom (``inf``: normal), independent: the predictive probability that
    a new session's outcome reaches ``threshold`` (response, remission). Gauss-Hermite
    quadrature over Z (32 nodes); works on numbers, arrays and xarray objects."""
    from scipy.special import stdtr

    total = 0.0
    for node, weight in zip(_NODES, _WEIGHTS, strict=True):
        z = (threshold - mean - between_sd * np.sqrt(2.0) * node) / sigma
        total = total + weight * stdtr(nu, -z)
    return total / np.sqrt(np.pi)


_FUNCTIONS = {"exp": np.exp, "log": np.log, "abs": abs, "sqrt": np.sqrt, "p_above": p_above}


def expression_names(expr: str) -> set[str]:
    """The names an expression uses (not the functions); a ValueError unless it is plain
    arithmetic with the allowed functions."""
    tree = ast.parse(expr, mode="eval")
    for node in ast.walk(tree):
        allowed = (
            ast.Expression,
            ast.Name,
            ast.Constant,
            ast.BinOp,
            ast.UnaryOp,
            ast.Call,
            ast.Load,
            *_OPERATORS,
        )
        if not isinstance(node, allowed):
            raise ValueError(f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Call) and (
            not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS
        ):
            raise ValueError(f"only the functions {sorted(_FUNCTIONS)} may be called")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(_FUNCTIONS)


def evaluate(expr: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate an arithmetic expression (+ - * / **, exp, log, abs, sqrt, :func:`p_above`)
    over ``scope``."""
    return eval(_compiled(expr), _GLOBALS, scope)  # safe: _compiled checked the grammar


_GLOBALS = {"__builtins__": {}, **_FUNCTIONS}


@functools.cache
def _compiled(expr: str) -> CodeType:
    """An expression checked to be plain arithmetic (:func:`expression_names`), compiled once
    (estimands are evaluated per replicate: walking the syntax tree took a tenth of a
    Laplace replicate)."""
    expression_names(expr)
    return compile(ast.parse(expr, mode="eval"), "<expression>", "eval")


def check_placeholders(where: str, text: Any, constants: dict) -> list[str]:
    """Problems with the ``{name}`` placeholders of a label, unit or question."""
    allowed = set(TrialConfig().label_names) | set(constants)
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(str(text)) if f is not None}
    except ValueError as exc:
        return [f"{where}: cannot read {text!r}: {exc}"]
    return [f"{where}: {{{n}}} is neither a trial name ({', '.join(TrialConfig().label_names)}) "
            f"nor a constant of this spec" for n in sorted(names - allowed)]  # fmt: skip


def check_expr(where: str, expr: Any, known: set[str]) -> list[str]:
    """Problems with an expression: not arithmetic, or using names not in ``known``."""
    if not isinstance(expr, str):
        return [f"{where}: expected a string expression"]
    try:
        unknown = expression_names(expr) - known
    except (SyntaxError, ValueError) as exc:
        return [f"{where}: cannot parse {expr!r}: {exc}"]
    if not unknown:
        return []
    return [f"{where}: {expr!r} refers to {', '.join(sorted(unknown))}, not in this model"]

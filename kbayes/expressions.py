"""Estimands and questions: arithmetic over named values (parameters, constants, derived
values), checked when a spec is read and evaluated per draw; the ``{name}`` placeholders of
labels, units and questions; a spec's ``[estimands]`` and ``[[questions]]`` parsed."""

from __future__ import annotations

import ast
import functools
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
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


#: Keys of an ``[estimands.NAME]`` table.
ESTIMAND_KEYS = {"expr", "label", "unit", "rope", "thresholds"}


@dataclass(frozen=True)
class Estimand:
    """A named posterior quantity: ``expr`` over parameters, constants and derived values.

    ``label`` and ``unit`` may hold ``{active}``, ``{reference}``, ``{metabolite}``,
    ``{scale}`` and ``{drug}``, filled from the trial's :class:`~kbayes.TrialConfig`, and
    the spec's constants (``{remission_score:g}``).
    """

    name: str
    expr: str
    label: str
    unit: str
    rope: tuple[float, float] | None = None
    thresholds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Question:
    """One of the trial's questions, answered yes by ``estimand`` being below (``below``) or
    above ``threshold`` (a spec's ``[[questions]]`` entry, ``yes_if = "< 0"``), with an
    optional ``note`` said after the answer. ``ask`` and ``note`` may hold the
    placeholders of :class:`Estimand` labels."""

    ask: str
    estimand: str
    below: bool
    threshold: float
    note: str = ""


def parse_estimands(
    tables: Mapping[str, Any], known: set[str], constants: dict, errors: list[str]
) -> dict[str, Estimand]:
    """A spec's ``[estimands.NAME]`` tables (each may use ``known`` names and the estimands
    before it, which are added to ``known``); problems appended to ``errors``."""
    estimands = {}
    for key, table in tables.items():
        where = f"estimands.{key}"
        if not isinstance(table, dict):
            errors.append(f"{where}: expected a table")
            continue
        errors += [
            f"{where}.{k}: unknown key (allowed: {', '.join(sorted(ESTIMAND_KEYS))})"
            for k in table
            if k not in ESTIMAND_KEYS
        ]
        errors += [f"{where}.{k}: missing" for k in ("label", "unit") if k not in table]
        errors += [e for k in ("label", "unit") for e in
                   check_placeholders(f"{where}.{k}", table.get(k, ""), constants)]  # fmt: skip
        expr = table.get("expr", key)
        errors += check_expr(f"{where}.expr", expr, known)
        rope = table.get("rope")
        if rope is not None and (len(rope) != 2 or rope[0] >= rope[1]):
            errors.append(f"{where}.rope: expected [low, high] with low < high")
        estimands[key] = Estimand(
            name=key,
            expr=expr,
            label=str(table.get("label", key)),
            unit=str(table.get("unit", "")),
            rope=tuple(rope) if rope else None,
            thresholds=tuple(float(t) for t in table.get("thresholds", ())),
        )
        known.add(key)
    return estimands


def parse_questions(
    entries: list, estimands: dict, constants: dict, errors: list[str]
) -> tuple[Question, ...]:
    """The ``[[questions]]`` entries, each ``ask``, ``estimand`` and ``yes_if = "< t"`` or
    ``"> t"``; problems appended to ``errors``."""
    questions = []
    for i, entry in enumerate(entries):
        where = f"questions[{i}]"
        keys = set(entry) if isinstance(entry, dict) else set()
        if not {"ask", "estimand", "yes_if"} <= keys <= {"ask", "estimand", "yes_if", "note"}:
            errors.append(f"{where}: expected a table with ask, estimand, yes_if (and a note)")
            continue
        if entry["estimand"] not in estimands:
            errors.append(f"{where}.estimand: {entry['estimand']!r} is not an estimand")
        op, _, number = str(entry["yes_if"]).strip().partition(" ")
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if op not in ("<", ">") or not math.isfinite(threshold):
            errors.append(f"{where}.yes_if: expected '< number' or '> number', got "
                          f"{entry['yes_if']!r}")  # fmt: skip
            continue
        for key in ("ask", "note"):
            errors += check_placeholders(f"{where}.{key}", entry.get(key, ""), constants)
        questions.append(Question(str(entry["ask"]), entry["estimand"], op == "<", threshold,
                                  str(entry.get("note", ""))))  # fmt: skip
    return tuple(questions)

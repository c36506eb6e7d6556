"""The term registry and the parsing of a spec's terms and covariates.

A level's terms are registered names (:data:`TERMS`: their coefficients and labels) or
covariates (data columns) and their interactions, as a list or a formula (formulaic);
``[covariates.NAME]`` tables say how a covariate is coded (numeric: centre and scale;
categorical: levels, reference, coding). Problems are appended to an ``errors`` list, which
:func:`kbayes.spec.parse_spec` reports in one SpecError.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Term:
    """A registered model term: its coefficient's name and a label for plots and tables.

    The term's covariate is the product of the coded covariates of its ``:``-separated
    parts (:data:`FACTORS`): ``condition:sex`` is c m.
    """

    coefficient: str
    label: str


#: Coded covariate of each part of a term name (the names of kbayes.build's data):
#: c = 1 under the pretreatment, m = -1/2 or +1/2 by sex, p = period centred on the middle
#: period, dtilde = standardised glutamate change, baseline_c = centred baseline score.
FACTORS: dict[str, str] = {"condition": "c", "sex": "m", "period": "p", "dglx": "dtilde",
                           "baseline": "baseline_c"}  # fmt: skip
#: Intercept of each level with terms.
INTERCEPTS: dict[str, str] = {"glutamate": "beta0", "improvement": "gamma0", "items": "theta0"}
#: Unit of each level's term coefficients (a template, as estimand units).
LEVEL_UNITS: dict[str, str] = {"glutamate": "{metabolite} ratio units",
                               "improvement": "{scale} points", "items": "logits"}  # fmt: skip
#: Coefficient prefix of each level: a covariate term's coefficient is ``<prefix>_<term>``
#: with its parts joined by ``_x_`` (``age`` -> ``gamma_age``, ``age:condition`` ->
#: ``gamma_age_x_condition``).
PREFIXES: dict[str, str] = {"glutamate": "beta", "improvement": "gamma", "items": "theta"}
#: Keys of a ``[covariates.NAME]`` table: centring and scaling of a numeric covariate
#: (``"mean"`` / ``"sd"`` from the data, or a number in the covariate's units).
COVARIATE_KEYS = {"center", "scale"}
#: Keys of a categorical covariate's table: its ``levels`` (which make it categorical), the
#: ``reference`` level (default the first) and the ``coding`` (:data:`CODINGS`).
CATEGORICAL_KEYS = {"levels", "reference", "coding"}
#: Codings of a categorical covariate with levels L and reference r: one column per level
#: other than r, ``treatment`` 1 at that level, else 0 (a coefficient is that level minus
#: r); ``sum`` 1 at that level, -1 at r, else 0 (a coefficient is that level minus the
#: mean over levels).
CODINGS = ("treatment", "sum")
#: The term registry, per level: a new term is one entry here (its parts from FACTORS).
#: Labels may hold ``{active}``, ``{reference}``, ``{metabolite}`` and ``{scale}``.
TERMS: dict[str, dict[str, Term]] = {
    "glutamate": {
        "condition": Term("beta_N", "{active} vs {reference}: {metabolite} change"),
        "sex": Term("beta_M", "male - female: {metabolite} change"),
        "condition:sex": Term("beta_NM", "{active} x sex: {metabolite} change"),
        "period": Term("beta_P", "period 2 - 1: {metabolite} change"),
    },
    "improvement": {
        "condition": Term("gamma_N", "{active} vs {reference}: improvement at fixed change"),
        "sex": Term("gamma_M", "male - female: improvement"),
        "condition:sex": Term("gamma_NM", "{active} x sex: improvement"),
        "dglx": Term("gamma_D", "improvement per standardised {metabolite} change"),
        "dglx:condition": Term("gamma_DN", "{active} x standardised {metabolite} change"),
        "baseline": Term("gamma_B", "improvement per baseline {scale} point"),
        "period": Term("gamma_P", "period 2 - 1: improvement"),
    },
    "items": {
        "condition": Term("theta_N", "{active} vs {reference}: item improvement"),
        "sex": Term("theta_M", "male - female: item improvement"),
        "condition:sex": Term("theta_NM", "{active} x sex: item improvement"),
        "period": Term("theta_P", "period 2 - 1: item improvement"),
    },
}

#: The parts of a registered term each level can use (the others are covariates).
LEVEL_FACTORS: dict[str, tuple[str, ...]] = {
    level: tuple(dict.fromkeys(part for t in terms for part in t.split(":")))
    for level, terms in TERMS.items()
}
REGISTERED_COEFFICIENTS = {t.coefficient for terms in TERMS.values() for t in terms.values()}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def term_coefficient(level: str, term: str) -> str:
    """The coefficient of ``term`` at ``level``: the registry's, else ``<prefix>_<parts>``."""
    if term in TERMS[level]:
        return TERMS[level][term].coefficient
    return f"{PREFIXES[level]}_{'_x_'.join(term.split(':'))}"


def coefficient_term(name: str) -> tuple[str, str] | None:
    """The (level, term) of a covariate term's coefficient name (the inverse of
    :func:`term_coefficient` for unregistered terms), or None if ``name`` is not one."""
    for level, prefix in PREFIXES.items():
        if name.startswith(f"{prefix}_") and name not in REGISTERED_COEFFICIENTS:
            return level, ":".join(name.removeprefix(f"{prefix}_").split("_x_"))
    return None


def _formula_terms(formula: str, where: str, errors: list[str]) -> list[str]:
    """Term names of a formula string (formulaic), without the intercept (always there)."""
    from formulaic import Formula

    try:
        parsed = list(Formula(formula))
    except Exception as exc:  # formulaic raises several types for a bad formula
        errors.append(f"{where}: cannot parse the formula {formula!r}: {exc}")
        return []
    names = [":".join(str(f) for f in t.factors) for t in parsed]
    if "1" not in names:
        errors.append(f"{where}: the intercept cannot be removed (drop '- 1' / '0 +')")
    return [n for n in names if n != "1"]


def extend_terms(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child``'s term lists over ``parent``'s, level by level; ``...`` in a child's list
    or formula stands for the parent's terms of that level (``"... + age"``)."""
    out = dict(parent)
    for level, value in child.items():
        before = out.get(level, [])
        if isinstance(value, str) and value.strip().startswith("..."):
            rest = value.strip().removeprefix("...").strip().removeprefix("+").strip()
            before = before if isinstance(before, list) else [before]
            value = [*before, rest] if rest else before
        elif isinstance(value, list) and "..." in value:
            k = value.index("...")
            value = [*value[:k], *(before if isinstance(before, list) else [before]),
                     *value[k + 1 :]]  # fmt: skip
        out[level] = value
    return out


def parse_terms(
    level: str, value: Any, errors: list[str], reserved: Collection[str] = ()
) -> tuple[tuple[str, ...], set[str]]:
    """A level's terms (a list, or a formula string whose pieces may be formulas too),
    registered names made canonical; and the covariates (data columns) they use."""
    where = f"terms.{level}"
    pieces = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for piece in pieces:
        if not isinstance(piece, str):
            errors.append(f"{where}: expected term names or a formula, got {piece!r}")
        elif any(c in piece for c in "+*()") or piece.strip() != piece:
            names += _formula_terms(piece, where, errors)
        else:
            names.append(piece)
    registered = {frozenset(t.split(":")): t for t in TERMS[level]}
    terms, covariates = [], set()
    for name in names:
        parts = name.split(":")
        canonical = registered.get(frozenset(parts))
        others = [p for p in parts if p not in LEVEL_FACTORS[level]]
        if canonical is None and not others:
            known = ", ".join(TERMS[level])
            errors.append(f"{where}: unknown term {name!r} (registered: {known})")
            continue
        bad = [p for p in others if not _IDENTIFIER.fullmatch(p) or "_x_" in p or p in FACTORS]
        if bad:
            errors.append(
                f"{where}: {bad} in {name!r} are not covariate names (a column name: letters, "
                f"digits and _, no '_x_'; {', '.join(FACTORS)} are terms of their own levels)"
            )
            continue
        if clash := [p for p in others if p in reserved]:
            errors.append(f"{where}: {clash} in {name!r} are names of model dims, not covariates")
            continue
        term = canonical or name
        if term in terms:
            errors.append(f"{where}: term {term!r} is listed twice")
        terms.append(term)
        covariates.update(others)
    return tuple(terms), covariates


def parse_covariates(
    tables: Mapping[str, Any], used: set[str], errors: list[str]
) -> dict[str, dict]:
    """Each used covariate's ``[covariates.NAME]`` settings (``{}`` when absent)."""
    out = {name: {} for name in sorted(used)}
    for name, table in tables.items():
        where = f"covariates.{name}"
        if name not in used:
            errors.append(f"{where}: not used by any term")
            continue
        if not isinstance(table, dict):
            errors.append(f"{where}: expected a table")
            continue
        if "levels" in table:
            out[name] = _parse_categorical(where, table, errors)
            continue
        errors += [f"{where}.{k}: unknown key (allowed: center, scale; levels, reference, "
                   "coding for a categorical covariate)"
                   for k in table if k not in COVARIATE_KEYS]  # fmt: skip
        center, scale = table.get("center"), table.get("scale")
        if center is not None and center != "mean" and not isinstance(center, int | float):
            errors.append(f'{where}.center: expected "mean" or a number, got {center!r}')
        if (
            scale is not None
            and scale != "sd"
            and not (isinstance(scale, int | float) and scale > 0)
        ):
            errors.append(f'{where}.scale: expected "sd" or a positive number, got {scale!r}')
        out[name] = {k: v for k, v in table.items() if k in COVARIATE_KEYS}
    return out


def _parse_categorical(where: str, table: Mapping[str, Any], errors: list[str]) -> dict:
    """A categorical covariate's settings, with the defaults filled in (reference: the first
    level; coding: treatment)."""
    errors += [f"{where}.{k}: unknown key for a categorical covariate (allowed: levels, "
               "reference, coding)" for k in table if k not in CATEGORICAL_KEYS]  # fmt: skip
    levels = table["levels"]
    if not (
        isinstance(levels, list)
        and len(levels) >= 2
        and all(isinstance(x, str) and x for x in levels)
        and len(set(levels)) == len(levels)
    ):
        errors.append(f"{where}.levels: expected two or more distinct level names, got {levels!r}")
        return {}
    reference, coding = table.get("reference", levels[0]), table.get("coding", "treatment")
    if reference not in levels:
        errors.append(f"{where}.reference: {reference!r} is not one of the levels {levels}")
    if coding not in CODINGS:
        errors.append(f"{where}.coding: {coding!r} is not one of {CODINGS}")
    return {"levels": list(levels), "reference": reference, "coding": coding}

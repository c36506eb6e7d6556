"""Index dims of a spec: one value of a coefficient, and of each estimand that uses it, per
level of a dim. ``condition``: each pretreatment of a trial with several
(:attr:`kbayes.TrialConfig.conditions`); ``time``: each rating time of a trajectory
(:attr:`kbayes.TrialConfig.rating_times_h`).

An estimand with index dims is evaluated once per combination of their levels and named
per row as the tables show it, ``ntx_glu[nalmefene]``, ``ntx_imp_total[naltrexone, 4 h]``;
between pretreatments it has contrasts too, ``ntx_glu[nalmefene vs naltrexone]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kbayes.expressions import expression_names

#: The dim of a pretreatment effect in a trial with several pretreatments (its coords: the
#: active conditions), and the term part it belongs to.
CONDITION = "condition"
#: The dim of an improvement coefficient of a trajectory (its coords: the rating times).
TIME = "time"
#: Index dims in the order their levels are named in a row (``[condition, time]``).
INDEX_DIMS = (CONDITION, TIME)
#: Suffix of the posterior variable holding an estimand's contrasts between pretreatments
#: (dim ``contrast``, e.g. ``"nalmefene vs naltrexone"``), beside the estimand itself.
CONTRAST_SUFFIX = "_contrast"
CONTRAST = "contrast"


def time_label(hours: float) -> str:
    """The coord of a rating time: ``4 h``, ``24 h``, ``168 h``."""
    return f"{hours:g} h"


def index_value(value: Any, dim: str, j: int, level: str, levels: Sequence[str]) -> Any:
    """The value at level ``j`` (``level``) of ``dim`` (whose levels are ``levels``) of a
    coefficient: from the dim (xarray), the last axis (arrays of draws, the coefficient's
    dims last), a ``{level: value}`` mapping keyed by this dim's levels (a mapping keyed
    by another dim's is left as it is), or a number (the same at every level)."""
    if isinstance(value, Mapping):
        if not set(value) & set(levels):
            return value
        if level not in value:
            raise ValueError(f"no value for the {dim} {level!r} in {dict(value)!r}")
        inner = value[level]
        return inner if isinstance(inner, Mapping) else np.float64(inner)
    if dim in getattr(value, "dims", ()):
        return value.isel({dim: j}, drop=True)
    if hasattr(value, "dims"):  # xarray without the dim: the same at every level
        return value
    return value[..., j] if np.ndim(value) else value


def at_levels(
    params: Mapping[str, Any],
    coefficient_dims: Mapping[str, tuple[str, ...]],
    dims: Mapping[str, Sequence[str]],
    at: Mapping[str, int],
) -> dict[str, Any]:
    """``params`` with each coefficient of ``coefficient_dims`` at the levels ``at`` (dim ->
    level index) of its dims (sliced last dim first)."""
    out = dict(params)
    for name, own in coefficient_dims.items():
        if name in params:
            value = params[name]
            for dim in reversed(own):
                value = index_value(value, dim, at[dim], dims[dim][at[dim]], dims[dim])
            if isinstance(value, Mapping):  # nested the other way round: {time: {condition:}}
                for dim in reversed(own):
                    value = index_value(value, dim, at[dim], dims[dim][at[dim]], dims[dim])
            out[name] = value
    return out


def dependent_dims(
    coefficient_dims: Mapping[str, tuple[str, ...]],
    expressions: Sequence[tuple[str, str]],
    dims: Sequence[str],
) -> dict[str, tuple[str, ...]]:
    """The index dims each named expression (derived values, then estimands, in order)
    depends on, directly or through earlier ones."""
    uses = {d: {c for c, own in coefficient_dims.items() if d in own} for d in dims}
    out = {}
    for name, expr in expressions:
        names = expression_names(expr)
        out[name] = tuple(d for d in dims if names & uses[d])
        for d in out[name]:
            uses[d].add(name)
    return out


def row_name(name: str, levels: Sequence[str]) -> str:
    """The row of an estimand at these levels: ``ntx_glu[nalmefene, 4 h]`` (``name``
    without levels)."""
    return f"{name}[{', '.join(levels)}]" if levels else name


def contrasts(actives: Sequence[str], ratio: bool) -> list[tuple[str, str, str, bool]]:
    """Per pair of pretreatments a before b, ``(pair, b, a, ratio)`` with ``pair`` the label
    ``"b vs a"``: b's value minus a's, or divided by it (``ratio``, an odds ratio)."""
    return [(f"{b} vs {a}", b, a, ratio) for a, b in itertools.combinations(actives, 2)]


def estimand_cells(
    estimand_dims: Mapping[str, tuple[str, ...]], dims: Mapping[str, Sequence[str]]
) -> list[tuple[str, str, tuple[int, ...], tuple[int, ...] | None]]:
    """Each row of each estimand, in order: ``(row, estimand, at, versus)``, ``at`` the
    level index per dim of ``dims`` (0 for the dims it does not depend on), ``versus`` the
    levels subtracted (or divided by) for a contrast between pretreatments, else None."""
    order = list(dims)
    out = []
    for name, own in estimand_dims.items():
        for combo in itertools.product(*(range(len(dims[d])) for d in own)):
            at = dict(zip(own, combo, strict=True))
            levels = [dims[d][at[d]] for d in own]
            out.append((row_name(name, levels), name, tuple(at.get(d, 0) for d in order), None))
        if CONDITION not in own:
            continue
        others = [d for d in own if d != CONDITION]
        actives = list(dims[CONDITION])
        for pair, b, a, _ in contrasts(actives, False):
            for combo in itertools.product(*(range(len(dims[d])) for d in others)):
                at = dict(zip(others, combo, strict=True))
                cells = [tuple(actives.index(x) if d == CONDITION else at.get(d, 0)
                               for d in order) for x in (b, a)]  # fmt: skip
                row = row_name(name, [pair, *(dims[d][at[d]] for d in others)])
                out.append((row, name, cells[0], cells[1]))
    return out


def indexed_values(
    evaluate: Callable[[Mapping[str, Any]], dict[str, Any]],
    params: Mapping[str, Any],
    coefficient_dims: Mapping[str, tuple[str, ...]],
    dims: Mapping[str, Sequence[str]],
    estimand_dims: Mapping[str, tuple[str, ...]],
    ratios: set[str],
) -> dict[str, Any]:
    """Every estimand's value per row (:func:`estimand_cells`): ``evaluate`` (every
    estimand of one set of scalar params) once per combination of the levels of ``dims``;
    a contrast is a difference, or a ratio for the estimands in ``ratios``."""
    order = list(dims)
    values = {}
    for combo in itertools.product(*(range(len(dims[d])) for d in order)):
        at = dict(zip(order, combo, strict=True))
        values[combo] = evaluate(at_levels(params, coefficient_dims, dims, at))
    out = {}
    for row, name, at, versus in estimand_cells(estimand_dims, dims):
        value = values[at][name]
        if versus is not None:
            other = values[versus][name]
            value = value / other if name in ratios else value - other
        out[row] = value
    return out


#: What the improvement level models: the day-1 improvement (one rating per session), or
#: the improvement at each rating time (``trajectory``; docs/models.md).
OUTCOMES = ("day1", "trajectory")


def parse_outcome(source: dict, levels: tuple[str, ...], errors: list[str]) -> tuple[str, tuple]:
    """The spec's ``outcome`` and a trajectory's ``times_h`` (problems to ``errors``)."""
    outcome, times = source.get("outcome", "day1"), source.get("times_h")
    if outcome not in OUTCOMES:
        errors.append(f"outcome: expected one of {OUTCOMES}, got {outcome!r}")
        return "day1", ()
    if outcome == "day1":
        if times is not None:
            errors.append("times_h: only a trajectory (outcome = 'trajectory') has rating times")
        return outcome, ()
    if "improvement" not in levels or "items" in levels:
        errors.append("outcome: a trajectory needs the improvement level (and no items level)")
    hours = times if times is not None else [24.0]
    ok = (isinstance(hours, list) and hours and all(isinstance(h, int | float) and h > 0
          for h in hours) and list(hours) == sorted(set(hours)))  # fmt: skip
    if not ok:
        errors.append(f"times_h: expected increasing rating times in hours > 0, got {times!r}")
        return outcome, (24.0,)
    return outcome, tuple(float(h) for h in hours)


def parse_actives(conditions: Any, levels: tuple[str, ...], errors: list[str]) -> tuple[str, ...]:
    """The pretreatments of a ``conditions`` list (the reference first) of more than two
    names, else ``()``; problems appended to ``errors``."""
    if conditions is None:
        return ()
    ok = (isinstance(conditions, list) and len(conditions) >= 2
          and all(isinstance(c, str) and c for c in conditions)
          and len(set(conditions)) == len(conditions))  # fmt: skip
    if not ok:
        errors.append(f"conditions: expected two or more distinct names, got {conditions!r}")
        return ()
    if len(conditions) > 2 and "items" in levels:
        errors.append("conditions: the items level models two conditions (reference, active)")
    return tuple(conditions[1:]) if len(conditions) > 2 else ()

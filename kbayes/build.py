r"""Spec + TrialData -> ``pm.Model``. The spec wires; this code only connects.

Levels (indices: participant i, session s = (i, period), fMRS block b):

.. math::

    y_{isb} &\sim \mathcal N\big(\alpha_0 + a_i + a_{is} + \Delta_{is}\, g(t_b),\;
        \sqrt{\sigma_{mrs}^2 + (\mathrm{CRLB}_{isb}/100 \cdot y_{isb})^2}\big) \\
    \Delta_{is} &= \beta_0 + \beta_N c_{is} + \beta_M m_i + \beta_{NM} c_{is} m_i
        + \beta_P p_{is} + u_i + e_{is} \\
    \mathrm{imp}_{is} &\sim t_\nu\big(\gamma_0 + \gamma_N c + \gamma_M m + \gamma_{NM} c m
        + \gamma_\Delta \tilde\Delta + \gamma_{\Delta N} \tilde\Delta c
        + \gamma_B (\mathrm{base} - b_0) + \gamma_P p + v_i,\; \sigma_y\big)

with :math:`c = 1` under the pretreatment, :math:`m = \mp 1/2` (female/male) so main effects
average the sexes, :math:`p` the period centred on the middle period, and
:math:`\tilde\Delta = (\Delta - \texttt{delta\_center}) / \texttt{delta\_scale}` (spec
constants). Which levels and terms exist, and every prior, come from the spec; random
effects are non-centred when their ``Prior`` says ``centered = false``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior

from kbayes.config import TrialConfig
from kbayes.data import TrialData, infusion_profile, session_change
from kbayes.errors import DataError, SpecError
from kbayes.index_dims import CONDITION, TIME, at_levels, time_label
from kbayes.marginal import (
    LatentLayout,
    Quadratic,
    SessionQuadratic,
    integrated_mrs_logp,
    mrs_offset_stats,
    scale_mixture_weights,
    segment_sum,
)
from kbayes.spec import ModelSpec
from kbayes.terms import FACTORS, INTERCEPTS


@dataclass(frozen=True)
class ModelInputs:
    """Everything a model needs from one data set.

    ``data`` holds the ``pm.Data`` values (what changes between data sets of one shape);
    ``shape`` (dim sizes and array shapes) is the key under which a compiled model is reused.
    """

    coords: dict[str, list]
    data: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple:
        dims = tuple((k, len(v)) for k, v in sorted(self.coords.items()))
        arrays = tuple((k, v.shape) for k, v in sorted(self.data.items()))
        return dims + arrays


def model_inputs(spec: ModelSpec, data: TrialData, dglx: np.ndarray | None = None) -> ModelInputs:
    """Arrays and coords for ``spec`` from ``data``.

    ``dglx`` replaces the observed per-session glutamate change (ratio units), e.g. with a
    first-stage posterior mean in the two-stage model.
    """
    participants, sessions, mrs, config = data.participants, data.sessions, data.mrs, data.config
    ids = participants["participant"].tolist()
    index = {p: k for k, p in enumerate(ids)}
    male = dict(zip(participants["participant"], participants["sex"] == config.sexes[1],
                    strict=True))  # fmt: skip
    sp, sq = sessions["participant"].to_numpy(), sessions["period"].to_numpy()
    s_index = {pq: k for k, pq in enumerate(zip(sp, sq, strict=True))}
    mp, mq = mrs["participant"].to_numpy(), mrs["period"].to_numpy()
    coords, arrays = coded_arrays(
        spec,
        config,
        ids=ids,
        session_participant=np.array([index[p] for p in sp], dtype=np.int64),
        period=sq,
        condition=condition_index(config, sessions["condition"]),
        male=np.array([male[p] for p in sp], dtype=bool),
        madrs_baseline=sessions["madrs_baseline"].to_numpy(float),
        madrs_day1=sessions["madrs_day1"].to_numpy(float),
        mrs_session=np.array([s_index[pq] for pq in zip(mp, mq, strict=True)], np.int64),
        block=mrs["block"].to_numpy(),
        time_min=mrs["time_min"].to_numpy(float),
        glx_ratio=mrs["glx_ratio"].to_numpy(float),
        crlb=mrs["crlb"].to_numpy(float),
        dglx=dglx,
        covariates=covariate_values(spec, data),
        ratings=_ratings(spec, data, s_index),
    )
    if "items" in spec.levels:
        coords |= _item_arrays(config, sessions, coords["session"], arrays)
    return ModelInputs(coords=coords, data=arrays)


def coded_arrays(
    spec: ModelSpec,
    config: TrialConfig,
    *,
    ids: list[str],
    session_participant: np.ndarray,
    period: np.ndarray,
    condition: np.ndarray,
    male: np.ndarray,
    madrs_baseline: np.ndarray,
    madrs_day1: np.ndarray,
    mrs_session: np.ndarray,
    block: np.ndarray,
    time_min: np.ndarray,
    glx_ratio: np.ndarray,
    crlb: np.ndarray,
    dglx: np.ndarray | None = None,
    covariates: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ratings: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, list], dict[str, np.ndarray]]:
    """Coords and ``pm.Data`` arrays of ``spec`` (not the item level) from per-session
    arrays (participant index, period, condition index into ``config.conditions``, male
    flag, MADRS totals) and
    per-block arrays (session index, block number, time in min, Glx/tNAA ratio, CRLB in %).
    ``covariates`` holds, per covariate of the spec, its values per session and over the
    rows of its own table (:func:`covariate_values`). A trajectory's ``ratings`` are (session
    index, time in h, score) per rating (default: the day-1 scores, at 24 h). The coding of
    every covariate lives here: validated tables and power's simulated arrays both come
    through it."""
    check_units(spec, config)
    if spec.for_trial(config) is not spec:
        times = f", rated at {list(spec.times_h)} h" if spec.times_h else ""
        raise SpecError(
            f"spec {spec.name!r} is for a {spec.design} trial of "
            f"{len(spec.actives) + 1 if spec.actives else 2} conditions{times} and this one "
            f"is a {config.design} one of {len(config.conditions)} conditions: use "
            "spec.for_trial(config) (kb.fit, kb.power and kb.calibrate do)"
        )
    labels = [f"{ids[i]}/{q}" for i, q in zip(session_participant, period, strict=True)]
    coords: dict[str, list] = {"participant": list(ids), "session": labels}
    p = np.asarray(period, float)
    arrays: dict[str, np.ndarray] = {
        "session_participant": session_participant,
        "c": condition_coding(spec, condition),
        "m": np.where(male, 0.5, -0.5),
        "p": p - (1 + config.periods) / 2,  # centred on the design's middle period
    }
    if spec.actives:
        coords[CONDITION] = list(spec.actives)
    for name, how in covariate_coding(spec, covariates or {}).items():
        arrays[COVARIATE_PREFIX + name] = coded_covariate(how, covariates[name][0])
        if "levels" in how:
            coords[name] = list(spec.categorical[name])
    if {"u", "e"} & set(spec.integrate):  # the latent vector: one delta slot per period
        periods = np.unique(period)
        coords["period"] = [str(q) for q in periods]
        arrays["session_period"] = np.searchsorted(periods, period).astype(np.int64)
    g = infusion_profile(time_min, spec.profile, config.infusion_min)
    if "mrs" in spec.levels:
        coords["mrs_obs"] = [f"{labels[k]}/{b}" for k, b in zip(mrs_session, block, strict=True)]
        unreported = np.isnan(crlb)
        if spec.measurement_error and unreported.any():
            shown = [coords["mrs_obs"][k] for k in np.flatnonzero(unreported)[:5]]
            raise DataError(
                f"table 'mrs', column 'crlb': {unreported.sum()} blocks have no CRLB ({shown}), "
                f"but spec {spec.name!r} uses each block's (measurement_error = true); give "
                "read_osprey(..., crlb=...) the SD in percent, or fit a spec that extends it "
                "with measurement_error = false"
            )
        arrays |= {"mrs_session": mrs_session, "g": g, "glx_observed": glx_ratio,
                   "glx_se": np.where(unreported, 0.0, crlb) / 100 * glx_ratio}  # fmt: skip
    if "improvement" in spec.levels and spec.outcome == "trajectory":  # a rating per time
        coords, arrays = _trajectory_arrays(spec, coords, arrays, labels, madrs_baseline,
                                            madrs_day1, ratings)  # fmt: skip
        arrays["baseline_c"] = madrs_baseline - spec.constants["baseline_center"]
    elif "improvement" in spec.levels:  # one rating per session with a day-1 score
        rated = np.flatnonzero(~np.isnan(np.asarray(madrs_day1, float)))
        coords["rating"] = [labels[k] for k in rated]
        arrays["rating_session"] = rated.astype(np.int64)
        arrays["improvement_observed"] = (madrs_baseline - madrs_day1)[rated]
        arrays["baseline_c"] = madrs_baseline - spec.constants["baseline_center"]
        if spec.delta != "latent":
            obs = session_change(mrs_session, g, glx_ratio, len(labels)) if dglx is None else dglx
            obs = np.asarray(obs, float)
            if np.isnan(obs).any():
                bad = [labels[k] for k in np.flatnonzero(np.isnan(obs))]
                raise DataError(
                    f"table 'mrs': sessions {bad[:5]} ({len(bad)} in all) have no fMRS blocks both "
                    f"before and during the infusion, so the '{spec.name}' model has no observed "
                    "glutamate change for them; use the joint model, which handles them"
                )
            arrays["dglx_obs"] = obs
    return coords, arrays


def _ratings(spec: ModelSpec, data: TrialData, s_index: Mapping) -> tuple | None:
    """A trajectory's ratings from the ``ratings`` table: (session index, time in h, score)
    per row; None without that table or for another outcome."""
    table = data.ratings
    if spec.outcome != "trajectory" or table is None:
        return None
    keys = zip(table["participant"], table["period"], strict=True)
    session = np.array([s_index[k] for k in keys], dtype=np.int64)
    return session, table["time_h"].to_numpy(float), table["score"].to_numpy(float)


def _trajectory_arrays(spec, coords, arrays, labels, baseline, day1, ratings):
    """Coords and arrays of a trajectory's ratings: ``time`` coords (the spec's rating
    times), per rating its session, time index and improvement (baseline - score). Without
    ``ratings``, the day-1 scores at 24 h."""
    hours = np.asarray(spec.times_h)
    if ratings is None:
        if 24.0 not in hours:
            raise DataError(
                f"spec {spec.name!r} models ratings at {list(spec.times_h)} h and the trial "
                "has no 'ratings' table: give one (TrialData(..., ratings=...)), or rate at "
                "24 h (TrialConfig.rating_times_h) to use the sessions' madrs_day1"
            )
        rated = np.flatnonzero(~np.isnan(np.asarray(day1, float)))
        ratings = (rated, np.full(rated.size, 24.0), np.asarray(day1, float)[rated])
    session, time_h, score = (np.asarray(x) for x in ratings)
    k = np.searchsorted(hours, time_h)
    outside = (k >= hours.size) | (hours[np.minimum(k, hours.size - 1)] != time_h)
    if outside.any():
        raise DataError(
            f"table 'ratings', column 'time_h': {sorted(set(time_h[outside]))} are not "
            f"rating times of spec {spec.name!r} ({list(spec.times_h)} h)"
        )
    named = [f"{labels[s]}/{h:g}h" for s, h in zip(session, time_h, strict=True)]
    coords = coords | {TIME: [time_label(h) for h in hours], "rating": named}
    arrays = arrays | {
        "rating_session": session.astype(np.int64),
        "rating_time": k.astype(np.int64),
        "improvement_observed": np.asarray(baseline, float)[session] - score,
    }
    return coords, arrays


def condition_index(config: TrialConfig, conditions: pd.Series) -> np.ndarray:
    """Each session's condition as its index in ``config.conditions`` (0: the reference)."""
    return conditions.map({c: k for k, c in enumerate(config.conditions)}).to_numpy(np.int64)


def condition_coding(spec: ModelSpec, index: Any) -> np.ndarray:
    """The coded condition ``c`` of condition indices (0: the reference): 0/1 with two
    conditions; with several, one column per pretreatment (1 under it, else 0), the
    ``condition`` dim last."""
    index = np.asarray(index)
    if not spec.actives:
        return (index == 1).astype(float)
    return (index[..., None] == np.arange(1, len(spec.actives) + 1)).astype(float)


def coded_index(c: np.ndarray) -> np.ndarray:
    """Condition indices (0: the reference) of coded conditions ``c``
    (:func:`condition_coding`), e.g. a result's ``constant_data``."""
    c = np.asarray(c)
    if c.ndim == 1:
        return c.astype(np.int64)
    return np.where(c.any(axis=-1), c.argmax(axis=-1) + 1, 0)


def under_condition(
    spec: ModelSpec, params: Mapping[str, Any], k: int
) -> tuple[ModelSpec, dict[str, Any], float]:
    """What :func:`population_mean` needs for the mean under condition ``k`` (0: the
    reference): a two-condition spec, ``params`` with each pretreatment effect at condition
    ``k``'s value, and its code c (0 or 1). With two conditions: ``spec``, ``params``, k."""
    if not spec.actives:
        return spec, dict(params), float(k)
    effects = [c for c, part in spec.categorical_coefficients.items() if part == CONDITION]
    j = max(k - 1, 0)
    values = at_levels(
        {c: params[c] for c in effects if c in params},
        dict.fromkeys(effects, (CONDITION,)),
        {CONDITION: spec.actives},
        {CONDITION: j},
    )
    two = spec.for_trial(TrialConfig(design=spec.design))
    return two, dict(params) | values, float(k > 0)


def check_units(spec: ModelSpec, config: TrialConfig) -> None:
    """Refuse a trial whose metabolite or rating scale is not the one the spec's numbers
    (constants, priors, ROPEs) are in (its ``[units]``): they would be silently wrong."""
    wrong = {k: v for k, v in spec.units.items() if getattr(config, k) != v}
    if wrong:
        given = ", ".join(f"{k} {getattr(config, k)!r}" for k in wrong)
        meant = ", ".join(f"{k} = {v!r}" for k, v in wrong.items())
        numbers = ", ".join(f"{k} = {v:g}" for k, v in spec.constants.items())
        raise SpecError(
            f"spec {spec.name!r} has its constants ({numbers}), priors and ROPEs in the units "
            f"of [units] {meant}, but this trial's TrialConfig says {given}. Write a spec with "
            f'extends = "{spec.name}" whose [units] names yours and whose constants, priors '
            "and ROPEs are on your scale (models/README.md)"
        )


def covariate_values(spec: ModelSpec, data: TrialData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each covariate of ``spec``: its values per session and over its own table's rows
    (a ``participants`` column is a participant-level covariate, a ``sessions`` column a
    session-level one); numbers, or level names for a categorical covariate. A missing
    column or value, text for a numeric covariate or an undeclared level is a DataError."""
    out = {}
    p, s = data.participants, data.sessions
    for name in spec.covariates:
        table = "participants" if name in p else "sessions" if name in s else None
        if table is None:
            raise DataError(
                f"spec {spec.name!r}: its terms use the covariate {name!r}, which is not a "
                f"column of table 'participants' ({', '.join(p.columns)}) or 'sessions' "
                f"({', '.join(s.columns)}); map a column to it with columns={{...: {name!r}}}"
            )
        column = (p if table == "participants" else s)[name]
        where = f"table {table!r}, column {name!r} (a covariate of spec {spec.name!r})"
        if name in spec.categorical:
            values = column.astype("string")
            levels = spec.covariates[name]["levels"]
            bad = np.flatnonzero(~values.isin(levels).fillna(False).to_numpy(bool))
            problem = f"not one of the levels {levels} declared in [covariates.{name}]"
        else:
            values = pd.to_numeric(column, errors="coerce")
            if values.isna().all() and column.notna().any():
                found = ", ".join(map(repr, sorted(column.dropna().astype(str).unique())[:6]))
                raise DataError(
                    f"{where} holds text ({found}): declare it categorical in the spec, "
                    f'[covariates.{name}] levels = ["...", ...] (see models/README.md)'
                )
            bad = np.flatnonzero(values.isna().to_numpy())
            problem = "missing or not numbers (a covariate needs a number in every row)"
        if bad.size:
            shown = ", ".join(f"row {k}: {column.iloc[k]!r}" for k in bad[:5])
            raise DataError(f"{where}: {bad.size} of {len(column)} rows are {problem}: {shown}")
        if table == "participants":
            per_session = s["participant"].map(values.set_axis(p["participant"]))
        else:
            per_session = values
        kind = str if name in spec.categorical else float
        out[name] = (per_session.to_numpy(kind), values.to_numpy(kind))
    return out


def covariate_coding(
    spec: ModelSpec, values: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, dict[str, Any]]:
    """How each covariate is coded: a numeric one by ``center`` and ``scale`` (its
    ``[covariates.NAME]`` ``"mean"``: over its table's rows, ``"sd"``: their SD; default 0
    and 1, so a coefficient is per unit of the covariate as given); a categorical one by its
    ``levels``, ``reference`` and ``coding`` with the ``counts`` of each level in its table."""
    out: dict[str, dict[str, Any]] = {}
    for name, settings in spec.covariates.items():
        own = values[name][1]
        if name in spec.categorical:
            counts = {level: int((own == level).sum()) for level in settings["levels"]}
            out[name] = {**settings, "counts": counts}
            continue
        own = np.asarray(own, float)
        center, scale = settings.get("center", 0.0), settings.get("scale", 1.0)
        center = float(own.mean()) if center == "mean" else float(center)
        scale = float(own.std(ddof=1)) if scale == "sd" else float(scale)
        if not scale > 0:
            raise DataError(f'covariate {name!r} has SD 0: scale = "sd" cannot standardise it')
        out[name] = {"center": center, "scale": scale}
    return out


def coded_covariate(how: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
    """A covariate's values as the model sees them (``how`` from :func:`covariate_coding`):
    a numeric one (value - center) / scale; a categorical one as one column per level but
    the reference (:data:`~kbayes.terms.CODINGS`), shape (rows, levels - 1)."""
    if "levels" not in how:
        return (np.asarray(values, float) - how["center"]) / how["scale"]
    columns = [level for level in how["levels"] if level != how["reference"]]
    coded = (np.asarray(values)[:, None] == np.array(columns)[None, :]).astype(float)
    if how["coding"] == "sum":
        coded[np.asarray(values) == how["reference"]] = -1.0
    return coded


def _item_arrays(
    cfg: TrialConfig, s: pd.DataFrame, sessions: list[str], arrays: dict
) -> dict[str, list]:
    """Long-format item scores (session x visit x item, the scores given) into ``arrays``;
    returns coords."""
    if not set(cfg.item_columns("baseline") + cfg.item_columns("day1")) <= set(s):
        raise DataError(
            f"table 'sessions': the item-level model needs the item columns "
            f"{cfg.item_columns('baseline')[0]}..{cfg.item_columns('day1')[-1]}, which are absent"
        )
    scores = np.stack([s[cfg.item_columns(v)].to_numpy(float) for v in ("baseline", "day1")], 1)
    n_items = scores.shape[2]
    rated = ~np.isnan(scores.reshape(-1))  # a day-1 rating not made: its items are missing
    idx = np.indices(scores.shape).reshape(3, -1)[:, rated]
    arrays |= {
        "item_session": idx[0].astype(np.int64),
        "item_visit": idx[1].astype(float),
        "item_index": idx[2].astype(np.int64),
        "item_score": scores.reshape(-1)[rated].astype(np.int64),
    }
    names = [f"item{k}" for k in range(1, n_items + 1)]
    obs = [f"{sessions[a]}/{('baseline', 'day1')[b]}/{names[c]}" for a, b, c in idx.T]
    return {
        "item": names,
        "cutpoint": [f"{k - 1}|{k}" for k in range(1, cfg.item_max + 1)],
        "item_obs": obs,
    }


def _expected_total(item, cutpoints, shift):
    """Expected total score, sum over items of E[y] = sum_k P(y >= k), at latent ``shift``."""
    eta = item[:, None] - shift - cutpoints[None, :]
    return pm.math.sigmoid(eta).sum()


#: Prefix of a data covariate's coded array among the model's data (``age`` -> ``cov_age``).
COVARIATE_PREFIX = "cov_"


def factor_name(part: str) -> str:
    """The name of a term part's coded covariate among a model's data or ``factors``
    (:data:`~kbayes.terms.FACTORS`; a data covariate X as ``cov_X``)."""
    return FACTORS.get(part, COVARIATE_PREFIX + part)


def term_covariate(term: str, factors: Mapping[str, Any], categorical: Collection[str] = ()) -> Any:
    """A term's covariate: the product of its parts' coded covariates (``factors`` by
    :func:`factor_name`; ``condition:sex`` is c m). A ``categorical`` part's coded columns
    are the last axis (several pretreatments: ``c``); the other parts are broadcast along
    it."""
    parts = term.split(":")
    values = [factors[factor_name(part)] for part in parts]
    if any(part in categorical for part in parts):
        values = [
            v if part in categorical else _column(v) for part, v in zip(parts, values, strict=True)
        ]
    return functools.reduce(operator.mul, values)


def _column(x: Any) -> Any:
    """``x`` with a trailing axis of length 1 (numbers, numpy arrays, tensors)."""
    return x[..., None] if np.ndim(x) else x


def _covariates(d: Mapping[str, Any]) -> dict[str, Any]:
    """The coded data covariates (``cov_X``) among the model's data."""
    return {k: v for k, v in d.items() if k.startswith(COVARIATE_PREFIX)}


def linear_predictor(
    spec: ModelSpec, level: str, params: Mapping[str, Any], factors: Mapping[str, Any]
) -> Any:
    """Intercept + sum over the spec's terms at ``level`` of coefficient x covariate.

    ``params`` holds the intercept and coefficients (tensors, posterior draws or true
    values), ``factors`` the coded covariates (arrays, tensors or numbers).
    """
    out = params[INTERCEPTS[level]]
    for term in spec.terms.get(level, ()):
        out = out + term_effect(spec, level, term, params, factors)
    return out


def term_effect(
    spec: ModelSpec, level: str, term: str, params: Mapping[str, Any], factors: Mapping[str, Any]
) -> Any:
    """One term's part of the linear predictor: coefficient x covariate, summed over the
    coded levels of a categorical part (whose coded columns given as the number 0 are the
    covariate at its centre: the reference level, or the mean over levels under sum
    coding)."""
    coefficient = params[spec.coefficient(level, term)]
    categorical = [part for part in term.split(":") if part in spec.categorical]
    if not categorical:
        return coefficient * term_covariate(term, factors)
    if np.ndim(coded := factors[factor_name(categorical[0])]) == 0:
        if coded != 0:
            raise ValueError(f"{categorical[0]!r}: its coded columns are an array, or 0")
        return 0.0
    return (coefficient * term_covariate(term, factors, spec.categorical)).sum(axis=-1)


def standardised_change(spec: ModelSpec, delta: Any) -> Any:
    """The improvement level's covariate dtilde = (delta - delta_center) / delta_scale."""
    return (delta - spec.constants["delta_center"]) / spec.constants["delta_scale"]


def population_mean(
    spec: ModelSpec, level: str, params: Mapping[str, Any], factors: Mapping[str, Any]
) -> Any:
    """The mean of ``level`` with participant and session effects at zero; the coded
    covariates missing from ``factors`` are 0 (average sex, mid period, centred baseline,
    data covariates at their centre).

    ``"mrs"``: alpha0 + delta g (``factors`` holds ``g``); ``"glutamate"``: delta;
    ``"improvement"``: the improvement at standardised change ``dtilde``.
    """
    names = [*FACTORS.values(), *(COVARIATE_PREFIX + c for c in spec.covariates)]
    at = dict.fromkeys(names, 0.0) | dict(factors)
    if level == "mrs":
        return params["alpha0"] + linear_predictor(spec, "glutamate", params, at) * at["g"]
    return linear_predictor(spec, level, params, at)


def _linear(spec: ModelSpec, level: str, factors: Mapping[str, Any]) -> pt.TensorVariable:
    """The linear predictor of ``level`` with its intercept and coefficients created from
    the spec's priors (in that order)."""
    names = [INTERCEPTS[level], *(spec.coefficient(level, t) for t in spec.terms.get(level, ()))]
    params = {name: spec.priors[name].create_variable(name) for name in names}
    return linear_predictor(spec, level, params, factors)


def participant_effects(spec: ModelSpec) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Correlated participant effects (u on the glutamate change, v on improvement).

    Non-centred: u = sd_u z1, v = sd_v (rho z1 + sqrt(1 - rho^2) z2), with the SDs from the
    ``sigma`` of the spec's ``u`` and ``v`` priors and rho from ``uv_rho``.
    """
    z = pm.Normal("uv_offset", mu=0, sigma=1, dims=("participant", "uv"))
    rho = spec.priors["uv_rho"].create_variable("uv_rho")
    sd_u = spec.priors["u"].parameters["sigma"].create_variable("u_sigma")
    sd_v = spec.priors["v"].parameters["sigma"].create_variable("v_sigma")
    u = pm.Deterministic("u", sd_u * z[:, 0], dims="participant")
    v = pm.Deterministic(
        "v", sd_v * (rho * z[:, 0] + pt.sqrt(1 - rho**2) * z[:, 1]), dims="participant"
    )
    return u, v


def build_model(spec: ModelSpec, inputs: ModelInputs, *, integrated: bool = True) -> pm.Model:
    """The PyMC model of ``spec`` on ``inputs`` (nothing samples here).

    With ``integrated`` (what NUTS samples) the random effects of ``spec.integrate`` are
    integrated out of the likelihood exactly (one Potential, ``integrated``; docs/models.md)
    and absent from the model; :func:`kbayes.marginal.draw_integrated` draws them afterwards.
    ``integrated=False`` is the full generative model (forward sampling, pointwise
    log-likelihood, predictive checks).
    """
    integrate = spec.integrate if integrated else ()
    coords = inputs.coords | ({"uv": ["u", "v"]} if spec.correlated_effects else {})
    with pm.Model(coords=coords) as model:
        d = {
            name: pm.Data(
                name,
                value,
                dims=_data_dims(spec, name),
            )
            for name, value in inputs.data.items()
        }
        pi = d["session_participant"]
        c, m, p = d["c"], d["m"], d["p"]
        effects = _participant_effects(spec, integrate)
        latent = LatentLayout.of(integrate, len(inputs.coords.get("period", ())))
        delta = None  # the session change, without its integrated parts
        if "glutamate" in spec.levels:
            delta = _linear(spec, "glutamate", {"c": c, "m": m, "p": p, **_covariates(d)})
            delta = delta + effects["u"][pi] + effects["e"]
            if not latent.delta:
                delta = pm.Deterministic("delta", delta, dims="session")
        logp, quadratic = 0.0, Quadratic.zero(latent, pm.modelcontext(None).dim_lengths)
        if "mrs" in spec.levels:
            mrs = _mrs_level(spec, d, pi, delta, integrate)
            if mrs is not None:
                logp = logp + mrs[0]
                quadratic = quadratic + mrs[1].to_latent(latent, d)
        if "improvement" in spec.levels:
            imp = _improvement_level(spec, d, delta, effects["v"], latent)
            if imp is not None:
                logp, quadratic = logp + imp[0], quadratic + imp[1]
        if latent.size:
            prior_cov = latent.prior_covariance(effects["sd"])
            latent_logp, mean, chol = quadratic.integrate(prior_cov)
            logp = logp + latent_logp
            known = pt.zeros(len(inputs.coords["session"])) if delta is None else delta
            model.add_named_variable(pt.as_tensor(known).copy(name="delta_known"))
            model.add_named_variable(mean.copy(name="latent_mean"))
            model.add_named_variable(chol.copy(name="latent_chol"))
        if integrate:
            pm.Potential("integrated", logp)
        if "items" in spec.levels:
            _items_level(spec, d, c, m, p, pi)
    return model


def _participant_effects(spec: ModelSpec, integrate: tuple[str, ...]) -> dict[str, Any]:
    """The participant and session effects u, e, v: the sampled ones as variables, the
    integrated ones as their prior mean (their SDs, and rho, are created under ``sd``)."""
    out: dict[str, Any] = {"sd": {}}
    if spec.correlated_effects and not {"u", "v"} <= set(integrate):
        out["u"], out["v"] = participant_effects(spec)
    for name in ("u", "e", "v"):
        if name in out:
            continue
        if name not in spec.priors:  # not in this model (its design cannot separate it)
            out[name] = _broadcastable(0.0, name)
            continue
        prior = spec.priors[name]
        if name in integrate:
            sd = prior.parameters["sigma"]
            out["sd"][name] = sd.create_variable(f"{name}_sigma") if isinstance(sd, Prior) else sd
            out[name] = _broadcastable(prior.parameters["mu"], name)
        else:
            out[name] = prior.create_variable(name)
    if spec.correlated_effects and {"u", "v"} <= set(integrate):
        out["sd"]["rho"] = spec.priors["uv_rho"].create_variable("uv_rho")
    return out


def _broadcastable(mu: float, name: str):
    """The prior mean of an integrated effect, as a vector over its dim."""
    dim = "session" if name == "e" else "participant"
    return pt.full(pm.modelcontext(None).dim_lengths[dim], float(mu))


def _mrs_level(spec: ModelSpec, d: dict, pi, delta, integrate: tuple[str, ...]):
    """Level 1: fMRS blocks around alpha0 + a_i + a_is + delta_is g(t). With offsets to
    integrate out, returns the log-likelihood given ``delta`` and its quadratic in the
    integrated part of delta (:class:`SessionQuadratic`); else adds the observed ``glx``."""
    alpha0 = spec.priors["alpha0"].create_variable("alpha0")
    sigma_mrs = spec.priors["sigma_mrs"].create_variable("sigma_mrs")
    var = sigma_mrs**2 + (d["glx_se"] ** 2 if spec.measurement_error else pt.zeros_like(d["g"]))
    s_idx = d["mrs_session"]
    mu = alpha0 + delta[s_idx] * d["g"]
    sd2 = {}
    for name, index in (("a", pi[s_idx]), ("a_session", s_idx)):
        prior = spec.priors.get(name)
        if prior is None:  # not in this model (its design cannot separate it)
            sd2[name] = 0.0
        elif name in integrate:
            sd = prior.parameters["sigma"]
            sd2[name] = (sd.create_variable(f"{name}_sigma") if isinstance(sd, Prior) else sd) ** 2
            mu = mu + prior.parameters["mu"]
        else:
            sd2[name] = 0.0
            mu = mu + prior.create_variable(name)[index]
    if not integrate:
        pm.Normal("glx", mu=mu, sigma=pt.sqrt(var), observed=d["glx_observed"], dims="mrs_obs")
        return None
    stats = mrs_offset_stats(pt, d["glx_observed"] - mu, var, s_idx, pi, segment_sum, d["g"])
    n_participant = pm.modelcontext(None).dim_lengths["participant"]
    logp = integrated_mrs_logp(stats, var, sd2["a"], sd2["a_session"], n_participant)
    return logp, SessionQuadratic.of(stats, sd2["a"], sd2["a_session"], n_participant)


def _improvement_level(spec: ModelSpec, d: dict, delta, v, layout: LatentLayout):
    """Level 3: next-day improvement. Returns its log-likelihood given the sampled
    quantities and its quadratic in the latent vector when part of its mean is integrated
    out (Student-t as a normal scale mixture, :func:`_scale_mixture_weights`);
    else adds the observed ``improvement``."""
    c, m, p, pi = d["c"], d["m"], d["p"], d["session_participant"]
    source = delta if spec.delta == "latent" else d["dglx_obs"]
    scale = spec.constants["delta_scale"]
    dtilde = standardised_change(spec, source)
    factors = {"c": c, "m": m, "p": p, "dtilde": dtilde, "baseline_c": d["baseline_c"],
               **_covariates(d)}  # fmt: skip
    # observed per rating (a session with a day-1 score, or a session and time of a
    # trajectory, whose coefficients have a time axis): a missing one is integrated out
    rs = d["rating_session"]
    if spec.outcome == "trajectory":
        factors = {k: _time_axis(x) for k, x in factors.items()}
        rt = d["rating_time"]
        per_rating = lambda x: (x + pt.zeros((m.shape[0], len(spec.times_h))))[rs, rt]  # noqa: E731
    else:
        per_rating = lambda x: x[rs]  # noqa: E731
    mu = per_rating(_linear(spec, "improvement", factors)) + v[pi][rs]
    sigma_y = spec.priors["sigma_y"].create_variable("sigma_y")
    nu = spec.priors["nu"].create_variable("nu") if spec.likelihood == "student_t" else None
    through_delta = layout.delta and spec.delta == "latent"
    if not (through_delta or layout.v is not None):
        obs = {"observed": d["improvement_observed"], "dims": "rating"}
        if nu is not None:
            pm.StudentT("improvement", nu=nu, mu=mu, sigma=sigma_y, **obs)
        else:
            pm.Normal("improvement", mu=mu, sigma=sigma_y, **obs)
        return None
    weight = scale_mixture_weights(nu) if nu is not None else 1.0
    resid = d["improvement_observed"] - mu
    omega = weight / sigma_y**2 + pt.zeros_like(resid)
    n, k = pm.modelcontext(None).dim_lengths["participant"], layout.size
    row = [pt.zeros_like(m) for _ in range(k)]  # d mean / d x, per session
    if through_delta:
        model = pm.modelcontext(None)
        slope = 0.0  # of the mean in dtilde: the terms with a dglx part
        for term in spec.terms.get("improvement", ()):
            if "dglx" in term.split(":"):
                one = factors | {"dtilde": 1.0}
                slope = slope + term_effect(spec, "improvement", term, model, one)
        rows = layout.delta_map()[:, :, None] * np.ones(1)  # (slot, K, 1)
        in_slot = pt.as_tensor(rows)[d["session_period"], :, 0][rs]  # (rating, K)
        row = [row[i][rs] + per_rating(slope) / scale * in_slot[:, i] for i in range(k)]
    else:
        row = [r[rs] for r in row]
    if layout.v is not None:
        row[layout.v] = pt.ones_like(rs, dtype=float)
    pr = pi[rs]  # per rating
    H = [[segment_sum(omega * row[i] * row[j], pr, n) for j in range(k)] for i in range(k)]
    h = [segment_sum(omega * resid * row[i], pr, n) for i in range(k)]
    logp = (-0.5 * omega * resid**2 + 0.5 * pt.log(omega / (2 * np.pi))).sum()
    return logp, Quadratic(H, h)


def _time_axis(x: Any) -> Any:
    """A per-session factor with an axis for the rating time after the session's (numbers
    as they are): (session,) -> (session, 1); (session, L) -> (session, 1, L)."""
    if np.ndim(x) == 0:
        return x
    return x[:, None] if x.ndim == 1 else x[:, None, :]


def _items_level(spec: ModelSpec, d: dict, c, m, p, pi) -> None:
    r"""Cumulative-logit model of item scores at baseline and day 1.

    .. math:: \Pr(y_{isjk} \le k) = \operatorname{logit}^{-1}(\kappa_k - \eta_{isj}),\quad
        \eta = \iota_j + w_i + w_{is} - [\text{day 1}]\,(\theta_0 + \theta_N c + \dots + r_i)

    Improvement is reported on the total-score scale for a participant of average severity:
    expected baseline total minus expected day-1 total, per condition and sex.
    """
    shift = _linear(spec, "items", {"c": c, "m": m, "p": p, **_covariates(d)})
    r = spec.priors["r"].create_variable("r")
    w = spec.priors["w"].create_variable("w")
    sessions = pm.modelcontext(None).dim_lengths["session"]
    w_session = (spec.priors["w_session"].create_variable("w_session")
                 if "w_session" in spec.priors else pt.zeros(sessions))  # fmt: skip
    item = spec.priors["item_loc"].create_variable("item_loc")
    cut = spec.priors["cutpoints"].parameters
    cutpoints = pm.Normal(
        "cutpoints",
        mu=np.asarray(cut["mu"], float),
        sigma=cut["sigma"],
        dims="cutpoint",
        transform=pm.distributions.transforms.ordered,
    )
    s_idx = d["item_session"]
    eta = (
        item[d["item_index"]]
        + w[pi[s_idx]]
        + w_session[s_idx]
        - d["item_visit"] * (shift + r[pi])[s_idx]
    )
    pm.OrderedLogistic(  # compute_p=False: no (item_obs x category) Deterministic per draw
        "items",
        eta=eta,
        cutpoints=cutpoints,
        compute_p=False,
        observed=d["item_score"],
        dims="item_obs",
    )
    base = _expected_total(item, cutpoints, 0.0)
    model = pm.modelcontext(None)
    for cond, cv in (("reference", 0.0), ("active", 1.0)):
        for sex, mv in (("female", -0.5), ("male", 0.5)):
            day1_shift = population_mean(spec, "items", model, {"c": cv, "m": mv})
            pm.Deterministic(
                f"imp_{cond}_{sex}", base - _expected_total(item, cutpoints, day1_shift)
            )


def _data_dims(spec: ModelSpec, name: str) -> str | tuple[str, ...] | None:
    """The dims of the model's data array ``name``."""
    covariate = name.removeprefix(COVARIATE_PREFIX)
    if name.startswith(COVARIATE_PREFIX) and covariate in spec.covariates:
        return ("session", covariate) if covariate in spec.categorical else "session"
    if name == "c" and spec.actives:
        return ("session", CONDITION)
    return _DIMS.get(name)


_DIMS = {
    "session_participant": "session",
    "c": "session",
    "m": "session",
    "p": "session",
    "improvement_observed": "rating",
    "rating_session": "rating",
    "rating_time": "rating",
    "baseline_c": "session",
    "dglx_obs": "session",
    "session_period": "session",
    "mrs_session": "mrs_obs",
    "g": "mrs_obs",
    "glx_observed": "mrs_obs",
    "glx_se": "mrs_obs",
    "item_session": "item_obs",
    "item_visit": "item_obs",
    "item_index": "item_obs",
    "item_score": "item_obs",
}

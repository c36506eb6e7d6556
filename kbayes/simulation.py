r"""Simulate crossover trials from the joint model, and the bundled example trial.

The generative model is that of DESIGN.md ("The statistical model"). Participant *i*,
period *s* in {1, 2}, fMRS block *b* at time :math:`t_b` (minutes from infusion start);
:math:`c_{is}` = 1 under the pretreatment, 0 under the reference; :math:`m_i` = -1/2
(``config.sexes[0]``) or +1/2; :math:`p_{is}` = period - 1.5; :math:`g` the infusion profile.

.. math::

    y_{isb} &= \alpha_0 + a_i + a_{is} + \Delta_{is} g(t_b) + \varepsilon_{isb},\quad
    \varepsilon_{isb} \sim N\bigl(0, \sqrt{\sigma_{mrs}^2 + (\mathrm{crlb}_{isb}/100\cdot
    \mu_{isb})^2}\bigr)\\
    \Delta_{is} &= \beta_0 + \beta_N c + \beta_M m + \beta_{NM} c m + \beta_P p + u_i + e_{is}\\
    \mathrm{imp}_{is} &= \gamma_0 + \gamma_N c + \gamma_M m + \gamma_{NM} c m
    + \gamma_D \tilde\Delta + \gamma_{DN} \tilde\Delta c + \gamma_B (B_{is} - 30)
    + \gamma_P p + v_i + \sigma_y t_\nu

with :math:`\tilde\Delta = (\Delta - 0.05)/0.05`, :math:`\mu_{isb}` the noise-free ratio,
``crlb`` ~ LogNormal per block, (u, v) bivariate normal with correlation ``rho_uv``.
Observed scores depart slightly from this latent model: the baseline B is rounded and
clipped to 0..score_max, and the day-1 score is ``round(B - imp)`` clipped the same way
(with the defaults fewer than 1 % of day-1 scores are clipped).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kbayes.build import (
    COVARIATE_PREFIX,
    ModelInputs,
    coded_arrays,
    condition_coding,
    factor_name,
    linear_predictor,
    model_inputs,
    standardised_change,
    term_covariate,
)
from kbayes.config import TrialConfig
from kbayes.data import TABLES, TrialData, infusion_profile
from kbayes.design import Design, SimulatedTruth, Truth
from kbayes.index_dims import at_levels
from kbayes.replicates import child
from kbayes.spec import ModelSpec, load_spec
from kbayes.terms import LEVEL_FACTORS, coefficient_term

#: Spec whose centring constants (``delta_center``, ``delta_scale``, ``baseline_center``)
#: :func:`simulate` uses: the model it simulates from.
SIMULATED_SPEC = "joint"
#: Spec of a trial rated at several times (``TrialConfig.rating_times_h``) and the rating
#: times of the day-1 model.
TRAJECTORY_SPEC = "trajectory"
DAY1 = (24.0,)
#: Dirichlet concentration per item of participants' item propensities (assumption).
ITEM_CONCENTRATION = 5.0
#: Seed of the bundled example. 2025 (the publication year) already gives two participants
#: with period 1 only, so the example shows incomplete crossovers (registry: 27 enrolled,
#: 26 in the paper) without searching for a seed.
EXAMPLE_SEED = 2025
EXAMPLE_DIR = "example"
#: Design of the bundled example: the defaults, with item scores.
EXAMPLE_DESIGN = Design(items=True)


def split_items(
    totals: np.ndarray, propensity: np.ndarray, item_max: int, rng: np.random.Generator
) -> np.ndarray:
    """Split total scores into item scores: a weighted urn drawn without replacement.

    Item k holds ``item_max`` balls of weight ``propensity[r, k]``; a row's item scores
    count the items of ``totals[r]`` balls drawn one at a time without replacement, each draw
    picking item k with probability proportional to its propensity times its remaining room
    (``item_max - score_k``). The draws are made at once by ranking exponential keys
    E / weight (Efraimidis & Spirakis 2006, doi:10.1016/j.ipl.2005.11.003). Scores lie in
    0..item_max, sum exactly to the total (at most n_items * item_max) and, unlike a
    multinomial truncated at item_max, do not pile up at the maximum.

    Returns
    -------
    numpy.ndarray of int, shape ``propensity.shape``
    """
    n_rows, n_items = propensity.shape
    keys = rng.exponential(size=(n_rows, n_items, item_max)) / propensity[..., None]
    rank = keys.reshape(n_rows, -1).argsort(axis=1).argsort(axis=1).reshape(keys.shape)
    return (rank < np.asarray(totals)[:, None, None]).sum(axis=2)


@functools.cache
def _simulated_spec(
    conditions: tuple[str, ...] = ("reference", "active"), times: tuple[float, ...] = DAY1
) -> ModelSpec:
    """The simulated model for a trial of these conditions (several: one effect each) and
    rating times (several: the trajectory spec, its improvement coefficients per time)."""
    name = SIMULATED_SPEC if times == DAY1 else TRAJECTORY_SPEC
    return load_spec(name).for_trial(TrialConfig(conditions=conditions, rating_times_h=times))


def _at_times(spec: ModelSpec, factors: dict[str, Any]) -> dict[str, Any]:
    """Factors on the participant x period grid with an axis for the rating time (before a
    categorical factor's coded columns), for a trajectory's coefficients (time first)."""
    categorical = {factor_name(part) for part in spec.categorical}
    return {k: np.asarray(x)[..., None, :] if k in categorical else np.asarray(x)[..., None]
            for k, x in factors.items()}  # fmt: skip


def crossover_sequences(k: int) -> np.ndarray:
    """Williams sequences of ``k`` conditions: rows are sequences, columns periods, entries
    condition indices (0: the reference). Each condition is once in every period and
    follows every other equally often: ``k`` sequences for an even ``k``, ``2 k`` (a
    square and its mirror image) for an odd one (Williams 1949, doi:10.1071/CH9490149).
    With two conditions: AB and BA."""
    first = [0] + [(j + 1) // 2 if j % 2 else k - j // 2 for j in range(1, k)]
    square = (np.array(first)[None, :] + np.arange(k)[:, None]) % k
    return square if k % 2 == 0 else np.vstack([square, square[:, ::-1]])


def truth_values(spec: ModelSpec, truth: Truth) -> dict[str, Any]:
    """``truth.params`` as ``spec``'s model uses them: each coefficient with index dims
    (several pretreatments, a trajectory's times; :attr:`~kbayes.spec.ModelSpec.index_dims`)
    as an array over its dims' levels, from ``{level: value}`` fields (nested for two dims)
    or one number for all."""
    params, dims = truth.params, spec.index_dims
    out = dict(params)
    for name, own in spec.coefficient_dims.items():
        if name not in params:
            continue
        values = np.empty([len(dims[d]) for d in own])
        for at in np.ndindex(*values.shape):
            values[at] = at_levels(params, {name: own}, dims, dict(zip(own, at, strict=True)))[name]
        out[name] = values
    return out


def _draw(design: Design, truth: Truth, rng: np.random.Generator) -> tuple[list, pd.DataFrame]:
    """The three tables and the latent table; each part of the draw has its own stream."""
    return _tables(design, _draw_arrays(design, truth, rng))


def _draw_arrays(design: Design, truth: Truth, rng: np.random.Generator) -> dict[str, Any]:
    """One trial on the full participant x period (x block) grid, with the masks ``seen``
    (n, periods) and ``block_seen`` (n, periods, blocks) of what was observed; values rounded as the
    tables store them."""
    d, cfg = design, design.config
    n, t, periods = d.n, np.asarray(d.block_times), cfg.periods
    r_design, r_glu, r_mrs, r_madrs, r_items, r_cov = rng.spawn(6)
    # design: sex, sequence (Williams) or arm (parallel: balanced arms, period 1 only),
    # dropout (after period 1), missing blocks
    female = r_design.permutation(np.arange(n) < int(np.floor(n * d.female_fraction + 0.5)))
    m = np.where(female, -0.5, 0.5)[:, None]
    k = len(cfg.conditions)
    if cfg.design == "parallel":
        condition = r_design.permutation((np.arange(n) + r_design.integers(k)) % k)[:, None]
        p = np.zeros(1)
    else:
        if periods > k:
            raise ValueError(f"simulate: a crossover of {k} conditions has at most {k} periods")
        sequences = crossover_sequences(k)
        s = len(sequences)
        which = r_design.permutation((np.arange(n) + r_design.integers(s)) % s)
        condition = sequences[which, :periods]
        p = np.arange(1, periods + 1) - (1 + periods) / 2
    stays = r_design.random(n) >= d.dropout
    seen = np.column_stack([np.ones(n, bool), *[stays] * (periods - 1)])
    block_seen = r_design.random((n, periods, t.size)) >= d.block_missing
    # glutamate change and participant effects
    conditions = cfg.conditions if k > 2 else ("reference", "active")
    spec = _simulated_spec(conditions)
    th, c = truth_values(spec, truth), condition_coding(spec, condition)
    z = r_glu.standard_normal((2, n))
    u = th["u_sigma"] * z[0]
    v = th["v_sigma"] * (th["uv_rho"] * z[0] + np.sqrt(1 - th["uv_rho"] ** 2) * z[1])
    covariates = {name: _draw_covariate(how, n, r_cov)
                  for name, how in sorted(d.covariates.items())}  # fmt: skip
    factors = {"c": c, "m": m, "p": p}
    for name, x in covariates.items():  # numeric: about the design mean; categorical: levels
        how = d.covariates[name]
        factors[COVARIATE_PREFIX + name] = (x if isinstance(how, dict) else x - how[0])[:, None]
    delta = (
        linear_predictor(spec, "glutamate", th, factors)
        + covariate_effects(design, truth, "glutamate", factors)
        + u[:, None]
        + r_glu.normal(0, th["e_sigma"], (n, periods))
    )
    # fMRS blocks
    level = r_mrs.normal(0, th["a_sigma"], (n, 1)) + r_mrs.normal(
        0, th["a_session_sigma"], (n, periods)
    )
    g = infusion_profile(t, d.shape, cfg.infusion_min)
    mu = th["alpha0"] + level[..., None] + delta[..., None] * g
    crlb = np.exp(r_mrs.normal(np.log(d.crlb_median), d.crlb_sd_log, mu.shape))
    sd = np.sqrt(d.sigma_mrs**2 + (crlb / 100 * mu) ** 2)
    y = mu + sd * r_mrs.standard_normal(mu.shape)
    # rating-scale scores
    person = r_madrs.normal(d.baseline_mean, d.baseline_sd, (n, 1))
    base = np.rint(person + r_madrs.normal(0, d.baseline_session_sd, (n, periods)))
    base = base.clip(0, cfg.score_max)
    times = cfg.rating_times_h
    nu, shape = th["nu"], (n, periods) if times == DAY1 else (n, periods, len(times))
    tail = r_madrs.standard_t(nu, shape) if np.isfinite(nu) else r_madrs.normal(size=shape)
    factors |= {"dtilde": standardised_change(spec, delta),
                "baseline_c": base - spec.constants["baseline_center"]}  # fmt: skip
    scores = None
    if times == DAY1:
        imp = (
            linear_predictor(spec, "improvement", th, factors)
            + covariate_effects(design, truth, "improvement", factors)
            + v[:, None]
            + th["sigma_y"] * tail
        )
        day1 = np.rint(base - imp).clip(0, cfg.score_max)
        if d.rating_missing > 0:  # drawn last: a design without missing ratings draws as before
            day1 = np.where(r_madrs.random(shape) < d.rating_missing, np.nan, day1)
    else:  # the improvement at each rating time: the trajectory spec's coefficients
        timed = _simulated_spec(conditions, times)
        mean = linear_predictor(timed, "improvement", truth_values(timed, truth),
                                _at_times(timed, factors))  # fmt: skip
        extra = np.asarray(covariate_effects(design, truth, "improvement", factors))
        imp = mean + extra[..., None] + v[:, None, None] + th["sigma_y"] * tail
        scores = np.rint(base[..., None] - imp).clip(0, cfg.score_max)
        if d.rating_missing > 0:
            scores = np.where(r_madrs.random(shape) < d.rating_missing, np.nan, scores)
        at24 = times.index(24.0) if 24.0 in times else None
        day1 = scores[..., at24] if at24 is not None else np.full(base.shape, np.nan)
        imp = imp[..., at24 or 0]  # the latent table's: at 24 h (else the first time)
    items = r_items.dirichlet(np.full(cfg.n_items, ITEM_CONCENTRATION), n) if d.items else None
    return {
        "female": female, "c": c, "condition": condition, "seen": seen,
        "block_seen": block_seen, "delta": delta, "u": u, "v": v, "imp": imp, "base": base,
        "day1": day1, "scores": scores, "glx": y.round(4),
        "crlb": crlb.round(1), "propensity": items, "r_items": r_items, "covariates": covariates,
    }  # fmt: skip


def _draw_covariate(how: tuple | dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` participants' values of a design covariate: Normal(mean, SD) rounded to 0.1,
    or levels (an object array) drawn with the design's probabilities."""
    if isinstance(how, dict):
        return rng.choice(np.array(list(how), dtype=object), size=n, p=list(how.values()))
    mean, sd = how
    return rng.normal(mean, sd, n).round(1)


def covariate_effects(design: Design, truth: Truth, level: str, factors: dict) -> Any:
    """Sum over ``truth.effects`` at ``level`` of effect x term covariate (``factors`` holds
    each numeric design covariate about its mean, each categorical one's levels, as
    ``cov_NAME``; a categorical term's effect is {level: value}). An effect that is not a
    covariate term of a simulated level, whose covariate the design lacks, or that does not
    match its covariate's kind or levels, is an error."""
    out = 0.0
    for name, value in truth.effects.items():
        at = coefficient_term(name)
        if at is None or at[0] not in ("glutamate", "improvement"):
            raise ValueError(
                f"Truth.effects[{name!r}]: not a covariate coefficient of a simulated level "
                "(beta_NAME for the glutamate change, gamma_NAME for improvement)"
            )
        missing = [x for x in at[1].split(":")
                   if x not in LEVEL_FACTORS[at[0]] and x not in design.covariates]  # fmt: skip
        if missing:
            raise ValueError(
                f"Truth.effects[{name!r}] needs the covariate(s) {missing}, which "
                f"Design.covariates ({sorted(design.covariates)}) does not simulate"
            )
        categorical = [x for x in at[1].split(":") if isinstance(design.covariates.get(x), dict)]
        if len(categorical) > 1:
            raise ValueError(f"Truth.effects[{name!r}]: one categorical covariate per term")
        if bool(categorical) != isinstance(value, dict):
            kind = "{level: effect}" if categorical else "a number"
            raise ValueError(f"Truth.effects[{name!r}]: expected {kind} for the term {at[1]!r}")
        for cat in categorical:
            unknown = sorted(set(value) - set(design.covariates[cat]))
            if unknown:
                raise ValueError(
                    f"Truth.effects[{name!r}]: levels {unknown} are not levels of "
                    f"Design.covariates[{cat!r}] ({sorted(design.covariates[cat])})"
                )
        if at[0] != level:
            continue
        if categorical:  # the term's covariate with each participant's level's effect
            key = COVARIATE_PREFIX + categorical[0]
            levels = factors[key]
            effect = np.reshape([value.get(x, 0.0) for x in levels.ravel()], levels.shape)
            out = out + term_covariate(at[1], factors | {key: effect})
        else:
            out = out + value * term_covariate(at[1], factors)
    return out


def _tables(design: Design, a: dict[str, Any]) -> tuple[list, pd.DataFrame]:
    """The three tables (four, with ``ratings`` at several times) and the latent table of
    :func:`_draw_arrays`'s trial."""
    cfg, n, t = design.config, design.n, np.asarray(design.block_times)
    ids = participant_ids(n)
    i, s = np.nonzero(a["seen"])
    condition = np.array(cfg.conditions)[a["condition"][i, s]]
    participants = pd.DataFrame({"participant": ids, "sex": np.where(a["female"], *cfg.sexes)})
    participants = participants.assign(**a["covariates"])
    sessions = pd.DataFrame(
        {"participant": ids[i], "period": s + 1, "condition": condition,
         "madrs_baseline": a["base"][i, s].astype(int), "madrs_day1": a["day1"][i, s]}
    )  # fmt: skip
    if sessions["madrs_day1"].notna().all():  # else float, empty where not rated
        sessions["madrs_day1"] = sessions["madrs_day1"].astype(int)
    if a["propensity"] is not None:
        propensity = a["propensity"][i]
        for visit, total in (("baseline", a["base"]), ("day1", a["day1"])):
            scores = split_items(total[i, s].astype(int), propensity, cfg.item_max, a["r_items"])
            sessions[cfg.item_columns(visit)] = scores
    latent = pd.DataFrame(
        {"participant": ids[i], "period": s + 1, "condition": condition,
         "delta": a["delta"][i, s], "u": a["u"][i], "v": a["v"][i], "improvement": a["imp"][i, s]}
    )  # fmt: skip
    i, s, b = np.nonzero(a["seen"][..., None] & a["block_seen"])
    mrs = pd.DataFrame(
        {"participant": ids[i], "period": s + 1, "block": b + 1, "time_min": t[b],
         "glx_ratio": a["glx"][i, s, b], "crlb": a["crlb"][i, s, b]}
    )  # fmt: skip
    if a["scores"] is None:
        return [participants, sessions, mrs], latent
    i, s, k = np.nonzero(a["seen"][..., None] & ~np.isnan(a["scores"]))
    times = np.asarray(cfg.rating_times_h, float)
    ratings = pd.DataFrame({"participant": ids[i], "period": s + 1, "time_h": times[k],
                            "score": a["scores"][i, s, k].astype(int)})  # fmt: skip
    return [participants, sessions, mrs, ratings], latent


def simulate_inputs(
    spec: ModelSpec, design: Design, truth: Truth, seed: np.random.SeedSequence
) -> ModelInputs:
    """Simulate one trial (:func:`simulate_tables`) and return the model's inputs.

    Equals ``model_inputs(spec, TrialData(*simulate_tables(...)))`` (tested), built from
    the simulated arrays without tables or validation, which took longer than a Laplace fit.
    """
    return _inputs(spec, design, _fixed_count_draw(design, truth, seed, spec.profile))


def simulate_looks(
    spec: ModelSpec,
    design: Design,
    truth: Truth,
    seed: np.random.SeedSequence,
    looks: tuple[int, ...],
) -> list[ModelInputs]:
    """The model's inputs at each interim look of one simulated trial.

    Look k sees the first ``looks[k]`` participants (increasing; the last is ``design.n``),
    with their complete follow-up. Missingness is nested and counted per look: of each
    look's participants, ``round(looks[k] * dropout)`` miss period 2, and likewise for
    missing blocks and day-1 ratings, so every look has one data shape per design and what
    an early look saw stays in the later ones. With one look (``(design.n,)``) this is
    :func:`simulate_inputs`.
    """
    if list(looks) != sorted(set(looks)) or looks[-1] != design.n or looks[0] < 2:
        raise ValueError(f"looks must increase from >= 2 to design.n = {design.n}, got {looks}")
    a = _fixed_count_draw(design, truth, seed, spec.profile, looks)
    return [_inputs(spec, dataclasses.replace(design, n=n), _first(a, n)) for n in looks]


def _first(a: dict[str, Any], n: int) -> dict[str, Any]:
    """The arrays of the first ``n`` participants."""
    cut = {k: v[:n] if isinstance(v, np.ndarray) else v for k, v in a.items()}
    covariates = {k: x[:n] for k, x in a["covariates"].items()}
    return cut | {"covariates": covariates, "r_items": copy.deepcopy(a["r_items"])}


def _inputs(spec: ModelSpec, design: Design, a: dict[str, Any]) -> ModelInputs:
    """The model's inputs of one trial's arrays (from the tables where the spec needs items
    or the two-stage change)."""
    if "items" in spec.levels or spec.delta == "two_stage":
        tables = _tables(design, a)[0]
        return model_inputs(spec, TrialData(*tables, config=design.config))
    i, s = np.nonzero(a["seen"])
    session_of = np.cumsum(a["seen"].ravel()).reshape(a["seen"].shape) - 1
    bi, bs, bb = np.nonzero(a["seen"][..., None] & a["block_seen"])
    coords, arrays = coded_arrays(
        spec,
        design.config,
        ids=list(participant_ids(design.n)),
        session_participant=i.astype(np.int64),
        period=s + 1,
        condition=a["condition"][i, s],
        male=~a["female"][i],
        madrs_baseline=a["base"][i, s],
        madrs_day1=a["day1"][i, s],
        mrs_session=session_of[bi, bs].astype(np.int64),
        block=bb + 1,
        time_min=np.asarray(design.block_times, float)[bb],
        glx_ratio=a["glx"][bi, bs, bb],
        crlb=a["crlb"][bi, bs, bb],
        covariates={name: (x[i], x) for name, x in a["covariates"].items()},
        ratings=_ratings(design, a, session_of) if spec.outcome == "trajectory" else None,
    )
    return ModelInputs(coords=coords, data=arrays)


def _ratings(design: Design, a: dict[str, Any], session_of: np.ndarray) -> tuple | None:
    """A trajectory's ratings of one trial's arrays: (session index, time in h, score) per
    rating made (None for a trial rated on day 1 only)."""
    if a["scores"] is None:
        return None
    i, s, k = np.nonzero(a["seen"][..., None] & ~np.isnan(a["scores"]))
    times = np.asarray(design.config.rating_times_h, float)
    return session_of[i, s].astype(np.int64), times[k], a["scores"][i, s, k]


def simulate_tables(
    design: Design, truth: Truth, seed: np.random.SeedSequence, profile: str = "step"
) -> list[pd.DataFrame]:
    """The three tables of one trial, with fixed-count missingness.

    The trial is :func:`kbayes.simulate`'s draw without dropout or missing blocks; then
    the last ``round(n * dropout)`` participants (participants are exchangeable: sex and
    sequence are assigned by random permutation) lose period 2; blocks whose CRLB exceeds
    ``config.crlb_max`` are dropped, as :class:`~kbayes.TrialData` does; and of the blocks
    left, ``round(blocks * block_missing)`` are removed at random, keeping in every session
    one block (chosen at random) before and one during the infusion (``profile`` says
    which are which); then ``round(sessions * rating_missing)`` sessions, at random, lose
    their day-1 rating.
    """
    return _tables(design, _fixed_count_draw(design, truth, seed, profile))[0]


def simulate_arrays(
    design: Design, truth: Truth, seed: np.random.SeedSequence, profile: str = "step"
) -> dict[str, np.ndarray]:
    """One trial of :func:`simulate_tables` as arrays on the participant x period (x block)
    grid, for statistics over many trials without tables.

    Keys: ``condition`` (n, periods; the index into ``config.conditions``), ``c`` (its
    coding: with two conditions 1 under the pretreatment), ``seen`` (n, periods; the
    session exists), ``glx`` and ``block_seen`` (n, periods, blocks; Glx/tNAA and whether
    the block is in the tables), ``base`` and ``day1`` (n, periods; scores, ``day1`` NaN
    when not rated), ``female`` (n,); and the latent ``delta``, ``u``, ``v``, ``imp``.
    """
    a = _fixed_count_draw(design, truth, seed, profile)
    keys = ("condition", "c", "seen", "glx", "block_seen", "base", "day1", "female", "delta",
            "u", "v", "imp")  # fmt: skip
    return {k: a[k] for k in keys}


def _fixed_count_draw(
    design: Design, truth: Truth, seed, profile: str, looks: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """:func:`kbayes.simulate`'s arrays with the masks of :func:`simulate_tables`, the
    counts fixed for the first ``looks[k]`` participants of each look (default: all)."""
    rng = np.random.default_rng(child(seed))  # a copy: Generator.spawn mutates its seed
    full = dataclasses.replace(design, dropout=0.0, block_missing=0.0, rating_missing=0.0)
    a = _draw_arrays(full, truth, rng)
    cfg, n = design.config, design.n
    groups = list(itertools.pairwise([0, *(looks or (n,))]))  # participants new at each look
    seen = np.ones((n, cfg.periods), bool)
    for lo, hi in groups:  # the last of each look's new participants leave after period 1
        gone = round(hi * design.dropout) - round(lo * design.dropout)
        seen[hi - gone : hi, 1:] = False
    blocks = seen[..., None] & (a["crlb"] <= cfg.crlb_max)
    during = infusion_profile(np.asarray(design.block_times), profile, cfg.infusion_min) > 0
    # one random block per session and phase is kept; of the others, a fixed count goes
    key = rng.random(blocks.shape)
    keep = np.zeros_like(blocks)
    for phase in (during, ~during):
        k = np.where(blocks & phase, key, np.inf).argmin(axis=2)
        first = np.take_along_axis(blocks & phase, k[..., None], axis=2)
        np.put_along_axis(keep, k[..., None], first, axis=2)
    removable = np.flatnonzero(blocks & ~keep)
    per_participant = blocks.size // n
    counts = [round(int(blocks[:hi].sum()) * design.block_missing) for _, hi in groups]
    gone = []
    for (lo, hi), target, before in zip(groups, counts, [0, *counts], strict=False):
        mine = removable[(removable >= lo * per_participant) & (removable < hi * per_participant)]
        gone.append(mine[np.argsort(key.ravel()[mine], kind="stable")[: target - before]])
    np.put(blocks, np.concatenate(gone), False)
    if design.rating_missing > 0 and a["scores"] is not None:  # of the ratings at all times
        a = a | {"scores": a["scores"].copy()}
        before, times = 0, len(design.config.rating_times_h)
        for lo, hi in groups:
            made = np.flatnonzero(np.repeat(seen[lo:hi], times)) + cfg.periods * times * lo
            target = round(int(seen[:hi].sum()) * times * design.rating_missing)
            np.put(a["scores"], rng.permutation(made)[: target - before], np.nan)
            before = target
        if 24.0 in design.config.rating_times_h:
            a["day1"] = a["scores"][..., design.config.rating_times_h.index(24.0)]
    elif design.rating_missing > 0:  # a fixed count of the sessions' day-1 ratings goes
        a = a | {"day1": a["day1"].copy()}
        before = 0
        for lo, hi in groups:
            sessions = np.flatnonzero(seen[lo:hi]) + cfg.periods * lo
            target = round(int(seen[:hi].sum()) * design.rating_missing)
            np.put(a["day1"], rng.permutation(sessions)[: target - before], np.nan)
            before = target
    return a | {"seen": seen, "block_seen": blocks}


def participant_ids(n: int) -> np.ndarray:
    """Participant identifiers of a simulated trial: P01, P02, ... (at least two digits)."""
    return np.array([f"P{k:0{max(2, len(str(n)))}d}" for k in range(1, n + 1)])


def simulate(
    design: Design | None = None,
    truth: Truth | None = None,
    *,
    seed: int | np.random.SeedSequence | np.random.Generator | None = None,
) -> TrialData:
    """Simulate one trial from the joint model (see the module docstring).

    Parameters
    ----------
    design : Design, default Design()
    truth : Truth, default Truth()
    seed : int, numpy.random.SeedSequence or numpy.random.Generator, optional
        The same int or SeedSequence gives identical tables; a Generator is advanced.

    Returns
    -------
    TrialData
        Randomised AB/BA crossover (half the participants in each order); a participant who
        drops out has period 1 only; missing blocks are absent rows. ``.truth`` is a
        :class:`SimulatedTruth`. Glx/tNAA is rounded to 4 decimals and CRLB to 0.1 %.

    Examples
    --------
    >>> sim = simulate(Design(n=40), Truth(), seed=1)
    >>> sim.truth.params["beta_N"]
    -0.02
    """
    design, truth = design or Design(), truth or Truth()
    tables, latent = _draw(design, truth, np.random.default_rng(seed))
    data = TrialData(*tables, config=design.config)
    data.truth = SimulatedTruth(truth, design, latent)
    return data


def load_example() -> TrialData:
    """The bundled example trial, shaped like Jelen et al. 2025 (26 participants).

    The participant-level data of that trial are not public: the example is **simulated**,
    ``simulate(EXAMPLE_DESIGN, Truth(), seed=EXAMPLE_SEED)``, stored as CSV files in
    ``kbayes/example`` and read through :meth:`TrialData.from_files`. ``.truth`` holds the
    parameters and the stored latent values.

    References
    ----------
    Jelen LA et al. Nature Medicine 2025. doi:10.1038/s41591-025-03800-w
    """
    with as_file(files("kbayes") / EXAMPLE_DIR) as folder:
        data = TrialData.from_files(*(folder / f"{name}.csv" for name in TABLES))
        latent = pd.read_csv(folder / "latent.csv", dtype={"participant": str})
    data.truth = SimulatedTruth(Truth(), EXAMPLE_DESIGN, latent)
    return data


def write_example(folder: str | Path | None = None) -> Path:
    """Regenerate the example CSVs (default: the package's ``example`` folder)."""
    folder = Path(folder) if folder else Path(__file__).parent / EXAMPLE_DIR
    sim = simulate(EXAMPLE_DESIGN, Truth(), seed=EXAMPLE_SEED)
    sim.to_files(folder)
    sim.truth.latent.to_csv(folder / "latent.csv", index=False)
    return folder

"""Power and assurance: design grid x replicates -> decision rates with Monte-Carlo error.

Each replicate simulates a trial at one design point, fits it (NUTS by nutpie, or the Laplace
screening engine of :mod:`kbayes.laplace`) and applies a decision :class:`~kbayes.rules.Rule`.

* **Seeds.** Replicate r of design point k uses ``SeedSequence(seed, spawn_key=(k, r))``,
  k taken from a hash of the point's spec, design and truth (so every engine and rule sees
  the same simulated trials), and its children 0, 1, 2 for the truth, data and sampler:
  results do not depend on the number of workers, on the order replicates finish in, or on
  which other points are in the grid.
* **One shape per design point.** A power run draws dropout and missing blocks as fixed
  counts (:func:`kbayes.simulation.simulate_tables`): the last ``round(n * dropout)``
  participants (they are exchangeable) miss period 2 and ``round(blocks * block_missing)``
  blocks, placed at random (each session keeps a block before and one during the
  infusion), and ``round(sessions * rating_missing)`` day-1 ratings are missing, instead
  of :func:`kbayes.simulate`'s independent coin flips.
  Every replicate of a point then has one data shape, so a model is compiled once per
  point and process and refitted with new data. (Blocks whose CRLB exceeds
  ``config.crlb_max`` are still excluded and may change a shape.)
* **Interim looks.** :func:`run_points` with ``looks`` (:func:`kbayes.sequential`) fits
  every replicate at each look, on :func:`kbayes.simulation.simulate_looks`'s nested data
  (one shape per look); without looks the keys, seeds and records are as before.
* **Store, parallel.** The runner of :mod:`kbayes.replicates`: each finished replicate is
  a small JSON file ``store/<point>/r<rep>.json``, written atomically, and a rerun skips
  those present; serially or on Dask. Workers are sent data, never models: each process
  compiles a model once per (spec, shape) and caches it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kbayes import laplace
from kbayes.config import TrialConfig
from kbayes.design import Design, Truth, from_table
from kbayes.design_priors import DesignPrior, PriorTruth, design_prior
from kbayes.errors import ConfigError
from kbayes.replicates import (
    NUTS_DEFAULTS,
    child,
    digest,
    failed,
    is_problem,
    run_jobs,
    seed_record,
    write_record,
)
from kbayes.rules import Rule, as_rule
from kbayes.sampling import sample_scalars, sampler_seed
from kbayes.simulation import simulate_inputs, simulate_looks
from kbayes.spec import ModelSpec, load_spec, spec_from_source

ENGINES = ("nutpie", "laplace")
log = logging.getLogger("kbayes")
#: Usable share of a design point's replicates below which its rates are warned about.
USABLE_MIN = 0.9
#: Columns of a power table that are statistics, not design fields (see :func:`power`).
_STATS = ("replicates", "n_ok", "n_problem", "usable_share", "true_value", "mean_estimate",
          "bias", "rmse", "ci_width", "coverage")  # fmt: skip
_RATES = ("power", "p_nogo", "p_inconclusive")
#: Draws of a Laplace replicate: independent, so their Monte-Carlo error on a rule's
#: probability (0.005 at 0.95) is half that of the 1000 correlated draws of a NUTS replicate.
LAPLACE_DRAWS = 2000
#: Reference data sets per design point that fix the Laplace engine's scales (SDs, nu).
LAPLACE_REFERENCES = 4


# --- one replicate (runs on a worker) --------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    """What a worker needs for one replicate: plain data, no model. ``looks``: participants
    at each interim look (:func:`kbayes.sequential`); empty for one analysis at the end."""

    spec_source: dict
    point: str
    rep: int
    design: Design
    truth: Truth
    reference_truth: Truth
    seed: np.random.SeedSequence
    engine: str
    settings: dict
    target: str  # estimand whose bulk ESS is checked with the rule's
    looks: tuple[int, ...] = ()


def run_replicate(task: Task, rule: Rule) -> dict:
    """Simulate, fit and decide one replicate; returns its small JSON-able record.

    With ``task.looks`` the trial is fitted at every look (``"looks"``: one entry per look
    with its estimand summaries and the posterior probability of each event of ``rule``,
    ``"events"``), and the stopping decisions are left to the caller.
    """
    spec = spec_from_source(task.spec_source)
    s_data, s_fit = child(task.seed, 1), child(task.seed, 2)
    truth = spec.estimand_values(task.truth.params)
    record = {"point": task.point, "rep": task.rep, "engine": task.engine,
              "truth": {k: float(v) for k, v in truth.items()}}  # fmt: skip
    seed = {"seed": seed_record(task.seed)}
    if not task.looks:
        inputs = simulate_inputs(spec, task.design, task.truth, s_data)
        fit = _analyse(spec, inputs, task, s_fit, rule, task.point)
        probs = fit.pop("probabilities")
        decided = {"summary": fit.pop("summary"), "probabilities": probs,
                   "outcome": rule.outcome(probs) if probs else None}  # fmt: skip
        return record | decided | fit | seed
    looks = []
    for k, inputs in enumerate(simulate_looks(spec, task.design, task.truth, s_data, task.looks)):
        fit = _analyse(spec, inputs, task, child(s_fit, k), rule, f"{task.point}/look{k}", k)
        probs = fit.pop("probabilities")
        events = {c.event: probs[c.text] for c in rule.conditions} if probs else {}
        looks.append({"n": task.looks[k], **fit, "events": events})
    return record | {"looks": looks} | seed


def _analyse(spec, inputs, task: Task, seed, rule: Rule, reference: str, look: int | None = None):
    """Fit one data set and summarise it: estimand mean, SD and ``ci_prob`` interval, the
    probabilities of the rule's conditions, the diagnostics and the seconds taken."""
    start = time.perf_counter()
    try:
        if task.engine == "laplace":
            draws, diag = _laplace(spec, inputs, task, seed, reference, look)
        else:
            used = tuple(dict.fromkeys((*rule.estimands, task.target)))
            draws, diag = _nuts(spec, inputs, seed, task.settings, used)
    except Exception as exc:  # a failed fit is a problem replicate, counted with its message
        draws, diag = {}, failed(exc)
    seconds = time.perf_counter() - start
    lo, hi = (1 - spec.ci_prob) / 2, (1 + spec.ci_prob) / 2
    summary = {}
    if draws:  # mean, SD and the ci_prob equal-tailed interval of every estimand
        x = np.stack([np.asarray(v, float).reshape(-1) for v in draws.values()])
        stats = np.vstack([x.mean(axis=1), x.std(axis=1), np.quantile(x, [lo, hi], axis=1)])
        summary = {name: stats[:, k].tolist() for k, name in enumerate(draws)}
    probs = rule.probabilities(draws, spec) if draws else {}
    return {"summary": summary, "probabilities": probs, **diag, "seconds": seconds}


def _nuts(spec, inputs, seed, settings, used: tuple[str, ...]) -> tuple[dict, dict]:
    """NUTS fit; R-hat over the scalar free parameters and the ``used`` estimands, bulk ESS
    over the ``used`` estimands (the maximum R-hat of hundreds of participant-level
    parameters exceeds 1.05 by chance in many short 2-chain fits). Works on numpy arrays
    (chain, draw): DataTree and xarray overheads were a quarter of a short fit."""
    from arviz_stats.base import array_stats

    scalars, divergences, model = sample_scalars(spec, inputs, seed=sampler_seed(seed), **settings)
    values = spec.estimand_values(scalars)
    free = [rv.name for rv in model.free_RVs if rv.ndim == 0]
    checked = np.stack([scalars[k] for k in free] + [values[k] for k in used])
    max_rhat = float(np.max(array_stats.rhat(checked)))
    min_ess = float(np.min(array_stats.ess(checked[len(free) :])))
    draws = {k: np.asarray(v).reshape(-1) for k, v in values.items()}
    problem = is_problem(divergences, max_rhat, min_ess)
    return draws, {"divergences": divergences, "max_rhat": max_rhat, "min_ess": min_ess,
                   "problem": problem, "message": ""}  # fmt: skip


def _laplace(spec, inputs, task: Task, seed, reference: str, look: int | None):
    eng = laplace.engine(spec, inputs)
    if reference not in eng.references:  # reference data sets of this design point (look)
        k = task.seed.spawn_key[0]
        refs = []
        for j in range(LAPLACE_REFERENCES):
            ss = np.random.SeedSequence(task.seed.entropy, spawn_key=(k, 2**32 + j))
            if look is None:
                refs.append(simulate_inputs(spec, task.design, task.reference_truth, ss))
            else:
                looks = simulate_looks(spec, task.design, task.reference_truth, ss, task.looks)
                refs.append(looks[look])
        eng.prepare(reference, refs)
    fit = eng.fit(inputs, reference=reference, draws=task.settings["draws"], seed=seed)
    return fit.draws, {"divergences": 0, "max_rhat": np.nan, "min_ess": np.nan,
                       "problem": not fit.converged, "message": fit.message}  # fmt: skip


# --- the run ---------------------------------------------------------------------------
def read_replicates(store: str | Path) -> pd.DataFrame:
    """Every stored replicate of a power run, one row each (nested fields as dicts)."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(store).glob("*/*.json"))]
    return pd.DataFrame([r for r in rows if "rep" in r])


def design_grid(design: Design, n: Iterable[int] | None = None, grid: Mapping | None = None):
    """Design points: the cartesian product of ``n`` and ``grid``'s lists over ``design``.

    A grid key names a :class:`Design` field or a :class:`~kbayes.config.TrialConfig` field
    (``design``, ``periods``, ``crlb_max``, ...): the point's Design then has
    ``config=dataclasses.replace(design.config, **those)`` (varying ``design`` or
    ``conditions`` alone, a default ``periods`` follows: one per condition for a
    crossover, 1 for parallel groups).

    Returns a list of (varied fields, Design) pairs, ``n`` first, in grid order.
    """
    axes = {
        "n": list(n) if n is not None else [design.n],
        **{k: list(v) for k, v in (grid or {}).items()},
    }
    fields = {f.name for f in dataclasses.fields(Design)}
    config_fields = {f.name for f in dataclasses.fields(TrialConfig)}
    bad = sorted((set(axes) - fields - config_fields) | (set(axes) & fields & config_fields))
    if bad:
        raise ValueError(
            f"grid: {bad} are not Design fields ({', '.join(sorted(fields - config_fields))}) "
            f"or TrialConfig fields ({', '.join(sorted(config_fields - fields))}); a grid "
            f"name must be one of them, not both"
        )
    points = [{}]
    for name, values in axes.items():
        points = [p | {name: v} for p in points for v in values]
    out = []
    for p in points:
        p = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
        d = dataclasses.replace(design, **{k: v for k, v in p.items() if k in fields})
        config = {k: v for k, v in p.items() if k in config_fields}
        if config:
            d = dataclasses.replace(d, config=_config_point(d.config, config))
        out.append((p, d))
    return out


def _config_point(config: TrialConfig, changes: dict) -> TrialConfig:
    """``config`` with a grid point's TrialConfig fields; a ``periods`` that was the
    default of ``config``'s design and conditions follows a changed design or conditions."""
    default = TrialConfig(design=config.design, conditions=config.conditions).periods
    follows = {"design", "conditions"} & set(changes) and "periods" not in changes
    if follows and config.periods == default:
        changes = changes | {"periods": None}
    return dataclasses.replace(config, **changes)


def power(
    design: Design,
    truth: Truth | DesignPrior | Mapping | Any,
    rule: Rule | str | Mapping,
    *,
    n: Iterable[int] | None = None,
    grid: Mapping[str, Iterable] | None = None,
    replicates: int = 200,
    seed: int = 0,
    model: str | ModelSpec = "joint",
    store: str | Path | None = None,
    client: Any = None,
    workers: int = 2,
    engine: str = "nutpie",
    target: str | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Power (or assurance) of a decision rule over a grid of designs.

    Parameters
    ----------
    design : Design
        Fixed design fields; ``n`` and ``grid`` vary some of them.
    truth : Truth, DesignPrior, dict of Prior or DataTree
        A fixed truth (power) or a design prior (assurance): :class:`PriorTruth`,
        :class:`PredictiveTruth` (e.g. a meta-analysis), :class:`PosteriorTruth`.
    rule : Rule, GoNoGo or str
        The decision, on the spec's estimands.
    n : list of int, optional
        Total participants per point (default: ``design.n``).
    grid : dict of str to list, optional
        Other Design fields to vary, e.g. ``{"female_fraction": [0.3, 0.5]}``, or fields of
        the trial configuration (``design.config``), e.g. ``{"design": ["crossover",
        "parallel"]}`` or ``{"crlb_max": [15, 20]}`` (:func:`design_grid`); each point is
        fitted with the spec for its trial (``spec.for_trial``).
    replicates : int, default 200
        Simulated trials per design point.
    seed : int, default 0
        Root of every replicate's ``SeedSequence``.
    model : str or ModelSpec, default "joint"
    store : path, optional
        Folder where each finished replicate is kept; a rerun with the same store resumes.
    client : dask.distributed.Client, str or None, default None
        ``None``: a ``LocalCluster`` of ``workers`` processes; a Client or a scheduler
        address (``"tcp://host:8786"``); ``"serial"``: in this process, without Dask.
    workers : int, default 2
        Processes of the local cluster.
    engine : {"nutpie", "laplace"}, default "nutpie"
        NUTS, or the Laplace screening engine (:mod:`kbayes.laplace`).
    target : str, optional
        Estimand for bias, interval width and coverage (default: the rule's first).
    draws, tune, chains : int, optional
        NUTS settings (default 500, 500, 2); ``draws`` is the number of Laplace draws
        (default :data:`LAPLACE_DRAWS`).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per design point: the varied design fields; ``replicates``, ``n_ok`` and
        ``n_problem`` (replicates with divergences, R-hat > 1.05 on a scalar parameter or
        a used estimand, bulk ESS < 100 of an estimand of the rule or the target, or a
        failed fit: counted, and left out of every rate) and ``usable_share`` (``n_ok`` /
        ``replicates``; below :data:`USABLE_MIN` a warning is logged, :func:`few_usable`);
        ``power`` (share of
        ``go`` among ok replicates) and ``power_se`` (its Monte-Carlo SE); ``power_all``
        (the share among every replicate with a decision, problems included: if it differs
        from ``power``, the problem replicates matter); for a GoNoGo
        also ``p_nogo``, ``p_inconclusive`` and their SEs; for ``target`` the mean true
        value, ``mean_estimate`` (posterior means), ``bias``, ``rmse``, ``ci_width`` and
        ``coverage`` of the spec's ``ci_prob`` equal-tailed interval. ``attrs`` hold the
        rule, spec, engine, ``specs`` (point key -> the trial design and hash of the spec
        its replicates were fitted with) and every replicate's record with its design
        point's varied fields (``pd.DataFrame(table.attrs["replicates"])``).
    """
    spec, rule, target, specs, keys, rows = run_points(
        design, truth, as_rule(rule), n=n, grid=grid, replicates=replicates, seed=seed,
        model=model, store=store, client=client, workers=workers, engine=engine,
        target=target, draws=draws, tune=tune, chains=chains, progress=progress,
    )  # fmt: skip
    table = summarise(pd.DataFrame(rows), keys, rule, target)
    for message in few_usable(table):
        log.warning(message)
    # records, not a DataFrame: pandas compares attrs when tables are concatenated or merged
    table.attrs = {"rule": rule.text, "spec": spec.name, "engine": engine, "target": target,
                   "specs": {k: {"design": s.design, "hash": s.hash} for k, s in specs.items()},
                   "replicates": rows}  # fmt: skip
    return table


def look_sizes(n: int, looks: Sequence[float]) -> tuple[int, ...]:
    """Participants at each look: ``round(fraction * n)`` of increasing ``looks`` fractions
    in (0, 1], the last 1 (the final analysis)."""
    sizes = tuple(int(np.floor(f * n + 0.5)) for f in looks)
    ok = list(looks) == sorted(set(looks)) and looks[0] > 0 and looks[-1] == 1
    if not ok or len(set(sizes)) < len(sizes) or sizes[0] < 2:
        raise ValueError(
            f"looks must be increasing fractions of n in (0, 1], the last 1, each look with "
            f"other participants and >= 2 of them; got {list(looks)} at n = {n}: {sizes}"
        )
    return sizes


def run_points(
    design: Design,
    truth: Any,
    rule: Rule,
    *,
    n: Iterable[int] | None,
    grid: Mapping | None,
    replicates: int,
    seed: int,
    model: str | ModelSpec,
    store: str | Path | None,
    client: Any,
    workers: int,
    engine: str,
    target: str | None,
    draws: int | None,
    tune: int | None,
    chains: int | None,
    progress: bool,
    looks: Sequence[float] | None = None,
) -> tuple[ModelSpec, Rule, str, list, list[dict]]:
    """Simulate and fit ``replicates`` trials at each design point (the work of
    :func:`power` and :func:`kbayes.sequential`; arguments as there).

    Each point is fitted with the spec for its own trial (``spec.for_trial`` of the point's
    ``config``: a grid may vary its design or conditions), and the rule and target are checked
    against each before any work.

    Returns the spec (for ``design``), the rule, the target estimand, each point's spec
    (point key -> ModelSpec), the (varied fields, point key) of each point and every
    replicate's record with its point's varied fields.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    base = load_spec(model)
    points = design_grid(design, n, grid)
    specs_of = {_trial(d): base.for_trial(d.config) for d in (design, *(d for _, d in points))}
    target = target or rule.estimands[0]
    for spec in specs_of.values():
        rule.check(spec)
        if target not in spec.estimand_rows:
            where = f"{spec.name!r} ({spec.design})"
            raise ValueError(f"target {target!r} is not an estimand of {where}")
    spec = specs_of[_trial(design)]
    prior = design_prior(truth)
    reference = getattr(prior, "truth", None) or getattr(prior, "base", Truth())
    if engine == "laplace":
        settings = {"draws": draws or LAPLACE_DRAWS}
    else:
        given = {"draws": draws, "tune": tune, "chains": chains}
        settings = NUTS_DEFAULTS | {k: v for k, v in given.items() if v}
    keys, jobs, specs = [], [], {}
    folder = Path(store) if store else None
    for fields, d in points:
        sizes = look_sizes(d.n, looks) if looks else ()
        point_spec = specs_of[_trial(d)]
        if engine != "laplace":  # the design's target acceptance (a parallel trial: 0.95)
            settings = settings | {"target_accept": point_spec.target_accept}
        data = {"spec": point_spec.hash, "design": dataclasses.asdict(d), "truth": prior.key}
        data |= {"looks": sizes} if sizes else {}  # one analysis: the keys of before looks
        key = digest(data)  # seeds: the same simulated trials for every engine and rule
        about = data | {"seed": seed, "engine": engine, "settings": settings, "rule": rule.text}
        rkey = f"{engine}-{key[:8]}-{digest(about)[:8]}"
        keys.append((fields, rkey))
        specs[rkey] = point_spec
        if folder:
            write_record(folder / rkey / "point.json", about | {"fields": fields})
        for r in range(replicates):
            ss = np.random.SeedSequence(seed, spawn_key=(int(key[:8], 16), r))
            task = Task(point_spec.source, rkey, r, d, prior.draw(child(ss, 0)), reference, ss,
                        engine, settings, target, sizes)  # fmt: skip
            jobs.append((folder / rkey / f"r{r:06d}.json" if folder else None, task))
    records = run_jobs(jobs, run_replicate, rule, client=client, workers=workers,
                       progress=progress, label="replicates")  # fmt: skip
    fields_of = [fields for fields, _ in keys for _ in range(replicates)]
    rows = [fields | record for fields, record in zip(fields_of, records, strict=True)]
    return spec, rule, target, specs, keys, rows


def _trial(design: Design) -> tuple:
    """What decides a design point's spec (:meth:`~kbayes.spec.ModelSpec.for_trial`)."""
    return design.config.design, design.config.conditions


def few_usable(table: pd.DataFrame) -> list[str]:
    """One warning per design point whose rates rest on fewer than :data:`USABLE_MIN` of
    its replicates (the others had convergence problems or failed)."""
    fields = [c for c in table.columns if c not in _STATS and not c.startswith(_RATES)]
    out = []
    for row in table[table["usable_share"] < USABLE_MIN].to_dict("records"):
        point = ", ".join(f"{c}={row[c]}" for c in fields)
        out.append(
            f"design point {point}: its rates rest on {row['n_ok']} of {row['replicates']} "
            f"replicates ({row['usable_share']:.0%} usable; the others had convergence "
            f"problems); power among all replicates with a decision: {row['power_all']:.3g}"
        )
    return out


def summarise(reps: pd.DataFrame, keys: list, rule: Rule, target: str) -> pd.DataFrame:
    """Per-design-point table from per-replicate records (see :func:`power`)."""
    rows = []
    for fields, key in keys:
        r = reps[reps["point"] == key]
        ok = r[~r["problem"].astype(bool)]
        k = len(ok)
        row = {**{f: (list(v) if isinstance(v, tuple) else v) for f, v in fields.items()},
               "replicates": len(r), "n_ok": k, "n_problem": len(r) - k,
               "usable_share": k / len(r) if len(r) else np.nan}  # fmt: skip
        for outcome, col in (
            ("go", "power"),
            ("no-go", "p_nogo"),
            ("inconclusive", "p_inconclusive"),
        ):
            if outcome in rule.outcomes and (col == "power" or len(rule.outcomes) == 3):
                p = float((ok["outcome"] == outcome).mean()) if k else np.nan
                row[col], row[f"{col}_se"] = p, float(np.sqrt(p * (1 - p) / k)) if k else np.nan
        decided = r[r["outcome"].notna()]
        row["power_all"] = float((decided["outcome"] == "go").mean()) if len(decided) else np.nan
        est = np.array([s[target] for s in ok["summary"]]) if k else np.empty((0, 4))
        true = np.array([t[target] for t in ok["truth"]]) if k else np.empty(0)
        row |= {
            "true_value": float(true.mean()) if k else np.nan,
            "mean_estimate": float(est[:, 0].mean()) if k else np.nan,
            "bias": float((est[:, 0] - true).mean()) if k else np.nan,
            "rmse": float(np.sqrt(((est[:, 0] - true) ** 2).mean())) if k else np.nan,
            "ci_width": float((est[:, 3] - est[:, 2]).mean()) if k else np.nan,
            "coverage": float(((est[:, 2] <= true) & (true <= est[:, 3])).mean()) if k else np.nan,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def plot_power(table: pd.DataFrame, x: str = "n", ax: Any = None, label: str | None = None):
    """Power against ``x`` with +-2 Monte-Carlo SE bands, one line per other grid setting
    (e.g. one per trial design, ``design=crossover`` and ``design=parallel``, of a grid
    over ``design``).

    A point whose rates rest on fewer than :data:`USABLE_MIN` of its replicates is ringed
    in red and labelled with its usable count.

    ``label`` names this table's lines in the legend (e.g. the engine, when several tables
    are drawn on one ``ax``); the legend appears when more than one line is labelled.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    else:
        fig = ax.figure
    others = [c for c in table.columns if c != x and c not in _STATS and not c.startswith(_RATES)]
    groups = table.groupby([str(c) for c in others], sort=False) if others else [((), table)]
    for values, g in groups:
        g = g.sort_values(x)
        values = values if isinstance(values, tuple) else (values,)
        setting = ", ".join(f"{c}={v}" for c, v in zip(others, values, strict=True))
        name = ": ".join(t for t in (label, setting) if t) or None
        line = ax.plot(g[x], g["power"], marker="o", label=name)[0]
        lo, hi = g["power"] - 2 * g["power_se"], g["power"] + 2 * g["power_se"]
        ax.fill_between(g[x], lo.clip(0), hi.clip(upper=1), color=line.get_color(), alpha=0.2, lw=0)
        for row in g[g["usable_share"] < USABLE_MIN].to_dict("records"):  # few replicates
            ax.plot(row[x], row["power"], marker="o", ms=11, mfc="none", mec="red")
            text = f"{row['n_ok']}/{row['replicates']} usable"
            ax.annotate(text, (row[x], row["power"]), xytext=(6, -12),
                        textcoords="offset points", color="red", fontsize=7)  # fmt: skip
    ax.set(xlabel=x, ylabel="power (share of replicates: go)", ylim=(0, 1.02))
    rule = table.attrs.get("rule")
    ax.set_title(rule if rule and len(rule) < 70 else "power, band: +-2 MC SE", fontsize=9)
    if sum(not ln.get_label().startswith("_") for ln in ax.lines) > 1:
        ax.legend(fontsize=8)
    return fig


@dataclasses.dataclass(frozen=True)
class Study:
    """A power study TOML file, read (:func:`read_study`).

    Attributes
    ----------
    design : Design
    truth : Truth or PriorTruth
    rule : Rule
    grid : dict
        The ``[grid]`` table (``n`` included): Design or TrialConfig fields to vary.
    options : dict
        The top-level keys given (``replicates``, ``seed``, ``model``, ``engine``, ...).
    store : str or None
        The file's ``store`` key.
    tables : dict
        Tables of other commands (``[sample_size]``), unparsed.
    """

    design: Design
    truth: Truth | PriorTruth
    rule: Rule
    grid: dict
    options: dict
    store: str | None
    tables: dict

    @property
    def power_options(self) -> dict:
        """:func:`power`'s keyword arguments from ``options`` (defaults where absent)."""
        o = self.options
        return {"replicates": o.get("replicates", 200), "seed": o.get("seed", 0),
                "model": o.get("model", "joint"), "engine": o.get("engine", "nutpie"),
                "target": o.get("target"), "draws": o.get("draws"), "tune": o.get("tune"),
                "chains": o.get("chains")}  # fmt: skip


#: Top-level keys of a power study file that are :func:`power` arguments.
_STUDY_OPTIONS = ("model", "replicates", "seed", "engine", "target", "draws", "tune", "chains")
#: Tables of a power study file read by other commands (``kbayes sample-size``).
_STUDY_TABLES = ("sample_size",)


def read_study(path: str | Path, *, config: TrialConfig | None = None) -> Study:
    """Read a power study TOML file (format: :func:`run_file`); unknown keys are an error.

    Parameters
    ----------
    path : path
    config : TrialConfig, optional
        The design's trial configuration, instead of a ``[config]`` table in the file.
    """
    import tomllib

    from pymc_extras.prior import Prior

    path = Path(path)
    conf = tomllib.loads(path.read_text())
    known = {*_STUDY_OPTIONS, *_STUDY_TABLES, "store", "design", "grid", "truth", "rule", "config"}
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (known: {', '.join(sorted(known))})")
    if "rule" not in conf:
        raise ConfigError(f"{path}: a [rule] table with expr (or go and nogo) is needed")
    truth_table = dict(conf.get("truth", {}))
    priors = {k: Prior(t.pop("distribution"), **t) for k, t in truth_table.pop("prior", {}).items()}
    base = from_table(Truth, truth_table, f"{path} [truth]")
    truth = PriorTruth(priors, base) if priors else base
    design = from_table(Design, conf.get("design", {}), f"{path} [design]")
    if "config" in conf and config is not None:
        raise ConfigError(f"{path}: a [config] table and a config were both given; keep one")
    if "config" in conf:
        config = from_table(TrialConfig, conf["config"], f"{path} [config]")
    if config is not None:
        design = dataclasses.replace(design, config=config)
    grid = dict(conf.get("grid", {}))
    try:  # names (Design or TrialConfig fields) and values checked before any work
        design_grid(design, grid.get("n"), {k: v for k, v in grid.items() if k != "n"})
    except ValueError as exc:
        raise ConfigError(f"{path} [grid]: {str(exc).removeprefix('grid: ')}") from None
    return Study(design, truth, as_rule(conf["rule"]), grid,
                 {k: conf[k] for k in _STUDY_OPTIONS if k in conf}, conf.get("store"),
                 {k: conf[k] for k in _STUDY_TABLES if k in conf})  # fmt: skip


def run_file(
    path: str | Path,
    *,
    out: str | Path | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    store: str | Path | None = None,
    serial: bool = False,
    progress: bool = True,
    config: TrialConfig | None = None,
) -> tuple[pd.DataFrame, Path, Path]:
    """Run the power study a TOML file describes; write its table and power curves.

    The file (see ``docs/power.md``)::

        model = "joint"            # spec name or path
        replicates = 200
        seed = 1
        engine = "nutpie"          # or "laplace"
        # optional: target, store, draws, tune, chains
        [design]                   # fixed Design fields
        dropout = 0.05
        [grid]                     # Design or TrialConfig fields to vary (lists)
        n = [20, 30, 40]
        design = ["crossover", "parallel"]
        [truth]                    # Truth fields; [truth.prior.<field>]: a Prior table
        gamma_N = -2.6
        [rule]
        expr = "P(ntx_glu < 0) > 0.95"   # or go = "...", nogo = "..."
        [config]                   # optional TrialConfig fields of the design
        conditions = ["placebo", "nalmefene"]
        [sample_size]              # optional, read by kbayes sample-size only

    Parameters
    ----------
    path : path
        The TOML file.
    out : path, optional
        Output folder (default: the file's name without suffix plus ``_power``, beside it).
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``); default a local cluster.
    workers : int, default 2
        Processes of the local cluster.
    store : path, optional
        Replicate store (default: the file's ``store`` key, else ``out/replicates``).
    serial : bool, default False
        Run in this process without Dask.
    progress : bool, default True
    config : TrialConfig, optional
        The design's trial configuration (``kbayes power --config``), instead of a
        ``[config]`` table in the file.

    Returns
    -------
    (pandas.DataFrame, Path, Path)
        The table (:func:`power`), and the paths of ``power.csv`` and ``power.png``.
    """
    study = read_study(path, config=config)
    path = Path(path)
    grid = dict(study.grid)
    out = Path(out) if out else path.with_name(f"{path.stem}_power")
    out.mkdir(parents=True, exist_ok=True)
    store = store or study.store or out / "replicates"
    client = "serial" if serial else scheduler
    table = power(
        study.design,
        study.truth,
        study.rule,
        n=grid.pop("n", None),
        grid=grid,
        store=store,
        client=client,
        workers=workers,
        progress=progress,
        **study.power_options,
    )
    csv, png = out / "power.csv", out / "power.png"
    table.to_csv(csv, index=False)
    import matplotlib.pyplot as plt

    fig = plot_power(table)
    fig.savefig(png, dpi=150)
    plt.close(fig)
    return table, csv, png

"""Simulation-based calibration (SBC) of a model spec: is the posterior the one the model implies?

For each simulation k (Talts et al. 2018, doi:10.48550/arXiv.1804.06788):

1. draw every parameter from the spec's prior, and data from the prior predictive, on one
   fixed trial design (the covariates: participants, sexes, sequences, block times, CRLBs,
   baselines; by default the bundled example's);
2. fit the simulated data with the compiled-once nutpie model (:func:`kbayes.sampling.sample`;
   every simulation has the design's data shape, so a process compiles the spec once);
3. rank the prior draw among ``thin`` equally spaced posterior draws, for every scalar
   parameter, every element of the small vector parameters (cutpoints, item locations)
   and every estimand of the spec.

If the posterior is right, each rank is uniform on 0..thin. The ranks become randomised PIT
values ``(rank + U) / (thin + 1)`` (U uniform, seeded), exactly uniform on (0, 1) under
calibration, which ArviZ's tests and ECDF plots take (``arviz_stats`` ``uniformity_test``,
``arviz_plots.plot_ecdf_pit``). Central 50/80/90/95 % intervals of all posterior draws give
coverage with its Monte-Carlo SE.

* **Seeds.** Simulation k uses ``SeedSequence(seed, spawn_key=(k,))`` and its children
  (prior draw, fit, PIT randomisation, and for ``two_stage`` the second stage's prior
  draw and the first stage's fit): results do not depend on the number of simulations,
  workers or the order in which they finish.
* **Problems.** A fit with divergences, R-hat above 1.05 (scalar parameters, estimands) or a
  bulk ESS below 100 (ranked quantities; :func:`kbayes.replicates.is_problem`), or one
  that raised, is a *problem* simulation:
  counted, reported, and left out of the tables (``uniformity`` also gives the p-value
  with problem simulations included, ``p_value_all``, to show whether leaving them out matters).
* **Store, resume, parallel.** The runner of :mod:`kbayes.replicates`, as power's: one
  JSON file per finished simulation, a rerun skips those present; serially or on Dask.
* **two_stage.** Stage 1 (its ``first_stage`` spec) is drawn from its prior and fitted; the
  posterior-mean glutamate change is then the covariate of stage 2, whose parameters and
  improvement data are drawn from the stage-2 prior given that covariate. This is the
  generative model under which the two-stage posterior (stage-1 betas paired with stage-2
  gammas) is exact, so SBC checks its computation, not the two-stage approximation itself
  (which ignores stage-1 uncertainty; a recovery study under the joint model shows that).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kbayes.build import ModelInputs, model_inputs
from kbayes.data import TrialData
from kbayes.design import Design, Truth
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
from kbayes.sampling import (
    compiled_model,
    is_ordered,
    ordered_variables,
    sample,
    sampler_seed,
)
from kbayes.simulation import load_example, simulate_tables
from kbayes.spec import ModelSpec, load_spec, spec_from_source

#: Central interval masses whose coverage is reported.
LEVELS = (0.5, 0.8, 0.9, 0.95)
#: Posterior draws kept (equally spaced) to rank the prior draw among.
THIN = 100
#: Dims of vector parameters whose elements are ranked (the others are per participant,
#: session or observation: many, and ranked through the scalars they feed).
SMALL_DIMS = ("cutpoint", "item")
#: Family-wise level of the uniformity flags (Bonferroni over a spec's quantities).
ALPHA = 0.05
#: Most forward draws tried for one prior draw with ordered cutpoints (about 10 are needed).
MAX_REDRAWS = 10_000
#: Version of the prior-draw procedure, part of the store key (2: ordered cutpoints).
FORWARD_VERSION = 2
#: Columns of the per-simulation table.
SIM_COLUMNS = ("sim", "divergences", "max_rhat", "worst_rhat", "min_ess", "worst_ess", "problem",
               "message", "seconds")  # fmt: skip
#: Observed variable -> the ``pm.Data`` holding its values (names of kbayes.build).
OBSERVED = {"glx": "glx_observed", "improvement": "improvement_observed", "items": "item_score"}
_PROBS = tuple(p for lv in LEVELS for p in ((1 - lv) / 2, (1 + lv) / 2))


# --- the per-simulation statistics (pure functions) ------------------------------------
def sbc_rank(truth: float, draws: np.ndarray, thin: int = THIN) -> int:
    """Rank of ``truth`` among ``thin`` equally spaced draws of ``draws`` (chain, draw).

    Draws are taken chain by chain (``draws`` flattened in C order) at a fixed step, so
    autocorrelated neighbours are skipped; the rank is the number below ``truth``, 0..thin.
    """
    flat = np.asarray(draws, float).reshape(-1)
    if flat.size < thin:
        raise ValueError(f"{flat.size} posterior draws cannot be thinned to {thin}")
    kept = flat[:: flat.size // thin][:thin]
    return int((kept < truth).sum())


def quantity_summary(truth: float, draws: np.ndarray, thin: int, u: float) -> dict[str, Any]:
    """Rank, randomised PIT, mean, SD and the central-interval bounds of one quantity."""
    flat = np.asarray(draws, float).reshape(-1)
    rank = sbc_rank(truth, draws, thin)
    return {"truth": float(truth), "rank": rank, "pit": (rank + float(u)) / (thin + 1),
            "mean": float(flat.mean()), "sd": float(flat.std()),
            "q": [float(v) for v in np.quantile(flat, _PROBS)]}  # fmt: skip


# --- prior predictive on a fixed design ------------------------------------------------
_FORWARD: dict[tuple, tuple[Any, list, list[str]]] = {}


def _forward(spec: ModelSpec, inputs: ModelInputs):
    """The model's forward-sampling function, compiled once per (spec, data shape).

    Draws every free variable, the scalar deterministics and the observed variables;
    reseeded per call. The ``pm.Data`` of the cached model are set to ``inputs``.
    """
    from pymc.sampling.forward import compile_forward_sampling_function
    from pytensor.tensor.random.type import RandomGeneratorType

    model = compiled_model(spec, inputs).full
    key = (spec.hash, inputs.shape)
    if key not in _FORWARD:
        outs = [*model.free_RVs, *(d for d in model.deterministics if d.ndim == 0),
                *model.observed_RVs]  # fmt: skip
        fn, _ = compile_forward_sampling_function(
            outs, vars_in_trace=[], basic_rvs=model.basic_RVs, model=model, random_seed=False
        )
        rngs = [v for v in fn.get_shared() if isinstance(v.type, RandomGeneratorType)]
        _FORWARD[key] = (fn, rngs, [o.name for o in outs])
    return _FORWARD[key]


def prior_predictive(
    spec: ModelSpec, inputs: ModelInputs, seed: np.random.SeedSequence
) -> tuple[dict[str, np.ndarray], ModelInputs]:
    """One draw of the parameters from the prior and of data from the prior predictive.

    Returns the drawn parameters (name -> value) and ``inputs`` with the observed arrays
    (``glx_observed``, ``improvement_observed``, ``item_score``) replaced by the drawn data;
    covariates, including the reported measurement SDs ``glx_se``, stay the design's.
    Variables with an ordered transform are redrawn until ordered
    (:func:`kbayes.sampling.ordered_variables`; PyMC's forward sampling ignores the transform).
    """
    from pymc.pytensorf import reseed_rngs

    fn, rngs, names = _forward(spec, inputs)
    reseed_rngs(rngs, seed.generate_state(4).tolist())
    model = compiled_model(spec, inputs).full
    ordered = ordered_variables(model)
    for _ in range(MAX_REDRAWS):
        values = dict(zip(names, fn(), strict=True))
        if is_ordered(values, ordered):
            break
    else:
        raise RuntimeError(f"no prior draw with ordered {ordered} in {MAX_REDRAWS} tries")
    data = dict(inputs.data)
    for rv in model.observed_RVs:
        target = OBSERVED[rv.name]
        data[target] = np.asarray(values.pop(rv.name)).astype(inputs.data[target].dtype)
    return values, ModelInputs(coords=inputs.coords, data=data)


# --- one simulation (runs on a worker) -------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setup:
    """What every simulation of a run shares: plain data, sent to each worker once."""

    spec_source: dict
    inputs: ModelInputs
    stage1_source: dict | None
    stage1_inputs: ModelInputs | None
    settings: dict
    thin: int


@dataclasses.dataclass(frozen=True)
class SimTask:
    """One simulation: its run key, index and seed."""

    point: str
    sim: int
    seed: np.random.SeedSequence


def _fit(spec, inputs, seed, settings):
    dt, model = sample(spec, inputs, seed=sampler_seed(seed), progress=False,
                       cores=1, save_warmup=False, **settings)  # fmt: skip
    return dt.posterior.to_dataset(), model, int(dt.sample_stats["diverging"].sum())


def _ranked(
    model, post, truth: dict, names: list[str] | None = None, small: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """Posterior draws and true values of the ranked parameters of ``model``: the scalars
    and each element of a vector over one of :data:`SMALL_DIMS` or ``small``."""
    draws, true = {}, {}
    for rv in model.free_RVs:
        if names is not None and rv.name not in names:
            continue
        dims = model.named_vars_to_dims.get(rv.name) or ()
        if rv.ndim == 0:
            draws[rv.name], true[rv.name] = post[rv.name], float(truth[rv.name])
        elif len(dims) == 1 and dims[0] in (*SMALL_DIMS, *small):
            for k, label in enumerate(model.coords[dims[0]]):
                name = f"{rv.name}[{label}]"
                draws[name] = post[rv.name].isel({dims[0]: k}, drop=True)
                true[name] = float(np.asarray(truth[rv.name])[k])
    return draws, true


def run_simulation(task: SimTask, setup: Setup) -> dict:
    """Draw, simulate, fit and rank one simulation; returns its small JSON-able record."""
    import arviz_stats as azs
    import xarray as xr

    spec = spec_from_source(setup.spec_source)
    start = time.perf_counter()
    try:
        divergences = 0
        extra_draws, extra_truth, stage1_post = {}, {}, None
        inputs = setup.inputs
        if setup.stage1_source is not None:  # two_stage: draw and fit stage 1 first
            s1 = spec_from_source(setup.stage1_source)
            truth1, data1 = prior_predictive(s1, setup.stage1_inputs, child(task.seed, 0))
            stage1_post, model1, div1 = _fit(s1, data1, child(task.seed, 4), setup.settings)
            divergences += div1
            betas = [rv.name for rv in model1.free_RVs if rv.name.startswith("beta")]
            extra_draws, extra_truth = _ranked(model1, stage1_post, truth1, betas)
            dglx = stage1_post["delta"].mean(("chain", "draw")).to_numpy()
            inputs = ModelInputs(inputs.coords, {**inputs.data, "dglx_obs": dglx})
            truth, data = prior_predictive(spec, inputs, child(task.seed, 3))
            truth |= {k: truth1[k] for k in betas}
        else:
            truth, data = prior_predictive(spec, inputs, child(task.seed, 0))
        post, model, div = _fit(spec, data, child(task.seed, 1), setup.settings)
        divergences += div
        if stage1_post is not None:  # stage-1 draws of beta, paired by position (as kb.fit)
            post = xr.merge([post, stage1_post[list(extra_truth)]])
        draws, true = _ranked(model, post, truth, small=(*spec.categorical, *spec.index_dims))
        draws, true = extra_draws | draws, extra_truth | true
        est_draws = spec.estimand_values({v: post[v] for v in post.data_vars})
        est_true = spec.estimand_values(truth)
        for name in spec.estimand_rows:
            draws[name], true[name] = est_draws[name], float(est_true[name])
        ds = xr.Dataset({k: v.transpose("chain", "draw") for k, v in draws.items()})
        rhat, ess = azs.rhat(ds), azs.ess(ds)
        worst_rhat = max(ds.data_vars, key=lambda v: float(rhat[v]))
        worst_ess = min(ds.data_vars, key=lambda v: float(ess[v]))
        max_rhat, min_ess = float(rhat[worst_rhat]), float(ess[worst_ess])
        u = np.random.default_rng(child(task.seed, 2)).uniform(size=len(draws))
        quantities = {
            name: quantity_summary(true[name], ds[name].values, setup.thin, u[k])
            | {"ess": float(ess[name]), "rhat": float(rhat[name])}
            for k, name in enumerate(draws)
        }
        diag = {"divergences": divergences, "max_rhat": max_rhat, "min_ess": min_ess,
                "worst_rhat": worst_rhat, "worst_ess": worst_ess,
                "problem": is_problem(divergences, max_rhat, min_ess), "message": ""}  # fmt: skip
    except Exception as exc:  # a failed simulation is a problem, counted with its message
        quantities, diag = {}, failed(exc)
    return {"point": task.point, "rep": task.sim, "sim": task.sim, "thin": setup.thin,
            **diag, "seconds": time.perf_counter() - start, "quantities": quantities,
            "seed": seed_record(task.seed)}  # fmt: skip


# --- tables ----------------------------------------------------------------------------
def rank_table(records: list[dict]) -> pd.DataFrame:
    """One row per (simulation, quantity): truth, rank, PIT, mean, SD, interval bounds,
    and the simulation's ``problem`` flag."""
    rows = []
    for r in records:
        for name, q in r["quantities"].items():
            row = {"sim": r["sim"], "quantity": name, "problem": r["problem"],
                   **{k: q.get(k, np.nan) for k in ("truth", "rank", "pit", "mean", "sd",
                                                     "ess", "rhat")}}  # fmt: skip
            for k, lv in enumerate(LEVELS):
                row[f"lo{_pct(lv)}"], row[f"hi{_pct(lv)}"] = q["q"][2 * k], q["q"][2 * k + 1]
            rows.append(row)
    columns = ["sim", "quantity", "problem", "truth", "rank", "pit", "mean", "sd", "ess", "rhat",
               *(f"{b}{_pct(lv)}" for lv in LEVELS for b in ("lo", "hi"))]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _pct(level: float) -> str:
    return f"{round(100 * level)}"


def _pit_dataset(ranks: pd.DataFrame, order: list[str]):
    """PIT values as an xarray Dataset, one variable per quantity, dims (chain=1, draw=sim)."""
    import xarray as xr

    wide = ranks.pivot(index="sim", columns="quantity", values="pit")
    return xr.Dataset(
        {q: (("chain", "draw"), wide[q].to_numpy()[None, :]) for q in order if q in wide},
        coords={"chain": [0], "draw": wide.index.to_numpy()},
    )


def uniformity(
    ranks: pd.DataFrame, *, alpha: float = ALPHA, kinds: dict | None = None
) -> pd.DataFrame:
    """Uniformity of the SBC ranks, one row per quantity.

    Columns: ``n`` (simulations without problems), ``p_value`` (ArviZ's ``pot_c`` test of
    the PIT values; Tesso et al. 2026, arXiv:2603.02928), ``chi2_p`` (Pearson chi-square of
    the PIT values in ``bins`` equal bins, at least 5 expected per bin), ``p_value_all``
    (``pot_c`` with problem simulations included) and ``flagged`` (``p_value`` below
    ``alpha`` / number of quantities: Bonferroni, family-wise level ``alpha``).
    """
    from scipy.stats import chisquare

    order = list(dict.fromkeys(ranks["quantity"]))
    if not order:
        columns = ["kind", "n", "p_value", "chi2_p", "bins", "p_value_all", "flagged"]
        return pd.DataFrame(columns=columns, index=pd.Index([], name="quantity"))
    ok = ranks[~ranks["problem"].astype(bool)]
    p_ok, p_all = _pot_c(ok, order), _pot_c(ranks, order)
    rows = []
    for q in order:
        pit = ok.loc[ok["quantity"] == q, "pit"].to_numpy()
        bins = int(min(20, max(2, len(pit) // 5)))
        counts = np.histogram(pit, bins=bins, range=(0, 1))[0]
        chi2 = float(chisquare(counts).pvalue) if len(pit) >= 2 * bins else np.nan
        rows.append({"quantity": q, "kind": (kinds or {}).get(q, ""), "n": len(pit),
                     "p_value": p_ok.get(q, np.nan), "chi2_p": chi2, "bins": bins,
                     "p_value_all": p_all.get(q, np.nan)})  # fmt: skip
    table = pd.DataFrame(rows).set_index("quantity")
    table["flagged"] = table["p_value"] < alpha / max(len(table), 1)
    return table


def _pot_c(ranks: pd.DataFrame, order: list[str]) -> dict[str, float]:
    if ranks.empty:
        return {}
    ds = _pit_dataset(ranks, order)
    p_values = ds.azstats.uniformity_test(dim=["chain", "draw"], method="pot_c")[0]
    return {q: float(p_values[q]) for q in ds.data_vars}


def coverage(ranks: pd.DataFrame) -> pd.DataFrame:
    """Coverage of the central intervals, one row per quantity (problem simulations left out).

    Columns ``cov50``, ``cov80``, ``cov90``, ``cov95``: the share of simulations whose prior
    draw lies in the posterior's central interval of that mass; ``se50`` ... its Monte-Carlo
    SE, sqrt(c (1 - c) / n); ``n``.
    """
    ok = ranks[~ranks["problem"].astype(bool)]
    rows = []
    for q, g in ok.groupby("quantity", sort=False):
        row = {"quantity": q, "n": len(g)}
        for lv in LEVELS:
            p = _pct(lv)
            inside = ((g[f"lo{p}"] <= g["truth"]) & (g["truth"] <= g[f"hi{p}"])).mean()
            row[f"cov{p}"] = float(inside)
            row[f"se{p}"] = float(np.sqrt(inside * (1 - inside) / len(g)))
        rows.append(row)
    columns = ["quantity", "n", *(f"{c}{_pct(lv)}" for lv in LEVELS for c in ("cov", "se"))]
    return pd.DataFrame(rows, columns=columns).set_index("quantity")


# --- the result ------------------------------------------------------------------------
@dataclasses.dataclass
class Calibration:
    """The result of :func:`calibrate`.

    Attributes
    ----------
    spec : str
        The spec's name.
    sims : pandas.DataFrame
        One row per simulation: ``divergences``, ``max_rhat`` and ``min_ess`` (bulk) with the
        quantities they come from (``worst_rhat``, ``worst_ess``), ``problem``, ``message``
        (why a fit failed), ``seconds``.
    ranks : pandas.DataFrame
        One row per simulation and quantity (:func:`rank_table`).
    uniformity : pandas.DataFrame
        One row per quantity (:func:`uniformity`).
    coverage : pandas.DataFrame
        One row per quantity (:func:`coverage`).
    settings : dict
        Sampler settings, ``thin``, ``seed``, design size, wall time (``seconds``).
    """

    spec: str
    sims: pd.DataFrame
    ranks: pd.DataFrame
    uniformity: pd.DataFrame
    coverage: pd.DataFrame
    settings: dict

    @property
    def n_problem(self) -> int:
        """Simulations left out: divergences, R-hat, ESS, or a failed fit."""
        return int(self.sims["problem"].sum()) if len(self.sims) else 0

    @property
    def flagged(self) -> list[str]:
        """Quantities whose ranks are not uniform (Bonferroni, family-wise ``ALPHA``)."""
        return self.uniformity.index[self.uniformity["flagged"]].tolist()

    @property
    def text(self) -> str:
        """A plain-language summary."""
        n, bad = len(self.sims), self.n_problem
        msgs = self.sims.loc[self.sims["message"] != "", "message"]
        failed = f" ({len(msgs)} failed: {msgs.iloc[0]})" if len(msgs) else ""
        head = (f"SBC of '{self.spec}': {n} simulations, {n - bad} used, {bad} with "
                f"convergence problems left out{failed}.")  # fmt: skip
        if self.uniformity.empty:
            return head + " No ranks to test."
        cov90 = self.coverage["cov90"]
        body = (f" 90 % intervals covered the true value in {cov90.min():.0%}-{cov90.max():.0%} "
                f"of simulations (per quantity).")  # fmt: skip
        if self.flagged:
            return head + body + f" Ranks NOT uniform for: {', '.join(self.flagged)}."
        smallest = self.uniformity["p_value"].min()
        return head + body + (f" Ranks uniform for all {len(self.uniformity)} quantities "
                              f"(smallest p = {smallest:.2g}).")  # fmt: skip

    def __str__(self) -> str:
        return self.text

    def to_datatree(self):
        """PIT values of the used simulations as a DataTree with group ``prior_sbc``
        (dims ``chain`` = 1, ``draw`` = simulation), the layout ArviZ's SBC plots read."""
        import xarray as xr

        ok = self.ranks[~self.ranks["problem"].astype(bool)]
        return xr.DataTree.from_dict({"prior_sbc": _pit_dataset(ok, list(self.uniformity.index))})

    def plot(self, var_names: list[str] | None = None, *, coverage: bool = False):
        """PIT-ECDF plot (``arviz_plots.plot_ecdf_pit``, ``pot_c`` method): the ECDF of the
        ranks minus the uniform CDF, with points that drive a departure marked; with
        ``coverage=True`` the coverage of central intervals of every mass instead.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from arviz_plots import plot_ecdf_pit

        dt = self.to_datatree()
        names = var_names or list(dt["prior_sbc"].data_vars)
        rows = -(-len(names) // 4)
        pc = plot_ecdf_pit(dt, var_names=names, coverage=coverage, backend="matplotlib",
                           figure_kwargs={"figsize": (12, 2.9 * rows + 0.6)})  # fmt: skip
        fig = pc.get_viz("figure")
        title = "coverage of central intervals" if coverage else "rank ECDF - uniform"
        fig.suptitle(f"SBC of '{self.spec}': {title} ({len(dt['prior_sbc'].draw)} sims)")
        return fig

    def save(self, out: str | Path) -> dict[str, Path]:
        """Write the tables (CSV) and both figures (PNG) to folder ``out``; returns the paths."""
        import matplotlib.pyplot as plt

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("uniformity", "coverage", "ranks", "sims"):
            paths[name] = out / f"{self.spec}_{name}.csv"
            getattr(self, name).to_csv(paths[name], index=name in ("uniformity", "coverage"))
        if (~self.ranks["problem"].astype(bool)).any():  # figures need used simulations
            for name, cov in (("ecdf", False), ("coverage_plot", True)):
                fig = self.plot(coverage=cov)
                paths[name] = out / f"{self.spec}_{name.removesuffix('_plot')}.png"
                fig.savefig(paths[name], dpi=110)
                plt.close(fig)
        paths["settings"] = out / f"{self.spec}_settings.json"
        paths["settings"].write_text(json.dumps(self.settings, indent=1, default=str))
        return paths


# --- the run ---------------------------------------------------------------------------
def _template(design: Any, spec: ModelSpec, seed: int):
    """The trial whose covariates every simulation shares.

    From a Design: one trial of :func:`kbayes.simulation.simulate_tables` (fixed-count
    dropout and missing blocks, so the data shape depends on the design only, not on
    ``seed``).
    """
    if design is None:
        return load_example()
    if isinstance(design, TrialData):
        return design
    if isinstance(design, Design):
        if "items" in spec.levels and not design.items:
            design = dataclasses.replace(design, items=True)
        tables = simulate_tables(design, Truth(), np.random.SeedSequence(seed), spec.profile)
        return TrialData(*tables, config=design.config)
    raise TypeError(f"design must be a Design, a TrialData or None, not {type(design).__name__}")


def _digest(inputs: ModelInputs) -> str:
    h = hashlib.sha256(json.dumps(inputs.coords, sort_keys=True).encode())
    for k in sorted(inputs.data):
        h.update(k.encode() + np.ascontiguousarray(inputs.data[k]).tobytes())
    return h.hexdigest()


def calibrate(
    model: str | ModelSpec = "joint",
    sims: int = 100,
    *,
    design: Any = None,
    seed: int = 0,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    thin: int = THIN,
    store: str | Path | None = None,
    client: Any = "serial",
    workers: int = 2,
    progress: bool = True,
) -> Calibration:
    """Simulation-based calibration of a model spec (see the module docstring).

    Parameters
    ----------
    model : str or ModelSpec, default "joint"
        A built-in spec name, a path to a TOML spec or a spec.
    sims : int, default 100
        Simulations (prior draw, data, fit each).
    design : Design, TrialData or None
        The fixed design: ``None`` the bundled example (26 participants, 50 sessions), a
        :class:`~kbayes.Design` (one trial simulated from it with ``seed``, with fixed-count
        dropout and missing blocks, gives the covariates; item scores are added for the item
        model) or a TrialData.
    seed : int, default 0
        Root of every simulation's ``SeedSequence``.
    draws, tune, chains : int, optional
        NUTS settings (default 500, 500, 2, as a power replicate).
    thin : int, default 100
        Posterior draws (equally spaced) each prior draw is ranked among; ranks 0..thin.
        ``chains * draws`` must be at least ``thin``.
    store : path, optional
        Folder for one JSON file per finished simulation; a rerun resumes.
    client : "serial", None, dask Client or address, default "serial"
        Where simulations run (as :func:`kbayes.power`): ``"serial"`` in this process,
        ``None`` a local Dask cluster of ``workers`` processes, or an existing cluster.
    workers : int, default 2
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    Calibration
        Tables ``uniformity`` (p-values per quantity, ``flagged``), ``coverage`` (50, 80, 90,
        95 % with Monte-Carlo SEs), ``ranks`` and ``sims``; ``plot()`` draws the PIT-ECDF;
        ``text`` says it in words.
    """
    spec = load_spec(model)
    given = {"draws": draws, "tune": tune, "chains": chains}
    settings = NUTS_DEFAULTS | {k: v for k, v in given.items() if v}
    if settings["draws"] * settings["chains"] < thin:
        raise ValueError(f"draws * chains ({settings['draws'] * settings['chains']}) must be "
                         f"at least thin ({thin})")  # fmt: skip
    template = _template(design, spec, seed)
    spec = spec.for_trial(template.config)
    settings["target_accept"] = spec.target_accept  # the design's (a parallel trial: 0.95)
    stage1 = (load_spec(spec.first_stage).for_trial(template.config)
              if spec.delta == "two_stage" else None)  # fmt: skip
    dglx = np.zeros(len(template.sessions)) if stage1 is not None else None
    setup = Setup(
        spec_source=spec.source,
        inputs=model_inputs(spec, template, dglx=dglx),
        stage1_source=stage1.source if stage1 else None,
        stage1_inputs=model_inputs(stage1, template) if stage1 else None,
        settings=settings,
        thin=thin,
    )
    about = {"spec": spec.hash, "stage1": stage1.hash if stage1 else None, "seed": seed,
             "settings": settings, "thin": thin, "design": _digest(setup.inputs),
             "forward": FORWARD_VERSION}  # fmt: skip
    key = f"{spec.name}-{digest(about)[:12]}"
    folder = Path(store) / key if store else None
    if folder:
        write_record(folder / "run.json", about | {"spec_name": spec.name})
    root = np.random.SeedSequence(seed)
    jobs = [(folder / f"s{k:06d}.json" if folder else None, SimTask(key, k, child(root, k)))
            for k in range(sims)]  # fmt: skip
    start = time.perf_counter()
    recs = run_jobs(jobs, run_simulation, setup, client=client, workers=workers,
                    progress=progress, label="simulations")  # fmt: skip
    sims_table = pd.DataFrame(
        [{k: r.get(k, "") for k in SIM_COLUMNS} for r in recs], columns=list(SIM_COLUMNS)
    )
    ranks = rank_table(recs)
    info = {"thin": thin, "seed": seed, "sims": sims, "store_key": key,
            "participants": len(setup.inputs.coords["participant"]),
            "sessions": len(setup.inputs.coords["session"]),
            "seconds": time.perf_counter() - start}  # fmt: skip
    kinds = {q: ("estimand" if q in spec.estimand_rows else "parameter") for q in ranks["quantity"]}
    return Calibration(
        spec=spec.name,
        sims=sims_table,
        ranks=ranks,
        uniformity=uniformity(ranks, kinds=kinds),
        coverage=coverage(ranks),
        settings=settings | info,
    )

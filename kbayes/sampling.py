"""Fitting: spec + TrialData -> xarray DataTree, with compiled models cached per data shape.

A nutpie-compiled model is reused for every data set of the same shape (``with_data``);
data of another shape (other n, sessions or blocks) compile anew, because nutpie does not
resize dims when data are swapped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from kbayes.build import (
    ModelInputs,
    build_model,
    covariate_coding,
    covariate_values,
    model_inputs,
)
from kbayes.data import TrialData
from kbayes.index_dims import CONDITION, CONTRAST, CONTRAST_SUFFIX, TIME, row_name
from kbayes.marginal import draw_integrated, latent_conditional
from kbayes.spec import ModelSpec, load_spec

SAMPLERS = ("nutpie", "pymc")
log = logging.getLogger("kbayes")


@dataclass
class _Compiled:
    model: pm.Model  # what NUTS samples: spec.integrate's effects integrated out
    full: pm.Model  # the generative model: forward draws, log-likelihood, predictive checks
    nutpie: Any = None  # nutpie CompiledModel, made on first nutpie use
    conditional: Any = None  # kbayes.marginal.latent_conditional, made on first use

    def latent_conditional(self):
        with _CACHE_LOCK:
            if self.conditional is None and "latent_mean" in self.model.named_vars:
                self.conditional = latent_conditional(self.model)
        return self.conditional


_CACHE: dict[tuple, _Compiled] = {}
#: Held while a model is built or compiled, or data are set into it: a Dask worker may run
#: several replicates in threads, and each model is to be compiled once per process.
_CACHE_LOCK = threading.Lock()
#: How many times a model was compiled for nutpie in this process (tests assert on it).
compile_count = {"nutpie": 0}


def compiled_model(spec: ModelSpec, inputs: ModelInputs) -> _Compiled:
    """The cached model for (spec, data shape), with ``inputs``'s data set into it."""
    key = (spec.hash, inputs.shape)
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            model = build_model(spec, inputs)
            full = build_model(spec, inputs, integrated=False) if spec.integrate else model
            entry = _CACHE[key] = _Compiled(model, full)
        else:
            for model in {id(m): m for m in (entry.model, entry.full)}.values():
                with model:
                    pm.set_data(inputs.data, coords=inputs.coords)
    return entry


def _nutpie_model(entry: _Compiled, inputs: ModelInputs):
    import nutpie

    with _CACHE_LOCK:
        if entry.nutpie is None:
            entry.nutpie = nutpie.compile_pymc_model(entry.model)
            compile_count["nutpie"] += 1
    used = {var.name for var in entry.nutpie.shared_var_keys}  # a spec may leave data unused
    updated = entry.nutpie.with_data(**{k: v for k, v in inputs.data.items() if k in used})
    return dataclasses.replace(updated, _coords={**updated._coords, **inputs.coords})


def sampler_seed(seed: int | np.random.SeedSequence | np.random.Generator | None) -> int:
    """The integer seed (0 <= seed < 2**31) a sampler takes: an int as given, 31 bits of a
    SeedSequence's state, or a draw of a Generator (``None``: fresh entropy)."""
    if isinstance(seed, int | np.integer):
        return int(seed)
    if isinstance(seed, np.random.SeedSequence):
        return int(seed.generate_state(1)[0] >> 1)
    return int(np.random.default_rng(seed).integers(2**31 - 1))


def sample(
    spec: ModelSpec,
    inputs: ModelInputs,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | np.random.Generator | None = None,
    sampler: str = "nutpie",
    target_accept: float | None = None,
    progress: bool = True,
    cores: int | None = None,
    save_warmup: bool = True,
) -> tuple[xr.DataTree, pm.Model]:
    """Sample the posterior of ``spec`` on ``inputs``; returns the DataTree and the full
    (generative) model. Effects integrated out for sampling (``spec.integrate``) are drawn
    afterwards from their exact conditional posterior, so the DataTree holds every variable.

    ``save_warmup=False`` leaves out the tuning draws (groups ``warmup_*``), which power and
    calibration replicates never read.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, not {sampler!r}")
    entry = compiled_model(spec, inputs)
    seed = sampler_seed(seed)
    target_accept = spec.target_accept if target_accept is None else target_accept
    start = time.perf_counter()
    if sampler == "nutpie":
        import nutpie

        idata = nutpie.sample(
            _nutpie_model(entry, inputs),
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            target_accept=target_accept,
            adaptation=spec.adaptation,
            progress_bar=progress,
            cores=cores or chains,
            save_warmup=save_warmup,
        )
        pm.backends.arviz.patch_nutpie_idata(idata, entry.full, time.perf_counter() - start)
    else:
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            model=entry.model,
            target_accept=target_accept,
            nuts_sampler="pymc",
            progressbar=progress,
            cores=cores or chains,
            discard_tuned_samples=not save_warmup,
            compute_convergence_checks=False,
        )
        if spec.integrate:  # the observations are those of the full model
            arviz = pm.backends.arviz
            coords, dims = arviz.coords_and_dims_for_inferencedata(entry.full)
            observed = arviz.dict_to_dataset(
                arviz.find_observations(entry.full), inference_library=pm, coords=coords,
                dims=dims, sample_dims=[],
            )  # fmt: skip
            idata["observed_data"] = xr.DataTree(observed)
    if spec.integrate:
        post = idata.posterior.to_dataset()
        values = {k: post[k].to_numpy() for k in post.data_vars}
        rng = np.random.default_rng([seed, 1])  # stream 1 of the seed: the integrated effects
        drawn = draw_integrated(spec, inputs, values, rng, entry.latent_conditional())
        dims = entry.full.named_vars_to_dims
        for name, value in drawn.items():
            post[name] = (("chain", "draw", *dims[name]), value)
        post = post.assign_coords(
            {k: list(inputs.coords[k]) for k in post.dims if k in inputs.coords}
        )
        idata["posterior"] = xr.DataTree(post.assign_attrs(idata.posterior.attrs))
    idata.posterior.attrs["sampling_seconds"] = time.perf_counter() - start
    return idata, entry.full


def sample_scalars(
    spec: ModelSpec,
    inputs: ModelInputs,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    target_accept: float | None = None,
) -> tuple[dict[str, np.ndarray], int, pm.Model]:
    """NUTS (nutpie, one core) draws of the model's scalar variables (and categorical
    coefficients, whose levels estimands use), without a DataTree.

    Returns the draws as ``(chain, draw)`` arrays (``(chain, draw, level)``) by variable
    name, the number of divergent transitions after tuning and the model. What a power
    replicate needs: building the DataTree of every variable took a fifth of a short
    joint-model fit.
    """
    import nutpie

    entry = compiled_model(spec, inputs)
    target_accept = spec.target_accept if target_accept is None else target_accept
    trace = nutpie.sample(
        _nutpie_model(entry, inputs), draws=draws, tune=tune, chains=chains, seed=seed,
        target_accept=target_accept, progress_bar=False, cores=1, return_raw_trace=True,
        adaptation=spec.adaptation,
    )  # fmt: skip
    names = [v.name for v in (*entry.model.free_RVs, *entry.model.deterministics)
             if v.ndim == 0 or v.name in spec.categorical_coefficients
             or v.name in spec.coefficient_dims]  # fmt: skip
    draw_tables, stat_tables = trace.get_arrow_trace()  # one table per chain, tuning first
    kept = [~np.asarray(t.column("tuning"), dtype=bool) for t in stat_tables]

    def stacked(tables: list, name: str) -> np.ndarray:
        return np.stack([_column(t, name)[k] for t, k in zip(tables, kept, strict=True)])

    out = {n: stacked(draw_tables, n) for n in names}
    divergences = int(stacked(stat_tables, "diverging").sum())
    return out, divergences, entry.model


def _column(table: Any, name: str) -> np.ndarray:
    """One variable's draws from a nutpie arrow table: (draw,), or (draw, size) for a vector."""
    column = table.column(name)
    if hasattr(column.type, "value_type"):  # a list per draw
        return np.array(column.to_pylist(), dtype=float)
    return np.asarray(column)


def fit(
    data: TrialData,
    model: str | ModelSpec = "joint",
    *,
    priors: Mapping[str, Any] | None = None,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | np.random.Generator | None = None,
    sampler: str = "nutpie",
    target_accept: float | None = None,
    prior: bool = False,
    log_likelihood: bool = True,
    posterior_predictive: bool = True,
    predictive_draws: int | None = 1000,
    log_prior: bool = True,
    progress: bool = True,
) -> xr.DataTree:
    """Fit a model spec to trial data.

    Parameters
    ----------
    data : TrialData
        Validated trial tables.
    model : str or ModelSpec, default "joint"
        A built-in spec name (``kb.spec.builtin_specs()``), a path to a TOML spec or a spec.
    priors : dict of str to Prior, optional
        Priors replaced or added, ``{"beta_N": Prior("Normal", mu=0, sigma=0.02)}``: the
        fit is of ``spec.with_priors(**priors)`` (a new spec hash).
    draws, tune, chains : int
        Posterior draws and tuning steps per chain, and the number of chains.
    seed : int or numpy Generator
        Same seed, same data and spec -> identical draws.
    sampler : {"nutpie", "pymc"}, default "nutpie"
        nutpie (compiled once per data shape) or PyMC's own NUTS implementation
        (``pm.sample(nuts_sampler="pymc")``, for comparison).
    target_accept : float, optional
        Target acceptance rate of NUTS step-size adaptation; default the spec's
        (``spec.target_accept``: 0.9, for a parallel trial 0.95).
    prior : bool, default False
        Also draw from the prior and prior predictive (groups ``prior``, ``prior_predictive``;
        ordered cutpoints from their restricted prior, :func:`sample_prior`).
    log_likelihood : bool, default True
        Add the pointwise ``log_likelihood`` group (needed for LOO / ``kb.compare``).
    posterior_predictive : bool, default True
        Draw replicated observations from the posterior (group ``posterior_predictive``,
        same seed), for posterior predictive checks (``kb.plots.plot_ppc``).
    predictive_draws : int or None, default 1000
        At most this many posterior draws, every k-th of each chain, get a replicated data
        set (their ``draw`` labels are kept). PyMC draws them one by one (about 1 ms each for
        ``joint``) and the checks plot 50, so 1000 are plenty. ``None`` uses every draw, as
        LOO-PIT (``arviz.loo_pit``) needs, since it pairs each replicate with its
        log-likelihood.
    log_prior : bool, default True
        Add the pointwise ``log_prior`` group, needed with ``log_likelihood`` for prior
        sensitivity (power-scaling, ``arviz.psense``).

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (parameters and the spec's estimands, each with ``label`` and
        ``unit`` attrs), ``sample_stats``, ``observed_data``, ``constant_data``,
        ``log_likelihood``, ``posterior_predictive``, ``log_prior`` and, on request,
        ``prior`` and ``prior_predictive``. ``attrs`` record the spec name and
        hash, the seed, the sampler and the versions of kbayes, pymc, arviz and nutpie.
    """
    spec = load_spec(model).for_trial(data.config)
    if priors:
        spec = spec.with_priors(**priors)
    dglx = None
    first_stage = None
    if spec.delta == "two_stage":
        first_stage = fit(
            data,
            spec.first_stage,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            sampler=sampler,
            target_accept=target_accept,
            log_likelihood=False,
            posterior_predictive=False,
            log_prior=False,
            progress=progress,
        )
        dglx = first_stage.posterior["delta"].mean(("chain", "draw")).to_numpy()
    inputs = model_inputs(spec, data, dglx=dglx)
    rng_seed = sampler_seed(seed)
    idata, pm_model = sample(
        spec,
        inputs,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=rng_seed,
        sampler=sampler,
        target_accept=target_accept,
        progress=progress,
    )
    if first_stage is not None:  # stage-1 draws of the glutamate level, for the estimands
        stage1 = first_stage.posterior.to_dataset()
        betas = [v for v in stage1.data_vars if v.startswith("beta")]
        idata["posterior"] = xr.DataTree(xr.merge([idata.posterior.to_dataset(), stage1[betas]]))
    add_estimands(idata, spec, data)
    if log_likelihood:
        pm.compute_log_likelihood(idata, model=pm_model, progressbar=False)
    if log_prior:
        pm.stats.compute_log_prior(idata, model=pm_model, progressbar=False)
    if posterior_predictive:
        draws_used = thinned(idata.posterior.to_dataset(), predictive_draws)
        idata["posterior_predictive"] = pm.sample_posterior_predictive(
            draws_used, model=pm_model, random_seed=rng_seed, progressbar=False
        )["posterior_predictive"]
    if prior:
        prior_tree = sample_prior(pm_model, draws, rng_seed)
        for group in ("prior", "prior_predictive"):
            idata[group] = prior_tree[group]
    if "mrs" in spec.levels:  # block times for plots; set last, as PyMC rewrites constant_data
        idata["constant_data"]["time_min"] = xr.DataArray(
            data.mrs["time_min"].to_numpy(float), dims="mrs_obs"
        )
    idata.attrs.update(result_attrs(spec, data, seed=rng_seed, sampler=sampler))
    if first_stage is not None:
        idata.attrs["first_stage_hash"] = first_stage.attrs["spec_hash"]
    return idata


def ordered_variables(model: pm.Model) -> list[str]:
    """Free variables with an ordered transform (the item model's cutpoints)."""
    kind = type(pm.distributions.transforms.ordered)
    return [rv.name for rv in model.free_RVs
            if isinstance(model.rvs_to_transforms.get(rv), kind)]  # fmt: skip


def is_ordered(values: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Per draw (the leading axes of ``values[name]``), whether every variable of ``names``
    increases strictly along its last axis (True for no names)."""
    return np.logical_and.reduce([np.all(np.diff(values[v], axis=-1) > 0, axis=-1) for v in names])


def sample_prior(model: pm.Model, draws: int, seed: int) -> xr.DataTree:
    """``draws`` draws of the prior and prior predictive (groups ``prior``,
    ``prior_predictive``), as ``pm.sample_prior_predictive``.

    PyMC's forward sampling ignores transforms: it draws a variable with an ordered transform
    unordered (90 % of the item model's cutpoints), while the model's prior is that
    distribution restricted to ordered vectors. Such models are drawn in batches and only
    draws with every ordered variable ordered are kept (rejection sampling, exact); how many
    were drawn is logged.
    """
    ordered = ordered_variables(model)
    if not ordered:
        return pm.sample_prior_predictive(draws=draws, model=model, random_seed=seed)
    rng = np.random.default_rng(seed)
    kept: list[xr.DataTree] = []
    found = tried = 0
    while found < draws:
        rate = max(found, 1) / tried if tried else 1.0
        batch = min(int((draws - found) / rate * 1.2) + 10, 5 * draws)  # memory: 5 x draws
        if tried + batch > 1000 * draws:
            raise RuntimeError(f"prior: {found} of {tried} draws have ordered {ordered}")
        tree = pm.sample_prior_predictive(draws=batch, model=model, random_seed=rng)
        ok = is_ordered({v: tree.prior[v].values for v in ordered}, ordered)
        kept.append(tree.isel(draw=np.flatnonzero(ok[0])))  # one chain
        found, tried = found + int(ok.sum()), tried + batch
    log.info("prior: kept the %d of %d forward draws with ordered %s", found, tried, ordered)
    out = {}
    for group in ("prior", "prior_predictive"):
        joined = xr.concat([t[group].to_dataset() for t in kept], dim="draw").isel(
            draw=slice(draws)
        )
        out[group] = joined.assign_coords(draw=np.arange(draws))
    return xr.DataTree.from_dict(out)


def thinned(posterior: xr.Dataset, draws: int | None) -> xr.Dataset:
    """At most ``draws`` draws of ``posterior`` in all: every k-th of each chain
    (:func:`arviz_stats.thin`, which keeps the ``draw`` labels)."""
    if draws is not None and draws < 1:
        raise ValueError(f"predictive_draws must be a positive number or None, not {draws}")
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    if draws is None or draws >= total:
        return posterior
    return azs.thin(posterior, factor=-(-total // draws))


def add_estimands(idata: xr.DataTree, spec: ModelSpec, data: TrialData) -> None:
    """Add the spec's estimands to the posterior, with ``label`` and ``unit`` attrs; label
    the term coefficients (the term registry's labels) and give their units."""
    post = idata.posterior.to_dataset()
    values = spec.estimand_values({k: post[k] for k in post.data_vars})
    names = spec.constants | data.config.label_names
    units = spec.term_units()
    for name, label in spec.term_labels().items():
        post[name].attrs["label"] = _capitalise(label.format(**names))
        post[name].attrs["unit"] = units[name].format(**names)
    for name, est in spec.estimands.items():
        attrs = {"label": _capitalise(est.label.format(**names)), "unit": est.unit.format(**names)}
        if name in values:
            post[name] = values[name].assign_attrs(attrs, estimand=1)
            continue
        # one value per level of its index dims, and the contrasts between pretreatments
        dims = spec.index_dims
        axes = [(d, dims[d]) for d in spec.estimand_dims[name]]
        post[name] = _gathered(values, name, axes).assign_attrs(
            attrs, estimand=1, labels=json.dumps(_labels(est.label, names, axes))
        )
        if CONDITION not in spec.estimand_dims[name]:
            continue
        pairs = spec.contrasts(name)
        others = [(d, levels) for d, levels in axes if d != CONDITION]
        axes = [(CONTRAST, [pair for pair, *_ in pairs]), *others]
        label = {}  # "b vs a[, time]": b's label, minus (divided by) that under a
        for pair, b, a, ratio in pairs:
            for cell, text in _labels(est.label, names | {"active": b}, others).items():
                how = "divided by" if ratio else "minus"
                label[f"{pair}, {cell}" if cell else pair] = f"{text}, {how} that under {a}"
        post[name + CONTRAST_SUFFIX] = _gathered(values, name, axes).assign_attrs(
            attrs, contrast_of=name, labels=json.dumps(label)
        )
    idata["posterior"] = xr.DataTree(post)


def _gathered(values: Mapping[str, Any], name: str, axes: list) -> xr.DataArray:
    """The rows ``name[l1, l2]`` of ``values`` as one array with the dims of ``axes``
    ((dim, levels) pairs, in row order) last."""
    if not axes:
        return values[name]

    def gather(prefix: list[str], rest: list) -> xr.DataArray:
        if not rest:
            return values[row_name(name, prefix)]
        (dim, levels), *tail = rest
        parts = [gather([*prefix, x], tail) for x in levels]
        return xr.concat(parts, dim=pd.Index(list(levels), name=dim))

    return gather([], axes).transpose(..., *(d for d, _ in axes))


def _labels(template: str, names: Mapping[str, str], axes: list) -> dict[str, str]:
    """The label of each cell ``"l1, l2"`` of ``axes``: the template with ``{active}`` the
    cell's condition and ``{time}`` its rating time."""
    out = {}
    for combo in itertools.product(*(levels for _, levels in axes)):
        at = dict(zip((d for d, _ in axes), combo, strict=True))
        fill = names | ({"active": at[CONDITION]} if CONDITION in at else {})
        fill |= {"time": at[TIME]} if TIME in at else {}
        out[", ".join(combo)] = _capitalise(template.format(**fill))
    return out


def result_attrs(spec: ModelSpec, data: TrialData, *, seed: int, sampler: str) -> dict[str, Any]:
    """What every result records: spec name, hash and text, seed, sampler, versions."""
    return {
        "spec_name": spec.name,
        "spec_hash": spec.hash,
        "spec": json.dumps(spec.source),  # file order: estimands may use earlier ones
        "seed": seed,
        "sampler": sampler,
        "trial_config": json.dumps(dataclasses.asdict(data.config)),
        "exclusions": data.exclusions.to_json(orient="records"),
        # (centre, scale) of each covariate, computed once from this data
        "covariate_coding": json.dumps(covariate_coding(spec, covariate_values(spec, data))),
        "defaulted_priors": json.dumps(list(spec.defaulted)),
        **{f"{pkg}_version": version(pkg) for pkg in ("kbayes", "pymc", "arviz", "nutpie")},
    }


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# The counter is reachable as ``kb.fit.compile_count`` too.
fit.compile_count = compile_count  # type: ignore[attr-defined]

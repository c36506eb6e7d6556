"""Plots of a fitted result; each function takes the DataTree and returns a matplotlib Figure.

=========================  ==========================================  =======================
function                   shows                                       needs groups
=========================  ==========================================  =======================
plot_trace                 trace + density (or rank) per parameter     posterior
plot_estimands             estimands with HDIs, grouped by unit        posterior (+ spec)
plot_timecourse            observed Glx/tNAA per block and the         posterior, constant_data,
                           modelled mean course per condition          observed_data (glx)
plot_improvement           improvement against the session glutamate   posterior, constant_data,
                           change, with the regression per condition   observed_data
plot_trajectory            improvement at each rating time by          posterior, constant_data,
                           condition (a trajectory spec)               observed_data
plot_ppc                   posterior (or prior) predictive check       posterior_predictive (or
                                                                       prior_predictive),
                                                                       observed_data
plot_prior_sensitivity     power-scaled posteriors (prior and          log_prior,
                           likelihood)                                 log_likelihood
=========================  ==========================================  =======================

A missing group raises a ``ValueError`` that names the group and the call that adds it.
Interval mass comes from the spec stored with the result (``ci_prob``).
"""

from __future__ import annotations

import textwrap
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from kbayes.build import coded_index, population_mean, standardised_change, under_condition
from kbayes.data import infusion_profile
from kbayes.results import estimand_names, rated_sessions, result_spec, trial_config
from kbayes.summaries import covariate_effects, estimands

#: The call that adds each group, quoted in errors.
_HOW = {
    "posterior": "kb.fit(data, model)",
    "constant_data": "kb.fit(data, model)",
    "observed_data": "kb.fit(data, model)",
    "posterior_predictive": "kb.fit(data, model, posterior_predictive=True)",
    "prior_predictive": "kb.fit(data, model, prior=True)",
    "log_prior": "kb.fit(data, model, log_prior=True)",
    "log_likelihood": "kb.fit(data, model, log_likelihood=True)",
}
_COND_COLOURS = ("C0", "C1", "C4", "C5", "C6", "C7")  # reference, actives (not the sexes')
_SEX_STYLE = {"": ("k", "o"), "female": ("C3", "s"), "male": ("C2", "D")}


def require(idata: xr.DataTree, *groups: str) -> None:
    """Raise ``ValueError`` naming the first of ``groups`` missing from ``idata``."""
    for group in groups:
        if group not in idata.children:
            raise ValueError(
                f"the result has no {group!r} group; it comes from {_HOW.get(group, 'kb.fit')}"
            )


def _hdi(da: xr.DataArray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper HDI bounds of ``da`` over chain and draw."""
    bounds = az.hdi(da, prob=prob)
    return bounds.sel(ci_bound="lower").to_numpy(), bounds.sel(ci_bound="upper").to_numpy()


def _figure(pc) -> Figure:
    """The matplotlib Figure of an arviz-plots PlotCollection."""
    return pc.get_viz("figure")


def scalar_parameters(idata: xr.DataTree) -> list[str]:
    """Posterior variables that are scalar per draw and are not estimands, in stored order."""
    post = idata.posterior
    return [
        str(v)
        for v, da in post.data_vars.items()
        if set(da.dims) == {"chain", "draw"} and da.attrs.get("estimand") != 1
    ]


def plot_trace(
    idata: xr.DataTree, var_names: list[str] | None = None, *, kind: str = "trace"
) -> Figure:
    """Trace and marginal density per chain (or rank plots) of the main parameters.

    Panels are labelled with the variable names (a term's label, in the ``label`` attrs and
    the tables, is too long for the space beside a panel: labels overlapped).

    Parameters
    ----------
    idata : xarray.DataTree
        Fitted result with a ``posterior`` group.
    var_names : list of str, optional
        Posterior variables to show. Default: the scalar parameters (not the estimands).
    kind : {"trace", "rank"}, default "trace"
        ``"trace"``: :func:`arviz.plot_trace_dist`; ``"rank"``: :func:`arviz.plot_rank`
        (chains that mix well have uniform rank histograms).

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(idata, "posterior")
    names = var_names or scalar_parameters(idata)
    plot = {"trace": az.plot_trace_dist, "rank": az.plot_rank}.get(kind)
    if plot is None:
        raise ValueError(f"kind must be 'trace' or 'rank', not {kind!r}")
    size = sum(int(np.prod(idata.posterior[n].shape[2:])) for n in names)
    with az.rc_context({"plot.max_subplots": max(2 * size, 40)}):
        return _figure(plot(idata, var_names=names, backend="matplotlib"))


def _estimand_order(names: list[str]) -> list[tuple[str, str]]:
    """(name, sex) with each average followed by its ``_female`` and ``_male`` rows (of
    the same condition: ``ntx_glu[nalmefene]``, ``ntx_glu_female[nalmefene]``)."""
    out = []
    for name in names:
        stem, bracket, coord = name.partition("[")
        base, _, sex = stem.rpartition("_")
        if sex not in ("female", "male"):
            sex = ""
        elif base + bracket + coord in names:
            continue  # placed after its average
        out.append((name, sex))
        out += [(own, s) for s in ("female", "male")
                if (own := f"{stem}_{s}{bracket}{coord}") in names]  # fmt: skip
    return out


def plot_estimands(idata: xr.DataTree) -> Figure:
    """Forest plot of the estimands: posterior median and HDI, one panel per unit.

    Each estimand averaged over sexes (black) is followed by its female and male rows; the
    ROPE, where the spec gives one, is shaded, and zero is marked.

    Parameters
    ----------
    idata : xarray.DataTree
        Fitted result whose ``posterior`` holds the spec's estimands (:func:`kbayes.fit`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(idata, "posterior")
    table = estimands(idata)
    title = (
        f"Estimands: posterior median and {100 * table.attrs['ci_prob']:g} % HDI "
        "(grey: ROPE; black: averaged over sexes, red: women, green: men)"
    )
    return _forest(table, title)


def plot_covariate_effects(idata: xr.DataTree) -> Figure:
    """Forest plot of the covariate terms' coefficients (:func:`kbayes.summaries.covariate_effects`;
    one row per coefficient or coded level), posterior median and HDI, one panel per unit."""
    require(idata, "posterior")
    table = covariate_effects(idata)
    title = f"Covariate effects: posterior median and {100 * table.attrs['ci_prob']:g} % HDI"
    return _forest(table, title)


def _forest(table, title: str) -> Figure:
    """Median and HDI of each row of a :func:`kbayes.estimands` table, one panel per unit."""
    rows = _estimand_order(list(table.index))
    units = list(dict.fromkeys(table["unit"]))
    per_unit = {u: [(n, s) for n, s in rows if table.loc[n, "unit"] == u] for u in units}
    heights = [len(v) + 1 for v in per_unit.values()]
    fig, axes = plt.subplots(
        len(units),
        1,
        figsize=(9, 0.42 * sum(heights) + 0.6),
        gridspec_kw={"height_ratios": heights},
        layout="constrained",
        squeeze=False,
    )
    for ax, unit in zip(axes[:, 0], units, strict=True):
        items = per_unit[unit]
        for y, (name, sex) in enumerate(reversed(items)):
            row = table.loc[name]
            colour, marker = _SEX_STYLE[sex]
            if not np.isnan(row["rope_low"]):
                ax.fill_betweenx(
                    [y - 0.4, y + 0.4], row["rope_low"], row["rope_high"], color="0.85", lw=0
                )
            ax.hlines(y, row["hdi_low"], row["hdi_high"], color=colour, lw=2)
            ax.plot(row["median"], y, marker=marker, color=colour, ms=6)
        labels = [textwrap.fill(str(table.loc[n, "label"]), 55) for n, _ in reversed(items)]
        ax.set_yticks(range(len(items)), labels, fontsize=8)
        reference = {"odds ratio": 1.0, "probability": None}.get(unit, 0.0)  # "no effect"
        if reference is not None:
            ax.axvline(reference, color="0.4", ls="--", lw=0.8)
        ax.set_xlabel(unit or "value", fontsize=9)
        ax.set_ylim(-0.7, len(items) - 0.3)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_timecourse(idata: xr.DataTree) -> Figure:
    """Observed Glx/tNAA per fMRS block by condition, with the modelled mean course.

    Points are the observed means (± 1 SE) per block time and condition; lines and bands are
    the posterior median and HDI of the population mean course
    :math:`\\alpha_0 + (\\beta_0 + \\beta_N c)\\, g(t)` (participant and session effects at
    zero, average sex, mid period).

    Parameters
    ----------
    idata : xarray.DataTree
        Result of a spec with an fMRS level (``joint``, ``glutamate``): groups ``posterior``,
        ``constant_data`` (``g``, ``mrs_session``, ``c``; ``time_min`` for the time axis,
        else the block number is used) and ``observed_data`` (``glx``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(idata, "posterior", "constant_data", "observed_data")
    spec = result_spec(idata)
    if "mrs" not in spec.levels:
        raise ValueError(f"spec {spec.name!r} has no fMRS level, so there is no time course")
    cd = idata.constant_data.to_dataset()
    y = idata.observed_data["glx"].to_numpy()
    cond = coded_index(cd["c"].to_numpy())[cd["mrs_session"].to_numpy()]
    labels = cd["mrs_obs"].to_numpy().astype(str)
    block = np.array([int(s.rsplit("/", 1)[1]) for s in labels])
    has_time = "time_min" in cd
    x = cd["time_min"].to_numpy() if has_time else block.astype(float)
    post = idata.posterior.to_dataset()
    names = trial_config(idata).get("conditions", ("reference", "active"))
    metabolite = trial_config(idata).get("metabolite", "Glx/tNAA")
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for k, (name, colour) in enumerate(zip(names, _COND_COLOURS, strict=False)):
        sel = cond == k
        blocks = np.unique(block[sel])
        bx = np.array([x[sel & (block == b)].mean() for b in blocks])
        vals = [y[sel & (block == b)] for b in blocks]
        means = np.array([v.mean() for v in vals])
        ses = np.array([v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for v in vals])
        offset = (k - (len(names) - 1) / 2) * 0.01 * np.ptp(x)
        ax.errorbar(bx + offset, means, ses, fmt="o", color=colour, label=f"{name}: observed")
        if has_time:
            grid = np.linspace(x.min(), x.max(), 200)
            g = infusion_profile(grid, spec.profile, trial_config(idata).get("infusion_min", 40.0))
        else:
            grid = bx
            g = np.array([cd["g"].to_numpy()[sel & (block == b)].mean() for b in blocks])
        two, params, c = under_condition(spec, post, k)
        course = population_mean(two, "mrs", params, {"c": c, "g": xr.DataArray(g, dims="t")})
        lo, hi = _hdi(course, spec.ci_prob)
        ax.fill_between(grid, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.plot(grid, course.median(("chain", "draw")), color=colour, label=f"{name}: model")
    ax.set_xlabel("minutes from infusion start" if has_time else "fMRS block")
    ax.set_ylabel(metabolite)
    ax.set_title(
        f"{metabolite} per block: observed mean ± SE and modelled mean course "
        f"({100 * spec.ci_prob:g} % HDI)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return fig


def plot_trajectory(idata: xr.DataTree) -> Figure:
    """Improvement at each rating time by condition: a trajectory spec's fit.

    Points are the observed mean improvement (baseline - score, ± 1 SE) per rating time and
    condition; lines and bands the posterior median and HDI of the modelled improvement of a
    session at the centring values (average sex): ``improvement_reference`` under the
    reference and that plus ``ntx_imp_total`` under each pretreatment.

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(idata, "posterior", "constant_data", "observed_data")
    spec = result_spec(idata)
    if spec.outcome != "trajectory" or "improvement_reference" not in spec.estimands:
        raise ValueError(f"spec {spec.name!r} models one rating time, not a trajectory")
    cd, post = idata.constant_data.to_dataset(), idata.posterior.to_dataset()
    hours = np.asarray(spec.times_h)
    cond = coded_index(cd["c"].to_numpy())[cd["rating_session"].to_numpy()]
    when = cd["rating_time"].to_numpy()
    imp = idata.observed_data["improvement"].to_numpy()
    names = trial_config(idata).get("conditions", ("reference", "active"))
    scale = trial_config(idata).get("scale", "MADRS")
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for k, (name, colour) in enumerate(zip(names, _COND_COLOURS, strict=False)):
        line = post["improvement_reference"]
        if k:
            total = post["ntx_imp_total"]
            line = line + (total.sel(condition=name) if "condition" in total.dims else total)
        lo, hi = _hdi(line, spec.ci_prob)
        ax.fill_between(hours, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.plot(hours, line.median(("chain", "draw")), color=colour, label=f"{name}: model")
        sel = [imp[(cond == k) & (when == j)] for j in range(hours.size)]
        means = np.array([x.mean() if x.size else np.nan for x in sel])
        ses = np.array([x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else 0.0 for x in sel])
        shift = 1 + 0.03 * (k - (len(names) - 1) / 2)  # side by side on the log axis
        ax.errorbar(hours * shift, means, ses, fmt="o", color=colour, label=f"{name}: observed")
    ax.set_xscale("log")
    ax.set_xticks(hours, [f"{h:g}" for h in hours])
    ax.set_xlabel("hours from infusion start")
    ax.set_ylabel(f"improvement ({scale} points)")
    ax.set_title(f"Improvement over time by condition ({100 * spec.ci_prob:g} % HDI)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_improvement(idata: xr.DataTree) -> Figure:
    """Improvement against the session glutamate change, with the regression per condition.

    Points: each rated session's improvement against its glutamate change (the posterior mean
    of the latent ``delta`` with ± 1 posterior SD in the joint model; the observed or
    first-stage change otherwise). Lines and bands: posterior median and HDI of
    :math:`\\gamma_0 + \\gamma_N c + (\\gamma_\\Delta + \\gamma_{\\Delta N} c)\\,\\tilde\\Delta`
    (average sex, centred baseline, mid period, participant effect zero).

    Parameters
    ----------
    idata : xarray.DataTree
        Result of a spec with an improvement level and a glutamate change (``joint``,
        ``improvement``, ``two_stage``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(idata, "posterior", "constant_data", "observed_data")
    spec = result_spec(idata)
    terms = spec.terms.get("improvement", ())
    if "improvement" not in spec.levels or "dglx" not in terms:
        raise ValueError(f"spec {spec.name!r} does not relate improvement to the glutamate change")
    cd = idata.constant_data.to_dataset()
    post = idata.posterior.to_dataset()
    imp = idata.observed_data["improvement"].to_numpy()  # per rating (a rated session)
    rated = rated_sessions(idata)
    if spec.outcome == "trajectory":  # the ratings at 24 h (else the first time)
        j = spec.times_h.index(24.0) if 24.0 in spec.times_h else 0
        at = cd["rating_time"].to_numpy() == j
        imp, rated = imp[at], rated[at]
        post = post.isel(time=j)
    cond = coded_index(cd["c"].to_numpy())[rated]
    if spec.delta == "latent":
        x, xerr = (
            post["delta"].mean(("chain", "draw")).to_numpy()[rated],
            post["delta"].std(("chain", "draw")).to_numpy()[rated],
        )
        xlabel = "session glutamate change (posterior mean ± SD)"
    else:
        x, xerr = cd["dglx_obs"].to_numpy()[rated], None
        xlabel = (
            "session glutamate change (first-stage posterior mean)"
            if spec.delta == "two_stage"
            else "observed session glutamate change"
        )
    metabolite = trial_config(idata).get("metabolite", "Glx/tNAA")
    scale = trial_config(idata).get("scale", "MADRS")
    pad = 0.1 * np.ptp(x)
    grid = xr.DataArray(np.linspace(x.min() - pad, x.max() + pad, 100), dims="x")
    dtilde = standardised_change(spec, grid)

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    names = trial_config(idata).get("conditions", ("reference", "active"))
    for k, (name, colour) in enumerate(zip(names, _COND_COLOURS, strict=False)):
        sel = cond == k
        ax.errorbar(
            x[sel],
            imp[sel],
            xerr=None if xerr is None else xerr[sel],
            fmt="o",
            color=colour,
            alpha=0.7,
            ms=4,
            elinewidth=0.6,
            label=f"{name}: sessions",
        )
        two, params, c = under_condition(spec, post, k)
        line = population_mean(two, "improvement", params, {"c": c, "dtilde": dtilde})
        lo, hi = _hdi(line, spec.ci_prob)
        ax.fill_between(grid, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.plot(grid, line.median(("chain", "draw")), color=colour, label=f"{name}: model")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel(f"{xlabel}, {metabolite}")
    ax.set_ylabel(f"day-1 improvement ({scale} points)")
    ax.set_title(
        f"Improvement against the {metabolite} change, regression per condition "
        f"({100 * spec.ci_prob:g} % HDI)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return fig


def plot_ppc(
    idata: xr.DataTree,
    var_names: list[str] | None = None,
    *,
    group: str = "posterior_predictive",
    num_samples: int = 50,
) -> Figure:
    """Predictive check: replicated data against the observed data.

    Continuous outcomes (``glx``, ``improvement``) are drawn with
    :func:`arviz.plot_ppc_dist` (densities of ``num_samples`` replicated data sets over the
    observed one); ordinal item scores (``items``) with :func:`arviz.plot_ppc_rootogram`
    (predicted and observed count per score, square-root scale).

    Parameters
    ----------
    idata : xarray.DataTree
        Result with ``group`` and ``observed_data``.
    var_names : list of str, optional
        Observed variables. Default: every variable of ``group``.
    group : {"posterior_predictive", "prior_predictive"}, default "posterior_predictive"
        Posterior predictive check, or prior predictive check (``kb.fit(..., prior=True)``).
    num_samples : int, default 50
        Replicated data sets drawn (continuous outcomes).

    Returns
    -------
    matplotlib.figure.Figure
    """
    require(idata, group, "observed_data")
    names = var_names or [str(v) for v in idata[group].data_vars]
    discrete = [n for n in names if np.issubdtype(idata[group][n].dtype, np.integer)]
    if discrete and len(discrete) < len(names):
        raise ValueError(
            f"plot the discrete {discrete} and continuous variables in separate calls "
            "(var_names=[...])"
        )
    if discrete:
        pc = az.plot_ppc_rootogram(idata, var_names=discrete, group=group, backend="matplotlib")
    else:
        with warnings.catch_warnings():  # arviz-plots' own use of a deprecated pandas call
            warnings.filterwarnings("ignore", "Deleting a single level", FutureWarning)
            pc = az.plot_ppc_dist(
                idata, var_names=names, group=group, num_samples=num_samples, backend="matplotlib"
            )
    fig = _figure(pc)
    config = trial_config(idata)
    titles = {  # arviz-plots' plot_ppc_dist does not pass a labeller on to its titles
        "glx": f"{config.get('metabolite', 'fMRS')} ratio of each fMRS block",
        "improvement": f"day-1 improvement ({config.get('scale', 'rating')} points)",
    }
    for ax in fig.axes:
        ax.set_title(titles.get(ax.get_title(), ax.get_title()))
    return fig


def headline_estimands(idata: xr.DataTree) -> list[str]:
    """The estimands with a ROPE in the spec (else the first four estimands)."""
    names = estimand_names(idata)
    spec = result_spec(idata) if "spec" in idata.attrs else None
    with_rope = [n for n in names if spec and n in spec.estimands and spec.estimands[n].rope]
    return with_rope or names[:4]


def top_level_priors(idata: xr.DataTree) -> list[str]:
    """``log_prior`` variables of the top-level priors, the ones prior sensitivity scales.

    Left out: the random-effect distributions (the spec's priors with a hyperprior, and
    every ``*_offset`` of a non-centred effect). They are part of the model's structure, not
    prior beliefs, and scaling them would flag almost every quantity of a hierarchical model.
    """
    hierarchical = set(result_spec(idata).hierarchical) if "spec" in idata.attrs else set()
    return [
        str(v)
        for v in idata.log_prior.data_vars
        if v not in hierarchical and not str(v).endswith("_offset")
    ]


def plot_prior_sensitivity(idata: xr.DataTree, var_names: list[str] | None = None) -> Figure:
    """Power-scaling prior sensitivity: posteriors with the prior or likelihood scaled.

    Wraps :func:`arviz.plot_psense_dist`: each panel shows the posterior's ECDF when the
    prior (or likelihood) is raised to a power slightly below and above 1
    (importance-weighted, no refit; the ECDF is what the diagnostic's distance compares).
    Curves that move mean a sensitive quantity (Kallioinen et al. 2024). The top-level
    priors are scaled (:func:`top_level_priors`), the whole likelihood.

    Parameters
    ----------
    idata : xarray.DataTree
        Result with ``posterior``, ``log_prior`` and ``log_likelihood`` groups.
    var_names : list of str, optional
        Posterior variables. Default: the estimands with a ROPE in the spec (the headline
        ones), else the first four estimands.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    .. [1] Kallioinen, Paananen, Bürkner, Vehtari (2024). Detecting and diagnosing prior and
       likelihood sensitivity with power-scaling. Statistics and Computing 34, 57.
       doi:10.1007/s11222-023-10366-5
    """
    require(idata, "posterior", "log_prior", "log_likelihood")
    names = var_names or headline_estimands(idata) or scalar_parameters(idata)[:4]
    size = {"figsize": (11, 1.2 + 2.4 * len(names)), "layout": "constrained"}
    pc = az.plot_psense_dist(
        idata,
        var_names=names,
        prior_var_names=top_level_priors(idata),
        kind="ecdf",  # what the diagnostic compares; a KDE of a few hundred draws is spiky
        backend="matplotlib",
        figure_kwargs=size,
    )
    return _figure(pc)


__all__ = [
    "plot_estimands",
    "plot_improvement",
    "plot_ppc",
    "plot_prior_sensitivity",
    "plot_timecourse",
    "plot_trace",
    "plot_trajectory",
]

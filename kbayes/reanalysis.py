r"""Reanalysis of published results under sceptical, neutral and enthusiastic priors.

A published statistic, converted to an approximate normal likelihood
(:mod:`kbayes.published.convert`), is combined with a Spiegelhalter-style prior set scaled to
a clinically meaningful difference :math:`\delta` by conjugate normal updating (closed form,
exact under the normal approximation):

.. math::
    \theta \mid y \sim N\!\left(\frac{m/s^2 + \hat\theta/\mathrm{se}^2}{1/s^2 + 1/\mathrm{se}^2},
    \frac{1}{1/s^2 + 1/\mathrm{se}^2}\right).

References
----------
Spiegelhalter DJ, Freedman LS, Parmar MKB. Bayesian approaches to randomized trials.
J R Stat Soc A 1994;157:357-416. doi:10.2307/2983527
Spiegelhalter DJ, Abrams KR, Myles JP. Bayesian Approaches to Clinical Trials and
Health-Care Evaluation. Wiley 2004. doi:10.1002/0470092602
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from kbayes import published
from kbayes.published.convert import Likelihood, from_registry

COLUMNS = {
    "prior_mean": "prior mean (flat prior: 0 and infinite SD)",
    "prior_sd": "prior SD",
    "post_mean": "posterior mean",
    "post_sd": "posterior SD",
    "ci_low": "lower end of the equal-tailed posterior interval (mass ci_prob)",
    "ci_high": "upper end of the equal-tailed posterior interval (mass ci_prob)",
    "p_benefit": "posterior probability that the effect lies on the benefit side of 0",
    "p_harm": "posterior probability that the effect lies on the harm side of 0",
    "p_beyond": "posterior probability that the effect lies beyond delta (on delta's side)",
}


@dataclass(frozen=True)
class NormalPrior:
    """Normal prior N(mean, sd) on the effect; ``sd = inf`` is the flat (improper) prior."""

    name: str
    mean: float
    sd: float
    description: str


def prior_set(delta: float, *, tail: float = 0.05) -> tuple[NormalPrior, ...]:
    """Sceptical, neutral and enthusiastic priors for a meaningful difference ``delta``.

    Parameters
    ----------
    delta : float
        Clinically meaningful difference on the effect's scale, signed: the direction the
        sceptic doubts and the enthusiast expects.
    tail : float, default 0.05
        Prior mass beyond ``delta`` (sceptical) or on the wrong side of 0 (enthusiastic).

    Returns
    -------
    tuple of NormalPrior
        sceptical N(0, s) with P(effect beyond delta) = tail; neutral flat; enthusiastic
        N(delta, s) with P(effect on the other side of 0) = tail; ``s = |delta| / z_tail``.

    References
    ----------
    Spiegelhalter DJ, Freedman LS, Parmar MKB. J R Stat Soc A 1994;157:357-416.
    doi:10.2307/2983527
    """
    if not (math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta must be a finite, non-zero difference, got {delta!r}")
    s = abs(delta) / stats.norm.isf(tail)
    side = ">" if delta > 0 else "<"
    return (
        NormalPrior("sceptical", 0.0, s, f"centred at 0, P(effect {side} {delta:g}) = {tail:g}"),
        NormalPrior("neutral", 0.0, math.inf, "flat (improper): the posterior is the likelihood"),
        NormalPrior(
            "enthusiastic", delta, s, f"centred at {delta:g}, P(wrong side of 0) = {tail:g}"
        ),
    )


def _posterior(prior: NormalPrior, lik: Likelihood) -> tuple[float, float]:
    """Conjugate normal update; a flat prior returns the likelihood."""
    if math.isinf(prior.sd):
        return lik.estimate, lik.se
    w0, w1 = prior.sd**-2, lik.se**-2
    return (w0 * prior.mean + w1 * lik.estimate) / (w0 + w1), (w0 + w1) ** -0.5


def reanalyse(
    study_or_statistic: str | Likelihood,
    outcome: str | None = None,
    *,
    delta: float | None = None,
    benefit: Literal["positive", "negative"] | None = None,
    priors: tuple[NormalPrior, ...] | None = None,
    ci_prob: float = 0.95,
    tail: float = 0.05,
) -> pd.DataFrame:
    """Posterior of a published effect under sceptical, neutral and enthusiastic priors.

    Parameters
    ----------
    study_or_statistic : str or Likelihood
        A registry study key (with ``outcome``), or a converted statistic (``from_f``...).
    outcome : str, optional
        Outcome key of the study (``kb.published.outcomes()``); optional if it has one.
    delta : float, optional
        Clinically meaningful difference on the likelihood's scale, signed (e.g. 25 for
        25 % attenuation, -3 for 3 MADRS points of extra improvement). Defaults to the
        outcome key's; required for a Likelihood.
    benefit : {"positive", "negative"}, optional
        Which sign is a benefit to patients; defaults to the likelihood's.
    priors : tuple of NormalPrior, optional
        Replace the default :func:`prior_set` ``(delta, tail=tail)``.
    ci_prob : float, default 0.95
        Mass of the equal-tailed posterior interval.

    Returns
    -------
    pandas.DataFrame
        One row per prior (index): prior_mean, prior_sd, post_mean, post_sd, ci_low, ci_high,
        p_benefit, p_harm, p_beyond and a plain-language ``text``. ``attrs`` carry the
        likelihood (estimate, se, scale, effect, benefit, approximation), delta, ci_prob,
        citation, doi, source, and ``columns`` (what each column means).

    Examples
    --------
    >>> from kbayes.reanalysis import reanalyse
    >>> tab = reanalyse("jelen2025", outcome="madrs_day1")
    >>> round(float(2 * (1 - tab.loc["neutral", "p_harm"])), 3)  # flat prior: reported P
    0.023
    """
    if isinstance(study_or_statistic, Likelihood):
        lik = study_or_statistic
    else:
        if outcome is None:
            keys = published.outcomes(study_or_statistic)["key"].tolist()
            if len(keys) != 1:
                raise KeyError(f"give outcome= for {study_or_statistic!r}, one of {keys}")
            outcome = keys[0]
        lik = from_registry(study_or_statistic, outcome)
        if delta is None:
            delta = published.outcome(study_or_statistic, outcome).delta
    if delta is None:
        raise ValueError(f"give delta=, the clinically meaningful difference in {lik.scale}")
    benefit = benefit or lik.benefit
    sign = 1 if benefit == "positive" else -1
    zq = stats.norm.isf((1 - ci_prob) / 2)
    rows = {}
    for prior in priors or prior_set(delta, tail=tail):
        m, s = _posterior(prior, lik)
        post = stats.norm(m, s)
        p_pos = float(post.sf(0.0))
        p_benefit = p_pos if sign > 0 else 1 - p_pos
        p_beyond = float(post.sf(delta) if delta > 0 else post.cdf(delta))
        row = dict(prior_mean=prior.mean, prior_sd=prior.sd, post_mean=m, post_sd=s)
        row |= dict(ci_low=m - zq * s, ci_high=m + zq * s, p_benefit=p_benefit)
        row |= dict(p_harm=1 - p_benefit, p_beyond=p_beyond)
        rows[prior.name] = row | {"text": _sentence(prior, row, lik, delta, sign, ci_prob)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "prior"
    table.attrs = {
        **{k: getattr(lik, k) for k in ("estimate", "se", "scale", "effect", "approximation")},
        **{k: getattr(lik, k) for k in ("citation", "doi", "source")},
        "benefit": benefit,
        "delta": delta,
        "ci_prob": ci_prob,
        "columns": COLUMNS,
    }
    return table


def _sentence(prior, row, lik, delta, sign, ci_prob) -> str:
    u = "" if lik.scale == "z" else f" {lik.scale}"
    good, bad = ("> 0", "< 0") if sign > 0 else ("< 0", "> 0")
    side = ">" if delta > 0 else "<"
    sd = "flat" if math.isinf(prior.sd) else f"N({prior.mean:.3g}, {prior.sd:.3g})"
    return (
        f"Under the {prior.name} prior ({sd}) the effect ({lik.effect}) is "
        f"{row['post_mean']:.3g}{u} ({ci_prob:.0%} interval {row['ci_low']:.3g} to "
        f"{row['ci_high']:.3g}); P(benefit: effect {good}) = {row['p_benefit']:.3f}, "
        f"P(harm: effect {bad}) = {row['p_harm']:.3f}, "
        f"P(effect {side} {delta:g}{u}) = {row['p_beyond']:.3f}."
    )


def plot_reanalysis(table: pd.DataFrame) -> Figure:
    """Prior, likelihood and posterior per prior, one panel each.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`reanalyse` (its ``attrs`` carry the likelihood and delta).

    Returns
    -------
    matplotlib.figure.Figure
        Densities over the effect; the posterior mass beyond delta is shaded; vertical
        lines mark 0 and delta. A flat prior has no density to draw and is labelled.
    """
    a = table.attrs
    est, se, delta = a["estimate"], a["se"], a["delta"]
    finite = table[np.isfinite(table["prior_sd"])]
    lo = min(est - 4 * se, 0.0, delta, *(finite["prior_mean"] - 3.5 * finite["prior_sd"]))
    hi = max(est + 4 * se, 0.0, delta, *(finite["prior_mean"] + 3.5 * finite["prior_sd"]))
    x = np.linspace(lo, hi, 400)
    fig = Figure(figsize=(4 * len(table), 3.2), layout="constrained")
    axes = fig.subplots(1, len(table), sharex=True, squeeze=False)[0]
    for ax, (name, row) in zip(axes, table.iterrows(), strict=True):
        if np.isfinite(row["prior_sd"]):
            ax.plot(x, stats.norm.pdf(x, row["prior_mean"], row["prior_sd"]), "--", label="prior")
        else:
            ax.text(0.02, 0.95, "prior: flat (no density)", transform=ax.transAxes, va="top")
        ax.plot(x, stats.norm.pdf(x, est, se), ":", color="k", label="likelihood")
        post = stats.norm.pdf(x, row["post_mean"], row["post_sd"])
        ax.plot(x, post, color="C3", label="posterior")
        beyond = x >= delta if delta > 0 else x <= delta
        ax.fill_between(x, post, where=beyond, color="C3", alpha=0.25)
        ax.axvline(0, color="grey", lw=0.8)
        ax.axvline(delta, color="C3", lw=0.8, ls="--")
        ax.set_title(f"{name}: P(beyond {delta:g}) = {row['p_beyond']:.2f}", fontsize=10)
        ax.set_xlabel(f"effect ({a['scale']})")
        ax.set_yticks([])
    axes[0].legend(fontsize=8, frameon=False)
    fig.suptitle(a["effect"], fontsize=10)
    return fig

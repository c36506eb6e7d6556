r"""Random-effects meta-analysis of published effects, and its predictive distribution.

.. math::
    y_k \sim N(\theta_k, \mathrm{se}_k), \quad \theta_k \sim N(\mu, \tau), \quad
    \theta_\mathrm{new} = \mu + \tau z_\mathrm{new}, \quad z_\mathrm{new} \sim N(0, 1)

with :math:`\mu \sim N(0, s_\mu)` and :math:`\tau \sim` half-normal or half-t (dims
``"study"``). The sampler sees the study effects integrated out,
:math:`y_k \sim N(\mu, \sqrt{\mathrm{se}_k^2 + \tau^2})`: with few studies the usual
non-centred form still has a ridge (:math:`\mu + \tau z_k` fixed by one estimate) that
diverges. :math:`\theta_k` is then drawn from its exact conditional posterior,
:math:`N(\mu + w_k (y_k - \mu), \sqrt{w_k}\,\mathrm{se}_k)`,
:math:`w_k = \tau^2 / (\tau^2 + \mathrm{se}_k^2)`, through a standard normal :math:`z_k` that
the likelihood does not touch, so the posterior of every quantity is the same as the
non-marginalised model's. The predictive distribution of :math:`\theta_\mathrm{new}`, the effect
in a new trial, is the design prior for assurance: :meth:`MetaAnalysis.predictive_draws`.

Only like-for-like results may be pooled: the same contrast, outcome and scale. Scale and
effect description must match; the rest is the analyst's judgement. In the shipped
registry no two studies report a like-for-like contrast, so pooling is shown on simulated
studies.

References
----------
Higgins JPT, Thompson SG, Spiegelhalter DJ. A re-evaluation of random-effects
meta-analysis. J R Stat Soc A 2009;172:137-159. doi:10.1111/j.1467-985X.2008.00552.x
Röver C, Bender R, Dias S, et al. On weakly informative prior distributions for the
heterogeneity parameter in Bayesian random-effects meta-analysis. Res Synth Methods
2021;12:448-474. doi:10.1002/jrsm.1475
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import arviz_stats as azs
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from kbayes.diagnostics import Verdict, check
from kbayes.published.convert import Likelihood, from_registry

log = logging.getLogger("kbayes")

Item = Likelihood | tuple[str, str]


@dataclass(frozen=True)
class MetaAnalysis:
    """A fitted random-effects meta-analysis.

    Attributes
    ----------
    dt : xarray.DataTree
        Sampler output: ``posterior`` has mu, tau, z and theta (dims "study"), z_new and
        theta_new (the effect in a new trial).
    studies : tuple of str
        Study labels (the "study" coordinate).
    scale : str
        The common scale of the pooled effects.
    priors : str
        The priors used, in words.
    verdict : Verdict
        The sampling check (:func:`kbayes.check`) of ``dt``; a warning is logged when it is
        not ok, and :meth:`predictive_draws` refuses a failed fit.
    """

    dt: xr.DataTree
    studies: tuple[str, ...]
    scale: str
    priors: str
    verdict: Verdict

    def _draws(self, name: str) -> np.ndarray:
        return self.dt.posterior[name].values.reshape(-1)

    @property
    def mu(self) -> np.ndarray:
        """Posterior draws of the pooled (mean) effect, chains stacked."""
        return self._draws("mu")

    @property
    def tau(self) -> np.ndarray:
        """Posterior draws of the between-study SD, chains stacked."""
        return self._draws("tau")

    def summary(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """mu, tau, theta_new and per-study theta: mean, SD, equal-tailed interval, R-hat, ESS."""
        return azs.summary(
            self.dt,
            var_names=["mu", "tau", "theta_new", "theta"],
            ci_prob=ci_prob,
            ci_kind="eti",
            round_to="none",
        )

    def predictive_draws(self, n: int, seed: int | np.random.Generator) -> np.ndarray:
        """Draws of the effect in a new trial, for use as a design prior.

        Each draw takes a posterior (mu, tau) pair at random and adds ``tau * z``,
        ``z ~ N(0, 1)``: the posterior predictive distribution of theta_new.

        Parameters
        ----------
        n : int
            Number of draws.
        seed : int or numpy.random.Generator
            Same seed, same draws (bit for bit).

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``, on :attr:`scale`.

        Raises
        ------
        ValueError
            If the fit failed its sampling check: its draws are no design prior.
        """
        if self.verdict.status == "fail":
            raise ValueError(
                f"the meta-analysis fit failed its sampling check ({self.verdict.headline()}); "
                "refit with more tuning, a higher target_accept or an informative tau prior"
            )
        rng = np.random.default_rng(seed)
        mu, tau = self.mu, self.tau
        pick = rng.integers(0, mu.size, size=n)
        return mu[pick] + tau[pick] * rng.standard_normal(n)


def _resolve(items: Sequence[Item]) -> tuple[list[str], list[Likelihood]]:
    labels, liks = [], []
    for i, item in enumerate(items):
        if isinstance(item, Likelihood):
            labels.append(item.source.split(" ")[0] if item.source else f"study{i}")
            liks.append(item)
        else:
            labels.append(":".join(item))
            liks.append(from_registry(*item))
    unique = [lab if labels.count(lab) == 1 else f"{lab}#{i}" for i, lab in enumerate(labels)]
    return unique, liks


def build_meta_model(
    estimates: Sequence[float],
    ses: Sequence[float],
    studies: Sequence[str],
    *,
    mu_sd: float,
    tau_scale: float,
    tau_prior: Literal["halfnormal", "halft"] = "halfnormal",
    nu: float = 3.0,
) -> pm.Model:
    """The random-effects model with the study effects integrated out of the likelihood and
    drawn from their conditional posterior (module docstring); nothing is sampled here."""
    with pm.Model(coords={"study": list(studies)}) as model:
        mu = pm.Normal("mu", mu=0.0, sigma=mu_sd)
        if tau_prior == "halfnormal":
            tau = pm.HalfNormal("tau", sigma=tau_scale)
        elif tau_prior == "halft":
            tau = pm.HalfStudentT("tau", nu=nu, sigma=tau_scale)
        else:
            raise ValueError(f"tau_prior must be 'halfnormal' or 'halft', got {tau_prior!r}")
        y, se = np.asarray(estimates, float), np.asarray(ses, float)
        pm.Normal("y", mu=mu, sigma=pm.math.sqrt(se**2 + tau**2), observed=y, dims="study")
        w = tau**2 / (tau**2 + se**2)  # shrinkage weight of each study's own estimate
        z = pm.Normal("z", mu=0.0, sigma=1.0, dims="study")
        pm.Deterministic("theta", mu + w * (y - mu) + pm.math.sqrt(w) * se * z, dims="study")
        z_new = pm.Normal("z_new", mu=0.0, sigma=1.0)
        pm.Deterministic("theta_new", mu + tau * z_new)
    return model


def meta_analysis(
    items: Sequence[Item],
    *,
    tau_prior: Literal["halfnormal", "halft"] = "halfnormal",
    tau_scale: float | None = None,
    mu_sd: float | None = None,
    nu: float = 3.0,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: float = 0.95,
    seed: int | np.random.Generator | None = None,
) -> MetaAnalysis:
    """Random-effects meta-analysis over results on one common scale.

    Parameters
    ----------
    items : sequence of Likelihood or (study, outcome) pairs
        Converted statistics, or registry outcome keys (``kb.published.outcomes()``),
        chosen explicitly. All must share one scale and one ``effect`` description (the
        same contrast); whether results truly are like for like is the analyst's call.
    tau_prior : {"halfnormal", "halft"}, default "halfnormal"
        Prior family for the between-study SD tau (half-t: heavier tail, ``nu`` df).
    tau_scale : float, optional
        Scale of the tau prior, on the effect's scale. Default: the root-mean-square of the
        studies' SEs, i.e. heterogeneity as large as one study's sampling error is plausible
        and several times larger is not. It uses the studies' precision, never their
        estimates. With few studies tau is weakly identified and this prior matters: set it
        from subject knowledge where you can (e.g. 0.5 for standardised mean differences).
    mu_sd : float, optional
        SD of the normal prior on mu (centred at 0). Default: 10 times the largest SE, wide
        enough that the data dominate mu.
    draws, tune, chains : int
        NUTS settings (sampled by nutpie).
    target_accept : float, default 0.95
        Target acceptance of NUTS. With few studies tau's posterior has a funnel towards 0
        and divergences are common; raise it (0.99) if the check reports some.
    seed : int or numpy.random.Generator, optional
        Seed for the sampler; the same seed gives the same draws.

    Returns
    -------
    MetaAnalysis

    Examples
    --------
    >>> from kbayes.published.convert import from_estimate
    >>> from kbayes.meta import meta_analysis
    >>> liks = [from_estimate(e, 0.2, scale="d_z") for e in (0.3, 0.5, 0.4)]
    >>> ma = meta_analysis(liks, seed=1)  # doctest: +SKIP
    >>> design_prior = ma.predictive_draws(1000, seed=2)  # doctest: +SKIP
    """
    if not items:
        raise ValueError("meta_analysis needs at least one result")
    labels, liks = _resolve(items)
    for field in ("scale", "effect"):
        values = {getattr(lik, field) for lik in liks}
        if len(values) > 1:
            pairs = zip(labels, liks, strict=True)
            detail = "; ".join(f"{lab}: {getattr(lik, field)}" for lab, lik in pairs)
            raise ValueError(
                f"results differ in {field} and cannot be pooled ({detail}); pool only the "
                "same contrast on the same scale (give like-for-like results the same effect=)"
            )
    ses = np.array([lik.se for lik in liks])
    tau_scale = float(np.sqrt(np.mean(ses**2))) if tau_scale is None else tau_scale
    mu_sd = float(10 * ses.max()) if mu_sd is None else mu_sd
    model = build_meta_model(
        [lik.estimate for lik in liks], ses, labels,
        mu_sd=mu_sd, tau_scale=tau_scale, tau_prior=tau_prior, nu=nu,
    )  # fmt: skip
    with model:
        dt = pm.sample(
            draws=draws, tune=tune, chains=chains, nuts_sampler="nutpie",
            target_accept=target_accept, random_seed=seed, progressbar=False,
        )  # fmt: skip
    nu_text = "" if tau_prior == "halfnormal" else f"nu={nu:g}, "
    family = "HalfNormal" if tau_prior == "halfnormal" else "HalfStudentT"
    priors = f"mu ~ Normal(0, {mu_sd:.4g}); tau ~ {family}({nu_text}sigma={tau_scale:.4g})"
    dt.attrs["kbayes_meta_priors"] = priors
    verdict = check(dt)
    if verdict.status != "ok":
        log.warning("meta-analysis: %s", verdict.headline())
    return MetaAnalysis(dt, tuple(labels), liks[0].scale, priors, verdict)

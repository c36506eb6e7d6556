r"""Random-effects meta-analysis of published effects, and its predictive distribution.

.. math::
    y_k \sim N(\theta_k, \mathrm{se}_k), \quad \theta_k = \mu + \tau z_k, \quad
    z_k \sim N(0, 1), \quad \theta_\mathrm{new} = \mu + \tau z_\mathrm{new}

with :math:`\mu \sim N(0, s_\mu)` and :math:`\tau \sim` half-normal or half-t (non-centred,
dims ``"study"``). The predictive distribution of :math:`\theta_\mathrm{new}`, the effect
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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import arviz_stats as azs
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from kbayes.published.convert import Likelihood, from_registry

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
    """

    dt: xr.DataTree
    studies: tuple[str, ...]
    scale: str
    priors: str

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
        """
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
    """The non-centred random-effects model (nothing is sampled here)."""
    with pm.Model(coords={"study": list(studies)}) as model:
        mu = pm.Normal("mu", mu=0.0, sigma=mu_sd)
        if tau_prior == "halfnormal":
            tau = pm.HalfNormal("tau", sigma=tau_scale)
        elif tau_prior == "halft":
            tau = pm.HalfStudentT("tau", nu=nu, sigma=tau_scale)
        else:
            raise ValueError(f"tau_prior must be 'halfnormal' or 'halft', got {tau_prior!r}")
        z = pm.Normal("z", mu=0.0, sigma=1.0, dims="study")
        theta = pm.Deterministic("theta", mu + tau * z, dims="study")
        pm.Normal(
            "y", mu=theta, sigma=np.asarray(ses), observed=np.asarray(estimates), dims="study"
        )
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
            random_seed=seed, progressbar=False,
        )  # fmt: skip
    nu_text = "" if tau_prior == "halfnormal" else f"nu={nu:g}, "
    family = "HalfNormal" if tau_prior == "halfnormal" else "HalfStudentT"
    priors = f"mu ~ Normal(0, {mu_sd:.4g}); tau ~ {family}({nu_text}sigma={tau_scale:.4g})"
    dt.attrs["kbayes_meta_priors"] = priors
    return MetaAnalysis(dt=dt, studies=tuple(labels), scale=liks[0].scale, priors=priors)

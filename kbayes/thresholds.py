"""Error control: the posterior-probability threshold that holds a rule's false-positive rate.

:func:`calibrate_threshold` runs :func:`kbayes.power` under a null truth (its seeds, store
and engines), takes each usable replicate's posterior probability of the rule's one
condition (``record["probabilities"][condition.text]``) and returns the smallest bound c
such that at most ``alpha`` of them exceed it: with m usable replicates sorted,
``p_(1) <= ... <= p_(m)`` and ``k = floor(alpha * m)``, c = ``p_(m - k)`` (an order
statistic: the empirical 1 - alpha quantile). Its Monte-Carlo uncertainty is the
distribution-free 95 % confidence interval of the 1 - alpha quantile from order statistics:
``[p_(l), p_(u)]`` with ``l`` and ``u - 1`` the 2.5 % and 97.5 % quantiles of
Binomial(m, 1 - alpha), which covers the true quantile with probability >= 95 % whatever
the null distribution of the probabilities (David & Nagaraja 2003, section 7.1).

With the Laplace engine, a design point's replicates share the scales fixed from its
reference trials (:mod:`kbayes.laplace`), which depend on the seed: a threshold calibrated
at one seed holds for that seed's screen; check the final one with ``engine="nutpie"``.

References
----------
David HA, Nagaraja HN. Order Statistics, 3rd ed. Wiley 2003. doi:10.1002/0471722162
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kbayes.design import Design, Truth
from kbayes.planning import power
from kbayes.rules import Condition, GoNoGo, Rule, as_rule
from kbayes.spec import ModelSpec

log = logging.getLogger("kbayes")
#: Expected null exceedances (alpha x usable replicates) below which a threshold is unstable.
EXCEEDANCES_MIN = 10
#: Confidence level of the threshold's interval.
CI_LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Threshold:
    """A calibrated probability threshold (see :func:`calibrate_threshold`).

    Attributes
    ----------
    threshold : float
        Calibrated bound c on the condition's posterior probability: at most ``alpha`` of
        the usable null replicates have a probability above it.
    ci : (float, float)
        Distribution-free 95 % confidence interval of the true (1 - alpha) quantile.
    alpha : float
        Target false-positive rate.
    rule : Rule
        The rule with its bound replaced by ``threshold`` (written with ``>``).
    nominal_rule : Rule
        The rule as given.
    nominal_rate, nominal_rate_se : float
        False-positive rate of ``nominal_rule`` among the usable null replicates, and its
        binomial Monte-Carlo SE.
    n_ok, n_problem : int
        Usable replicates, and problem replicates (counted, left out).
    replicates : numpy.ndarray
        The usable replicates' posterior probabilities of the condition.
    needed : int
        Usable replicates needed for ``EXCEEDANCES_MIN`` expected exceedances.
    table : pandas.DataFrame
        The :func:`kbayes.power` table of the null run.
    """

    threshold: float
    ci: tuple[float, float]
    alpha: float
    rule: Rule
    nominal_rule: Rule
    nominal_rate: float
    nominal_rate_se: float
    n_ok: int
    n_problem: int
    replicates: np.ndarray = dataclasses.field(compare=False, repr=False)
    needed: int = 0
    table: pd.DataFrame | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def stable(self) -> bool:
        """At least ``EXCEEDANCES_MIN`` exceedances are expected among the usable replicates."""
        return self.alpha * self.n_ok >= EXCEEDANCES_MIN

    @property
    def warning(self) -> str | None:
        """Why the threshold is unstable, with the replicates needed; ``None`` if it is not."""
        if self.stable:
            return None
        return (
            f"alpha x usable replicates = {self.alpha:g} x {self.n_ok} = "
            f"{self.alpha * self.n_ok:.1f} expected exceedances (< {EXCEEDANCES_MIN}): the "
            f"threshold rests on the few largest null probabilities; about {self.needed} "
            "usable replicates are needed"
        )

    def __str__(self) -> str:
        lo, hi = self.ci
        lines = [
            f"calibrated rule: {self.rule.text} (false-positive rate <= {self.alpha:g})",
            f"threshold {self.threshold:.4g}, {CI_LEVEL:.0%} CI {lo:.4g} to {hi:.4g} "
            f"(order statistics of {self.n_ok} usable null replicates; {self.n_problem} "
            "problem replicates left out)",
            f"nominal rule {self.nominal_rule.text}: false-positive rate "
            f"{self.nominal_rate:.3g} (MC SE {self.nominal_rate_se:.2g})",
        ]
        return "\n".join(lines + ([f"warning: {self.warning}"] if self.warning else []))


def calibration_condition(rule: Rule | str) -> Condition:
    """The one condition of ``rule`` whose bound is calibrated.

    Raises
    ------
    ValueError
        Unless the rule has exactly one condition, with a ``>`` or ``>=`` comparison of its
        probability (a go rule: larger probabilities say go).
    """
    rule = as_rule(rule)
    if isinstance(rule, GoNoGo):
        raise ValueError(
            f"rule {rule.text!r}: a GoNoGo has two rules; calibrate its go rule "
            "(one condition) instead"
        )
    conditions = rule.conditions
    if len(conditions) != 1:
        raise ValueError(
            f"rule {rule.text!r} has {len(conditions)} conditions; calibrating a threshold "
            "needs exactly one, e.g. 'P(ntx_glu < 0) > 0.95'"
        )
    (condition,) = conditions
    if condition.prob_op not in (">", ">="):
        raise ValueError(
            f"rule {rule.text!r}: its probability is compared with {condition.prob_op!r}; "
            "calibrating a threshold needs '>' or '>=' (go when the probability is large)"
        )
    return condition


def order_statistic_threshold(
    probabilities: np.ndarray, alpha: float, level: float = CI_LEVEL
) -> tuple[float, tuple[float, float]]:
    """Smallest c with at most ``alpha`` of ``probabilities`` above it, and a
    distribution-free ``level`` confidence interval of the true (1 - alpha) quantile.

    Parameters
    ----------
    probabilities : array of float
        Null replicates' posterior probabilities (at least one).
    alpha : float
        In (0, 1).
    level : float, default 0.95

    Returns
    -------
    (float, (float, float))
        c = ``p_(m - floor(alpha m))`` of the sorted values (1-based), and the interval
        ``[p_(l), p_(u)]`` from Binomial(m, 1 - alpha); an end beyond the sample is the
        end of the probability scale (0 or 1).
    """
    p = np.sort(np.asarray(probabilities, dtype=float).reshape(-1))
    m = len(p)
    if m == 0:
        raise ValueError("probabilities: no usable replicates to calibrate on")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha!r}")
    k = math.floor(alpha * m)  # exceedances allowed
    threshold = float(p[m - k - 1])
    q, tail = 1 - alpha, (1 - level) / 2
    lo_rank = int(stats.binom.ppf(tail, m, q))  # P(B < lo_rank) < tail
    hi_rank = int(stats.binom.ppf(1 - tail, m, q)) + 1  # P(B > hi_rank - 1) <= tail
    lo = float(p[lo_rank - 1]) if lo_rank >= 1 else 0.0
    hi = float(p[hi_rank - 1]) if hi_rank <= m else 1.0
    return threshold, (lo, hi)


def calibrate_threshold(
    design: Design,
    null_truth: Truth | Any,
    rule: Rule | str,
    alpha: float = 0.05,
    *,
    replicates: int = 1000,
    seed: int = 0,
    model: str | ModelSpec = "joint",
    engine: str = "laplace",
    store: str | Path | None = None,
    client: Any = None,
    workers: int = 2,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    progress: bool = True,
) -> Threshold:
    """The posterior-probability threshold that holds ``rule``'s false-positive rate at
    ``alpha`` under ``null_truth``, with its Monte-Carlo uncertainty.

    Parameters
    ----------
    design : Design
        The trial (one design point).
    null_truth : Truth or design prior
        A truth without the effect, e.g. ``kb.Truth(beta_N=0, beta_NM=0)`` for ``ntx_glu``.
    rule : Rule or str
        One condition with ``>`` or ``>=``, e.g. ``"P(ntx_glu < 0) > 0.95"``: its bound is
        what is calibrated.
    alpha : float, default 0.05
        Target false-positive rate (one-sided), in (0, 1).
    replicates : int, default 1000
        Null trials; at least ``10 / alpha`` usable ones give a stable threshold.
    seed, model, engine, store, client, workers, draws, tune, chains, progress
        As in :func:`kbayes.power` (``engine`` default ``"laplace"``).

    Returns
    -------
    Threshold
        ``threshold``, its ``ci``, the calibrated ``rule``, the nominal rule's
        false-positive rate with its SE, usable and problem counts, the probabilities.
    """
    if not (isinstance(alpha, float | int) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a false-positive rate in (0, 1), not {alpha!r}")
    nominal = as_rule(rule)
    condition = calibration_condition(nominal)
    table = power(
        design, null_truth, nominal, replicates=replicates, seed=seed, model=model,
        store=store, client=client, workers=workers, engine=engine, draws=draws, tune=tune,
        chains=chains, progress=progress,
    )  # fmt: skip
    records = [r for r in table.attrs["replicates"] if not r["problem"]]
    probs = np.array([r["probabilities"][condition.text] for r in records], dtype=float)
    hits = np.array([condition.holds(p) for p in probs], dtype=bool)
    return threshold_from(probs, hits, alpha, condition, nominal, replicates - len(probs), table)


def threshold_from(
    probabilities: np.ndarray,
    nominal_hits: np.ndarray,
    alpha: float,
    condition: Condition,
    nominal_rule: Rule,
    n_problem: int,
    table: pd.DataFrame | None,
) -> Threshold:
    """The :class:`Threshold` of usable null replicates: their probabilities of
    ``condition``'s event (the largest over looks, for an interim design) and whether the
    nominal rule rejected in each; warns when the threshold is unstable."""
    threshold, ci = order_statistic_threshold(probabilities, alpha)
    n_ok = len(probabilities)
    rate = float(np.mean(nominal_hits))
    calibrated = dataclasses.replace(condition, prob_op=">", prob=threshold)
    result = Threshold(
        threshold=threshold, ci=ci, alpha=float(alpha), rule=Rule(calibrated.text),
        nominal_rule=nominal_rule, nominal_rate=rate,
        nominal_rate_se=float(np.sqrt(rate * (1 - rate) / n_ok)), n_ok=n_ok,
        n_problem=n_problem, replicates=probabilities,
        needed=math.ceil(EXCEEDANCES_MIN / alpha), table=table,
    )  # fmt: skip
    if result.warning:
        log.warning(result.warning)
    return result


def plot_threshold(result: Threshold, ax: Any = None):
    """Empirical CDF of the null replicates' probabilities, with the nominal bound, the
    calibrated threshold and its confidence band, and the 1 - alpha level.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    else:
        fig = ax.figure
    p = np.sort(result.replicates)
    ax.step(p, np.arange(1, len(p) + 1) / len(p), where="post", color="k", lw=1,
            label=f"null replicates ({result.n_ok} usable)")  # fmt: skip
    ax.axhline(
        1 - result.alpha, color="grey", ls=":", lw=1, label=f"1 - alpha = {1 - result.alpha:g}"
    )
    nominal = calibration_condition(result.nominal_rule).prob
    ax.axvline(nominal, color="tab:blue", ls="--",
               label=f"nominal {nominal:g}: FPR {result.nominal_rate:.3g}")  # fmt: skip
    ax.axvspan(*result.ci, color="tab:red", alpha=0.15, lw=0, label="95 % CI")
    ax.axvline(result.threshold, color="tab:red", label=f"calibrated {result.threshold:.4g}")
    ax.set(xlabel="posterior probability of the condition's event", ylabel="ECDF", ylim=(0, 1.02))
    ax.set_title(f"null: {calibration_condition(result.nominal_rule).event}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return fig

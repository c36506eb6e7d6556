"""A simulator calibrated to a published trial: ``design, truth = kb.from_published("jelen2025")``.

The default :class:`~kbayes.Design` and :class:`~kbayes.Truth` are assumptions; a trial
"like Jelen et al. 2025" should reproduce what that paper reports. :func:`from_published`
keeps the paper's design (its ``n``; every other design field stays an assumption, listed)
and chooses three Truth values so that trials simulated at that design reproduce the
reported numbers:

1. the pretreatment effect on the glutamate change (``beta_N`` and ``beta_NM``, scaled
   together so the sex difference keeps its sign and ratio) so that the median paired t of
   the session glutamate change equals the reported test (|t| = sqrt(F(1, df)));
2. the direct effect ``gamma_N`` so that the joint spec's ``attenuation_pct`` equals the
   reported attenuation (exact: the estimand is linear in ``gamma_N``);
3. the residual scale ``sigma_y`` so that the median paired t of the day-1 improvement
   equals the reported test.

"Paired t" is the plain frequentist test of each participant's reference - pretreatment
difference (positive: the pretreatment attenuates), over participants with both sessions;
a session's glutamate change is the mean of its blocks during the infusion minus the mean of
those before. These tests stand in for the paper's mixed models (their F(1, 253) on blocks
and F(1, 74) on ratings over time carry about the information of the paired tests; their
own variance components were not reported). The median is over ``replicates`` simulated
trials with common random numbers, so each step is a one-dimensional root search of a
monotone function.

:meth:`PublishedDesign.design_prior` turns the uncertainty of the two reported effects
(their reanalysis posteriors, :func:`kbayes.reanalyse`) into a design prior for assurance
on the same Truth fields, by the same map: no transform to write by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy import optimize

from kbayes import published
from kbayes.data import infusion_profile
from kbayes.design import Design, Truth
from kbayes.errors import ConfigError
from kbayes.published.convert import t_from_f
from kbayes.reanalysis import reanalyse
from kbayes.replicates import child, digest
from kbayes.simulation import SIMULATED_SPEC, simulate_arrays
from kbayes.spec import load_spec


@dataclasses.dataclass(frozen=True)
class Targets:
    """Which registry outcomes (:data:`kbayes.published.OUTCOMES` keys) a study is matched to:
    the test of the glutamate effect, and the test and attenuation of the improvement."""

    glutamate: str
    improvement: str


#: Studies :func:`from_published` can calibrate to; a new one is one entry.
TARGETS = {"jelen2025": Targets(glutamate="glx_infusion", improvement="madrs_day1")}
#: Simulated trials per evaluation of a median test statistic.
REPLICATES = 400


def paired_tests(trial: dict[str, np.ndarray], design: Design) -> tuple[float, float]:
    """Paired t of the session glutamate change and of the day-1 improvement (reference -
    pretreatment: positive when the pretreatment attenuates) of one trial's arrays
    (:func:`kbayes.simulation.simulate_arrays`), over participants with both sessions (and
    both ratings, for the improvement)."""
    during = infusion_profile(np.asarray(design.block_times), design.shape,
                              design.config.infusion_min) > 0  # fmt: skip
    both = trial["seen"].all(axis=1)  # participants with both sessions
    seen, glx = trial["block_seen"][both], trial["glx"][both]
    change = (glx * seen * during).sum(2) / (seen * during).sum(2)
    change -= (glx * seen * ~during).sum(2) / (seen * ~during).sum(2)
    improvement = (trial["base"] - trial["day1"])[both]
    c = trial["c"][both]
    rows, ref, active = np.arange(len(c)), c.argmin(axis=1), c.argmax(axis=1)
    out = []
    for x in (change, improvement):
        d = x[rows, ref] - x[rows, active]
        d = d[np.isfinite(d)]
        out.append(float(d.mean() / (d.std(ddof=1) / np.sqrt(d.size))))
    return out[0], out[1]


@dataclasses.dataclass(frozen=True)
class PublishedDesign:
    """A design and truth calibrated to a published trial (:func:`from_published`).

    Unpacks as ``design, truth``. ``matched`` has one row per reported number (reported,
    simulated median with its Monte-Carlo SE, relative difference, source); ``assumed``
    lists the design and truth values that no reported number fixes.
    """

    study: str
    design: Design
    truth: Truth
    matched: pd.DataFrame
    assumed: pd.DataFrame
    seed: int

    def __iter__(self) -> Iterator[Design | Truth]:
        return iter((self.design, self.truth))

    def __str__(self) -> str:
        rows = [
            f"  {r.quantity}: reported {r.reported:.3g}, simulated {r.simulated:.3g} "
            f"({r.relative_difference:+.1%}); {r.source}"
            for r in self.matched.itertuples()
        ]
        chosen = ", ".join(f"{k} = {self.truth.params[k]:.4g}" for k in CHOSEN)
        assumed = f"Assumed: {len(self.assumed)} design and truth values (.assumed)"
        return "\n".join([f"Calibrated to {self.study}: {chosen}", "Matched:", *rows, assumed])

    def design_prior(self, prior: str = "neutral") -> PublishedTruth:
        """The reported effects' uncertainty as a design prior (assurance).

        Each replicate draws the glutamate effect's standardised size and the attenuation
        (%) from their reanalysis posteriors under ``prior`` (``"neutral"``: the
        likelihood; ``"sceptical"``, ``"enthusiastic"``: :func:`kbayes.prior_set`) and
        sets ``beta_N``, ``beta_NM`` and ``gamma_N`` as :func:`from_published` does.
        """
        targets = TARGETS[self.study]
        glu = reanalyse(self.study, targets.glutamate)
        if prior not in glu.index:
            raise ValueError(f"prior must be one of {', '.join(glu.index)}, not {prior!r}")
        reported = glu.attrs["estimate"]  # the calibrated effect is the reported one
        ratio = (glu.loc[prior, "post_mean"] / reported, glu.loc[prior, "post_sd"] / reported)
        imp = reanalyse(self.study, targets.improvement).loc[prior]
        attenuation = (float(imp.post_mean), float(imp.post_sd))
        ratio = (float(ratio[0]), float(ratio[1]))
        return PublishedTruth(self.truth, ratio, attenuation, f"{self.study}, {prior} prior")


#: The Truth fields :func:`from_published` chooses.
CHOSEN = ("beta_N", "beta_NM", "gamma_N", "sigma_y")


@dataclasses.dataclass(frozen=True)
class PublishedTruth:
    """A design prior from a calibrated truth: the glutamate effect scaled by a Normal
    ``ratio`` (mean, SD) draw, the attenuation (%) a Normal ``attenuation`` draw, mapped onto
    ``beta_N``, ``beta_NM`` and ``gamma_N`` as :func:`from_published` maps them."""

    truth: Truth
    ratio: tuple[float, float]
    attenuation: tuple[float, float]
    source: str

    @property
    def key(self) -> str:
        return digest({"truth": self.truth.params, "ratio": self.ratio,
                       "attenuation": self.attenuation})  # fmt: skip

    def draw(self, seed: np.random.SeedSequence) -> Truth:
        rng = np.random.default_rng(seed)
        r, pct = rng.normal(*self.ratio), rng.normal(*self.attenuation)
        scaled = self.truth.updated({k: r * self.truth.params[k] for k in ("beta_N", "beta_NM")})
        return with_attenuation(scaled, pct)


def with_attenuation(truth: Truth, pct: float) -> Truth:
    """``truth`` with ``gamma_N`` chosen so that the joint spec's ``attenuation_pct`` is
    ``pct`` (%): the estimand is linear in ``gamma_N``."""
    spec = load_spec(SIMULATED_SPEC)

    def at(g: float) -> float:
        return float(spec.estimand_values(truth.updated({"gamma_N": g}).params)["attenuation_pct"])

    a0, a1 = at(0.0), at(1.0)
    return truth.updated({"gamma_N": (pct - a0) / (a1 - a0)})


def _tests(design: Design, truth: Truth, seeds: list) -> np.ndarray:
    """(2, replicates) paired t statistics of trials simulated with ``seeds``."""
    return np.array([paired_tests(simulate_arrays(design, truth, s), design) for s in seeds]).T


def _solve(f, lo: float, hi: float, what: str) -> float:
    """Root of the monotone ``f`` in [lo, hi], widening ``hi`` up to 2**10 times."""
    for _ in range(10):
        if np.sign(f(lo)) != np.sign(f(hi)):
            return float(optimize.brentq(f, lo, hi, xtol=1e-4 * abs(hi - lo), rtol=1e-6))
        hi *= 2
    raise ValueError(f"from_published: no {what} reproduces the reported test")


def from_published(
    study: str = "jelen2025",
    *,
    design: Design | None = None,
    truth: Truth | None = None,
    replicates: int = REPLICATES,
    seed: int = 0,
) -> PublishedDesign:
    """Design and truth whose simulated trials reproduce a published trial's results.

    Parameters
    ----------
    study : str, default "jelen2025"
        A registry study with calibration targets (:data:`TARGETS`).
    design, truth : Design, Truth, optional
        Starting values of the assumed fields (default ``Design()``, ``Truth()``); the
        design's ``n`` is set to the study's.
    replicates : int, default 400
        Simulated trials per median (common random numbers).
    seed : int, default 0

    Returns
    -------
    PublishedDesign
        Unpacks as ``design, truth``; ``.matched``, ``.assumed``, ``.design_prior()``.

    Examples
    --------
    >>> design, truth = from_published("jelen2025", replicates=100)  # doctest: +SKIP
    """
    if study not in TARGETS:
        raise KeyError(f"no calibration targets for {study!r}; studies: {', '.join(TARGETS)}")
    return _calibrate(study, design or Design(), truth or Truth(), replicates, seed)


def _calibrate(study: str, design: Design, truth: Truth, replicates: int, seed: int):
    targets, meta = TARGETS[study], published.study(study)
    glu_out = published.outcome(study, targets.glutamate)
    imp_out = published.outcome(study, targets.improvement)
    glu_res, imp_res = published.find(study, glu_out.test), published.find(study, imp_out.test)
    attenuation = published.find(study, imp_out.estimate)
    t_glu, _ = t_from_f(glu_res.value, glu_res.df, glu_out.direction)
    t_imp, _ = t_from_f(imp_res.value, imp_res.df, imp_out.direction)
    if design.config.design != meta.design:
        raise ConfigError(
            f"from_published: {study} is a {meta.design} trial; its tests are paired, so the "
            f"design must be one too, not {design.config.design!r}"
        )
    design = dataclasses.replace(design, n=meta.n)
    root = np.random.SeedSequence(seed)
    seeds = [child(root, r) for r in range(replicates)]

    def scaled(k: float) -> Truth:
        return truth.updated({f: k * truth.params[f] for f in ("beta_N", "beta_NM")})

    def glu_gap(k: float) -> float:
        return np.median(_tests(design, scaled(k), seeds)[0]) - t_glu

    if truth.beta_N == 0:
        raise ValueError("from_published: truth.beta_N is 0, so no scale of it can match")
    k = _solve(glu_gap, 0.0, 2.0, "scale of beta_N")
    fitted = with_attenuation(scaled(k), float(attenuation.value))

    def imp_gap(log_sigma: float) -> float:
        t = fitted.updated({"sigma_y": float(np.exp(log_sigma))})
        return np.median(_tests(design, t, seeds)[1]) - t_imp

    log_sigma = _solve(imp_gap, np.log(0.1), np.log(fitted.sigma_y) + 1.0, "sigma_y")
    fitted = fitted.updated({"sigma_y": float(np.exp(log_sigma))})
    tests = _tests(design, fitted, seeds)
    spec = load_spec(SIMULATED_SPEC)
    att = float(spec.estimand_values(fitted.params)["attenuation_pct"])
    rows = [
        ("glutamate change, paired t", t_glu, *_median_se(tests[0]), glu_res.source),
        ("day-1 improvement, paired t", t_imp, *_median_se(tests[1]), imp_res.source),
        ("attenuation_pct (%)", float(attenuation.value), att, 0.0, attenuation.source),
    ]
    matched = pd.DataFrame(rows, columns=["quantity", "reported", "simulated", "mc_se", "source"])
    matched.insert(4, "relative_difference", matched["simulated"] / matched["reported"] - 1)
    n_source = next(r.source for r in meta.results if r.statistic == "n" and r.value == meta.n)
    n_row = pd.DataFrame([("n", meta.n, design.n, 0.0, 0.0, n_source)], columns=matched.columns)
    matched = pd.concat([n_row, matched], ignore_index=True)
    fixed = {"n", "config", "covariates"}
    assumed = [("Design", f, getattr(design, f)) for f in design.__dataclass_fields__
               if f not in fixed]  # fmt: skip
    assumed += [("Truth", f, v) for f, v in fitted.params.items() if f not in CHOSEN]
    assumed = pd.DataFrame(assumed, columns=["of", "field", "value"])
    return PublishedDesign(study, design, fitted, matched, assumed, seed)


def _median_se(x: np.ndarray) -> tuple[float, float]:
    """Median and its asymptotic SE, sqrt(pi / 2) * SD / sqrt(n) (normal data)."""
    return float(np.median(x)), float(np.sqrt(np.pi / 2) * x.std(ddof=1) / np.sqrt(x.size))

"""What to simulate: a trial :class:`Design`, the parameter values (:class:`Truth`), and what a
simulation used (:class:`SimulatedTruth`, set as ``TrialData.truth``).

:mod:`kbayes.simulation` draws trials from them; :mod:`kbayes.design_priors` draws truths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kbayes.config import TrialConfig
from kbayes.errors import ConfigError


def _require(ok: bool, cls: str, name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{cls}.{name} must be {expected}, got {value!r}")


#: Truth fields that are effects of the pretreatment (on the glutamate change and on
#: improvement, and their sex and glutamate interactions).
PRETREATMENT_FIELDS = ("beta_N", "beta_NM", "gamma_N", "gamma_NM", "gamma_DN")


#: Truth fields that may hold one value per pretreatment (several pretreatments) or per
#: rating time (a trajectory): the coefficients of the glutamate and improvement levels.
INDEXED_FIELDS = ("beta_N", "beta_NM", "gamma0", "gamma_N", "gamma_M", "gamma_NM", "gamma_D",
                  "gamma_DN", "gamma_B", "gamma_P")  # fmt: skip


def _time_key(key: Any) -> str:
    """A level's name: a condition as given, a rating time in hours as its coord (``4``,
    ``"4"`` or ``"4 h"`` -> ``"4 h"``)."""
    try:
        return f"{float(str(key).removesuffix('h').strip()):g} h"
    except ValueError:
        return str(key)


def _levels(name: str, value: Mapping, depth: int = 0) -> dict:
    """A ``{level: value}`` Truth field as plain data: conditions by name, rating times as
    their coords (``4`` or ``"4 h"`` -> ``"4 h"``), one level of nesting (time, condition)."""
    out = {}
    for key, x in value.items():
        key = _time_key(key)
        nested = isinstance(x, Mapping) and depth == 0
        out[key] = _levels(name, x, 1) if nested else x
        if not nested:
            ok = isinstance(x, int | float) and np.isfinite(x)
            _require(ok, "Truth", name, "finite numbers by condition or rating time", value)
            out[key] = float(x)
    _require(bool(out), "Truth", name, "a number or {level: value}", value)
    return out


@dataclass(frozen=True)
class Truth:
    """True parameter values of the joint model (names as in the model specs).

    Field names are the model's parameter names (a spec's hierarchical SDs are
    ``<effect>_sigma``). Glutamate parameters are in Glx/tNAA ratio units, improvement
    parameters in rating-scale points (``gamma_D``, ``gamma_DN``: points per
    ``delta_scale`` of glutamate change, the joint spec's constant, 0.05).
    The defaults give E[improvement | placebo] = 12 points at baseline 30 and a total
    naltrexone effect of -3.4 points, i.e. 28 % attenuation, the "about 28 %" reported for
    Jelen et al. 2025 (doi:10.1038/s41591-025-03800-w; registry key ``jelen2025``, a news
    report); the naltrexone effect on the glutamate change is -0.03 in men and -0.01 in
    women, the qualitative "larger in men" of that paper. Every other value is an assumption.

    Parameters
    ----------
    alpha0, a_sigma, a_session_sigma : float, default 1.0, 0.10, 0.03
        Pre-infusion Glx/tNAA mean and its participant and session SDs (ratio units).
    beta0, beta_N, beta_M, beta_NM, beta_P : float, default 0.05, -0.02, 0.0, -0.02, 0.0
        Glutamate change during infusion: intercept (sex average, reference, mid-period),
        pretreatment, sex (male - female), pretreatment x sex and period effects (ratio units).
    u_sigma, e_sigma : float, default 0.02, 0.015
        Participant and session SDs of the glutamate change (ratio units).
    gamma0, gamma_N, gamma_M, gamma_NM : float, default 12.0, -2.6, 0.0, 0.0
        Improvement (points) at a glutamate change of ``delta_center`` (0.05) and baseline
        ``baseline_center`` (30), the joint spec's constants;
        pretreatment, sex and pretreatment x sex effects.
    gamma_D, gamma_DN : float, default 2.0, 0.0
        Improvement per standardised glutamate change (points), and its change under the
        pretreatment.
    gamma_B, gamma_P : float, default 0.2, 0.5
        Improvement per baseline point above 30, and period effect (points).
    v_sigma, uv_rho : float, default 3.0, 0.0
        Participant SD of improvement (points) and its correlation with u.
    sigma_y, nu : float, default 3.5, 10.0
        Scale (points) and degrees of freedom of the Student-t residual (``nu=inf``: normal).
    beta_N, beta_NM, gamma0, gamma_N, ..., gamma_P : float or dict
        The coefficients (:data:`INDEXED_FIELDS`) may hold one value per active condition
        of a trial with several pretreatments, ``gamma_N={"naltrexone": -2.6,
        "nalmefene": -1.0}``, or per rating time of a trajectory (hours, or their coords),
        ``gamma0={4: 8.0, 24: 12.0, 72: 10.0, 168: 6.0}``, or both nested; a number is the
        same for all.
    effects : dict of str to float or to {level: float}, default {}
        Coefficients of covariate terms, by their model names (``gamma_age``: improvement
        points per year of ``age``; ``beta_age_x_condition``), per unit of the covariate
        about the design's covariate mean (:attr:`Design.covariates`); of a categorical
        covariate's term, the effect of each level named (levels not named: 0), e.g.
        ``{"gamma_site": {"B": 2.0}}``.
    """

    alpha0: float = 1.0
    a_sigma: float = 0.10
    a_session_sigma: float = 0.03
    beta0: float = 0.05
    beta_N: float | Mapping[str, float] = -0.02
    beta_M: float = 0.0
    beta_NM: float | Mapping[str, float] = -0.02
    beta_P: float = 0.0
    u_sigma: float = 0.02
    e_sigma: float = 0.015
    gamma0: float = 12.0
    gamma_N: float | Mapping[str, float] = -2.6
    gamma_M: float = 0.0
    gamma_NM: float | Mapping[str, float] = 0.0
    gamma_D: float = 2.0
    gamma_DN: float | Mapping[str, float] = 0.0
    gamma_B: float = 0.2
    gamma_P: float = 0.5
    v_sigma: float = 3.0
    uv_rho: float = 0.0
    sigma_y: float = 3.5
    nu: float = 10.0
    effects: Mapping[str, float | Mapping[str, float]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        effects = {k: {level: float(x) for level, x in v.items()} if isinstance(v, Mapping)
                   else float(v) for k, v in self.effects.items()}  # fmt: skip
        object.__setattr__(self, "effects", effects)
        for name, value in effects.items():
            _require(name not in self._fields(), "Truth", "effects", "new names only", name)
            finite = np.isfinite(list(value.values()) if isinstance(value, dict) else value)
            _require(np.all(finite), "Truth", f"effects[{name!r}]", "finite", value)
        for name in self._fields():
            value = getattr(self, name)
            if isinstance(value, Mapping):  # per pretreatment or rating time: {level: value}
                _require(name in INDEXED_FIELDS, "Truth", name, "a number (one value)", value)
                object.__setattr__(self, name, _levels(name, value))
                continue
            _require(np.isfinite(value) or name == "nu", "Truth", name, "finite", value)
            if name.endswith("_sigma") or name == "sigma_y":
                _require(value >= 0, "Truth", name, ">= 0", value)
        _require(self.alpha0 > 0, "Truth", "alpha0", "> 0 (a ratio)", self.alpha0)
        _require(self.nu > 0, "Truth", "nu", "> 0", self.nu)
        _require(-1 <= self.uv_rho <= 1, "Truth", "uv_rho", "in [-1, 1]", self.uv_rho)

    @classmethod
    def _fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "effects"]

    @property
    def params(self) -> dict[str, float | dict[str, float]]:
        """Parameter name -> value (the fields, then :attr:`effects`)."""
        return {name: value if isinstance(value := getattr(self, name), dict) else float(value)
                for name in self._fields()} | self.effects  # fmt: skip

    def null(self) -> Truth:
        """This truth without any pretreatment effect (``PRETREATMENT_FIELDS`` all 0): the
        null under which a rule's false-positive rate is measured."""
        return self.updated(dict.fromkeys(PRETREATMENT_FIELDS, 0.0))

    def updated(self, values: Mapping[str, float]) -> Truth:
        """A copy with these parameters changed; a name that is not a field is an effect."""
        fields = {k: v for k, v in values.items() if k in self._fields()}
        effects = {k: v for k, v in values.items() if k not in fields}
        return dataclasses.replace(self, **fields, effects={**self.effects, **effects})

    def estimands(self, spec: Any = "joint", config: TrialConfig | None = None) -> dict[str, float]:
        """True values of the spec's estimands (name -> value, on the estimands' units).

        ``spec`` is a built-in name, a path to a TOML spec or a loaded ``ModelSpec``; with
        ``config``, the spec for that trial (several pretreatments: ``ntx_glu[nalmefene]``).
        """
        from kbayes.spec import load_spec  # imports PyMC tooling: only when asked

        spec = load_spec(spec) if config is None else load_spec(spec).for_trial(config)
        return {k: float(v) for k, v in spec.estimand_values(self.params).items()}


@dataclass(frozen=True)
class Design:
    """A trial design to simulate: size, schedule, noise, missingness and scores.

    Parameters
    ----------
    n : int, default 26
        Participants (Jelen et al. 2025: 26 participated).
    female_fraction : float, default 0.5
        Share of ``config.sexes[0]``; the count is rounded and assigned at random. Assumption.
    block_times : tuple of float, default (-10, -5, 5, 15, 25, 35)
        fMRS block times (minutes from infusion start): 2 before and 4 during the 40-min
        infusion. Assumption (the paper's block schedule was not available).
    sigma_mrs : float, default 0.02
        Residual SD of a block's ratio beyond its CRLB (ratio units). Assumption.
    crlb_median, crlb_sd_log : float, default 5.0, 0.3
        Block CRLBs (%) are LogNormal with this median and log-scale SD. Assumption.
    dropout : float, default 0.05
        Probability that a participant misses period 2 (registry: 27 enrolled, 26 in the
        paper). Must be in [0, 1). A parallel trial (``config.design``) has no period 2:
        each participant's one session is in the arm drawn for them (balanced arms).
    block_missing : float, default 0.02
        Probability that a block is missing (its row is absent). Assumption.
    rating_missing : float, default 0.0
        Probability that a session's day-1 rating is missing (its ``madrs_day1`` empty; its
        fMRS blocks kept), completely at random. Must be in [0, 1).
    baseline_mean, baseline_sd, baseline_session_sd : float, default 32, 5, 3
        Baseline score: participant mean and SD, and visit-to-visit SD (points). Assumption
        (moderate-to-severe depression).
    items : bool, default False
        Also simulate item scores, ``config.item_columns("baseline")`` and ``("day1")``:
        each participant has item propensities ~ Dirichlet(``ITEM_CONCENTRATION``, ...),
        shared by their visits, and each visit's total is split by
        :func:`kbayes.simulation.split_items`.
        Assumption (no item-level data of the trial were available).
    shape : {"step", "ramp"}, default "step"
        Infusion profile g(t).
    covariates : dict of str to (float, float) or to {level: probability}, default {}
        Participant-level covariates to simulate, stored as ``participants`` columns:
        name -> (mean, SD), each participant's value Normal(mean, SD) rounded to 0.1; or a
        categorical one, name -> {level: probability} (summing to 1), each participant's
        level drawn with these probabilities. Assumption; their effects are
        :attr:`Truth.effects`.
    config : TrialConfig, default TrialConfig()
        Names, codes and score ranges.
    """

    n: int = 26
    female_fraction: float = 0.5
    block_times: tuple[float, ...] = (-10.0, -5.0, 5.0, 15.0, 25.0, 35.0)
    sigma_mrs: float = 0.02
    crlb_median: float = 5.0
    crlb_sd_log: float = 0.3
    dropout: float = 0.05
    block_missing: float = 0.02
    rating_missing: float = 0.0
    baseline_mean: float = 32.0
    baseline_sd: float = 5.0
    baseline_session_sd: float = 3.0
    items: bool = False
    shape: str = "step"
    covariates: Mapping[str, tuple[float, float] | Mapping[str, float]] = dataclasses.field(
        default_factory=dict
    )
    config: TrialConfig = dataclasses.field(default_factory=TrialConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_times", tuple(float(t) for t in self.block_times))
        covariates = {
            k: {str(x): float(q) for x, q in v.items()}
            if isinstance(v, Mapping)
            else tuple(float(x) for x in v)
            for k, v in self.covariates.items()
        }
        object.__setattr__(self, "covariates", covariates)
        for name, ms in covariates.items():
            where = f"covariates[{name!r}]"
            taken = name in ("participant", "sex")
            _require(not taken, "Design", "covariates", "names other than participant, sex", name)
            if isinstance(ms, dict):
                probs = np.array(list(ms.values()))
                ok = len(ms) >= 2 and (probs >= 0).all() and abs(probs.sum() - 1) < 1e-9
                _require(ok, "Design", where, "{level: probability}, two or more, sum 1", ms)
                continue
            ok = len(ms) == 2 and np.isfinite(ms).all() and ms[1] >= 0
            _require(ok, "Design", where, "(mean, SD >= 0)", ms)
        cfg, t = self.config, np.asarray(self.block_times)
        ok_n = isinstance(self.n, int | np.integer) and self.n >= 2
        _require(ok_n, "Design", "n", "an integer >= 2", self.n)
        frac = self.female_fraction
        _require(0 <= frac <= 1, "Design", "female_fraction", "in [0, 1]", frac)
        ok_t = t.size > 0 and np.isfinite(t).all() and np.unique(t).size == t.size
        _require(ok_t, "Design", "block_times", "distinct finite times", self.block_times)
        for name in ("sigma_mrs", "crlb_sd_log", "baseline_sd", "baseline_session_sd"):
            _require(getattr(self, name) >= 0, "Design", name, ">= 0", getattr(self, name))
        _require(self.crlb_median > 0, "Design", "crlb_median", "> 0", self.crlb_median)
        for name in ("dropout", "block_missing", "rating_missing"):
            _require(0 <= getattr(self, name) < 1, "Design", name, "in [0, 1)", getattr(self, name))
        ok_b = 0 <= self.baseline_mean <= cfg.score_max
        _require(ok_b, "Design", "baseline_mean", f"in [0, {cfg.score_max}]", self.baseline_mean)
        _require(self.shape in ("step", "ramp"), "Design", "shape", "'step' or 'ramp'", self.shape)
        ok_items = not self.items or cfg.score_max <= cfg.n_items * cfg.item_max
        _require(ok_items, "Design", "items", "False when score_max > n_items * item_max", True)
        ok_rated = not self.items or self.rating_missing == 0
        _require(ok_rated, "Design", "items", "False with missing ratings (rating_missing > 0)",
                 True)  # fmt: skip


@dataclass(frozen=True, eq=False)
class SimulatedTruth:
    """What a simulation used and drew; set as ``TrialData.truth`` by :func:`simulate`.

    Attributes
    ----------
    truth : Truth
        The parameter values.
    design : Design
        The design simulated.
    latent : pandas.DataFrame
        One row per observed session: participant, period, condition, ``delta`` (the
        realised glutamate change, ratio units), ``u`` and ``v`` (participant effects) and
        ``improvement`` (latent, before rounding and clipping; points).
    """

    truth: Truth
    design: Design
    latent: pd.DataFrame

    @property
    def params(self) -> dict[str, float]:
        """Parameter name -> value (as :attr:`Truth.params`)."""
        return self.truth.params

    def estimands(self, spec: Any = "joint") -> dict[str, float]:
        """True estimand values (as :meth:`Truth.estimands`, for the design's trial)."""
        return self.truth.estimands(spec, self.design.config)


def from_table[T](cls: type[T], table: Mapping[str, Any], where: str) -> T:
    """``cls(**table)`` for :class:`Design` or :class:`Truth` read from a settings file.

    Unknown keys raise a :class:`~kbayes.errors.ConfigError` naming them (``where`` says
    which file and table); lists become tuples (TOML has no tuples).
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})

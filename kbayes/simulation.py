r"""Simulate crossover trials from the joint model, and the bundled example trial.

The generative model is that of DESIGN.md ("The statistical model"). Participant *i*,
period *s* in {1, 2}, fMRS block *b* at time :math:`t_b` (minutes from infusion start);
:math:`c_{is}` = 1 under the pretreatment, 0 under the reference; :math:`m_i` = -1/2
(``config.sexes[0]``) or +1/2; :math:`p_{is}` = period - 1.5; :math:`g` the infusion profile.

.. math::

    y_{isb} &= \alpha_0 + a_i + a_{is} + \Delta_{is} g(t_b) + \varepsilon_{isb},\quad
    \varepsilon_{isb} \sim N\bigl(0, \sqrt{\sigma_{mrs}^2 + (\mathrm{crlb}_{isb}/100\cdot
    \mu_{isb})^2}\bigr)\\
    \Delta_{is} &= \beta_0 + \beta_N c + \beta_M m + \beta_{NM} c m + \beta_P p + u_i + e_{is}\\
    \mathrm{imp}_{is} &= \gamma_0 + \gamma_N c + \gamma_M m + \gamma_{NM} c m
    + \gamma_D \tilde\Delta + \gamma_{DN} \tilde\Delta c + \gamma_B (B_{is} - 30)
    + \gamma_P p + v_i + \sigma_y t_\nu

with :math:`\tilde\Delta = (\Delta - 0.05)/0.05`, :math:`\mu_{isb}` the noise-free ratio,
``crlb`` ~ LogNormal per block, (u, v) bivariate normal with correlation ``rho_uv``.
Observed scores depart slightly from this latent model: the baseline B is rounded and
clipped to 0..score_max, and the day-1 score is ``round(B - imp)`` clipped the same way
(with the defaults fewer than 1 % of day-1 scores are clipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kbayes.config import TrialConfig
from kbayes.data import TABLES, TrialData, infusion_profile
from kbayes.errors import ConfigError

#: Centring and scaling constants of the model (same values as the ``joint`` spec).
DELTA_CENTER = 0.05  # ratio units: a typical ketamine-evoked rise
DELTA_SCALE = 0.05  # ratio units
BASELINE_CENTER = 30.0  # rating-scale points
#: Dirichlet concentration per item of participants' item propensities (assumption).
ITEM_CONCENTRATION = 5.0
#: Seed of the bundled example. 2025 (the publication year) already gives two participants
#: with period 1 only, so the example shows incomplete crossovers (registry: 27 enrolled,
#: 26 in the paper) without searching for a seed.
EXAMPLE_SEED = 2025
EXAMPLE_DIR = "example"


def _require(ok: bool, cls: str, name: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{cls}.{name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class Truth:
    """True parameter values of the joint model (names as in the model specs).

    Glutamate parameters are in Glx/tNAA ratio units, improvement parameters in rating-scale
    points (``gamma_D``, ``gamma_DN``: points per ``DELTA_SCALE`` of glutamate change).
    The defaults give E[improvement | placebo] = 12 points at baseline 30 and a total
    naltrexone effect of -3.4 points, i.e. 28 % attenuation, the "about 28 %" reported for
    Jelen et al. 2025 (doi:10.1038/s41591-025-03800-w; registry key ``jelen2025``, a news
    report); the naltrexone effect on the glutamate change is -0.03 in men and -0.01 in
    women, the qualitative "larger in men" of that paper. Every other value is an assumption.

    Parameters
    ----------
    alpha0, sd_a, sd_a_session : float, default 1.0, 0.10, 0.03
        Pre-infusion Glx/tNAA mean and its participant and session SDs (ratio units).
    beta0, beta_N, beta_M, beta_NM, beta_P : float, default 0.05, -0.02, 0.0, -0.02, 0.0
        Glutamate change during infusion: intercept (sex average, reference, mid-period),
        pretreatment, sex (male - female), pretreatment x sex and period effects (ratio units).
    sd_u, sd_e : float, default 0.02, 0.015
        Participant and session SDs of the glutamate change (ratio units).
    gamma0, gamma_N, gamma_M, gamma_NM : float, default 12.0, -2.6, 0.0, 0.0
        Improvement (points) at a glutamate change of ``DELTA_CENTER`` and baseline 30;
        pretreatment, sex and pretreatment x sex effects.
    gamma_D, gamma_DN : float, default 2.0, 0.0
        Improvement per standardised glutamate change (points), and its change under the
        pretreatment.
    gamma_B, gamma_P : float, default 0.2, 0.5
        Improvement per baseline point above 30, and period effect (points).
    sd_v, rho_uv : float, default 3.0, 0.0
        Participant SD of improvement (points) and its correlation with u.
    sigma_y, nu : float, default 3.5, 10.0
        Scale (points) and degrees of freedom of the Student-t residual (``nu=inf``: normal).
    """

    alpha0: float = 1.0
    sd_a: float = 0.10
    sd_a_session: float = 0.03
    beta0: float = 0.05
    beta_N: float = -0.02
    beta_M: float = 0.0
    beta_NM: float = -0.02
    beta_P: float = 0.0
    sd_u: float = 0.02
    sd_e: float = 0.015
    gamma0: float = 12.0
    gamma_N: float = -2.6
    gamma_M: float = 0.0
    gamma_NM: float = 0.0
    gamma_D: float = 2.0
    gamma_DN: float = 0.0
    gamma_B: float = 0.2
    gamma_P: float = 0.5
    sd_v: float = 3.0
    rho_uv: float = 0.0
    sigma_y: float = 3.5
    nu: float = 10.0

    def __post_init__(self) -> None:
        for name, value in self.params.items():
            _require(np.isfinite(value) or name == "nu", "Truth", name, "finite", value)
            if name.startswith("sd_") or name == "sigma_y":
                _require(value >= 0, "Truth", name, ">= 0", value)
        _require(self.alpha0 > 0, "Truth", "alpha0", "> 0 (a ratio)", self.alpha0)
        _require(self.nu > 0, "Truth", "nu", "> 0", self.nu)
        _require(-1 <= self.rho_uv <= 1, "Truth", "rho_uv", "in [-1, 1]", self.rho_uv)

    @property
    def params(self) -> dict[str, float]:
        """Parameter name -> value."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def estimands(self, spec: Any = "joint") -> dict[str, float]:
        """True values of the spec's estimands (name -> value, on the estimands' units).

        ``spec`` is a built-in name, a path to a TOML spec or a loaded ``ModelSpec``.
        """
        from kbayes.spec import load_spec  # imports PyMC tooling: only when asked

        return {k: float(v) for k, v in load_spec(spec).estimand_values(self.params).items()}


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
        paper). Must be in [0, 1).
    block_missing : float, default 0.02
        Probability that a block is missing (its row is absent). Assumption.
    baseline_mean, baseline_sd, baseline_session_sd : float, default 32, 5, 3
        Baseline score: participant mean and SD, and visit-to-visit SD (points). Assumption
        (moderate-to-severe depression).
    items : bool, default False
        Also simulate item scores, ``config.item_columns("baseline")`` and ``("day1")``:
        each participant has item propensities ~ Dirichlet(``ITEM_CONCENTRATION``, ...),
        shared by their visits, and each visit's total is split by :func:`split_items`.
        Assumption (no item-level data of the trial were available).
    shape : {"step", "ramp"}, default "step"
        Infusion profile g(t).
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
    baseline_mean: float = 32.0
    baseline_sd: float = 5.0
    baseline_session_sd: float = 3.0
    items: bool = False
    shape: str = "step"
    config: TrialConfig = dataclasses.field(default_factory=TrialConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_times", tuple(float(t) for t in self.block_times))
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
        for name in ("dropout", "block_missing"):
            _require(0 <= getattr(self, name) < 1, "Design", name, "in [0, 1)", getattr(self, name))
        ok_b = 0 <= self.baseline_mean <= cfg.score_max
        _require(ok_b, "Design", "baseline_mean", f"in [0, {cfg.score_max}]", self.baseline_mean)
        _require(self.shape in ("step", "ramp"), "Design", "shape", "'step' or 'ramp'", self.shape)
        ok_items = not self.items or cfg.score_max <= cfg.n_items * cfg.item_max
        _require(ok_items, "Design", "items", "False when score_max > n_items * item_max", True)


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
        """True estimand values (as :meth:`Truth.estimands`)."""
        return self.truth.estimands(spec)


#: Design of the bundled example: the defaults, with item scores.
EXAMPLE_DESIGN = Design(items=True)


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


def split_items(
    totals: np.ndarray, propensity: np.ndarray, item_max: int, rng: np.random.Generator
) -> np.ndarray:
    """Split total scores into item scores: a weighted urn drawn without replacement.

    Item k holds ``item_max`` balls of weight ``propensity[r, k]``; a row's item scores
    count the items of ``totals[r]`` balls drawn one at a time without replacement, each draw
    picking item k with probability proportional to its propensity times its remaining room
    (``item_max - score_k``). The draws are made at once by ranking exponential keys
    E / weight (Efraimidis & Spirakis 2006, doi:10.1016/j.ipl.2005.11.003). Scores lie in
    0..item_max, sum exactly to the total (at most n_items * item_max) and, unlike a
    multinomial truncated at item_max, do not pile up at the maximum.

    Returns
    -------
    numpy.ndarray of int, shape ``propensity.shape``
    """
    n_rows, n_items = propensity.shape
    keys = rng.exponential(size=(n_rows, n_items, item_max)) / propensity[..., None]
    rank = keys.reshape(n_rows, -1).argsort(axis=1).argsort(axis=1).reshape(keys.shape)
    return (rank < np.asarray(totals)[:, None, None]).sum(axis=2)


def _draw(design: Design, truth: Truth, rng: np.random.Generator) -> tuple[list, pd.DataFrame]:
    """The three tables and the latent table; each part of the draw has its own stream."""
    return _tables(design, _draw_arrays(design, truth, rng))


def _draw_arrays(design: Design, truth: Truth, rng: np.random.Generator) -> dict[str, Any]:
    """One trial on the full participant x period (x block) grid, with the masks ``seen``
    (n, 2) and ``block_seen`` (n, 2, blocks) of what was observed; values rounded as the
    tables store them."""
    d, th, cfg = design, truth, design.config
    n, t = d.n, np.asarray(d.block_times)
    r_design, r_glu, r_mrs, r_madrs, r_items = rng.spawn(5)
    # design: sex, sequence (0 = reference first), dropout, missing blocks
    female = r_design.permutation(np.arange(n) < int(np.floor(n * d.female_fraction + 0.5)))
    m = np.where(female, -0.5, 0.5)[:, None]
    seq = r_design.permutation((np.arange(n) + r_design.integers(2)) % 2)
    c = np.column_stack([seq, 1 - seq]).astype(float)
    p = np.array([-0.5, 0.5])
    seen = np.column_stack([np.ones(n, bool), r_design.random(n) >= d.dropout])
    block_seen = r_design.random((n, 2, t.size)) >= d.block_missing
    # glutamate change and participant effects
    z = r_glu.standard_normal((2, n))
    u = th.sd_u * z[0]
    v = th.sd_v * (th.rho_uv * z[0] + np.sqrt(1 - th.rho_uv**2) * z[1])
    delta = (
        th.beta0 + th.beta_N * c + th.beta_M * m + th.beta_NM * c * m + th.beta_P * p
        + u[:, None] + r_glu.normal(0, th.sd_e, (n, 2))
    )  # fmt: skip
    # fMRS blocks
    level = r_mrs.normal(0, th.sd_a, (n, 1)) + r_mrs.normal(0, th.sd_a_session, (n, 2))
    g = infusion_profile(t, d.shape, cfg.infusion_min)
    mu = th.alpha0 + level[..., None] + delta[..., None] * g
    crlb = np.exp(r_mrs.normal(np.log(d.crlb_median), d.crlb_sd_log, mu.shape))
    sd = np.sqrt(d.sigma_mrs**2 + (crlb / 100 * mu) ** 2)
    y = mu + sd * r_mrs.standard_normal(mu.shape)
    # rating-scale scores
    person = r_madrs.normal(d.baseline_mean, d.baseline_sd, (n, 1))
    base = np.rint(person + r_madrs.normal(0, d.baseline_session_sd, (n, 2)))
    base = base.clip(0, cfg.score_max)
    tail = r_madrs.standard_t(th.nu, (n, 2)) if np.isfinite(th.nu) else r_madrs.normal(size=(n, 2))
    dt = (delta - DELTA_CENTER) / DELTA_SCALE
    imp = (
        th.gamma0 + th.gamma_N * c + th.gamma_M * m + th.gamma_NM * c * m + th.gamma_D * dt
        + th.gamma_DN * dt * c + th.gamma_B * (base - BASELINE_CENTER) + th.gamma_P * p
        + v[:, None] + th.sigma_y * tail
    )  # fmt: skip
    day1 = np.rint(base - imp).clip(0, cfg.score_max)
    items = r_items.dirichlet(np.full(cfg.n_items, ITEM_CONCENTRATION), n) if d.items else None
    return {
        "female": female, "c": c, "seen": seen, "block_seen": block_seen, "delta": delta,
        "u": u, "v": v, "imp": imp, "base": base, "day1": day1, "glx": y.round(4),
        "crlb": crlb.round(1), "propensity": items, "r_items": r_items,
    }  # fmt: skip


def _tables(design: Design, a: dict[str, Any]) -> tuple[list, pd.DataFrame]:
    """The three tables and the latent table of :func:`_draw_arrays`'s trial."""
    cfg, n, t = design.config, design.n, np.asarray(design.block_times)
    ids = participant_ids(n)
    i, s = np.nonzero(a["seen"])
    condition = np.array(cfg.conditions)[a["c"][i, s].astype(int)]
    participants = pd.DataFrame({"participant": ids, "sex": np.where(a["female"], *cfg.sexes)})
    sessions = pd.DataFrame(
        {"participant": ids[i], "period": s + 1, "condition": condition,
         "madrs_baseline": a["base"][i, s].astype(int), "madrs_day1": a["day1"][i, s].astype(int)}
    )  # fmt: skip
    if a["propensity"] is not None:
        propensity = a["propensity"][i]
        for visit, total in (("baseline", a["base"]), ("day1", a["day1"])):
            scores = split_items(total[i, s].astype(int), propensity, cfg.item_max, a["r_items"])
            sessions[cfg.item_columns(visit)] = scores
    latent = pd.DataFrame(
        {"participant": ids[i], "period": s + 1, "condition": condition,
         "delta": a["delta"][i, s], "u": a["u"][i], "v": a["v"][i], "improvement": a["imp"][i, s]}
    )  # fmt: skip
    i, s, b = np.nonzero(a["seen"][..., None] & a["block_seen"])
    mrs = pd.DataFrame(
        {"participant": ids[i], "period": s + 1, "block": b + 1, "time_min": t[b],
         "glx_ratio": a["glx"][i, s, b], "crlb": a["crlb"][i, s, b]}
    )  # fmt: skip
    return [participants, sessions, mrs], latent


def participant_ids(n: int) -> np.ndarray:
    """Participant identifiers of a simulated trial: P01, P02, ... (at least two digits)."""
    return np.array([f"P{k:0{max(2, len(str(n)))}d}" for k in range(1, n + 1)])


def simulate(
    design: Design | None = None,
    truth: Truth | None = None,
    *,
    seed: int | np.random.SeedSequence | np.random.Generator | None = None,
) -> TrialData:
    """Simulate one trial from the joint model (see the module docstring).

    Parameters
    ----------
    design : Design, default Design()
    truth : Truth, default Truth()
    seed : int, numpy.random.SeedSequence or numpy.random.Generator, optional
        The same int or SeedSequence gives identical tables; a Generator is advanced.

    Returns
    -------
    TrialData
        Randomised AB/BA crossover (half the participants in each order); a participant who
        drops out has period 1 only; missing blocks are absent rows. ``.truth`` is a
        :class:`SimulatedTruth`. Glx/tNAA is rounded to 4 decimals and CRLB to 0.1 %.

    Examples
    --------
    >>> sim = simulate(Design(n=40), Truth(), seed=1)
    >>> sim.truth.params["beta_N"]
    -0.02
    """
    design, truth = design or Design(), truth or Truth()
    tables, latent = _draw(design, truth, np.random.default_rng(seed))
    data = TrialData(*tables, config=design.config)
    data.truth = SimulatedTruth(truth, design, latent)
    return data


def load_example() -> TrialData:
    """The bundled example trial, shaped like Jelen et al. 2025 (26 participants).

    The participant-level data of that trial are not public: the example is **simulated**,
    ``simulate(EXAMPLE_DESIGN, Truth(), seed=EXAMPLE_SEED)``, stored as CSV files in
    ``kbayes/example`` and read through :meth:`TrialData.from_files`. ``.truth`` holds the
    parameters and the stored latent values.

    References
    ----------
    Jelen LA et al. Nature Medicine 2025. doi:10.1038/s41591-025-03800-w
    """
    with as_file(files("kbayes") / EXAMPLE_DIR) as folder:
        data = TrialData.from_files(*(folder / f"{name}.csv" for name in TABLES))
        latent = pd.read_csv(folder / "latent.csv", dtype={"participant": str})
    data.truth = SimulatedTruth(Truth(), EXAMPLE_DESIGN, latent)
    return data


def write_example(folder: str | Path | None = None) -> Path:
    """Regenerate the example CSVs (default: the package's ``example`` folder)."""
    folder = Path(folder) if folder else Path(__file__).parent / EXAMPLE_DIR
    sim = simulate(EXAMPLE_DESIGN, Truth(), seed=EXAMPLE_SEED)
    sim.to_files(folder)
    sim.truth.latent.to_csv(folder / "latent.csv", index=False)
    return folder

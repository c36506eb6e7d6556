"""Sample size: the smallest n that reaches a target power (or assurance), searched, not gridded.

The search (:func:`search`):

1. :func:`kbayes.power` at ``initial`` n spread geometrically over ``n_range`` (default 4).
2. A two-parameter logistic curve of power in log n is fitted to every replicate outcome
   by binomial maximum likelihood (:func:`fit_power_curve`):
   ``logit P(go | n) = a + b (log n - log n_ref)``, ``n_ref`` the geometric middle of the
   range. A slope b <= 0 (power not rising with n) stops the search with an error.
3. ``rounds`` times: ``replicates`` more at the n where the fitted curve crosses the
   target (rounded, clipped to the range), and the curve refitted. Round j's replicates
   use a seed derived from ``seed`` and j, so a point visited twice gets new trials.
4. The answer is the smallest integer n with fitted power >= target. Its 95 % interval is
   a parametric bootstrap: 4000 draws of (a, b) from the normal with the fit's asymptotic
   covariance (inverse Fisher information), each draw's crossing rounded up the same way;
   the fitted curve's band is the pointwise 2.5 % and 97.5 % quantiles of the same draws.

Every next n depends only on replicate outcomes, and :func:`kbayes.power`'s seeds depend
on the spec, design, truth and seed, not on workers or order: the same seed gives the same
n on any number of workers. With a store, each call of :func:`kbayes.power` has its own
subfolder (``round0``, ``round1``, ..., ``confirm``), so an interrupted search resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from kbayes.config import TrialConfig
from kbayes.design import Design, Truth
from kbayes.errors import ConfigError
from kbayes.planning import power, read_study
from kbayes.rules import Rule, as_rule
from kbayes.spec import ModelSpec
from kbayes.thresholds import CI_LEVEL  # the interval of n and the curve's band

#: Parametric-bootstrap draws of the curve's coefficients (interval of n, band of the curve).
BOOTSTRAP_DRAWS = 4000


@dataclasses.dataclass(frozen=True)
class PowerCurve:
    """``logit P(go | n) = intercept + slope * (log n - log n_ref)``, fitted by binomial ML.

    Attributes
    ----------
    intercept, slope : float
        Coefficients (slope per unit of log n: power rises with n when it is positive).
    n_ref : float
        Participants at which ``intercept`` is the logit of power.
    cov : numpy.ndarray
        2 x 2 asymptotic covariance of (intercept, slope): the inverse Fisher information.
    """

    intercept: float
    slope: float
    n_ref: float
    cov: np.ndarray = dataclasses.field(compare=False, repr=False)

    def power(self, n: Any, coef: np.ndarray | None = None) -> np.ndarray:
        """Fitted power at ``n`` (array), or at coefficient draws ``coef`` (k x 2): k x len(n)."""
        x = np.log(np.asarray(n, dtype=float)) - math.log(self.n_ref)
        if coef is None:
            return special.expit(self.intercept + self.slope * x)
        return special.expit(coef[:, :1] + coef[:, 1:] * x)

    def crossing(self, target: float, coef: np.ndarray | None = None) -> np.ndarray:
        """n (continuous) where power reaches ``target``; ``inf`` for a draw with slope <= 0."""
        a, b = (self.intercept, self.slope) if coef is None else (coef[:, 0], coef[:, 1])
        a, b = np.asarray(a, float), np.asarray(b, float)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            x = (special.logit(target) - a) / b
            return np.where(b > 0, self.n_ref * np.exp(x), np.inf)

    def draws(self, k: int, seed: np.random.SeedSequence) -> np.ndarray:
        """``k`` draws of (intercept, slope) from their asymptotic normal (k x 2)."""
        rng = np.random.default_rng(seed)
        return rng.multivariate_normal([self.intercept, self.slope], self.cov, size=k)


def fit_power_curve(n: Sequence[int], go: Sequence[int], trials: Sequence[int]) -> PowerCurve:
    """Binomial maximum-likelihood fit of :class:`PowerCurve` to ``go`` of ``trials`` at ``n``.

    Parameters
    ----------
    n, go, trials : sequences of int
        Participants per point, replicates deciding go, and usable replicates.

    Raises
    ------
    ValueError
        When power is 0 or 1 at every n (no curve to fit), or when the fitted power does
        not increase with n (slope <= 0).
    """
    n, go, trials = (np.asarray(v, dtype=float) for v in (n, go, trials))
    keep = trials > 0
    n, go, trials = n[keep], go[keep], trials[keep]
    tried = ", ".join(
        f"n={int(a)}: {int(g)}/{int(t)}" for a, g, t in zip(n, go, trials, strict=True)
    )
    if go.sum() == 0 or go.sum() == trials.sum():
        level = "0" if go.sum() == 0 else "1"
        raise ValueError(
            f"power is {level} at every n tried ({tried}): no curve to fit; move n_range "
            f"{'up' if level == '0' else 'down'} or check the truth"
        )
    n_ref = float(np.exp(np.mean(np.log([n.min(), n.max()]))))
    x = np.log(n) - math.log(n_ref)

    def loss(theta):  # negative binomial log likelihood and its gradient
        eta = theta[0] + theta[1] * x
        p = special.expit(eta)
        nll = np.sum(trials * np.logaddexp(0, eta) - go * eta)
        r = trials * p - go
        return nll, np.array([r.sum(), (r * x).sum()])

    start = np.array([special.logit(np.clip(go.sum() / trials.sum(), 0.01, 0.99)), 0.0])
    # bounds keep the estimate finite when the outcomes are (nearly) separated in n
    fit = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(-30, 30), (-50, 50)])
    a, b = fit.x
    if b <= 0:
        raise ValueError(
            f"power does not increase with n over the n tried ({tried}; fitted slope "
            f"{b:.3g} per log n): no sample size to search for; check the truth and rule"
        )
    w = trials * special.expit(a + b * x) * (1 - special.expit(a + b * x))
    info = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    return PowerCurve(float(a), float(b), n_ref, np.linalg.pinv(info))


def _pooled(table: pd.DataFrame) -> pd.DataFrame:
    """Go counts and usable replicates per n, pooled over rounds."""
    go = (table["power"].fillna(0) * table["n_ok"]).round().astype(int)
    out = table.assign(go=go).groupby("n", as_index=False)[["go", "n_ok"]].sum()
    p = out["go"] / out["n_ok"]
    return out.assign(power=p, power_se=np.sqrt(p * (1 - p) / out["n_ok"]))


def initial_n(n_range: tuple[int, int], points: int = 4) -> list[int]:
    """``points`` integers spread geometrically over ``n_range`` (ends included, distinct)."""
    return sorted({round(v) for v in np.geomspace(*n_range, points)})


def search(
    run: Callable[[list[int], int], pd.DataFrame],
    n_range: tuple[int, int],
    target: float,
    rounds: int,
    initial: int = 4,
) -> tuple[PowerCurve, pd.DataFrame]:
    """The search of the module docstring, on any simulator.

    Parameters
    ----------
    run : callable
        ``run(n_values, round)`` returns a table with columns ``n``, ``n_ok`` and
        ``power`` (share of go among ``n_ok``), as :func:`kbayes.power` does.
    n_range : (int, int)
    target : float
    rounds : int
    initial : int, default 4
        Points of the first round.

    Returns
    -------
    (PowerCurve, pandas.DataFrame)
        The final fit, and every round's table with a ``round`` column.
    """
    tables = [run(initial_n(n_range, initial), 0).assign(round=0)]
    curve = fit_power_curve(*_counts(tables))
    for j in range(1, rounds + 1):
        crossing = float(curve.crossing(target))
        next_n = int(np.clip(round(min(crossing, n_range[1])), *n_range))
        tables.append(run([next_n], j).assign(round=j))
        curve = fit_power_curve(*_counts(tables))
    return curve, pd.concat(tables, ignore_index=True)


def _counts(tables: list[pd.DataFrame]) -> tuple:
    pooled = _pooled(pd.concat(tables, ignore_index=True))
    return pooled["n"], pooled["go"], pooled["n_ok"]


@dataclasses.dataclass(frozen=True)
class SampleSize:
    """The result of :func:`sample_size`.

    Attributes
    ----------
    n : int or None
        Smallest n in ``n_range`` whose fitted power is >= ``target`` (None: not reached).
    ci : (float, float)
        95 % parametric-bootstrap interval of that n (``inf``: not reached in a draw).
    target : float
    n_range : (int, int)
    curve : PowerCurve
        The fitted logistic curve.
    fitted : pandas.DataFrame
        ``n`` (every integer of the range), fitted ``power``, its band ``lo`` and ``hi``.
    table : pandas.DataFrame
        The :func:`kbayes.power` tables of every round, with a ``round`` column.
    confirm : pandas.DataFrame or None
        The :func:`kbayes.power` table at ``n`` with the confirming engine.
    rule : str
    engine : str
    """

    n: int | None
    ci: tuple[float, float]
    target: float
    n_range: tuple[int, int]
    curve: PowerCurve
    fitted: pd.DataFrame = dataclasses.field(compare=False, repr=False)
    table: pd.DataFrame = dataclasses.field(compare=False, repr=False)
    confirm: pd.DataFrame | None = dataclasses.field(default=None, compare=False, repr=False)
    rule: str = ""
    engine: str = "laplace"

    @property
    def points(self) -> pd.DataFrame:
        """Outcomes per n, pooled over rounds: ``go``, ``n_ok``, ``power``, ``power_se``."""
        return _pooled(self.table)

    def __str__(self) -> str:
        lo, hi = (f"{v:.0f}" if np.isfinite(v) else f"> {self.n_range[1]}" for v in self.ci)
        total = int(self.table["replicates"].sum())
        if self.n is None:
            head = f"power {self.target:g} is not reached for n <= {self.n_range[1]}"
        else:
            head = f"n = {self.n} reaches power {self.target:g} (95 % interval {lo} to {hi})"
        fitted = self.fitted.set_index("n")
        lines = [
            f"{head}: {self.rule} ({self.engine}, {total} replicates, "
            f"{self.table['round'].nunique()} round(s))",
        ]
        if self.n is not None:
            row = fitted.loc[self.n]
            lines.append(f"fitted power at n = {self.n}: {row['power']:.3f} "
                         f"(band {row['lo']:.3f} to {row['hi']:.3f})")  # fmt: skip
        if self.confirm is not None:
            row = self.confirm.iloc[0]
            usable = f"{int(row['n_ok'])} usable of {int(row['replicates'])}"
            lines.append(f"{self.confirm.attrs.get('engine', 'nutpie')} at n = {self.n}: power "
                         f"{row['power']:.3f} (MC SE {row['power_se']:.3f}, {usable})")  # fmt: skip
        return "\n".join(lines)

    def plot(self, ax: Any = None):
        """Power per n (pooled, +-2 MC SE), the fitted curve with its 95 % band, the target
        and the chosen n with its interval.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        else:
            fig = ax.figure
        f, pts = self.fitted, self.points
        ax.fill_between(f["n"], f["lo"], f["hi"], color="tab:blue", alpha=0.2, lw=0)
        ax.plot(f["n"], f["power"], color="tab:blue", label=f"fitted ({self.engine})")
        ax.errorbar(pts["n"], pts["power"], yerr=2 * pts["power_se"], fmt="o", color="k",
                    ms=4, capsize=2, label="replicates, +-2 MC SE")  # fmt: skip
        ax.axhline(self.target, color="grey", ls=":", lw=1, label=f"target {self.target:g}")
        if self.n is not None:
            hi = min(self.ci[1], self.n_range[1])
            ax.axvspan(self.ci[0], hi, color="tab:red", alpha=0.1, lw=0)
            ax.axvline(self.n, color="tab:red", label=f"n = {self.n}")
        if self.confirm is not None:
            row = self.confirm.iloc[0]
            ax.errorbar([self.n], [row["power"]], yerr=[2 * row["power_se"]], fmt="s",
                        color="tab:orange", capsize=2, label="confirmed (nutpie)")  # fmt: skip
        ax.set(xlabel="n (participants)", ylabel="power (share of replicates: go)", ylim=(0, 1.02))
        ax.set_title(self.rule if len(self.rule) < 70 else "sample size", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        return fig


def round_seed(seed: int, round_: int) -> int:
    """The :func:`kbayes.power` seed of a round: ``seed`` for round 0, else a 32-bit integer
    derived from (seed, round), so that a point visited again gets new trials."""
    if round_ == 0:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(round_,)).generate_state(1)[0])


def sample_size(
    design: Design,
    truth: Truth | Any,
    rule: Rule | str,
    target: float = 0.8,
    *,
    n_range: tuple[int, int] = (10, 80),
    replicates: int = 200,
    rounds: int = 3,
    seed: int = 0,
    model: str | ModelSpec = "joint",
    engine: str = "laplace",
    confirm: bool | str = False,
    store: str | Path | None = None,
    client: Any = None,
    workers: int = 2,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    progress: bool = True,
) -> SampleSize:
    """The smallest n whose power (or assurance) reaches ``target``, searched over ``n_range``.

    Parameters
    ----------
    design : Design
        Fixed design fields (its ``n`` is what is searched).
    truth : Truth or design prior
        As in :func:`kbayes.power` (a design prior gives assurance).
    rule : Rule, GoNoGo or str
    target : float, default 0.8
        Power to reach, in (0, 1).
    n_range : (int, int), default (10, 80)
        Smallest and largest n searched (total participants, 2 <= n_min < n_max).
    replicates : int, default 200
        Replicates per point and round.
    rounds : int, default 3
        Rounds after the first that add ``replicates`` at the current estimate of n.
    seed : int, default 0
    model, engine, client, workers, draws, tune, chains, progress
        As in :func:`kbayes.power` (``engine`` default ``"laplace"``), for every round and
        the confirmation; ``client=None`` starts one local cluster for the whole search.
    confirm : False or "nutpie", default False
        Run ``replicates`` NUTS replicates at the chosen n and report their power.
    store : path, optional
        Replicate store; each round in a subfolder, so a rerun resumes.

    Returns
    -------
    SampleSize
        ``n``, its ``ci``, the fitted ``curve`` and ``fitted`` table, the rounds' ``table``,
        ``confirm``, ``plot()``.
    """
    ok_range = (
        len(n_range) == 2
        and all(isinstance(v, int | np.integer) for v in n_range)
        and 2 <= n_range[0] < n_range[1]
    )
    if not ok_range:
        raise ValueError(f"n_range must be two integers 2 <= n_min < n_max, not {n_range!r}")
    n_range = (int(n_range[0]), int(n_range[1]))
    if not 0 < target < 1:
        raise ValueError(f"target must be a power in (0, 1), not {target!r}")
    if not (isinstance(rounds, int) and rounds >= 0):
        raise ValueError(f"rounds must be an integer >= 0, not {rounds!r}")
    if confirm not in (False, None, "nutpie"):
        raise ValueError(f"confirm must be False or 'nutpie', not {confirm!r}")
    rule = as_rule(rule)
    folder = Path(store) if store else None
    common = {"model": model, "client": client, "workers": workers, "progress": progress,
              "draws": draws, "tune": tune, "chains": chains}  # fmt: skip

    def run(n_values: list[int], round_: int) -> pd.DataFrame:
        where = folder / f"round{round_}" if folder else None
        seed_j = round_seed(seed, round_)
        return power(design, truth, rule, n=n_values, replicates=replicates, seed=seed_j,
                     store=where, engine=engine, **common)  # fmt: skip

    with _shared_cluster(common) as common["client"]:
        curve, table = search(run, n_range, target, rounds)
        chosen, ci, fitted = choose_n(
            curve, target, n_range, np.random.SeedSequence(seed, spawn_key=(2**32,))
        )
        confirmed = None
        if confirm and chosen is not None:
            where = folder / "confirm" if folder else None
            confirmed = power(design, truth, rule, n=[chosen], replicates=replicates, seed=seed,
                              store=where, engine="nutpie", **common)  # fmt: skip
    return SampleSize(chosen, ci, float(target), n_range, curve, fitted, table, confirmed,
                      rule.text, engine)  # fmt: skip


@contextlib.contextmanager
def _shared_cluster(common: dict):
    """One local Dask cluster for every :func:`kbayes.power` call of a search when
    ``client`` is None (its workers keep their compiled models between rounds), closed at
    the end; otherwise ``client`` as given."""
    if common["client"] is not None:
        yield common["client"]
        return
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=common["workers"], threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        yield client


def choose_n(
    curve: PowerCurve, target: float, n_range: tuple[int, int], seed: np.random.SeedSequence
) -> tuple[int | None, tuple[float, float], pd.DataFrame]:
    """The smallest n with fitted power >= ``target``, its bootstrap interval and the curve.

    Returns
    -------
    (int or None, (float, float), pandas.DataFrame)
        n (None: not reached in ``n_range``); the 2.5 % and 97.5 % quantiles of the same
        choice over :data:`BOOTSTRAP_DRAWS` draws of the coefficients (``inf`` beyond the
        range); the fitted power at every integer n of the range with its band (``lo``, ``hi``).
    """
    grid = np.arange(n_range[0], n_range[1] + 1)
    coef = curve.draws(BOOTSTRAP_DRAWS, seed)
    band = curve.power(grid, coef)
    tail = (1 - CI_LEVEL) / 2
    fitted = pd.DataFrame({"n": grid, "power": curve.power(grid),
                           "lo": np.quantile(band, tail, axis=0),
                           "hi": np.quantile(band, 1 - tail, axis=0)})  # fmt: skip
    chosen = _smallest_n(float(curve.crossing(target)), n_range)
    crossings = curve.crossing(target, coef)  # inf where a draw never reaches the target
    boot = np.where(
        crossings <= n_range[1], np.maximum(n_range[0], np.ceil(crossings - 1e-9)), np.inf
    )
    lo, hi = np.quantile(boot, [tail, 1 - tail], method="inverted_cdf")  # sample values
    ci = (float(lo), float(hi))
    return chosen, ci, fitted


def _smallest_n(crossing: float, n_range: tuple[int, int]) -> int | None:
    """Smallest integer n in the range at or above a crossing; None past the range."""
    if not crossing <= n_range[1]:
        return None
    return max(n_range[0], math.ceil(crossing - 1e-9))


def run_file(
    path: str | Path,
    *,
    out: str | Path | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    store: str | Path | None = None,
    serial: bool = False,
    progress: bool = True,
    config: TrialConfig | None = None,
) -> tuple[SampleSize, Path, Path]:
    """Run the sample-size search a power study TOML file describes (``kbayes sample-size``).

    The file is that of ``kbayes power`` (:func:`kbayes.planning.run_file`) with a
    ``[sample_size]`` table: ``target`` (default 0.8), ``n_range`` (default: the smallest
    and largest of ``[grid] n``), ``rounds`` (default 3), ``confirm`` (``"nutpie"`` or
    false). ``replicates`` is per point and round; ``[grid]`` may only hold ``n``; ``engine``
    defaults to ``"laplace"`` here; ``target`` (the power table's estimand) is not used.

    Returns
    -------
    (SampleSize, Path, Path)
        The result, and the paths of ``sample_size.csv`` (the rounds' power tables) and
        ``sample_size.png``; ``sample_size_curve.csv`` beside them holds the fitted curve.
    """
    study = read_study(path, config=config)
    options = dict(study.tables.get("sample_size", {}))
    known = {"target", "n_range", "rounds", "confirm"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{path} [sample_size]: unknown keys {unknown} (known: "
                          f"{', '.join(sorted(known))})")  # fmt: skip
    grid = dict(study.grid)
    grid_n = grid.pop("n", None)
    if grid:
        raise ConfigError(f"{path} [grid]: a sample-size search varies n only, not {sorted(grid)}")
    n_range = options.get("n_range") or (grid_n and [min(grid_n), max(grid_n)])
    if not n_range:
        raise ConfigError(f"{path}: give [sample_size] n_range = [n_min, n_max] (or [grid] n)")
    path = Path(path)
    out = Path(out) if out else path.with_name(f"{path.stem}_sample_size")
    out.mkdir(parents=True, exist_ok=True)
    po = study.power_options | {"engine": study.options.get("engine", "laplace")}
    result = sample_size(
        study.design, study.truth, study.rule, options.get("target", 0.8),
        n_range=tuple(n_range), replicates=po["replicates"], rounds=options.get("rounds", 3),
        seed=po["seed"], model=po["model"], engine=po["engine"],
        confirm=options.get("confirm", False), store=store or study.store or out / "replicates",
        client="serial" if serial else scheduler, workers=workers, draws=po["draws"],
        tune=po["tune"], chains=po["chains"], progress=progress,
    )  # fmt: skip
    csv, png = out / "sample_size.csv", out / "sample_size.png"
    result.table.to_csv(csv, index=False)
    result.fitted.to_csv(out / "sample_size_curve.csv", index=False)
    import matplotlib.pyplot as plt

    fig = result.plot()
    fig.savefig(png, dpi=150)
    plt.close(fig)
    return result, csv, png

"""From a published trial to the plan of the next one: ``kb.plan("jelen2025", rule)``.

One call runs the planning steps a trial statistician takes, each with kbayes's own tool,
and keeps every result:

1. :func:`kbayes.from_published`: the design and truth whose simulated trials reproduce the
   published tests (what was matched, what was assumed);
2. :func:`kbayes.calibrate_threshold`: the rule's probability bound that holds the
   false-positive rate at ``alpha`` under the null (the truth without any pretreatment
   effect, :meth:`kbayes.Truth.null`) at the published n;
3. :func:`kbayes.sample_size` with the calibrated rule: the smallest n reaching the target
   power, with its interval. The bound depends on n, so it is calibrated again at that n,
   and n searched again while the new bound's interval excludes the one n was chosen with
   (at most three bounds); the plan's bound is the one calibrated at the final n;
4. a check on fresh null trials (replicates beyond those the bound was calibrated on, so
   the screen's reference trials are the same): the calibrated rule's false-positive rate
   at the chosen n; and assurance over the published estimate's uncertainty
   (:meth:`kbayes.PublishedDesign.design_prior`) at the n the search visited;
5. with ``looks``: :func:`kbayes.sequential` at that n, the bound over looks that holds
   alpha overall (:meth:`kbayes.Sequential.calibrate`) and the operating characteristics
   with it, under the effect and under fresh null trials.

``kb.report(plan, "plan.html")`` (or :meth:`Plan.write_report`) writes a self-contained
page of all of it, with seeds and versions; ``kbayes plan`` does both from the command line.
"""

from __future__ import annotations

import dataclasses
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from kbayes.interim import Sequential, operating_characteristics, sequential
from kbayes.planning import plot_power, power, summarise
from kbayes.published_trial import PublishedDesign, from_published
from kbayes.reporting import Section, html_page, png_bytes
from kbayes.rules import Rule, as_rule
from kbayes.sizing import SampleSize, sample_size
from kbayes.thresholds import Threshold, calibrate_threshold, plot_threshold

#: Packages whose versions a planning report lists.
VERSIONED = ("kbayes", "pymc", "nutpie", "pytensor", "arviz", "numpy", "scipy", "pandas")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything :func:`plan` computed; ``kb.report(plan, path)`` writes it up.

    Attributes
    ----------
    calibrated : PublishedDesign
        The design and truth calibrated to the study (:func:`kbayes.from_published`).
    threshold : Threshold
        The rule's bound, calibrated at the chosen n (``.rule``: the plan's rule).
    size : SampleSize
        The sample-size search (``.n``: the plan's n; it ran with the bound current then,
        see ``settings["threshold calibrated at n"]``).
    null_check : pandas.DataFrame
        The rule's false-positive rate at n on fresh null trials (:func:`kbayes.power`
        table).
    assurance : pandas.DataFrame
        Assurance by n under :meth:`PublishedDesign.design_prior`.
    interim, interim_null : Sequential or None
        With looks: operating characteristics with the bound over looks, under the
        calibrated truth and on fresh null trials.
    interim_threshold : Threshold or None
        The bound over looks.
    settings : dict
        The arguments, seeds and the n at which bounds were calibrated.
    """

    calibrated: PublishedDesign
    threshold: Threshold
    size: SampleSize
    null_check: pd.DataFrame
    assurance: pd.DataFrame
    interim: Sequential | None
    interim_null: Sequential | None
    interim_threshold: Threshold | None
    settings: dict[str, Any]

    @property
    def n(self) -> int | None:
        """The chosen number of participants."""
        return self.size.n

    @property
    def rule(self) -> Rule:
        """The calibrated decision rule."""
        return self.threshold.rule

    def __str__(self) -> str:
        return "\n".join(self._summary())

    def _summary(self) -> list[str]:
        s, lines = self.settings, []
        lines.append(
            f"Planned from {s['study']} with the rule {self.rule.text} "
            f"(calibrated from {s['rule']} to a false-positive rate of {s['alpha']:g})."
        )
        lines.append(str(self.size).splitlines()[0] + ".")
        if self.size.rule != self.rule.text:
            lines.append(
                f"The search ran with the bound current then ({self.size.rule}); the plan's "
                f"bound is the one calibrated at the chosen n (calibrated at n = "
                f"{s['threshold calibrated at n']})."
            )
        if self.n is not None:
            row = self.null_check.iloc[0]
            lines.append(
                f"At n = {self.n} the calibrated rule's false-positive rate on fresh null "
                f"trials is {row['power']:.3f} (MC SE {row['power_se']:.3f})."
            )
            at = self.assurance.set_index("n")
            if self.n in at.index:
                lines.append(
                    f"Assurance at n = {self.n} (the published estimates' uncertainty): "
                    f"{at.loc[self.n, 'power']:.2f} (MC SE {at.loc[self.n, 'power_se']:.2f})."
                )
        if self.interim is not None:
            row, z = self.interim.table.iloc[0], self.interim_null.table.iloc[0]
            lines.append(
                f"With looks at {s['looks']}: bound {self.interim_threshold.threshold:.4g} at "
                f"every look; power {row['power']:.2f}, expected n {row['expected_n']:.1f} of "
                f"{int(row['n_max'])}, stopping early {row['p_stop_early']:.2f}; under the null "
                f"the overall false-positive rate is {z['power']:.3f} "
                f"(MC SE {z['power_se']:.3f})."
            )
        return lines

    def write_report(self, path: str | Path, dpi: int = 90) -> Path:
        """A self-contained HTML page of the plan (``.html`` or ``.htm``)."""
        path = Path(path)
        if path.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"a plan's report is HTML: path must end in .html, not {path.name!r}")
        sections = [
            self._summary_section(),
            self._design_section(),
            self._threshold_section(dpi),
            self._size_section(dpi),
            *self._interim_sections(dpi),
            self._settings_section(),
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            html_page(sections, f"Plan of the next trial after {self.settings['study']}"),
            encoding="utf-8",
        )
        return path

    def _summary_section(self) -> Section:
        return Section("summary", "Summary", [("ul", self._summary())])

    def _design_section(self) -> Section:
        c = self.calibrated
        matched = c.matched.drop(columns="source")
        text = (
            "The design and truth of every simulated trial reproduce what the paper "
            "reports: the paired tests' medians over simulated trials equal the reported "
            "statistics. Everything else is assumed (below)."
        )
        chosen = pd.DataFrame(
            [(k, c.truth.params[k]) for k in ("beta_N", "beta_NM", "gamma_N", "sigma_y")],
            columns=["field", "value"],
        )
        assumed = c.assumed.assign(value=c.assumed["value"].map(str))
        return Section(
            "design",
            "The design calibrated to the published trial",
            [
                ("p", text),
                ("table", matched),
                ("p", "Truth values chosen:"),
                ("table", chosen),
                ("ul", [f"{r.quantity}: {r.source}" for r in c.matched.itertuples()]),
                (
                    "details",
                    "assumed design and truth values",
                    "text",
                    assumed.to_string(index=False),
                ),
            ],
        )

    def _threshold_section(self, dpi: int) -> Section:
        t = self.threshold
        return Section(
            "threshold",
            "Error control",
            [
                ("pre", str(t)),
                (
                    "img",
                    "threshold",
                    "Null replicates' probabilities (ECDF), the nominal bound and "
                    "the calibrated threshold with its 95 % interval",
                    png_bytes(plot_threshold(t), dpi),
                ),
                (
                    "p",
                    f"Calibrated at n = {self.settings['threshold calibrated at n']} (the "
                    "published n, then the chosen one); the rate at the chosen n on fresh "
                    "null trials is in the summary.",
                ),
            ],
        )

    def _size_section(self, dpi: int) -> Section:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        plot_power(self.assurance, ax=ax, label="assurance")
        ax.axhline(self.size.target, color="grey", ls=":", lw=1)
        return Section(
            "size",
            "Sample size, power and assurance",
            [
                ("pre", str(self.size)),
                (
                    "img",
                    "size",
                    "Power by n: replicates (+-2 MC SE), the fitted curve and band, "
                    "the target and the chosen n",
                    png_bytes(self.size.plot(), dpi),
                ),
                ("table", self.size.points),
                (
                    "img",
                    "assurance",
                    "Assurance by n (+-2 MC SE): the published effects drawn "
                    "from their reanalysis posteriors",
                    png_bytes(fig, dpi),
                ),
                ("table", self.assurance[["n", "replicates", "n_problem", "power", "power_se"]]),
            ],
        )

    def _interim_sections(self, dpi: int) -> list[Section]:
        if self.interim is None:
            return []
        looks = self.interim.looks.drop(columns="point")
        return [
            Section(
                "interim",
                "Interim looks",
                [
                    (
                        "p",
                        f"Efficacy: {self.interim.efficacy[0].text} at every look (the bound that "
                        f"holds the overall false-positive rate); futility: "
                        f"{self.settings['futility'] or 'none'}.",
                    ),
                    ("pre", str(self.interim_threshold)),
                    ("table", self.interim.table),
                    ("table", looks),
                    ("p", "Under the null:"),
                    ("table", self.interim_null.table),
                    (
                        "img",
                        "interim",
                        "Cumulative probability of stopping by look",
                        png_bytes(self.interim.plot(), dpi),
                    ),
                ],
            )
        ]

    def _settings_section(self) -> Section:
        rows = [{"item": k, "value": str(v)} for k, v in self.settings.items()]
        rows += [{"item": f"version: {p}", "value": version(p)} for p in VERSIONED]
        rows.append({"item": "python", "value": platform.python_version()})
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        return Section(
            "settings",
            "Seeds, settings and versions",
            [("table", pd.DataFrame(rows)), ("p", f"Written {stamp}.")],
        )


def plan(
    study: str = "jelen2025",
    rule: Rule | str = "P(ntx_glu < 0) > 0.95",
    *,
    target: float = 0.8,
    n_range: tuple[int, int] = (10, 80),
    alpha: float = 0.05,
    looks: list[float] | None = None,
    futility: Rule | str | None = None,
    prior: str = "neutral",
    replicates: int = 200,
    null_replicates: int = 1000,
    rounds: int = 3,
    seed: int = 0,
    model: str = "joint",
    engine: str = "laplace",
    confirm: bool | str = False,
    store: str | Path | None = None,
    client: Any = None,
    workers: int = 2,
    progress: bool = True,
) -> Plan:
    """Plan the next trial after a published one (see the module docstring for the steps).

    Parameters
    ----------
    study : str, default "jelen2025"
        A study :func:`kbayes.from_published` can calibrate to.
    rule : Rule or str
        The decision: one condition ``P(event) > c``, whose bound is calibrated.
    target : float, default 0.8
        Power the chosen n must reach.
    n_range : (int, int), default (10, 80)
        Range searched by :func:`kbayes.sample_size`.
    alpha : float, default 0.05
        False-positive rate to hold, once (one analysis) or over all looks.
    looks, futility : optional
        Interim looks (fractions of n) and the futility rule, as in :func:`kbayes.sequential`.
    prior : str, default "neutral"
        The reanalysis prior of the assurance design prior.
    replicates, null_replicates : int, default 200, 1000
        Simulated trials per design point under the effect, and under the null.
    rounds, confirm : as in :func:`kbayes.sample_size`.
    seed, model, engine, store, client, workers, progress : as in :func:`kbayes.power`
        (``store``: one subfolder per step, so an interrupted plan resumes).

    Returns
    -------
    Plan
    """
    folder = Path(store) if store else None

    def where(step: str) -> Path | None:
        return folder / step if folder else None

    run = {
        "seed": seed,
        "model": model,
        "engine": engine,
        "client": client,
        "workers": workers,
        "progress": progress,
    }
    calibrated = from_published(study, seed=seed)
    design, truth = calibrated
    null = truth.null()

    def bound(n: int) -> Threshold:
        at = dataclasses.replace(design, n=n)
        return calibrate_threshold(at, null, as_rule(rule), alpha, replicates=null_replicates,
                                   store=where(f"threshold/n{n}"), **run)  # fmt: skip

    def size_with(threshold: Threshold) -> SampleSize:
        return sample_size(design, truth, threshold.rule, target, n_range=n_range,
                           replicates=replicates, rounds=rounds, confirm=confirm,
                           store=where(f"sample_size/bound{threshold.threshold:g}"),
                           **run)  # fmt: skip

    # The bound depends on n: calibrated at the published n, then at the chosen n; n is
    # searched again while the new bound's interval excludes the one it was chosen with
    # (at most three bounds). The final bound is the one calibrated at the final n.
    bounds = {design.n: bound(design.n)}
    threshold = bounds[design.n]
    size = size_with(threshold)
    n = size.n or n_range[1]
    while n not in bounds and len(bounds) < 3:
        bounds[n] = bound(n)
        if bounds[n].ci[0] <= threshold.threshold <= bounds[n].ci[1]:
            break
        threshold = bounds[n]
        size = size_with(threshold)
        n = size.n or n_range[1]
    if n not in bounds:
        bounds[n] = bound(n)
    threshold = bounds[n]
    calibrated_at = list(bounds)
    at_n = dataclasses.replace(design, n=n)
    # checks on fresh null trials: replicates beyond those the bound was calibrated on, of
    # the same runs (so the screen's reference trials, and its scales, are the same)
    checked = power(at_n, null, threshold.rule, replicates=2 * null_replicates,
                    store=where("null_check"), **run)  # fmt: skip
    fresh = checked.attrs["replicates"][null_replicates:]
    null_check = summarise(pd.DataFrame(fresh), [({"n": n}, fresh[0]["point"])], threshold.rule,
                           threshold.rule.estimands[0])  # fmt: skip
    grid = sorted({*size.points["n"].astype(int).tolist(), n})  # n already compiled
    assurance = power(design, calibrated.design_prior(prior), threshold.rule, n=grid,
                      replicates=replicates, store=where("assurance"), **run)  # fmt: skip
    interim = interim_null = interim_threshold = None
    if looks:
        kw = {"looks": looks, "futility": futility} | run
        nulls = sequential(at_n, null, threshold.rule, replicates=2 * null_replicates,
                           store=where("interim_null"), **kw)  # fmt: skip
        first, later = nulls.replicates[:null_replicates], nulls.replicates[null_replicates:]
        calibrating = operating_characteristics(first, nulls.efficacy, nulls.futility, ("n",))
        interim_threshold = calibrating.calibrate(alpha)
        rules = [interim_threshold.rule] * len(looks)
        interim_null = operating_characteristics(later, rules, nulls.futility, ("n",))
        interim = sequential(at_n, truth, interim_threshold.rule, replicates=replicates,
                             store=where("interim"), **kw)  # fmt: skip
    settings = {
        "study": study,
        "rule": as_rule(rule).text,
        "target": target,
        "n_range": n_range,
        "alpha": alpha,
        "looks": looks,
        "futility": as_rule(futility).text if futility else None,
        "prior": prior,
        "replicates": replicates,
        "null_replicates": null_replicates,
        "rounds": rounds,
        "seed": seed,
        "model": model,
        "engine": engine,
        "store": str(folder) if folder else None,
        "threshold calibrated at n": calibrated_at,
    }
    return Plan(
        calibrated,
        threshold,
        size,
        null_check,
        assurance,
        interim,
        interim_null,
        interim_threshold,
        settings,
    )

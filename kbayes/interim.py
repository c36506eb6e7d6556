"""Interim looks: operating characteristics of a design that may stop early.

``kb.sequential(design, truth, rule, looks=[0.5, 1.0], futility=...)`` simulates each
replicate trial once and analyses it at every look: look k sees the first
``round(looks[k] * n)`` participants with their complete follow-up
(:func:`kbayes.simulation.simulate_looks`; missingness is counted per look, so every look
has one data shape and compiles once). At an interim look the trial stops for efficacy when
the look's efficacy rule holds, else for futility when its futility rule holds; at the last
look it succeeds when the efficacy rule holds. Seeds, the replicate store with resume, Dask
and the engines are those of :func:`kbayes.power` (:func:`kbayes.planning.run_points`).

Each replicate stores, per look, the posterior probability of every event of the rules
(``P(ntx_glu < 0)``, not only whether ``> 0.95`` held), so :meth:`Sequential.with_rules`
re-decides the stored trials under other bounds without refitting, which is what
:meth:`Sequential.calibrate` uses to hold the overall false-positive rate at alpha.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kbayes.design import Design
from kbayes.errors import SpecError
from kbayes.planning import USABLE_MIN, look_sizes, run_points
from kbayes.rules import GoNoGo, Rule, as_rule
from kbayes.thresholds import Threshold, calibration_condition, threshold_from

log = logging.getLogger("kbayes")
#: Default look fractions: one interim analysis at half the participants.
LOOKS = (0.5, 1.0)


def _per_look(rule: Any, count: int, what: str) -> list[Rule | None]:
    """One rule (or None) per look from a rule, its text, None or a list of them."""
    if isinstance(rule, list | tuple):
        if len(rule) != count:
            raise ValueError(f"{what}: {len(rule)} rules for {count} looks")
        return [None if r is None else as_rule(r) for r in rule]
    return [None if rule is None else as_rule(rule)] * count


def _holds(rule: Rule, events: Mapping[str, float]) -> bool:
    return rule.decide({c.text: events[c.event] for c in rule.conditions})


@dataclasses.dataclass(frozen=True)
class Sequential:
    """Operating characteristics of an interim design (:func:`sequential`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per design point: its varied fields; ``replicates``, ``n_ok``,
        ``n_problem``, ``usable_share``; ``power`` (probability of stopping for efficacy at
        any look; under a null truth the overall false-positive rate) and ``power_se``;
        ``p_futility``, ``p_stop_early`` and their SEs; ``expected_n`` (participants
        analysed when the trial stops) with ``expected_n_se``, and ``n_max``.
    looks : pandas.DataFrame
        One row per design point and look: ``look``, ``n_look``, ``p_efficacy`` and
        ``p_futility`` (probability of stopping at this look for that reason), their SEs,
        and ``p_reach`` (probability of reaching this look).
    replicates : list of dict
        Every replicate's record (per look: estimand summaries, event probabilities,
        diagnostics), with its point's varied fields.
    efficacy, futility : tuple
        The rule of each look (futility: None where the trial does not stop for futility).
    fields : tuple of str
        The design fields varied over the design points (columns of both tables).
    """

    table: pd.DataFrame
    looks: pd.DataFrame
    replicates: list[dict]
    efficacy: tuple[Rule, ...]
    futility: tuple[Rule | None, ...]
    fields: tuple[str, ...]

    def with_rules(self, rule: Any = None, futility: Any = "same") -> Sequential:
        """The same stored trials decided by other rules on the same events (no refit).

        ``rule``: efficacy rule(s), default the current ones; ``futility``: ``"same"``,
        None or rule(s).
        """
        count = len(self.efficacy)
        efficacy = self.efficacy if rule is None else tuple(_per_look(rule, count, "rule"))
        fut = self.futility if futility == "same" else _interim(futility, count)
        return operating_characteristics(self.replicates, efficacy, fut, self.fields)

    def calibrate(self, alpha: float = 0.05) -> Threshold:
        """The efficacy bound, one for every look, holding the overall false-positive rate
        at ``alpha``, when these replicates were simulated under a null truth.

        The efficacy rule must be one condition ``P(event) > c``, the same event at every
        look. The bound is the smallest c with at most ``alpha`` of the usable replicates
        reaching ``P(event) > c`` at some look: an order statistic of each trial's largest
        probability over the looks, with a distribution-free 95 % interval
        (:func:`kbayes.thresholds.order_statistic_threshold`). Futility is non-binding: the
        rate holds whether or not the trial stops for futility, and ``nominal_rate`` is
        the rate of the given efficacy rules without futility stops.
        """
        conditions = [calibration_condition(r) for r in self.efficacy]
        if len({c.event for c in conditions}) != 1:
            raise SpecError(
                "calibrate: the efficacy rules must be about one event at every look; got "
                f"{[r.text for r in self.efficacy]}"
            )
        event = conditions[0].event
        usable = [r["looks"] for r in self.replicates if not _problem(r["looks"])]
        top = np.array([max(look["events"][event] for look in looks) for looks in usable])
        nominal = np.array([
            any(c.holds(look["events"][event]) for c, look in zip(conditions, looks, strict=True))
            for looks in usable
        ])  # fmt: skip
        n_problem = len(self.replicates) - len(top)
        return threshold_from(top, nominal, alpha, conditions[0], self.efficacy[0], n_problem,
                              self.table)  # fmt: skip

    def plot(self):
        """Cumulative probability of stopping for efficacy (solid) and futility (dashed)
        by participants analysed, one colour per design point; the expected sample size
        is marked on each curve.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        for k, (key, g) in enumerate(self.looks.groupby("point", sort=False)):
            row = self.table.iloc[k]
            name = ", ".join(f"{f}={row[f]}" for f in self.fields) or key
            colour = f"C{k}"
            ax.plot(g["n_look"], g["p_efficacy"].cumsum(), marker="o", color=colour,
                    label=f"{name}: E[n] = {row['expected_n']:.1f}")  # fmt: skip
            ax.plot(g["n_look"], g["p_futility"].cumsum(), marker="s", ls="--", color=colour)
            ax.axvline(row["expected_n"], color=colour, lw=0.8, ls=":")
        title = "efficacy (solid), futility (dashed); dotted: E[n]"
        ax.set(xlabel="participants analysed", ylabel="cumulative probability of stopping",
               ylim=(0, 1.02), title=title)  # fmt: skip
        ax.legend(fontsize=8)
        return fig


def _interim(futility: Any, count: int) -> tuple[Rule | None, ...]:
    """Futility rules of the interim looks; None at the last look."""
    rules = _per_look(futility, count - 1, "futility") if count > 1 else []
    return (*rules, None)


def _problem(looks: list[dict]) -> bool:
    return any(bool(look["problem"]) for look in looks)


def _stop(looks: list[dict], efficacy, futility) -> tuple[int, str]:
    """(look index, reason) where a replicate stops: "efficacy", "futility" or "none"."""
    for k, look in enumerate(looks):
        if _holds(efficacy[k], look["events"]):
            return k, "efficacy"
        if futility[k] is not None and _holds(futility[k], look["events"]):
            return k, "futility"
    return len(looks) - 1, "none"


def operating_characteristics(
    records: list[dict],
    efficacy: Sequence[Rule],
    futility: Sequence[Rule | None],
    fields: Sequence[str],
) -> Sequential:
    """A :class:`Sequential` from stored replicate records and the rules of each look.

    A replicate with a convergence problem at any look is counted in ``n_problem`` and left
    out of every rate (its fits are all that decide where it stops).
    """
    reps = pd.DataFrame(records)
    rows, look_rows = [], []
    for point, r in reps.groupby("point", sort=False):
        ok = [rec for rec in r.to_dict("records") if not _problem(rec["looks"])]
        sizes = [look["n"] for look in r.iloc[0]["looks"]]
        stops = [_stop(rec["looks"], efficacy, futility) for rec in ok]
        where = np.array([k for k, _ in stops], int)
        why = np.array([reason for _, reason in stops])
        m = len(ok)
        row = {f: r.iloc[0][f] for f in fields} | {
            "replicates": len(r), "n_ok": m, "n_problem": len(r) - m,
            "usable_share": m / len(r),
        }  # fmt: skip
        for col, hit in (
            ("power", why == "efficacy"),
            ("p_futility", why == "futility"),
            ("p_stop_early", where < len(sizes) - 1),
        ):
            row |= _rate(col, hit, m)
        n_used = np.array(sizes)[where] if m else np.empty(0)
        row["expected_n"] = float(n_used.mean()) if m else np.nan
        row["expected_n_se"] = float(n_used.std(ddof=1) / np.sqrt(m)) if m > 1 else np.nan
        row["n_max"] = sizes[-1]
        rows.append(row)
        for k, n_look in enumerate(sizes):
            at = where == k
            look_rows.append(
                {
                    "point": point,
                    **{f: row[f] for f in fields},
                    "look": k + 1,
                    "n_look": n_look,
                    **_rate("p_efficacy", at & (why == "efficacy"), m),
                    **_rate("p_futility", at & (why == "futility"), m),
                    "p_reach": float((where >= k).mean()) if m else np.nan,
                }
            )
    return Sequential(pd.DataFrame(rows), pd.DataFrame(look_rows), records, tuple(efficacy),
                      tuple(futility), tuple(fields))  # fmt: skip


def _rate(name: str, hit: np.ndarray, m: int) -> dict[str, float]:
    p = float(hit.mean()) if m else np.nan
    return {name: p, f"{name}_se": float(np.sqrt(p * (1 - p) / m)) if m else np.nan}


def sequential(
    design: Design,
    truth: Any,
    rule: Rule | str | Sequence[Rule | str],
    *,
    looks: Sequence[float] = LOOKS,
    futility: Rule | str | Sequence[Rule | str | None] | None = None,
    n: Iterable[int] | None = None,
    grid: Mapping[str, Iterable] | None = None,
    replicates: int = 200,
    seed: int = 0,
    model: str = "joint",
    store: str | Path | None = None,
    client: Any = None,
    workers: int = 2,
    engine: str = "nutpie",
    target: str | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    progress: bool = True,
) -> Sequential:
    """Operating characteristics of a design with interim looks.

    Parameters
    ----------
    design, truth, n, grid, replicates, seed, model, store, client, workers, engine,
    target, draws, tune, chains, progress
        As in :func:`kbayes.power` (the truth may be a design prior).
    rule : Rule, str or list of them
        Efficacy rule: the same at every look, or one per look (e.g. stricter early).
    looks : sequence of float, default (0.5, 1.0)
        Fractions of n analysed at each look, increasing, the last 1.
    futility : Rule, str, list or None
        Stop for futility at an interim look when it holds (checked after efficacy): one
        rule for every interim look, or one per interim look (None: no futility stop).

    Returns
    -------
    Sequential
        ``.table`` (per design point: power, probability of stopping early, expected
        sample size, each with Monte-Carlo SE), ``.looks`` (per look), ``.plot()``,
        ``.with_rules()`` and ``.calibrate(alpha)``.
    """
    count = len(tuple(looks))
    if isinstance(rule, GoNoGo) or isinstance(futility, GoNoGo):
        raise SpecError("sequential: give the efficacy rule and futility= as plain rules")
    efficacy = _per_look(rule, count, "rule")
    fut = _interim(futility, count)
    look_sizes(design.n, looks)  # bad looks fail before any work
    events = {c.text: c for r in (*efficacy, *fut) if r is not None for c in r.conditions}
    every = Rule(" | ".join(events))  # the worker records each event's probability
    *_, keys, rows = run_points(
        design, truth, every, n=n, grid=grid, replicates=replicates, seed=seed, model=model,
        store=store, client=client, workers=workers, engine=engine,
        target=target or efficacy[0].estimands[0], draws=draws, tune=tune, chains=chains,
        progress=progress, looks=tuple(looks),
    )  # fmt: skip
    fields = tuple(keys[0][0]) if keys else ()
    result = operating_characteristics(rows, efficacy, fut, fields)
    for row in result.table[result.table["usable_share"] < USABLE_MIN].to_dict("records"):
        point = ", ".join(f"{f}={row[f]}" for f in fields)
        log.warning(
            "design point %s: its rates rest on %d of %d replicates (the others had "
            "convergence problems at some look)",
            point,
            row["n_ok"],
            row["replicates"],
        )
    return result

"""Trial configuration: names and ranges that are data, not code.

The defaults describe the Jelen et al. (2025) design: ketamine after naltrexone or placebo,
Glx/tNAA from fMRS, MADRS rated before and on day 1. Another drug, metabolite or rating scale
is another :class:`TrialConfig`, not another code path.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass

#: Trial designs: every participant under every condition, or one arm each.
DESIGNS = ("crossover", "parallel")


#: The hour of the day-1 rating (``sessions.madrs_day1``) among ``TrialConfig.rating_times_h``.
DAY1_H = 24.0


def _rating_times(times) -> tuple[float, ...]:
    """``times`` as a tuple of floats, or a ValueError unless increasing numbers > 0."""
    items = [times] if isinstance(times, str | numbers.Real) else list(times)
    all_numbers = all(isinstance(t, numbers.Real) and not isinstance(t, bool) for t in items)
    out = tuple(float(t) for t in items) if all_numbers else ()
    ordered = all(a < b for a, b in itertools.pairwise(out))
    if not (out and ordered and all(math.isfinite(t) and t > 0 for t in out)):
        raise ValueError(
            "TrialConfig.rating_times_h must be one or more increasing times in hours from "
            f"infusion start, all > 0 (the baseline is before infusion), got {times!r}"
        )
    return out


#: TrialConfig fields in words (the report's configuration table).
FIELD_WORDS = {
    "conditions": "conditions (reference first)", "sexes": "sex codes",
    "scale": "rating scale", "score_max": "highest total score", "n_items": "items",
    "item_max": "highest item score", "metabolite": "fMRS outcome", "drug": "challenge drug",
    "infusion_min": "infusion length (min)", "crlb_max": "CRLB cut-off (%)",
    "design": "design", "periods": "periods", "rating_times_h": "rating times (h)",
}  # fmt: skip


@dataclass(frozen=True)
class TrialConfig:
    """Names, codes and ranges of one trial (a crossover or parallel groups).

    Parameters
    ----------
    conditions : tuple of str, default ("placebo", "naltrexone")
        The reference condition first, then the pretreatments under study (two or more
        conditions). With two, the pretreatment is coded c = 1; with more, each active
        condition has its own effects (a ``condition`` dim over :attr:`actives`).
    sexes : (str, str), default ("female", "male")
        Sex codes as they appear in the data; coded -1/2 and +1/2 in the models, so main
        effects are averages over the two sexes.
    scale : str, default "MADRS"
        Rating scale name, used in labels and units.
    score_max : int, default 60
        Highest possible total score (MADRS: 10 items x 6).
    n_items, item_max : int, default 10, 6
        Number of items and the highest item score (items scored 0..item_max).
    metabolite : str, default "Glx/tNAA"
        Name of the fMRS outcome (a ratio, so > 0), used in labels and units.
    drug : str, default "ketamine"
        The challenge drug given in every session.
    infusion_min : float, default 40.0
        Infusion length in minutes; time 0 is infusion start.
    crlb_max : float, default 20.0
        Quality cut-off: fMRS blocks whose CRLB (%) exceeds it are excluded and reported.
    design : {"crossover", "parallel"}, default "crossover"
        A crossover gives each participant a session under each condition, one per period;
        a parallel-group trial gives each participant one session (period 1) in one arm.
    periods : int, optional
        Number of periods of the design, default one per condition for a crossover and 1
        (the only value allowed) for a parallel trial; a session in a period outside
        1..periods is an error.
    rating_times_h : tuple of float, default (24.0,)
        The scheduled times of the depression ratings of a session, in hours from infusion
        start, increasing, all > 0 (e.g. ``(4, 24, 72, 168)``: 4 h, day 1, day 3, day 7);
        the ``time_h`` values allowed in the optional ``ratings`` table; the day-1 rating
        (sessions' madrs_day1) is the one at 24 h. The baseline (sessions' madrs_baseline)
        is before infusion start, so it is not one of them.
    """

    conditions: tuple[str, ...] = ("placebo", "naltrexone")
    sexes: tuple[str, str] = ("female", "male")
    scale: str = "MADRS"
    score_max: int = 60
    n_items: int = 10
    item_max: int = 6
    metabolite: str = "Glx/tNAA"
    drug: str = "ketamine"
    infusion_min: float = 40.0
    crlb_max: float = 20.0
    design: str = "crossover"
    periods: int | None = None
    rating_times_h: tuple[float, ...] = (24.0,)

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"TrialConfig.design must be one of {DESIGNS}, got {self.design!r}")
        for name in ("conditions", "sexes"):  # lists (TOML, JSON) as tuples; rating times below
            object.__setattr__(self, name, tuple(getattr(self, name)))
        k = len(self.conditions)
        if k < 2 or len(set(self.conditions)) < k or not all(self.conditions):
            raise ValueError(
                f"TrialConfig.conditions must be two or more distinct names (the reference "
                f"first), got {self.conditions!r}"
            )
        if len(self.sexes) != 2:
            raise ValueError(f"TrialConfig.sexes must be two codes, got {self.sexes!r}")
        periods = self.periods or (k if self.design == "crossover" else 1)
        if self.design == "parallel" and periods != 1:
            raise ValueError(
                f"TrialConfig(design='parallel') has one period (each participant one session), "
                f"got periods={self.periods!r}"
            )
        object.__setattr__(self, "periods", periods)
        object.__setattr__(self, "rating_times_h", _rating_times(self.rating_times_h))

    @property
    def reference(self) -> str:
        """The reference (control) condition, coded 0."""
        return self.conditions[0]

    @property
    def actives(self) -> tuple[str, ...]:
        """The pretreatments under study, in order (the coords of the ``condition`` dim)."""
        return self.conditions[1:]

    @property
    def active(self) -> str:
        """The pretreatment under study (with several, the words "each pretreatment")."""
        return self.conditions[1] if len(self.conditions) == 2 else "each pretreatment"

    @property
    def label_names(self) -> dict[str, str]:
        """What spec labels, units and questions fill in: ``{active}``, ``{reference}``,
        ``{metabolite}``, ``{scale}``, ``{drug}`` and ``{time}`` (of a rating: "day 1"; a
        trajectory's rows fill in their own, "4 h")."""
        return {
            "active": self.active,
            "reference": self.reference,
            "metabolite": self.metabolite,
            "scale": self.scale,
            "drug": self.drug,
            "time": "day 1",
        }

    def item_columns(self, visit: str) -> list[str]:
        """Names of the item-score columns for ``visit`` ("baseline" or "day1")."""
        return [f"{visit}_item{k}" for k in range(1, self.n_items + 1)]

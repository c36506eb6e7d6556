"""Shared fixtures: small valid trial tables built by hand."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

TIMES = (-10.0, 5.0, 15.0, 25.0, 35.0, 45.0)


def _items(total: int, n: int = 10) -> list[int]:
    """``n`` item scores summing to ``total``."""
    q, r = divmod(total, n)
    return [q + 1] * r + [q] * (n - r)


def trial_tables(
    n: int = 4, periods: int = 2, blocks: int = 4, *, items: bool = False
) -> dict[str, pd.DataFrame]:
    """A valid crossover: ``n`` participants (P1..), ``periods`` sessions, ``blocks`` blocks.

    Odd participants are female and get placebo first. Block 1 is before the infusion
    (time -10 min), the others during it. Glx/tNAA is ``1 + 0.01 * i`` before and
    ``+ 0.1`` (placebo) or ``+ 0.05`` (naltrexone) during, plus ``0.001 * block``.
    Baseline MADRS is ``30 + i``, day 1 ``10 + i`` (placebo) or ``18 + i`` (naltrexone).
    """
    participants, sessions, mrs = [], [], []
    for i in range(1, n + 1):
        pid = f"P{i}"
        participants.append({"participant": pid, "sex": "female" if i % 2 else "male"})
        order = ["placebo", "naltrexone"] if i % 2 else ["naltrexone", "placebo"]
        for period, condition in zip(range(1, periods + 1), order, strict=False):
            base, day1 = 30 + i, (10 if condition == "placebo" else 18) + i
            row = {"participant": pid, "period": period, "condition": condition,
                   "madrs_baseline": base, "madrs_day1": day1}  # fmt: skip
            if items:
                row |= {f"baseline_item{k}": v for k, v in enumerate(_items(base), 1)}
                row |= {f"day1_item{k}": v for k, v in enumerate(_items(day1), 1)}
            sessions.append(row)
            rise = 0.1 if condition == "placebo" else 0.05
            for block in range(1, blocks + 1):
                t = TIMES[block - 1]
                ratio = 1 + 0.01 * i + (rise if t >= 0 else 0) + 0.001 * block
                mrs.append({"participant": pid, "period": period, "block": block,
                            "time_min": t, "glx_ratio": ratio, "crlb": 5.0 + block})  # fmt: skip
    return {
        "participants": pd.DataFrame(participants),
        "sessions": pd.DataFrame(sessions),
        "mrs": pd.DataFrame(mrs),
    }


#: Rating times of :func:`ratings_table` (hours): 4 h, day 1, day 3, day 7.
RATING_TIMES = (4.0, 24.0, 72.0, 168.0)
#: Score at each time minus the session's day-1 score (at 24 h: the day-1 rating itself).
RATING_OFFSETS = {4.0: 3, 24.0: 0, 72.0: -1, 168.0: -2}


def ratings_table(
    sessions: pd.DataFrame, times: tuple[float, ...] = RATING_TIMES, *, items: bool = False
) -> pd.DataFrame:
    """One rating per session of ``sessions`` and time of ``times`` (a subset of
    :data:`RATING_TIMES`), in session order: score ``madrs_day1 + RATING_OFFSETS[t]``, so
    the 24 h rating agrees with the day-1 score; ``items`` adds item1..item10 summing to it.

    With :func:`trial_tables` and all four times, row ``4 * s + k`` is session row ``s`` at
    ``RATING_TIMES[k]``.
    """
    rows = []
    for s in sessions.itertuples(index=False):
        for t in times:
            score = int(s.madrs_day1) + RATING_OFFSETS[t]
            row = {"participant": s.participant, "period": s.period, "time_h": t, "score": score}
            if items:
                row |= {f"item{k}": v for k, v in enumerate(_items(score), 1)}
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def make_ratings() -> Callable[..., pd.DataFrame]:
    """Factory of a valid ratings table for given sessions (see :func:`ratings_table`)."""
    return ratings_table


@pytest.fixture
def make_tables() -> Callable[..., dict[str, pd.DataFrame]]:
    """Factory of small valid trial tables (see :func:`trial_tables`)."""
    return trial_tables


# --- shared data and fits for the model tests (test_build, test_fit, test_recovery) -------
#: Short sampling for tests that need a posterior but not full convergence.
QUICK = {"draws": 300, "tune": 300, "chains": 2, "progress": False}


@pytest.fixture(scope="session")
def quick() -> dict:
    """Sampling arguments of :data:`QUICK` (a copy)."""
    return dict(QUICK)


@pytest.fixture(scope="session")
def example():
    """The bundled example trial (26 participants, 50 sessions, 295 fMRS blocks)."""
    import kbayes as kb

    return kb.load_example()


@pytest.fixture(scope="session")
def joint_example_fit(example):
    """The joint model on the example with :data:`QUICK` sampling, seed 1, prior included.

    Session-scoped: the nutpie model compiled here is reused by every later fit of the
    joint spec on data of the example's shape.
    """
    import kbayes as kb

    return kb.fit(example, model="joint", seed=1, prior=True, **QUICK)

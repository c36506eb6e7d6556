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

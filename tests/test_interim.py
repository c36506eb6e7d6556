"""Interim looks: stopping logic, error control out of sample, re-deciding stored trials,
store and resume. Laplace screen on the ``glutamate`` spec (about 2.5 ms per fit)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import kbayes as kb
from kbayes.interim import operating_characteristics
from kbayes.planning import look_sizes
from kbayes.rules import Rule

RULE = "P(ntx_glu < 0) > 0.95"
FUTILITY = "P(ntx_glu < 0) < 0.3"
FAST = {"model": "glutamate", "engine": "laplace", "client": "serial", "progress": False}
NULL = kb.Truth(beta_N=0.0, beta_NM=0.0)


def test_look_sizes_and_bad_looks():
    assert look_sizes(26, (0.5, 1.0)) == (13, 26)
    assert look_sizes(40, (0.25, 0.5, 0.75, 1.0)) == (10, 20, 30, 40)
    for bad in ((0.5,), (0.6, 0.5, 1.0), (0.01, 1.0), (0.5, 0.52, 1.0)):
        with pytest.raises(ValueError, match="looks must be increasing"):
            look_sizes(20, bad)


def record(point: str, probs: list[float], problem: bool = False) -> dict:
    looks = [{"n": n, "events": {"ntx_glu < 0": p}, "problem": problem}
             for n, p in zip((10, 20, 30), probs, strict=False)]  # fmt: skip
    return {"point": point, "n": 30, "looks": looks}


def test_stopping_logic_on_known_probabilities():
    """Efficacy is checked before futility, futility only at interim looks, and a trial
    that reaches the end without efficacy is a no-go; problem trials are left out."""
    records = [
        record("a", [0.97, 0.5, 0.5]),  # efficacy at look 1
        record("a", [0.2, 0.99, 0.99]),  # futility at look 1
        record("a", [0.5, 0.96, 0.5]),  # efficacy at look 2
        record("a", [0.5, 0.5, 0.2]),  # reaches the end: no-go (no futility at the end)
        record("a", [0.5, 0.5, 0.99], problem=True),  # left out
    ]
    eff, fut = [Rule(RULE)] * 3, [Rule(FUTILITY), Rule(FUTILITY), None]
    oc = operating_characteristics(records, eff, fut, ("n",))
    row = oc.table.iloc[0]
    assert (row["n_ok"], row["n_problem"]) == (4, 1)
    assert row["power"] == 0.5 and row["p_futility"] == 0.25 and row["p_stop_early"] == 0.75
    assert row["expected_n"] == (10 + 10 + 20 + 30) / 4
    looks = oc.looks
    assert looks["p_efficacy"].tolist() == [0.25, 0.25, 0.0]
    assert looks["p_futility"].tolist() == [0.25, 0.0, 0.0]
    assert looks["p_reach"].tolist() == [1.0, 0.5, 0.25]
    # stricter at look 1 only: trial 1 goes on and stops for efficacy... never (0.5 after)
    strict = oc.with_rules([Rule("P(ntx_glu < 0) > 0.99"), Rule(RULE), Rule(RULE)])
    assert strict.table.iloc[0]["power"] == 0.25


@pytest.fixture(scope="module")
def null_looks():
    """800 null trials, two looks at n = 16 (one set of Laplace references)."""
    return kb.sequential(kb.Design(n=16), NULL, RULE, looks=[0.5, 1.0], futility=FUTILITY,
                         replicates=800, seed=3, **FAST)  # fmt: skip


def test_calibrated_bound_holds_the_overall_false_positive_rate_out_of_sample(null_looks):
    """A bound calibrated on half the null trials holds alpha on the other half, while the
    nominal 0.95 at every look does not control the rate over two looks at 0.05."""
    first, second = null_looks.replicates[:400], null_looks.replicates[400:]
    eff, fut = null_looks.efficacy, null_looks.futility
    calibrating = operating_characteristics(first, eff, fut, ("n",))
    cal = calibrating.calibrate(alpha=0.1)
    assert cal.rule.conditions[0].event == "ntx_glu < 0" and cal.ci[0] <= cal.threshold
    assert cal.n_ok == 400 and cal.stable
    once = np.mean([r["looks"][1]["events"]["ntx_glu < 0"] > 0.95 for r in first])
    assert cal.nominal_rate > once  # 0.95 at two looks rejects more often than at the end
    held = operating_characteristics(second, [cal.rule] * 2, fut, ("n",)).table.iloc[0]
    se = np.sqrt(0.1 * 0.9 / held["n_ok"])
    assert abs(held["power"] - 0.1) < 3 * se, held["power"]
    # the calibration is of the maximum over looks: the final look alone rejects less
    final_only = np.mean([r["looks"][1]["events"]["ntx_glu < 0"] > cal.threshold
                          for r in second])  # fmt: skip
    assert final_only < held["power"]


def test_an_effect_stops_early_more_often_than_the_null(null_looks):
    effect = kb.sequential(kb.Design(n=16), kb.Truth(beta_N=-0.04), RULE, looks=[0.5, 1.0],
                           futility=FUTILITY, replicates=200, seed=3, **FAST)  # fmt: skip
    e, z = effect.table.iloc[0], null_looks.table.iloc[0]
    assert e["power"] > z["power"] + 5 * e["power_se"]
    assert e["expected_n"] < 16 and z["p_futility"] > e["p_futility"]
    assert e["p_stop_early"] == pytest.approx(
        effect.looks.iloc[0][["p_efficacy", "p_futility"]].sum()
    )
    fig = effect.plot()
    assert len(fig.axes[0].lines) == 3  # efficacy, futility, E[n]


def test_with_rules_equals_a_fresh_run_with_those_rules():
    """Stored event probabilities re-decide the same simulated trials as a new run would."""
    args = (kb.Design(n=12), kb.Truth(beta_N=-0.02), RULE)
    a = kb.sequential(*args, looks=[0.5, 1.0], futility=FUTILITY, replicates=40, seed=5, **FAST)
    other = "P(ntx_glu < 0) > 0.9"
    b = kb.sequential(*args[:2], other, looks=[0.5, 1.0], futility=FUTILITY, replicates=40,
                      seed=5, **FAST)  # fmt: skip
    pd.testing.assert_frame_equal(a.with_rules(other).table, b.table)


def test_store_resumes_and_says_so(tmp_path, caplog):
    args = (kb.Design(n=12), NULL, RULE)
    kw = {"looks": [0.5, 1.0], "replicates": 10, "seed": 1, "store": tmp_path} | FAST
    first = kb.sequential(*args, **kw)
    with caplog.at_level(logging.WARNING, logger="kbayes"):
        again = kb.sequential(*args, **kw)
    assert "resuming: 10 of 10" in caplog.text
    pd.testing.assert_frame_equal(first.table, again.table)


def test_bad_rules_are_refused_before_any_work():
    with pytest.raises(ValueError, match="3 rules for 2 looks"):
        kb.sequential(kb.Design(n=12), NULL, [RULE] * 3, replicates=1, **FAST)
    with pytest.raises(kb.SpecError, match="plain rules"):
        kb.sequential(kb.Design(n=12), NULL, kb.GoNoGo(RULE, FUTILITY), replicates=1, **FAST)
    with pytest.raises(ValueError, match="looks must be increasing"):
        kb.sequential(kb.Design(n=12), NULL, RULE, looks=[0.5], replicates=1, **FAST)
    two = operating_characteristics([record("a", [0.5, 0.5])], [Rule(RULE) & FUTILITY] * 2,
                                    [None, None], ())  # fmt: skip
    with pytest.raises(ValueError, match="2 conditions"):
        two.calibrate()

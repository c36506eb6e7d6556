"""Calibrated thresholds: the order-statistic logic on synthetic probabilities, bad rules,
and on the glutamate spec with the Laplace engine: the calibrated rule holds its rate on
fresh null trials, and the same seed gives the same threshold (fresh and resumed store)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

import kbayes as kb
from kbayes.thresholds import calibrate_threshold, order_statistic_threshold, plot_threshold

matplotlib.use("Agg")

NULL = kb.Truth(beta_N=0.0, beta_NM=0.0)  # no naltrexone effect on the glutamate change
RULE = "P(ntx_glu < 0) > 0.95"
FAST = {"model": "glutamate", "engine": "laplace", "client": "serial", "progress": False}


def test_uniform_probabilities_give_one_minus_alpha():
    """Uniform null probabilities: the threshold is near 1 - alpha, at most alpha of the
    sample exceeds it, and the smallest value with that property is it."""
    p = np.random.default_rng(1).uniform(size=4000)
    c, (lo, hi) = order_statistic_threshold(p, 0.05)
    assert np.mean(p > c) <= 0.05 < np.mean(p >= c)  # smallest such value among the sample
    assert abs(c - 0.95) < 3 * np.sqrt(0.05 * 0.95 / 4000) and lo < c < hi
    assert lo < 0.95 < hi


def test_interval_covers_the_true_quantile_95_percent_of_the_time():
    """Over 2000 synthetic samples of 200 Beta(8, 2) probabilities the interval holds the
    true 0.9 quantile in at least 95 % (minus MC error) and not far more (exact binomial
    order-statistic intervals are conservative by a little)."""
    rng, alpha = np.random.default_rng(2), 0.1
    truth = __import__("scipy").stats.beta.ppf(1 - alpha, 8, 2)
    hits = [
        lo <= truth <= hi
        for lo, hi in (
            order_statistic_threshold(rng.beta(8, 2, 200), alpha)[1] for _ in range(2000)
        )
    ]
    coverage, se = np.mean(hits), np.sqrt(0.95 * 0.05 / 2000)
    assert 0.95 - 3 * se <= coverage <= 0.985, coverage


def test_ties_and_tiny_samples():
    c, ci = order_statistic_threshold(np.array([0.5, 0.9, 0.9, 0.9, 1.0]), 0.2)
    # 1 of 5 above 0.9; Binomial(5, 0.8): ranks 2 and 6, beyond the sample: the scale's end 1
    assert c == 0.9 and ci == (0.9, 1.0)
    c, ci = order_statistic_threshold(np.array([0.3, 0.7]), 0.05)
    assert c == 0.7 and ci == (0.3, 1.0)  # no exceedance allowed: the largest
    with pytest.raises(ValueError, match="no usable replicates"):
        order_statistic_threshold(np.array([]), 0.05)


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("P(ntx_glu < 0) > 0.95 & P(ntx_glu < -0.01) > 0.5", "has 2 conditions"),
        ("P(ntx_glu < 0) < 0.5", "'>' or '>='"),
        (kb.GoNoGo(RULE, "P(ntx_glu < 0) < 0.5"), "a GoNoGo has two rules"),
    ],
)
def test_bad_rules_are_refused_before_any_work(rule, needle):
    with pytest.raises(ValueError, match=needle):
        calibrate_threshold(kb.Design(n=12), NULL, rule, replicates=2, **FAST)


def test_bad_alpha_is_refused():
    with pytest.raises(ValueError, match=r"alpha must be a false-positive rate in \(0, 1\)"):
        calibrate_threshold(kb.Design(n=12), NULL, RULE, 5, replicates=2, **FAST)


@pytest.fixture(scope="module")
def calibrated():
    return calibrate_threshold(kb.Design(n=16), NULL, RULE, 0.1, replicates=200, seed=1, **FAST)


def test_calibrated_rule_holds_alpha_on_fresh_null_trials(calibrated):
    """The calibrated rule's rate on 200 fresh null trials (two other seeds, so other
    Laplace reference trials too) is within 3 SE of alpha; the SE counts the calibration
    sample's and the check's binomial noise. The nominal 0.95 bound is conservative here."""
    result = calibrated
    assert result.n_ok == 200 and result.n_problem == 0
    assert np.mean(result.replicates > result.threshold) <= 0.1
    assert result.rule.text == f"P(ntx_glu < 0) > {result.threshold:g}"
    fresh = pd.concat([kb.power(kb.Design(n=16), NULL, result.rule, replicates=100, seed=s, **FAST)
                       for s in (110, 111)])  # fmt: skip
    m = fresh["n_ok"].sum()
    rate = (fresh["power"] * fresh["n_ok"]).sum() / m
    se = np.sqrt(0.1 * 0.9 * (1 / result.n_ok + 1 / m))
    assert abs(rate - 0.1) < 3 * se, (rate, se)
    assert result.nominal_rate < 0.1 and result.threshold < 0.95  # rate measured: 0.02
    assert result.nominal_rate_se == pytest.approx(
        np.sqrt(result.nominal_rate * (1 - result.nominal_rate) / 200)
    )


def test_summary_warning_and_figure(calibrated):
    result = calibrated
    text = str(result)
    assert "calibrated rule: P(ntx_glu < 0) >" in text and "95% CI" in text
    assert result.stable and result.warning is None  # 0.1 x 200 = 20 expected exceedances
    fig = plot_threshold(result)
    assert len(fig.axes[0].lines) >= 3
    small = calibrate_threshold(kb.Design(n=16), NULL, RULE, 0.05, replicates=40, seed=1, **FAST)
    assert not small.stable and "about 200 usable replicates are needed" in small.warning


def test_same_seed_same_threshold_fresh_and_resumed_store(tmp_path, calibrated):
    """Serially with a fresh store, then resumed from it after deleting half of the files:
    the threshold and probabilities of the in-memory run."""
    kwargs = {"replicates": 200, "seed": 1, "store": tmp_path, **FAST}
    first = calibrate_threshold(kb.Design(n=16), NULL, RULE, 0.1, **kwargs)
    for f in sorted(tmp_path.glob("*/r*.json"))[::2]:
        f.unlink()
    resumed = calibrate_threshold(kb.Design(n=16), NULL, RULE, 0.1, **kwargs)
    for r in (first, resumed):
        assert r.threshold == calibrated.threshold and r.ci == calibrated.ci
        np.testing.assert_array_equal(r.replicates, calibrated.replicates)

"""Tests of the trial simulator and the bundled example (fast: no model fitting)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from kbayes.data import TABLES
from kbayes.simulation import (
    BASELINE_CENTER,
    DELTA_CENTER,
    DELTA_SCALE,
    EXAMPLE_DESIGN,
    EXAMPLE_SEED,
    Design,
    SimulatedTruth,
    Truth,
    load_example,
    simulate,
    split_items,
)

TRUTH = Truth()


def tables(data) -> list[pd.DataFrame]:
    return [getattr(data, name) for name in TABLES]


def assert_same(a, b, **kwargs) -> None:
    for x, y in zip(tables(a), tables(b), strict=True):
        pd.testing.assert_frame_equal(x, y, **kwargs)


def delta_mean(truth: Truth, c: int) -> float:
    """Expected glutamate change under condition c, averaged over sex and period."""
    return truth.beta0 + truth.beta_N * c


def improvement_mean(truth: Truth, design: Design, c: int) -> float:
    """E[improvement | c] with balanced sexes and periods (E[m] = E[p] = 0)."""
    d_c = (delta_mean(truth, c) - DELTA_CENTER) / DELTA_SCALE
    return (
        truth.gamma0 + truth.gamma_N * c + truth.gamma_D * d_c + truth.gamma_DN * d_c * c
        + truth.gamma_B * (design.baseline_mean - BASELINE_CENTER)
    )  # fmt: skip


@pytest.fixture(scope="module")
def large():
    """2000 participants, nobody drops out."""
    design = Design(n=2000, dropout=0.0)
    return design, simulate(design, TRUTH, seed=11).session_table()


@pytest.fixture(scope="module")
def large_default():
    """2000 participants, default missingness."""
    return simulate(Design(n=2000), TRUTH, seed=12)


# --- reproducibility and seeds ----------------------------------------------------------
def test_same_seed_gives_identical_tables():
    """An int or a SeedSequence reproduces a simulation bit for bit."""
    design = Design(items=True)
    assert_same(simulate(design, seed=3), simulate(design, seed=3), check_exact=True)
    seq = np.random.SeedSequence(3)
    assert_same(simulate(design, seed=seq), simulate(design, seed=np.random.SeedSequence(3)))


def test_other_seed_or_advanced_generator_differs():
    """A different seed, or reusing a Generator, gives different data."""
    a, b = simulate(seed=3), simulate(seed=4)
    assert not a.mrs["glx_ratio"].equals(b.mrs["glx_ratio"])
    rng = np.random.default_rng(3)
    first, second = simulate(seed=rng), simulate(seed=rng)
    assert not first.sessions["madrs_day1"].equals(second.sessions["madrs_day1"])


def test_items_do_not_change_the_other_draws():
    """Each part of the draw has its own stream: adding items keeps the totals."""
    plain = simulate(Design(), seed=5)
    with_items = simulate(Design(items=True), seed=5)
    pd.testing.assert_frame_equal(plain.sessions, with_items.sessions[plain.sessions.columns])
    pd.testing.assert_frame_equal(plain.mrs, with_items.mrs)


# --- shapes and balance -----------------------------------------------------------------
def test_shapes_sexes_and_balanced_sequences():
    """n participants, the sex split, AB/BA balanced, both conditions when complete."""
    design = Design(n=30, female_fraction=0.4, dropout=0.3)
    data = simulate(design, seed=6)
    cfg = design.config
    assert len(data.participants) == 30
    assert data.participants["participant"].iloc[0] == "P01"
    assert data.participants["sex"].value_counts().to_dict() == {cfg.sexes[0]: 12, cfg.sexes[1]: 18}
    first = data.sessions[data.sessions["period"] == 1]
    assert len(first) == 30
    assert (first["condition"] == cfg.reference).sum() == 15
    per = data.sessions.groupby("participant")["condition"].agg(["size", "nunique"])
    assert (per.loc[per["size"] == 2, "nunique"] == 2).all()
    assert (per["size"] == 1).any()
    assert set(data.mrs["time_min"]) <= set(design.block_times)
    assert data.mrs["block"].between(1, len(design.block_times)).all()


def test_truth_carries_parameters_design_and_latent_values():
    """``.truth`` is a SimulatedTruth with one latent row per observed session."""
    design = Design(n=10)
    data = simulate(design, TRUTH, seed=7)
    assert isinstance(data.truth, SimulatedTruth)
    assert data.truth.truth == TRUTH and data.truth.design == design
    assert data.truth.params["beta_N"] == TRUTH.beta_N
    latent = data.truth.latent
    assert list(latent.columns) == ["participant", "period", "condition", "delta", "u", "v",
                                    "improvement"]  # fmt: skip
    keys = ["participant", "period", "condition"]
    pd.testing.assert_frame_equal(latent[keys], data.sessions[keys].reset_index(drop=True))


def test_item_scores_sum_to_totals_within_range():
    """Item scores lie in 0..item_max and sum exactly to each visit's total."""
    data = simulate(Design(n=60, items=True), seed=8)
    cfg = data.config
    assert data.has_items
    for visit, total in (("baseline", "madrs_baseline"), ("day1", "madrs_day1")):
        items = data.sessions[cfg.item_columns(visit)]
        assert items.min().min() >= 0 and items.max().max() <= cfg.item_max
        np.testing.assert_array_equal(items.sum(axis=1), data.sessions[total])


def test_split_items_extremes():
    """Totals of 0 and of the maximum are split exactly; full items are never drawn."""
    rng = np.random.default_rng(0)
    propensity = rng.dirichlet(np.ones(10), 3)
    scores = split_items(np.array([0, 60, 59]), propensity, 6, rng)
    np.testing.assert_array_equal(scores.sum(axis=1), [0, 60, 59])
    assert scores.max() == 6 and scores.min() == 0


# --- statistical checks at large n -----------------------------------------------------
@pytest.mark.parametrize("c", [0, 1])
def test_mean_improvement_matches_truth(large, c):
    """Mean observed improvement per condition is within 3 MC SEs of its expectation.

    Clipping of the day-1 score at 0 raises it by ~0.005 points with these defaults; the
    test checks that clipping stays rare, so it cannot move the mean by a visible amount.
    """
    design, s = large
    x = s.loc[s["condition"] == design.config.conditions[c], "improvement"]
    se = x.std() / np.sqrt(len(x))
    assert abs(x.mean() - improvement_mean(TRUTH, design, c)) < 3 * se
    assert ((s["madrs_day1"] == 0) | (s["madrs_baseline"] == 60)).mean() < 0.01


@pytest.mark.parametrize("c", [0, 1])
def test_mean_glutamate_change_matches_truth(large, c):
    """Mean observed glutamate change per condition is within 3 MC SEs of beta0 + beta_N c."""
    design, s = large
    x = s.loc[s["condition"] == design.config.conditions[c], "dglx_obs"].dropna()
    se = x.std() / np.sqrt(len(x))
    assert abs(x.mean() - delta_mean(TRUTH, c)) < 3 * se


def test_naltrexone_glutamate_effect_is_larger_in_men(large):
    """Within-participant effects per sex match beta_N -/+ beta_NM/2 (-0.01 women, -0.03 men)."""
    design, s = large
    cfg = design.config
    wide = s.pivot_table(index=["participant", "sex"], columns="condition", values="dglx_obs")
    effect = (wide[cfg.active] - wide[cfg.reference]).dropna().groupby(level="sex")
    mean, se = effect.mean(), effect.std() / np.sqrt(effect.size())
    for sex, m in zip(cfg.sexes, (-0.5, 0.5), strict=True):
        assert abs(mean[sex] - (TRUTH.beta_N + TRUTH.beta_NM * m)) < 3 * se[sex]
    assert mean[cfg.sexes[1]] < mean[cfg.sexes[0]]


def test_participant_effects_correlate_as_set():
    """The realised correlation of u and v is close to rho_uv."""
    truth = dataclasses.replace(TRUTH, rho_uv=0.6)
    latent = simulate(Design(n=2000, dropout=0.0), truth, seed=9).truth.latent
    per = latent.groupby("participant")[["u", "v"]].first()
    assert abs(per["u"].corr(per["v"]) - 0.6) < 0.06
    assert abs(per["u"].std() - truth.sd_u) < 0.1 * truth.sd_u


def test_dropout_missing_blocks_and_crlb(large_default):
    """Dropout and block-missing rates and the CRLB median are close to the design's."""
    data, design = large_default, Design()
    per = data.sessions.groupby("participant").size()
    assert abs((per == 1).mean() - design.dropout) < 0.02
    expected_blocks = len(data.sessions) * len(design.block_times)
    assert abs(1 - len(data.mrs) / expected_blocks - design.block_missing) < 0.005
    assert abs(data.mrs["crlb"].median() - design.crlb_median) < 0.1


def test_normal_residuals_and_ramp_profile_run():
    """nu = inf (normal residuals) and the ramp profile are supported."""
    data = simulate(Design(n=4, shape="ramp"), dataclasses.replace(TRUTH, nu=np.inf), seed=1)
    assert data.sessions["madrs_day1"].notna().all()


# --- parameters and estimands -------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (Design, "n", 1),
        (Design, "dropout", 1.0),
        (Design, "dropout", -0.1),
        (Design, "sigma_mrs", -0.01),
        (Design, "female_fraction", 1.5),
        (Design, "block_times", ()),
        (Design, "shape", "sigmoid"),
        (Truth, "sd_u", -0.1),
        (Truth, "sigma_y", -1.0),
        (Truth, "rho_uv", 1.5),
        (Truth, "nu", 0.0),
        (Truth, "beta_N", np.nan),
    ],
)
def test_impossible_values_name_the_field(cls, field, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} "):
        cls(**{field: value})


def test_truth_params_and_hand_computed_estimands():
    """Default truth: total naltrexone effect -3.4 points, 28.3 % attenuation."""
    p = TRUTH.params
    assert set(p) == {f.name for f in dataclasses.fields(Truth)}
    d0, d1 = ((p["beta0"] + p["beta_N"] * c - DELTA_CENTER) / DELTA_SCALE for c in (0, 1))
    total = p["gamma_N"] + p["gamma_D"] * (d1 - d0) + p["gamma_DN"] * d1
    attenuation = -100 * total / (p["gamma0"] + p["gamma_D"] * d0)
    assert total == pytest.approx(-3.4)
    assert attenuation == pytest.approx(28.333, abs=1e-3)
    assert p["beta_N"] - p["beta_NM"] / 2 == pytest.approx(-0.01)  # women
    assert p["beta_N"] + p["beta_NM"] / 2 == pytest.approx(-0.03)  # men


def test_truth_estimands_agree_with_the_joint_spec():
    """Truth.estimands (via the spec) matches the hand computation and the constants."""
    from kbayes.spec import load_spec

    spec = load_spec("joint")
    assert spec.constants["delta_center"] == DELTA_CENTER
    assert spec.constants["delta_scale"] == DELTA_SCALE
    assert spec.constants["baseline_center"] == BASELINE_CENTER
    est = TRUTH.estimands()
    assert est["ntx_imp_total"] == pytest.approx(-3.4)
    assert est["attenuation_pct"] == pytest.approx(28.333, abs=1e-3)
    assert est["ntx_glu_male"] == pytest.approx(-0.03)
    assert est["ntx_glu_female"] == pytest.approx(-0.01)


# --- the bundled example ----------------------------------------------------------------
def test_example_equals_a_fresh_simulation():
    """load_example() reads the CSVs made by simulate(EXAMPLE_DESIGN, seed=EXAMPLE_SEED)."""
    example = load_example()
    fresh = simulate(EXAMPLE_DESIGN, TRUTH, seed=EXAMPLE_SEED)
    assert_same(example, fresh, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(example.truth.latent, fresh.truth.latent, rtol=1e-12)
    assert len(example.participants) == 26 and example.has_items
    assert (example.sessions.groupby("participant").size() == 1).any()

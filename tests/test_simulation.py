"""Tests of the trial simulator and the bundled example (fast: no model fitting)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import kbayes as kb
from kbayes.build import model_inputs
from kbayes.data import TABLES, TrialData
from kbayes.design import Design, SimulatedTruth, Truth
from kbayes.simulation import (
    EXAMPLE_DESIGN,
    EXAMPLE_SEED,
    SIMULATED_SPEC,
    crossover_sequences,
    load_example,
    simulate,
    simulate_inputs,
    simulate_tables,
    split_items,
)
from kbayes.spec import load_spec
from kbayes.validate import NOT_RATED

TRUTH = Truth()
#: The centring of the simulated model, read from its spec as the simulator does.
CONSTANTS = load_spec(SIMULATED_SPEC).constants
DELTA_CENTER, DELTA_SCALE = CONSTANTS["delta_center"], CONSTANTS["delta_scale"]
BASELINE_CENTER = CONSTANTS["baseline_center"]


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
    """The realised correlation of u and v is close to uv_rho."""
    truth = dataclasses.replace(TRUTH, uv_rho=0.6)
    latent = simulate(Design(n=2000, dropout=0.0), truth, seed=9).truth.latent
    per = latent.groupby("participant")[["u", "v"]].first()
    assert abs(per["u"].corr(per["v"]) - 0.6) < 0.06
    assert abs(per["u"].std() - truth.u_sigma) < 0.1 * truth.u_sigma


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


# --- fixed-shape simulation (power and SBC) ---------------------------------------------
@pytest.mark.parametrize("model", ["joint", "improvement", "glutamate"])
def test_fast_inputs_equal_validated_model_inputs(model):
    spec = kb.load_spec(model)
    design = kb.Design(n=14, dropout=0.2, block_missing=0.1, rating_missing=0.2)
    seed = np.random.SeedSequence(5)
    fast = simulate_inputs(spec, design, kb.Truth(), seed)
    tables = simulate_tables(design, kb.Truth(), seed)
    slow = model_inputs(spec, kb.TrialData(*tables, config=design.config))
    assert fast.coords == slow.coords
    assert fast.data.keys() == slow.data.keys()
    for name, value in fast.data.items():
        assert value.dtype == slow.data[name].dtype, name
        np.testing.assert_allclose(value, slow.data[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_fixed_count_missingness_gives_one_shape_per_point():
    spec = kb.load_spec("joint")
    design = kb.Design(n=20, dropout=0.1, block_missing=0.05, rating_missing=0.1)
    shapes = {simulate_inputs(spec, design, kb.Truth(), np.random.SeedSequence(s)).shape
              for s in range(5)}  # fmt: skip
    assert len(shapes) == 1
    dims = {k: v for k, v in next(iter(shapes)) if isinstance(v, int)}  # dims, not arrays
    assert dims["session"] == 2 * 20 - 2
    assert dims["mrs_obs"] == 38 * 6 - round(38 * 6 * 0.05)
    assert dims["rating"] == 38 - round(38 * 0.1)


def test_missing_ratings_are_drawn_at_their_rate_and_nothing_else_changes():
    """kb.simulate empties each day-1 rating with probability rating_missing, after every
    other draw: the other columns equal the complete design's; items need complete ratings."""
    full = simulate(Design(n=1000, dropout=0.0), TRUTH, seed=4)
    part = simulate(Design(n=1000, dropout=0.0, rating_missing=0.2), TRUTH, seed=4)
    unrated = part.sessions["madrs_day1"].isna()
    assert abs(unrated.mean() - 0.2) < 3 * np.sqrt(0.2 * 0.8 / len(unrated))
    kept = part.sessions.loc[~unrated, "madrs_day1"]
    assert (kept == full.sessions.loc[~unrated, "madrs_day1"]).all()
    pd.testing.assert_frame_equal(part.mrs, full.mrs)
    assert (part.exclusions["reason"] == NOT_RATED).sum() == unrated.sum()
    with pytest.raises(ValueError, match=r"Design.items must be False with missing ratings"):
        Design(items=True, rating_missing=0.1)


def test_missing_blocks_leave_every_session_a_block_before_and_during():
    design = kb.Design(n=12, dropout=0.25, block_missing=0.5)
    for s in range(3):
        _, sessions, mrs = simulate_tables(design, kb.Truth(), np.random.SeedSequence(s))
        assert len(sessions) == 2 * 12 - 3  # the last 3 participants miss period 2
        assert len(mrs) == 21 * 6 - round(21 * 6 * 0.5)  # no CRLB above 20 % here
        phase = np.where(mrs["time_min"] >= 0, "during", "before")
        per_session = mrs.groupby([mrs["participant"], mrs["period"], phase]).size()
        assert len(per_session) == 2 * len(sessions), "a session lost every block of a phase"


def test_fast_inputs_without_an_observed_change_fail_as_the_tables_do():
    """CRLBs mostly above crlb_max leave sessions without blocks during the infusion: the
    observed-change model cannot use them and says which, as for real data."""
    design = kb.Design(n=6, crlb_median=30.0)
    seed = np.random.SeedSequence(1)
    with pytest.raises(kb.DataError, match="have no fMRS blocks both before and during"):
        simulate_inputs(kb.load_spec("improvement"), design, kb.Truth(), seed)


# --- the bundled example ----------------------------------------------------------------
def test_example_equals_a_fresh_simulation():
    """load_example() reads the CSVs made by simulate(EXAMPLE_DESIGN, seed=EXAMPLE_SEED)."""
    example = load_example()
    fresh = simulate(EXAMPLE_DESIGN, TRUTH, seed=EXAMPLE_SEED)
    assert_same(example, fresh, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(example.truth.latent, fresh.truth.latent, rtol=1e-12)
    assert len(example.participants) == 26 and example.has_items
    assert (example.sessions.groupby("participant").size() == 1).any()


def test_design_covariates_are_simulated_with_their_effects():
    """Participant covariates are columns of ``participants``; Truth.effects move the latent
    improvement by effect x (value - design mean); the other streams are unchanged."""
    design = Design(n=400, dropout=0, covariates={"age": (40.0, 12.0)})
    plain = kb.simulate(dataclasses.replace(design, covariates={}), Truth(), seed=5)
    cov = kb.simulate(design, Truth(effects={"gamma_age": -0.5}), seed=5)
    age = cov.participants.set_index("participant")["age"]
    assert (
        "age" not in plain.participants and abs(age.mean() - 40) < 2 and abs(age.std() - 12) < 1.5
    )
    pd.testing.assert_frame_equal(plain.mrs, cov.mrs)  # streams of other parts are untouched
    shift = cov.truth.latent["improvement"] - plain.truth.latent["improvement"]
    expected = -0.5 * (age[cov.truth.latent["participant"]].to_numpy() - 40)
    np.testing.assert_allclose(shift, expected, atol=1e-9)
    with pytest.raises(ValueError, match="does not simulate"):
        kb.simulate(Design(), Truth(effects={"gamma_age": -0.5}), seed=1)
    with pytest.raises(ValueError, match="effects"):
        Truth(effects={"gamma_N": 1.0})  # a field, not an effect


def test_simulated_inputs_with_covariates_equal_those_of_the_tables():
    spec = load_spec("joint").with_terms(improvement="... + age + site")  # default priors
    spec = spec.with_covariates(site={"levels": ["A", "B", "C"], "coding": "sum"})
    design = Design(n=12, covariates={"age": (40.0, 12.0), "site": {"A": 0.2, "B": 0.4, "C": 0.4}})
    seed = np.random.SeedSequence(8)
    truth = Truth(effects={"gamma_age": 0.1, "gamma_site": {"C": 1.0}})
    fast = simulate_inputs(spec, design, truth, seed)
    tables = simulate_tables(design, truth, seed, spec.profile)
    slow = model_inputs(spec, TrialData(*tables, config=design.config))
    assert fast.coords == slow.coords and fast.data["cov_site"].shape == (
        len(fast.coords["session"]),
        2,
    )
    assert set(fast.data) == set(slow.data) and "cov_age" in fast.data
    for name in fast.data:
        np.testing.assert_allclose(fast.data[name], slow.data[name], err_msg=name)


def test_a_categorical_design_covariate_is_simulated_with_its_level_effects():
    """Levels drawn with the design's probabilities; Truth.effects {level: effect} move the
    latent improvement by the participant's level's effect (levels not named: 0), times
    the pretreatment indicator for an interaction."""
    probs = {"A": 0.5, "B": 0.3, "C": 0.2}
    design = Design(n=2000, dropout=0, covariates={"site": probs})
    plain = kb.simulate(dataclasses.replace(design, covariates={}), Truth(), seed=5)
    effects = {"gamma_site": {"B": 2.0, "C": -1.0}, "gamma_site_x_condition": {"C": 4.0}}
    cov = kb.simulate(design, Truth(effects=effects), seed=5)
    site = cov.participants.set_index("participant")["site"]
    share = site.value_counts(normalize=True)
    assert all(abs(share[k] - q) < 0.03 for k, q in probs.items())
    latent = cov.truth.latent
    level = site[latent["participant"]].to_numpy()
    active = (cov.sessions["condition"] == design.config.active).to_numpy()
    expected = np.select([level == "B", level == "C"], [2.0, -1.0 + 4.0 * active], 0.0)
    shift = latent["improvement"] - plain.truth.latent["improvement"]
    np.testing.assert_allclose(shift, expected, atol=1e-9)
    pd.testing.assert_frame_equal(plain.mrs, cov.mrs)


@pytest.mark.parametrize(
    ("effects", "message"),
    [
        ({"gamma_site": 1.0}, r"expected \{level: effect\} for the term 'site'"),
        ({"gamma_site": {"D": 1.0}}, r"levels \['D'\] are not levels of Design"),
        ({"gamma_age": {"A": 1.0}}, r"expected a number for the term 'age'"),
    ],
)
def test_categorical_effects_must_match_the_design(effects, message):
    design = Design(n=12, covariates={"site": {"A": 0.5, "B": 0.5}, "age": (40.0, 10.0)})
    with pytest.raises(ValueError, match=message):
        kb.simulate(design, Truth(effects=effects), seed=1)


def test_a_parallel_design_gives_each_participant_one_session_in_a_balanced_arm():
    """Design(config=TrialConfig(design="parallel")): period 1 only, arms balanced (n even),
    dropout not applied (no period 2); the fast inputs match the tables' (one shape)."""
    config = kb.TrialConfig(design="parallel")
    design = Design(n=30, config=config, dropout=0.2)
    data = simulate(design, TRUTH, seed=3)
    s = data.sessions
    assert len(s) == 30 and (s["period"] == 1).all() and s["participant"].is_unique
    assert s["condition"].value_counts().to_dict() == {"placebo": 15, "naltrexone": 15}
    spec = kb.load_spec("joint").for_design("parallel")
    seed = np.random.SeedSequence(5)
    fast = simulate_inputs(spec, design, kb.Truth(), seed)
    slow = model_inputs(
        spec, kb.TrialData(*simulate_tables(design, kb.Truth(), seed), config=config)
    )
    assert fast.coords == slow.coords and len(fast.coords["session"]) == 30
    for name, value in fast.data.items():
        np.testing.assert_allclose(value, slow.data[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_looks_nest_and_fix_their_counts():
    """Each interim look sees the first participants of the next, exactly as the next sees
    them, with round(n_look * rate) dropouts and missing ratings; one look is the trial."""
    from kbayes.simulation import simulate_looks

    spec = load_spec("joint")
    design = Design(n=30, dropout=0.2, block_missing=0.1, rating_missing=0.2)
    shapes = set()
    for r in range(4):
        seed = np.random.SeedSequence(8, spawn_key=(r,))
        looks = simulate_looks(spec, design, TRUTH, seed, (10, 20, 30))
        for early, late in itertools.pairwise(looks):
            for name, x in early.data.items():
                y = np.asarray(late.data[name])
                np.testing.assert_array_equal(x, y[: len(x)], err_msg=name)
        sessions = [len(x.coords["session"]) for x in looks]
        ratings = [len(x.coords["rating"]) for x in looks]
        assert sessions == [2 * n - round(n * 0.2) for n in (10, 20, 30)]
        assert ratings == [s - round(s * 0.2) for s in sessions]
        shapes.add(tuple(x.shape for x in looks))
        (alone,) = simulate_looks(spec, design, TRUTH, seed, (30,))
        whole = simulate_inputs(spec, design, TRUTH, seed)
        for name, x in whole.data.items():
            np.testing.assert_array_equal(alone.data[name], x, err_msg=name)
    assert len(shapes) <= 2  # only the CRLB exclusion of blocks may change a shape
    with pytest.raises(ValueError, match="looks must increase"):
        simulate_looks(spec, design, TRUTH, np.random.SeedSequence(1), (20, 10, 30))


def test_williams_sequences_balance_periods_and_carry_over():
    """Williams sequences: each condition once per sequence and once per period (a Latin
    square), and each ordered pair of conditions adjacent equally often; k sequences for an
    even k, 2k for an odd one; AB/BA for two conditions."""
    assert crossover_sequences(2).tolist() == [[0, 1], [1, 0]]
    for k in (3, 4, 5):
        seq = crossover_sequences(k)
        assert len(seq) == (k if k % 2 == 0 else 2 * k)
        assert all(sorted(row) == list(range(k)) for row in seq)
        for period in seq.T:
            assert np.bincount(period, minlength=k).min() == len(seq) // k
        pairs = Counter((a, b) for row in seq for a, b in itertools.pairwise(row))
        assert len(pairs) == k * (k - 1) and len(set(pairs.values())) == 1, k


def test_a_three_condition_crossover_is_simulated_with_each_condition_once():
    """Three conditions: three periods by default, each participant under each condition
    once (dropouts: period 1 only), sequences balanced over the periods, and each
    pretreatment's own effect in the glutamate change (the latent table's means per
    condition differ by the truth's effects, within Monte-Carlo error)."""
    config = kb.TrialConfig(conditions=("placebo", "naltrexone", "nalmefene"))
    truth = kb.Truth(beta_N={"naltrexone": -0.04, "nalmefene": 0.02}, beta_NM=0.0)
    sim = kb.simulate(kb.Design(n=300, dropout=0.0, config=config), truth, seed=4)
    s = sim.sessions
    assert config.periods == 3 and sorted(s["period"].unique()) == [1, 2, 3]
    assert (s.groupby("participant")["condition"].nunique() == 3).all()
    counts = s.groupby(["period", "condition"]).size()
    assert counts.max() - counts.min() <= 6  # 300 participants over 6 sequences
    latent = sim.truth.latent.groupby("condition")["delta"].mean()
    se = 0.03 / np.sqrt(300)
    assert abs(latent["naltrexone"] - latent["placebo"] + 0.04) < 4 * se
    assert abs(latent["nalmefene"] - latent["placebo"] - 0.02) < 4 * se
    true = sim.truth.estimands("glutamate")
    assert true["ntx_glu[nalmefene vs naltrexone]"] == pytest.approx(0.06)


def test_ratings_at_several_times_follow_each_times_truth():
    """A trial rated at 4, 24, 72 and 168 h: a ``ratings`` table with a row per session and
    time (its 24 h scores the sessions' madrs_day1), each time's mean improvement under
    placebo near that time's gamma0 (n = 400), and rated at 24 h only the draws are those of
    the day-1 simulator."""
    times = (4.0, 24.0, 72.0, 168.0)
    config = kb.TrialConfig(rating_times_h=times)
    truth = Truth(gamma0={4: 6.0, 24: 12.0, 72: 9.0, 168: 3.0}, gamma_B=0.0)
    sim = simulate(Design(n=400, dropout=0.0, config=config), truth, seed=5)
    r = sim.ratings
    assert len(r) == len(sim.sessions) * 4 and sorted(r["time_h"].unique()) == list(times)
    at24 = r[r["time_h"] == 24].merge(sim.sessions, on=["participant", "period"])
    assert (at24["score"] == at24["madrs_day1"]).all()
    placebo = r.merge(sim.sessions, on=["participant", "period"]).query("condition == 'placebo'")
    mean = (placebo["madrs_baseline"] - placebo["score"]).groupby(placebo["time_h"]).mean()
    for t, g0 in zip(times, (6.0, 12.0, 9.0, 3.0), strict=True):  # + slope x mean change (0)
        assert abs(mean[t] - g0) < 1.0, (t, mean[t])
    day1 = simulate(Design(n=20), TRUTH, seed=3)
    same = simulate(Design(n=20, config=kb.TrialConfig(rating_times_h=(24,))), TRUTH, seed=3)
    assert same.ratings is None and same.sessions.equals(day1.sessions)

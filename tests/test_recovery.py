"""Statistical tier: parameter recovery on simulated trials with known truth, and
convergence of the default sampler settings on the bundled example.

Only ``test_joint_on_the_example_points_the_right_way`` runs in the default suite (it
reuses the session's short joint fit); everything else is ``@pytest.mark.slow``
(``make test-slow``). Run with ``-s`` to see the tables of truth vs posterior.

What is asserted, and why
-------------------------
* Large n (one simulated trial per spec, fixed seeds): for each key estimand the
  equal-tailed 90 % interval contains the truth and the posterior mean is within a stated
  absolute tolerance of it (``LARGE[spec].tol``; roughly 2.5-3 posterior SDs at that n, so
  a bias of that size fails). A calibrated posterior misses a 90 % interval 10 % of the
  time per estimand: the seeds are fixed, so the tests are deterministic, but a new seed
  may fail one interval by chance.
* ``improvement`` treats the observed per-session change as exact. With the default fMRS
  noise that change has a reliability of about 0.2 (SE ~0.045 vs a spread of ~0.025 ratio
  units), so its slope is attenuated five-fold (errors in variables): that is what the
  joint model is for, and ``test_improvement_slope_is_attenuated_by_fmrs_noise`` shows it.
  Its recovery trial therefore uses near-noiseless fMRS (sigma_mrs 0.002, CRLB 0.5 %).
* ``madrs_items`` is a cumulative-logit model of the items, and the simulator does not
  generate from it (totals from the joint model, split into items): its total-score
  estimands are compared with the joint truth with looser tolerances and no interval test.
* n = 26 (the bundled example, default truth): posterior means have the sign of the truth
  for the estimands the trial is powered for. ``ntx_glu`` is weak at n = 26 (truth -0.02,
  posterior SD ~0.015, z ~1.3: the sign is right in only ~90 % of such trials), so for it
  we assert only that the 90 % interval holds the truth and that the posterior is not
  confidently on the wrong side (mean < +1 posterior SD, i.e. P(ntx_glu > 0) < ~0.84).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pytest

import kbayes as kb

SPECS = ["joint", "glutamate", "improvement", "two_stage", "madrs_items"]
LEAN = {"log_likelihood": False, "posterior_predictive": False, "log_prior": False}


def summarise(dt, truth: dict[str, float], names) -> pd.DataFrame:
    """Truth, posterior mean and SD, equal-tailed 90 % interval, per estimand."""
    rows = {}
    for name in names:
        x = dt.posterior[name].to_numpy().ravel()
        lo, hi = np.quantile(x, [0.05, 0.95])
        rows[name] = {"truth": truth.get(name, np.nan), "mean": x.mean(), "sd": x.std(),
                      "q05": lo, "q95": hi}  # fmt: skip
    table = pd.DataFrame(rows).T
    table["z"] = (table["mean"] - table["truth"]) / table["sd"]
    return table


# --- default suite: one cheap check ----------------------------------------------------
def test_joint_on_the_example_points_the_right_way(joint_example_fit, example):
    """Joint model, bundled example (n = 26), short chains: no divergences, and naltrexone
    reduces day-1 improvement (truth -3.4 points, 28 % attenuation)."""
    dt = joint_example_fit
    assert int(dt.sample_stats["diverging"].sum()) == 0
    truth = example.truth.estimands("joint")
    table = summarise(dt, truth, ["ntx_imp_total", "attenuation_pct", "ntx_glu"])
    print(table)
    assert truth["ntx_imp_total"] < 0 < truth["attenuation_pct"]
    assert table.loc["ntx_imp_total", "mean"] < 0, table
    assert table.loc["attenuation_pct", "mean"] > 0, table
    # and not absurdly far: within the 90 % interval
    for name in ("ntx_imp_total", "attenuation_pct"):
        row = table.loc[name]
        assert row["q05"] <= row["truth"] <= row["q95"], table


# --- slow: large-n recovery ------------------------------------------------------------
@dataclass(frozen=True)
class Recovery:
    design: kb.Design
    seed: int
    tol: dict[str, float]  # key estimand -> |posterior mean - truth| allowed
    intervals: bool = True  # assert that the 90 % intervals contain the truth
    truth_spec: str | None = None  # spec whose estimands are the truth (default: itself)
    sampling: dict[str, Any] = field(
        default_factory=lambda: {"draws": 1000, "tune": 1000, "chains": 2}
    )


LARGE = {
    "joint": Recovery(
        kb.Design(n=400),
        seed=2,
        tol={"ntx_glu": 0.008, "ntx_glu_sexdiff": 0.015, "ntx_imp_total": 0.8,
             "attenuation_pct": 6.0, "indirect": 1.2, "direct": 1.4, "slope_placebo": 0.6},
    ),
    "glutamate": Recovery(
        kb.Design(n=400),
        seed=2,
        tol={"glu_reference": 0.008, "ntx_glu": 0.008, "ntx_glu_female": 0.011,
             "ntx_glu_male": 0.011, "ntx_glu_sexdiff": 0.015},
    ),
    "improvement": Recovery(
        kb.Design(n=500, sigma_mrs=0.002, crlb_median=0.5, block_missing=0.0),
        seed=2,
        tol={"slope_placebo": 0.25, "slope_naltrexone": 0.22, "ntx_imp_direct": 0.8},
    ),
    "two_stage": Recovery(
        kb.Design(n=400),
        seed=2,
        tol={"ntx_glu": 0.008, "ntx_imp_total": 0.9, "attenuation_pct": 6.5, "indirect": 1.2,
             "direct": 1.4},
    ),
    "madrs_items": Recovery(
        kb.Design(n=150, items=True),
        seed=2,
        tol={"ntx_imp_total": 1.5, "attenuation_pct": 12.0},
        intervals=False,
        truth_spec="joint",
        sampling={"draws": 500, "tune": 500, "chains": 2},
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=SPECS)
def large_fit(request):
    """(spec, table of truth vs posterior) for one spec on a large simulated trial."""
    name = request.param
    case = LARGE[name]
    sim = kb.simulate(case.design, kb.Truth(), seed=case.seed)
    dt = kb.fit(sim, model=name, seed=1, progress=False, **case.sampling, **LEAN)
    truth = sim.truth.estimands(case.truth_spec or name)
    table = summarise(dt, truth, case.tol)
    divergences = int(dt.sample_stats["diverging"].sum())
    print(f"\n{name}: n={case.design.n}, {divergences} divergences\n{table.round(4)}")
    return name, table, divergences


@pytest.mark.slow
def test_large_n_recovery(large_fit):
    name, table, divergences = large_fit
    case = LARGE[name]
    assert divergences == 0
    assert table["truth"].notna().all()
    for est, tol in case.tol.items():
        row = table.loc[est]
        assert abs(row["mean"] - row["truth"]) < tol, f"{name}.{est}: mean off by > {tol}\n{table}"
        if case.intervals:
            assert row["q05"] <= row["truth"] <= row["q95"], (
                f"{name}.{est}: truth not in 90 %\n{table}"
            )


@pytest.mark.slow
def test_improvement_slope_is_attenuated_by_fmrs_noise():
    """With the default fMRS noise the observed change is a poor proxy for the latent one
    (reliability ~0.2): the improvement spec's slope shrinks towards 0, and the joint model,
    which models the blocks, is needed. Asserted at n = 500: the improvement posterior mean
    of slope_placebo is below half its truth (0.4 points per 0.01 ratio units) and its 90 %
    interval excludes the truth."""
    sim = kb.simulate(kb.Design(n=500, block_missing=0.0), kb.Truth(), seed=2)
    dt = kb.fit(sim, model="improvement", seed=1, draws=1000, tune=1000, chains=2,
                progress=False, **LEAN)  # fmt: skip
    truth = sim.truth.estimands("improvement")["slope_placebo"]
    x = dt.posterior["slope_placebo"].to_numpy().ravel()
    mean, q95 = x.mean(), np.quantile(x, 0.95)
    print(f"\nimprovement slope_placebo, default fMRS noise: {mean:.2f}, q95 {q95:.2f} (truth 0.4)")
    assert mean < truth / 2
    assert q95 < truth


# --- slow: default settings on the example, convergence and signs at n = 26 -------------
@pytest.fixture(scope="module", params=SPECS)
def example_default_fit(request, example):
    """Each spec fitted to the example with the default draws, tune and chains."""
    name = request.param
    dt = kb.fit(example, model=name, seed=1, progress=False, **LEAN)
    return name, dt


def convergence(dt) -> pd.DataFrame:
    """Worst bulk ESS, tail ESS and R-hat of every posterior variable (all elements)."""
    bulk = az.ess(dt, method="bulk")
    tail = az.ess(dt, method="tail")
    rhat = az.rhat(dt)
    rows = {
        v: {"ess_bulk": float(bulk[v].min()), "ess_tail": float(tail[v].min()),
            "r_hat": float(rhat[v].max())}
        for v in bulk.data_vars
    }  # fmt: skip
    return pd.DataFrame(rows).T


@pytest.mark.slow
def test_default_settings_converge_on_the_example(example_default_fit):
    """0 divergences, R-hat <= 1.01 and bulk and tail ESS >= 400 for every posterior
    variable (parameters, deterministics and estimands)."""
    name, dt = example_default_fit
    post = dt.posterior
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == 2000  # the defaults
    table = convergence(dt)
    divergences = int(dt.sample_stats["diverging"].sum())
    worst = {
        "min ess_bulk": (table["ess_bulk"].min(), table["ess_bulk"].idxmin()),
        "min ess_tail": (table["ess_tail"].min(), table["ess_tail"].idxmin()),
        "max r_hat": (table["r_hat"].max(), table["r_hat"].idxmax()),
    }
    print(f"\n{name}: {divergences} divergences, {worst}")
    assert divergences == 0
    assert table.notna().all().all(), table[table.isna().any(axis=1)]
    assert (table["r_hat"] <= 1.01).all(), table[table["r_hat"] > 1.01]
    assert (table["ess_bulk"] >= 400).all(), table[table["ess_bulk"] < 400]
    assert (table["ess_tail"] >= 400).all(), table[table["ess_tail"] < 400]


#: n = 26: estimands whose posterior mean must have the sign of the truth, per spec.
SIGNS = {
    "joint": ["ntx_imp_total", "attenuation_pct", "ntx_glu_male"],
    "glutamate": ["glu_reference", "ntx_glu_male"],
    "improvement": ["ntx_imp_direct"],
    "two_stage": ["ntx_imp_total", "attenuation_pct", "ntx_glu_male"],
    "madrs_items": ["ntx_imp_total", "attenuation_pct"],
}


@pytest.mark.slow
def test_example_estimands_point_the_right_way(example_default_fit, example):
    name, dt = example_default_fit
    truth = example.truth.estimands("joint" if name == "madrs_items" else name)
    names = SIGNS[name] + (["ntx_glu"] if "ntx_glu" in truth and name != "madrs_items" else [])
    table = summarise(dt, truth, names)
    print(f"\n{name} on the example (n = 26):\n{table.round(4)}")
    for est in SIGNS[name]:
        row = table.loc[est]
        assert np.sign(row["mean"]) == np.sign(row["truth"]), f"{name}.{est}\n{table}"
    if "ntx_glu" in table.index:  # weak at n = 26: see the module docstring
        row = table.loc["ntx_glu"]
        assert row["q05"] <= row["truth"] <= row["q95"], table
        assert row["mean"] < row["sd"], table


def test_a_known_age_effect_is_recovered():
    """A spec that extends ``joint`` with one line (``... + age``, centred) recovers a
    simulated age effect of -0.3 points per year: within 3 posterior SDs, and its 95 %
    interval excludes 0 (a model that ignored age, or a simulator that did, fails)."""
    spec = kb.spec.parse_spec(
        {"extends": "joint", "terms": {"improvement": "... + age"},
         "covariates": {"age": {"center": "mean"}}},
        "age.toml",
    )  # fmt: skip
    design = kb.Design(n=40, covariates={"age": (40.0, 12.0)})
    sim = kb.simulate(design, kb.Truth(effects={"gamma_age": -0.3}), seed=11)
    dt = kb.fit(sim, spec, seed=2, draws=500, tune=500, chains=2, progress=False,
                posterior_predictive=False, log_prior=False)  # fmt: skip
    draws = dt["posterior"]["gamma_age"].values.ravel()
    assert abs(draws.mean() + 0.3) < 3 * draws.std()
    assert np.quantile(draws, 0.975) < 0
    coding = json.loads(dt.attrs["covariate_coding"])
    assert coding["age"]["center"] == pytest.approx(sim.participants["age"].mean())
    assert json.loads(dt.attrs["defaulted_priors"]) == ["gamma_age"]


def test_known_site_effects_are_recovered():
    """``joint`` with a three-level categorical ``site`` (sum coding: each coefficient is a
    level minus the mean over levels): the simulated level effects are recovered within 3
    posterior SDs, and the clearly different levels B and C are told apart (95 % interval
    of B - C above 0); the covariate-effect table names each level."""
    spec = kb.spec.parse_spec(
        {"extends": "joint", "terms": {"improvement": "... + site"},
         "covariates": {"site": {"levels": ["A", "B", "C"], "coding": "sum"}}},
        "site.toml",
    )  # fmt: skip
    design = kb.Design(n=40, covariates={"site": {"A": 0.4, "B": 0.3, "C": 0.3}})
    truth = kb.Truth(effects={"gamma_site": {"B": 4.0, "C": -2.0}})
    sim = kb.simulate(design, truth, seed=3)
    dt = kb.fit(sim, spec, seed=2, draws=500, tune=500, chains=2, progress=False,
                posterior_predictive=False, log_prior=False)  # fmt: skip
    post = dt["posterior"]["gamma_site"]
    assert post.dims == ("chain", "draw", "site") and list(post["site"].values) == ["B", "C"]
    coded = spec.level_values(truth.params)  # B: 4 - 2/3, C: -2 - 2/3
    for j, level in enumerate("BC"):
        draws = post.values[..., j].ravel()
        assert abs(draws.mean() - coded[f"gamma_site_{level}"]) < 3 * draws.std(), level
    assert np.quantile((post.values[..., 0] - post.values[..., 1]).ravel(), 0.025) > 0
    table = kb.covariate_effects(dt)
    assert list(table.index) == ["gamma_site_B", "gamma_site_C"]
    assert table.loc["gamma_site_B", "unit"] == "MADRS points"
    counts = json.loads(dt.attrs["covariate_coding"])["site"]["counts"]
    assert counts == sim.participants["site"].value_counts().to_dict()


def test_missing_ratings_keep_their_fmrs_and_are_missing_at_random():
    """Ratings missing at random given the observed data: the 30 % of sessions with the
    largest observed glutamate change lose their day-1 rating (n = 60, seed 5). The joint
    model keeps their fMRS blocks, so its ntx_glu posterior matches the complete data's
    (within 0.25 posterior SD; measured 0.02), and ntx_imp_total stays within 3 SDs of the
    truth (measured -0.17). Dropping those sessions whole (complete-case) moved ntx_glu by
    1.7 SDs (measured), which this test would catch."""
    sim = kb.simulate(kb.Design(n=60), kb.Truth(), seed=5)
    change = sim.session_table()["dglx_obs"]
    sessions = sim.sessions.astype({"madrs_day1": float})
    sessions.loc[(change > np.nanquantile(change, 0.7)).to_numpy(), "madrs_day1"] = np.nan
    unrated = sim.replace(sessions=sessions)
    fits = {
        name: kb.fit(data, "joint", seed=2, draws=500, tune=500, chains=2, progress=False, **LEAN)
        for name, data in (("unrated", unrated), ("complete", sim))
    }
    post = {k: dt["posterior"] for k, dt in fits.items()}
    assert post["unrated"].sizes["session"] == post["complete"].sizes["session"]
    assert fits["unrated"]["observed_data"].sizes["rating"] == 118 - round(118 * 0.3)
    glu = {k: p["ntx_glu"].values.ravel() for k, p in post.items()}
    assert abs(glu["unrated"].mean() - glu["complete"].mean()) < 0.25 * glu["complete"].std()
    total = post["unrated"]["ntx_imp_total"].values.ravel()
    assert abs(total.mean() - sim.truth.estimands()["ntx_imp_total"]) < 3 * total.std()


def test_a_parallel_trial_is_fitted_without_what_it_cannot_separate():
    """A parallel-group trial (n = 120, one session each, seed 7): the joint model leaves out
    a_session, e, v and the period terms (a crossover model's u/e and v/residual ridges
    made chains stuck), converges at 2 x 500 draws (no divergences, R-hat within the problem
    rule's 1.05: the maximum over ~300 quantities of two short chains; 1.024 measured) and
    recovers the pretreatment effects within 3 posterior SDs."""
    design = kb.Design(n=120, config=kb.TrialConfig(design="parallel"))
    sim = kb.simulate(design, kb.Truth(), seed=7)
    dt = kb.fit(sim, "joint", seed=2, draws=500, tune=500, chains=2, progress=False, **LEAN)
    assert kb.results.result_spec(dt).design == "parallel"
    assert not {"e", "v", "a_session", "beta_P", "gamma_P"} & set(dt["posterior"].data_vars)
    assert float(dt["sample_stats"]["diverging"].sum()) == 0
    rhat = kb.check(dt).summary["max_rhat"]
    assert rhat < 1.05, rhat
    truth = sim.truth.estimands("joint")
    for name in ("ntx_glu", "ntx_imp_total", "direct"):
        draws = dt["posterior"][name].values.ravel()
        assert abs(draws.mean() - truth[name]) < 3 * draws.std(), name


def test_three_conditions_each_pretreatment_effect_is_recovered():
    """A three-condition crossover (placebo, naltrexone, nalmefene; Williams sequences,
    n = 36, seed 1): the joint model gives each pretreatment its own effects (a
    ``condition`` dim), recovers them within 3 posterior SDs, tells the two apart
    (naltrexone's glutamate effect -0.03 against nalmefene's -0.01), and its estimand table
    has a row per condition and contrast, in the configuration's order."""
    config = kb.TrialConfig(conditions=("placebo", "naltrexone", "nalmefene"))
    truth = kb.Truth(beta_N={"naltrexone": -0.03, "nalmefene": -0.01},
                     gamma_N={"naltrexone": -3.0, "nalmefene": -1.0})  # fmt: skip
    sim = kb.simulate(kb.Design(n=36, config=config), truth, seed=1)
    dt = kb.fit(sim, "joint", seed=2, draws=500, tune=500, chains=2, progress=False, **LEAN)
    post = dt["posterior"]
    assert post["beta_N"].dims == ("chain", "draw", "condition")
    assert list(post["ntx_glu"]["condition"].values) == ["naltrexone", "nalmefene"]
    table = kb.estimands(dt)
    rows = [r for r in table.index if r.startswith("ntx_glu[")]
    assert rows == ["ntx_glu[naltrexone]", "ntx_glu[nalmefene]", "ntx_glu[nalmefene vs naltrexone]"]
    assert table.loc["ntx_glu[nalmefene]", "label"].startswith("Nalmefene effect")
    true = sim.truth.estimands()
    for name in ("ntx_glu[naltrexone]", "ntx_glu[nalmefene]", "ntx_imp_total[naltrexone]",
                 "ntx_imp_total[nalmefene]", "ntx_imp_total[nalmefene vs naltrexone]"):  # fmt: skip
        row = table.loc[name]
        assert abs(row["mean"] - true[name]) < 3 * row["sd"], name
    assert table.loc["ntx_glu[nalmefene vs naltrexone]", "hdi_low"] > 0
    assert float(dt["sample_stats"]["diverging"].sum()) == 0


def test_a_trajectory_recovers_each_times_pretreatment_effect():
    """Ratings at 4, 24, 72 and 168 h (n = 40, seed 2): the trajectory spec recovers the
    per-time total pretreatment effect and reference improvement within 3 posterior SDs,
    its rows named by time, and the effect at 24 h (-3.8 points) is told from none while
    the one at 168 h (-1.3) is smaller than it."""
    config = kb.TrialConfig(rating_times_h=(4, 24, 72, 168))
    truth = kb.Truth(gamma0={4: 8.0, 24: 12.0, 72: 10.0, 168: 6.0},
                     gamma_N={4: -1.0, 24: -3.0, 72: -2.0, 168: -0.5})  # fmt: skip
    sim = kb.simulate(kb.Design(n=40, config=config), truth, seed=2)
    dt = kb.fit(sim, "trajectory", seed=1, draws=500, tune=500, chains=2, progress=False, **LEAN)
    table, true = kb.estimands(dt), sim.truth.estimands("trajectory")
    for name in ("ntx_imp_total", "improvement_reference"):
        for t in ("4 h", "24 h", "72 h", "168 h"):
            row = table.loc[f"{name}[{t}]"]
            assert abs(row["mean"] - true[f"{name}[{t}]"]) < 3 * row["sd"], (name, t)
    assert table.loc["ntx_imp_total[24 h]", "hdi_high"] < 0
    draws = dt["posterior"]["ntx_imp_total"]
    assert draws.dims == ("chain", "draw", "time")
    asked = kb.answers(dt)["question"].tolist()
    assert "Did naltrexone reduce the improvement at 168 h after ketamine?" in asked
    assert float((draws.sel(time="168 h") > draws.sel(time="24 h")).mean()) > 0.9

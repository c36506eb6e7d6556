"""kb.fit: the DataTree it returns, seeds, compile-once reuse per data shape, and an
independent check of the improvement model against statsmodels' MixedLM.

Fits use short sampling (fixture ``quick``) and share the joint model compiled for the
example's shape (session fixture ``joint_example_fit``); one other shape is compiled on
purpose.
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import version

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from pymc.testing import mock_sample

import kbayes as kb
from kbayes.spec import MODELS_DIR, parse_spec

GROUPS = {"posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood"}
#: Skip the post-sampling extras (each compiles a function) where a test does not use them.
LEAN = {"log_likelihood": False, "posterior_predictive": False, "log_prior": False}


def compiles() -> int:
    return kb.fit.compile_count["nutpie"]


@pytest.fixture(scope="module")
def joint_refit(example, joint_example_fit, quick):
    """The same fit again (same data, seed 1, no prior): reuses the compiled model."""
    before = compiles()
    dt = kb.fit(example, model="joint", seed=1, posterior_predictive=False, **quick)
    assert compiles() == before
    return dt


# --- the result ------------------------------------------------------------------------
def test_result_groups(joint_example_fit, joint_refit):
    assert GROUPS | {"prior", "prior_predictive"} <= set(joint_example_fit.children)
    assert set(joint_refit.children) >= GROUPS
    assert "prior" not in joint_refit.children, "the prior is drawn only on request"
    assert "posterior_predictive" not in joint_refit.children


def test_result_attrs(joint_example_fit):
    attrs = joint_example_fit.attrs
    spec = kb.load_spec("joint")
    assert attrs["spec_name"] == "joint"
    assert attrs["spec_hash"] == spec.hash
    assert attrs["seed"] == 1
    assert attrs["sampler"] == "nutpie"
    for pkg in ("kbayes", "pymc", "arviz", "nutpie"):
        assert attrs[f"{pkg}_version"] == version(pkg)
    # the stored spec text is the spec: parsing it again gives the same hash
    assert parse_spec(json.loads(attrs["spec"])).hash == spec.hash


def test_posterior_dims_and_coords(joint_example_fit, example, quick):
    post = joint_example_fit.posterior
    assert post.sizes["chain"] == quick["chains"]
    assert post.sizes["draw"] == quick["draws"]
    assert list(post["participant"].values) == example.coords["participant"]
    assert post.sizes["session"] == len(example.sessions)
    assert post["u"].dims == ("chain", "draw", "participant")
    assert post["delta"].dims == ("chain", "draw", "session")
    ll = joint_example_fit.log_likelihood
    assert ll["glx"].dims == ("chain", "draw", "mrs_obs")
    assert ll["improvement"].dims == ("chain", "draw", "rating")  # one per day-1 rating
    assert list(ll["rating"].values) == list(post["session"].values)  # here, every session
    assert ll.sizes["mrs_obs"] == len(example.mrs)
    assert np.isfinite(ll["glx"]).all() and np.isfinite(ll["improvement"]).all()


def test_observed_and_constant_data(joint_example_fit, example):
    obs = joint_example_fit.observed_data
    np.testing.assert_array_equal(obs["glx"], example.mrs["glx_ratio"])
    s = example.sessions
    np.testing.assert_array_equal(obs["improvement"], s["madrs_baseline"] - s["madrs_day1"])
    const = joint_example_fit.constant_data
    assert {"c", "m", "p", "g", "glx_se", "baseline_c"} <= set(const.data_vars)
    assert set(np.unique(const["m"])) == {-0.5, 0.5}


def test_estimands_are_in_the_posterior_with_label_and_unit(joint_example_fit):
    post = joint_example_fit.posterior
    spec = kb.load_spec("joint")
    for name in spec.estimands:
        attrs = post[name].attrs
        assert attrs["label"] and attrs["unit"], name
        assert "{" not in attrs["label"] + attrs["unit"], f"{name}: placeholders left"
        assert post[name].dims == ("chain", "draw")
    assert post["ntx_glu"].attrs["label"].startswith("Naltrexone effect on the Glx/tNAA change")
    # term coefficients carry their registry label, filled from the trial configuration
    assert post["beta_N"].attrs["label"] == "Naltrexone vs placebo: Glx/tNAA change"
    assert "estimand" not in post["beta_N"].attrs
    assert post["ntx_imp_total"].attrs["unit"] == "MADRS points"
    # each estimand is its expression evaluated draw by draw
    xr.testing.assert_allclose(
        post["ntx_glu_male"], post["beta_N"] + 0.5 * post["beta_NM"], check_dim_order=False
    )
    total = post["indirect"] + post["direct"]
    np.testing.assert_allclose(total, post["ntx_imp_total"], rtol=1e-10, atol=1e-10)


def test_prior_group_holds_prior_draws(joint_example_fit, quick):
    prior = joint_example_fit.prior
    assert prior.sizes["draw"] == quick["draws"]
    # beta_N ~ Normal(0, 0.05) in joint.toml; 300 draws estimate its SD to about 4 %
    assert 0.04 < float(prior["beta_N"].std()) < 0.06
    assert abs(float(prior["beta_N"].mean())) < 0.015
    # and the posterior is much narrower than the prior for a well-identified parameter
    assert float(joint_example_fit.posterior["beta0"].std()) < 0.3 * float(prior["beta0"].std())


def test_posterior_predictive_on_evenly_thinned_draws(example, joint_example_fit, quick):
    lean = {**LEAN, "posterior_predictive": True}
    a, b = (kb.fit(example, "joint", seed=1, predictive_draws=100, **lean, **quick) for _ in "ab")
    pp, post = a.posterior_predictive, a.posterior
    assert (pp.sizes["chain"], pp.sizes["draw"]) == (quick["chains"], 50)
    labels = pp["draw"].to_numpy()
    step = quick["chains"] * quick["draws"] // 100  # every 6th draw spans the whole chain
    np.testing.assert_array_equal(labels, post["draw"].to_numpy()[::step])
    xr.testing.assert_equal(pp.to_dataset(), b.posterior_predictive.to_dataset())  # seeded
    # each replicate belongs to its own draw: replicated improvement tracks that draw's gamma0
    rep_mean = pp["improvement"].mean("rating")
    gamma0 = post["gamma0"].sel(draw=labels)
    assert float(xr.corr(rep_mean, gamma0, dim=["chain", "draw"])) > 0.3
    # every draw when asked (and the session fixture, with fewer draws than the default)
    assert joint_example_fit.posterior_predictive.sizes["draw"] == quick["draws"]
    with pytest.raises(ValueError, match="predictive_draws"):
        kb.fit(example, "joint", seed=1, predictive_draws=0, **lean, **quick)


# --- seeds -----------------------------------------------------------------------------
def test_same_seed_gives_identical_draws(joint_example_fit, joint_refit):
    for var in ("beta_N", "gamma_N", "u", "ntx_imp_total"):
        np.testing.assert_array_equal(joint_refit.posterior[var], joint_example_fit.posterior[var])


def test_different_seed_gives_different_draws(example, joint_refit, quick):
    other = kb.fit(example, model="joint", seed=2, **LEAN, **quick)
    assert other.attrs["seed"] == 2
    assert not np.array_equal(other.posterior["beta_N"], joint_refit.posterior["beta_N"])
    # ... of the same posterior: both means within 4 Monte Carlo SEs (ESS >= 100 each)
    a, b = other.posterior["beta_N"], joint_refit.posterior["beta_N"]
    assert abs(float(a.mean() - b.mean())) < 4 * float(a.std()) * np.sqrt(2 / 100)


# --- compiled once per shape -----------------------------------------------------------
def test_refit_of_the_same_shape_reuses_the_compiled_model_with_the_new_data(
    example, joint_refit, quick
):
    """A data set of the same shape (glutamate +0.05 during every infusion) is fitted
    without compiling again, and its posterior follows the new data, not the old."""
    before = compiles()
    mrs = example.mrs.copy()
    mrs.loc[mrs["time_min"] >= 0, "glx_ratio"] += 0.05
    shifted = example.replace(mrs=mrs)
    dt = kb.fit(shifted, model="joint", seed=1, **LEAN, **quick)
    assert compiles() == before, "same shape must not compile again"
    np.testing.assert_allclose(dt.observed_data["glx"], mrs["glx_ratio"])
    shift = float(dt.posterior["beta0"].mean() - joint_refit.posterior["beta0"].mean())
    sd = float(joint_refit.posterior["beta0"].std())
    # the mean change moves by the shift (0.05, ~5 posterior SDs), give or take 0.3 SD
    assert abs(shift - 0.05) < 0.3 * sd, f"beta0 moved by {shift:.4f}, expected 0.05"
    # ntx_glu is a difference of conditions: shifting both leaves it (nearly) unchanged
    moved = float(dt.posterior["ntx_glu"].mean() - joint_refit.posterior["ntx_glu"].mean())
    assert abs(moved) < 0.3 * float(joint_refit.posterior["ntx_glu"].std())


def test_another_shape_compiles_anew_with_its_own_dims(example, joint_refit, quick):
    before = compiles()
    sim = kb.simulate(kb.Design(n=30), kb.Truth(), seed=5)
    dt = kb.fit(sim, model="joint", seed=1, posterior_predictive=False, log_prior=False, **quick)
    assert compiles() == before + 1
    post = dt.posterior
    assert post.sizes["participant"] == 30
    assert list(post["participant"].values) == sim.coords["participant"]
    assert post.sizes["session"] == len(sim.sessions) != len(example.sessions)
    assert dt.observed_data.sizes["mrs_obs"] == len(sim.mrs)
    assert dt.log_likelihood.sizes["mrs_obs"] == len(sim.mrs)
    np.testing.assert_allclose(dt.observed_data["glx"], sim.mrs["glx_ratio"])
    assert post["delta"].shape[-1] == len(sim.sessions)
    # both shapes stay cached: back to the example, no compile, its own dims and draws
    again = kb.fit(example, model="joint", seed=1, **LEAN, **quick)
    assert compiles() == before + 1
    assert again.posterior.sizes["participant"] == 26
    np.testing.assert_array_equal(again.posterior["beta_N"], joint_refit.posterior["beta_N"])


# --- behaviour with mocked sampling (no compilation for nutpie) ------------------------
@pytest.fixture
def mocked_pymc_sample(monkeypatch):
    """pm.sample -> prior draws (pymc.testing.mock_sample); fit(sampler="pymc") uses it."""
    monkeypatch.setattr(pm, "sample", mock_sample)


def test_two_stage_plumbing(example, mocked_pymc_sample):
    dt = kb.fit(example, model="two_stage", sampler="pymc", draws=20, chains=2, seed=3,
                progress=False, **LEAN)  # fmt: skip
    assert dt.attrs["spec_name"] == "two_stage"
    assert dt.attrs["spec_hash"] == kb.load_spec("two_stage").hash
    assert dt.attrs["first_stage_hash"] == kb.load_spec("glutamate").hash
    assert dt.attrs["sampler"] == "pymc"
    post = dt.posterior
    # stage-1 coefficients are carried into the posterior for the mediation estimands
    assert {"beta0", "beta_N", "beta_NM", "gamma_D"} <= set(post.data_vars)
    for name in kb.load_spec("two_stage").estimands:
        assert post[name].attrs["label"], name
    # the plugged-in change is the stage-1 posterior mean per session, not the observed one
    dglx = dt.constant_data["dglx_obs"].to_numpy()
    assert dglx.shape == (len(example.sessions),)
    assert not np.allclose(dglx, example.session_table()["dglx_obs"])


def test_item_model_plumbing(example, mocked_pymc_sample):
    dt = kb.fit(example, model="madrs_items", sampler="pymc", draws=20, chains=2, seed=3,
                progress=False, **LEAN)  # fmt: skip
    post = dt.posterior
    assert dt.attrs["spec_hash"] == kb.load_spec("madrs_items").hash
    assert post.sizes["item"] == 10 and post.sizes["cutpoint"] == 6
    assert "items_probs" not in post
    for name in ("ntx_imp_total", "attenuation_pct", "imp_reference"):
        assert post[name].attrs["unit"] in ("MADRS points", "%")
    # expected improvement (total-score scale) of an average participant stays in range
    assert (np.abs(post["imp_reference"]) <= 60).all()


def test_unknown_sampler(example, quick):
    with pytest.raises(ValueError, match="sampler must be one of"):
        kb.fit(example, model="joint", sampler="stan", **quick)


# --- an independent check: improvement model vs statsmodels MixedLM --------------------
#: MixedLM term -> coefficient of the improvement spec.
COEFFICIENTS = {
    "Intercept": "gamma0",
    "c": "gamma_N",
    "m": "gamma_M",
    "c:m": "gamma_NM",
    "dtilde": "gamma_D",
    "dtilde:c": "gamma_DN",
    "baseline_c": "gamma_B",
    "p": "gamma_P",
}


@pytest.fixture(scope="module")
def wide_improvement_fit():
    """improvement.toml with Normal(0, 100) coefficient priors and a normal likelihood,
    fitted to 200 simulated participants (about 390 sessions)."""
    src = tomllib.loads((MODELS_DIR / "improvement.toml").read_text())
    for name in COEFFICIENTS.values():
        src["priors"][name]["sigma"] = 100
    src["likelihood"] = "normal"
    del src["priors"]["nu"]
    spec = parse_spec(src, "wide")
    sim = kb.simulate(kb.Design(n=200), kb.Truth(), seed=7)
    dt = kb.fit(sim, model=spec, draws=1000, tune=1000, chains=2, seed=1, progress=False, **LEAN)
    return spec, dt


def test_improvement_agrees_with_mixedlm(wide_improvement_fit):
    r"""With flat-ish priors the posterior means are the REML estimates of lme4 / MixedLM.

    The design is taken from the fit's own ``constant_data`` (what the model saw), i.e. in
    R: ``lmer(improvement ~ c*m + dtilde + dtilde:c + baseline_c + p + (1|participant))``
    with ``dtilde = (dglx_obs - 0.05) / 0.05``. Tolerance: every |posterior mean - REML
    estimate| < 0.25 posterior SD (Monte Carlo error of the mean is ~0.03 SD here), and
    posterior SD within 15 % of the REML standard error.
    """
    smf = pytest.importorskip("statsmodels.formula.api")
    spec, dt = wide_improvement_fit
    const = dt.constant_data
    df = pd.DataFrame({k: const[k].to_numpy() for k in ("c", "m", "p", "baseline_c")})
    df["dtilde"] = (const["dglx_obs"].to_numpy() - spec.constants["delta_center"]) / (
        spec.constants["delta_scale"]
    )
    df["improvement"] = dt.observed_data["improvement"].to_numpy()
    df["participant"] = const["session_participant"].to_numpy()
    formula = "improvement ~ c*m + dtilde + dtilde:c + baseline_c + p"
    res = smf.mixedlm(formula, df, groups=df["participant"]).fit(reml=True)
    assert res.converged
    assert int(dt.sample_stats["diverging"].sum()) == 0
    post = dt.posterior
    rows = []
    for term, name in COEFFICIENTS.items():
        mean, sd = float(post[name].mean()), float(post[name].std())
        rows.append((name, res.params[term], mean, res.bse[term], sd))
    table = pd.DataFrame(rows, columns=["coef", "reml", "post_mean", "reml_se", "post_sd"])
    table["z"] = (table["post_mean"] - table["reml"]) / table["post_sd"]
    print(f"\nimprovement (wide priors) vs MixedLM REML, n = 200:\n{table.round(4)}")
    assert (table["z"].abs() < 0.25).all(), f"\n{table}"
    assert np.allclose(table["post_sd"], table["reml_se"], rtol=0.15), f"\n{table}"
    # variance components agree too (posterior means are slightly above REML modes)
    assert float(post["sigma_y"].mean()) == pytest.approx(np.sqrt(res.scale), rel=0.1)
    assert float(post["v_sigma"].mean()) == pytest.approx(np.sqrt(res.cov_re.iloc[0, 0]), rel=0.15)


def test_a_spec_without_a_term_leaves_its_data_unused(example, quick):
    """improvement without the sex terms: the model has no ``m`` data, and fits and refits."""
    src = tomllib.loads((MODELS_DIR / "improvement.toml").read_text())
    src["name"] = "improvement_no_sex"
    src["terms"]["improvement"] = [
        t for t in src["terms"]["improvement"] if t not in ("sex", "condition:sex")
    ]
    for name in ("gamma_M", "gamma_NM"):
        del src["priors"][name]
    src["estimands"] = {
        k: e
        for k, e in src["estimands"].items()
        if not {"gamma_M", "gamma_NM"} & set(re.findall(r"\w+", e["expr"]))
    }
    spec = parse_spec(src)
    first = kb.fit(example, spec, seed=1, **LEAN, **quick)
    again = kb.fit(example, spec, seed=1, **LEAN, **quick)
    assert "gamma_M" not in first.posterior and "gamma_N" in first.posterior
    np.testing.assert_array_equal(first.posterior["gamma_N"], again.posterior["gamma_N"])


def test_sample_scalars_gives_the_draws_of_sample(example, joint_example_fit):
    """Power replicates read scalar draws from nutpie's raw trace: the same draws and
    divergences as the DataTree of ``sample`` with the same seed, tuning left out."""
    from kbayes.build import model_inputs
    from kbayes.sampling import sample, sample_scalars

    spec = kb.load_spec("joint")
    inputs = model_inputs(spec, example)
    settings = {"draws": 30, "tune": 40, "chains": 2, "seed": 7}
    dt, model = sample(spec, inputs, progress=False, cores=1, save_warmup=False, **settings)
    scalars, divergences, _ = sample_scalars(spec, inputs, **settings)
    expected = [rv.name for rv in (*model.free_RVs, *model.deterministics) if rv.ndim == 0]
    assert sorted(scalars) == sorted(expected)
    for name, values in scalars.items():
        np.testing.assert_array_equal(values, dt.posterior[name].values, err_msg=name)
    assert divergences == int(dt.sample_stats["diverging"].sum())


def test_prior_draws_of_ordered_cutpoints_are_the_restricted_prior(example):
    """PyMC's forward sampling draws the item model's cutpoints unordered 90 % of the time;
    the prior group holds draws of the Normal restricted to ordered vectors: all ordered,
    with that distribution's means (numpy rejection sampler), reproducible by seed."""
    from kbayes.build import build_model, model_inputs
    from kbayes.sampling import sample_prior

    spec = kb.load_spec("madrs_items")
    model = build_model(spec, model_inputs(spec, example))
    tree = sample_prior(model, 300, seed=4)
    cut = tree.prior["cutpoints"].values[0]
    assert cut.shape == (300, 6) and (np.diff(cut, axis=1) > 0).all()
    assert tree.prior_predictive["items"].shape[:2] == (1, 300)
    np.testing.assert_array_equal(tree.prior.draw, np.arange(300))
    prior = spec.priors["cutpoints"].parameters
    raw = np.random.default_rng(0).normal(prior["mu"], prior["sigma"], (200_000, 6))
    restricted = raw[(np.diff(raw, axis=1) > 0).all(axis=1)]
    z = (cut.mean(axis=0) - restricted.mean(axis=0)) / (restricted.std(axis=0) / np.sqrt(300))
    assert np.abs(z).max() < 4, z
    again = sample_prior(model, 300, seed=4)
    np.testing.assert_array_equal(again.prior["cutpoints"], tree.prior["cutpoints"])
    np.testing.assert_array_equal(again.prior_predictive["items"], tree.prior_predictive["items"])


def test_threads_build_and_compile_a_shape_once():
    """A Dask worker may run replicates in threads: a new shape is built and compiled once."""
    from concurrent.futures import ThreadPoolExecutor

    from kbayes.sampling import _nutpie_model, compiled_model
    from kbayes.simulation import simulate_inputs

    spec = kb.load_spec("improvement")
    inputs = simulate_inputs(spec, kb.Design(n=7), kb.Truth(), np.random.SeedSequence(1))
    before = compiles()
    with ThreadPoolExecutor(3) as pool:
        entries = list(pool.map(lambda _: compiled_model(spec, inputs), range(3)))
        list(pool.map(lambda e: _nutpie_model(e, inputs), entries))
    assert entries[0] is entries[1] is entries[2]
    assert compiles() - before == 1


def test_integrating_the_effects_keeps_the_posterior(example):
    """Same model, same posterior: the joint model sampled with every effect (a, a_session,
    u, e, v) as a NUTS parameter and with them integrated out (then drawn from their
    conditional) agree on every estimand, effect and SD within Monte-Carlo error."""
    import arviz_stats as azs

    from kbayes.build import model_inputs
    from kbayes.sampling import add_estimands, sample
    from kbayes.spec import parse_spec

    spec = kb.load_spec("joint")
    assert set(spec.integrate) == {"a", "a_session", "u", "e", "v"}
    sampled = parse_spec({k: v for k, v in spec.source.items() if k != "integrate"}, "sampled")
    posts = []
    for s in (spec, sampled):
        dt, _ = sample(s, model_inputs(s, example), draws=1000, tune=1000, chains=4, seed=3,
                       progress=False, cores=2)  # fmt: skip
        add_estimands(dt, s, example)
        posts.append(dt.posterior.to_dataset())
    names = [*spec.estimands, "a", "a_session", "u", "e", "v", "delta", "sigma_mrs", "a_sigma",
             "a_session_sigma", "u_sigma", "e_sigma", "v_sigma", "sigma_y", "nu"]  # fmt: skip
    for method in ("mean", "sd"):
        stat = [getattr(p[names], method.replace("sd", "std"))(("chain", "draw")) for p in posts]
        err = [azs.mcse(p[names], method=method) for p in posts]
        for name in names:
            z = (stat[0][name] - stat[1][name]) / np.hypot(err[0][name], err[1][name])
            assert float(np.abs(z).max()) < 4.5, (method, name, float(np.abs(z).max()))

"""Random-effects meta-analysis: structure, recovery from simulated studies, predictive draws.

The model is compiled twice (one fit, one refit for reproducibility; the second compile
hits the cache).
"""

import numpy as np
import pytest

from kbayes.meta import build_meta_model, meta_analysis
from kbayes.published.convert import from_estimate

MU, TAU, K = 0.4, 0.3, 30


@pytest.fixture(scope="module")
def studies():
    """30 simulated studies: theta_k ~ N(0.4, 0.3), SE_k ~ U(0.1, 0.2)."""
    rng = np.random.default_rng(20261125)
    se = rng.uniform(0.1, 0.2, K)
    y = MU + TAU * rng.standard_normal(K) + se * rng.standard_normal(K)
    return [
        from_estimate(float(e), float(s), scale="d", source=f"sim{i}")
        for i, (e, s) in enumerate(zip(y, se, strict=True))
    ]


@pytest.fixture(scope="module")
def fitted(studies):
    return meta_analysis(studies, draws=500, tune=500, chains=2, seed=3)


def dersimonian_laird(y, se):
    """Classical moment estimate of (mu, tau), for comparison."""
    w = 1 / se**2
    q = np.sum(w * (y - np.sum(w * y) / w.sum()) ** 2)
    tau2 = max(0.0, (q - (len(y) - 1)) / (w.sum() - np.sum(w**2) / w.sum()))
    ws = 1 / (se**2 + tau2)
    return np.sum(ws * y) / ws.sum(), np.sqrt(tau2)


def test_model_structure_with_study_dims():
    """Free variables are mu, tau, z (dims study), z_new; theta is deterministic."""
    model = build_meta_model([0.1, 0.2], [0.1, 0.1], ["a", "b"], mu_sd=1.0, tau_scale=0.5)
    assert {v.name for v in model.free_RVs} == {"mu", "tau", "z", "z_new"}
    assert model.named_vars_to_dims["z"] == ("study",)
    assert {v.name for v in model.deterministics} == {"theta", "theta_new"}
    assert type(model["tau"].owner.op).__name__ == "HalfNormalRV"


def test_half_t_prior_on_tau():
    """tau_prior="halft" gives a half Student-t."""
    model = build_meta_model([0.1], [0.1], ["a"], mu_sd=1.0, tau_scale=0.5, tau_prior="halft")
    assert type(model["tau"].owner.op).__name__ == "HalfStudentTRV"
    with pytest.raises(ValueError, match="tau_prior"):
        build_meta_model([0.1], [0.1], ["a"], mu_sd=1.0, tau_scale=0.5, tau_prior="cauchy")


def test_unlike_results_are_not_pooled():
    """Different scales or different contrasts raise before any sampling."""
    with pytest.raises(ValueError, match="scale"):
        meta_analysis([("jelen2025", "madrs_day1"), ("jelen2025", "glx_infusion")])
    with pytest.raises(ValueError, match="effect"):
        meta_analysis([("jelen2025", "madrs_day1"), ("abdallah2018_13c", "glutamine_enrichment")])


def test_recovers_pooled_effect_and_tau(fitted, studies):
    """Truth within 3 posterior SD; posterior means within 0.05 of DerSimonian-Laird."""
    y = np.array([s.estimate for s in studies])
    se = np.array([s.se for s in studies])
    mu_dl, tau_dl = dersimonian_laird(y, se)
    for draws, truth, classical in ((fitted.mu, MU, mu_dl), (fitted.tau, TAU, tau_dl)):
        assert abs(draws.mean() - truth) < 3 * draws.std(), (draws.mean(), truth)
        assert abs(draws.mean() - classical) < 0.05, (draws.mean(), classical)
    assert int(fitted.dt.sample_stats["diverging"].sum()) == 0
    assert fitted.summary().loc["tau", "r_hat"] < 1.05


def test_predictive_draws_are_the_new_trial_distribution(fitted):
    """Mean mu, variance E[tau^2] + Var(mu); same seed, same draws."""
    draws = fitted.predictive_draws(40_000, seed=1)
    assert draws.mean() == pytest.approx(fitted.mu.mean(), abs=0.01)
    sd = np.sqrt(np.mean(fitted.tau**2) + fitted.mu.var())
    assert draws.std() == pytest.approx(sd, rel=0.03)
    assert np.array_equal(draws, fitted.predictive_draws(40_000, seed=1))
    assert not np.array_equal(draws, fitted.predictive_draws(40_000, seed=2))
    theta_new = fitted.dt.posterior["theta_new"].values.ravel()
    assert theta_new.std() == pytest.approx(sd, rel=0.1)


def test_fit_is_reproducible(fitted, studies):
    """Same seed, same posterior draws, bit for bit."""
    again = meta_analysis(studies, draws=500, tune=500, chains=2, seed=3)
    assert np.array_equal(fitted.mu, again.mu)
    assert fitted.studies == tuple(f"sim{i}" for i in range(K))


def test_a_fit_failing_its_check_gives_no_design_prior(fitted):
    """One study leaves tau a funnel; short tuning at a low target_accept diverges."""
    assert fitted.verdict.status != "fail"
    one = [from_estimate(0.4, 0.2, scale="d", source="only")]
    bad = meta_analysis(one, draws=300, tune=30, chains=2, target_accept=0.6, seed=2025)
    assert bad.verdict.status == "fail"
    with pytest.raises(ValueError, match="failed its sampling check"):
        bad.predictive_draws(100, seed=1)


def test_posterior_matches_grid_integration(fitted, studies):
    """mu, tau and a study's theta against quadrature over (mu, tau) of the same model, with
    theta_k | mu, tau, y normal: the sampled posterior is the model's, shrinkage included."""
    y = np.array([s.estimate for s in studies])
    se = np.array([s.se for s in studies])
    tau_scale, mu_sd = np.sqrt(np.mean(se**2)), 10 * se.max()
    mu, tau = np.meshgrid(np.linspace(-0.5, 1.5, 801), np.linspace(1e-4, 1.2, 800))
    total = se[:, None, None] ** 2 + tau**2
    loglik = -0.5 * (np.log(total) + (y[:, None, None] - mu) ** 2 / total).sum(0)
    logpost = loglik - 0.5 * (mu / mu_sd) ** 2 - 0.5 * (tau / tau_scale) ** 2
    p = np.exp(logpost - logpost.max())
    p /= p.sum()
    w0 = tau**2 / (tau**2 + se[0] ** 2)
    exact = {
        "mu": (p * mu).sum(),
        "tau": (p * tau).sum(),
        "theta": (p * (mu + w0 * (y[0] - mu))).sum(),
    }
    post = fitted.dt.posterior
    draws = {
        "mu": fitted.mu,
        "tau": fitted.tau,
        "theta": post["theta"].isel(study=0).values.ravel(),
    }
    for name, x in draws.items():
        mcse = x.std() / np.sqrt(200)  # a conservative ESS for 2 x 500 draws
        assert abs(x.mean() - exact[name]) < 4 * mcse, (name, x.mean(), exact[name])

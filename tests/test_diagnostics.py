"""kb.check: each rule on synthetic draws, a centred funnel sampled by nutpie (fails with
divergences) and a simple model sampled by PyMC's NUTS (ok when long, fails when short)."""

from __future__ import annotations

import json

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from rich.console import Console

from kbayes.diagnostics import Verdict, check
from kbayes.spec import load_spec

CHAINS, DRAWS = 4, 1000
DIMS = ("chain", "draw")


def _tree(rng: np.random.Generator, *, x=None, stats: dict | None = None) -> xr.DataTree:
    """A result with posterior ``mu`` (iid normal unless ``x``) and sample_stats ``stats``.

    Unless replaced through ``stats``, nutpie-style stats are clean: no divergence, no
    tree-depth hit, iid energy (E-BFMI about 2).
    """
    x = rng.normal(size=(CHAINS, DRAWS)) if x is None else x
    clean = {
        "diverging": np.zeros((CHAINS, DRAWS), bool),
        "maxdepth_reached": np.zeros((CHAINS, DRAWS), bool),
        "energy": rng.normal(size=(CHAINS, DRAWS)),
    }
    ss = {k: (DIMS, v) for k, v in (clean | (stats or {})).items() if v is not None}
    return xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"mu": (DIMS, x)}), "sample_stats": xr.Dataset(ss)}
    )


def _ar1(rng: np.random.Generator, phi: float) -> np.ndarray:
    """Autocorrelated chains: AR(1) with coefficient ``phi``."""
    e = rng.normal(size=(CHAINS, DRAWS))
    x = np.zeros_like(e)
    for t in range(1, DRAWS):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def _problem(verdict: Verdict, kind: str):
    found = [p for p in verdict.problems if p.kind == kind]
    assert len(found) == 1, f"expected one {kind!r} problem, got {verdict.to_frame()}"
    return found[0]


def test_clean_draws_are_ok():
    """Independent draws, clean sampler statistics: status ok, no problems."""
    verdict = check(_tree(np.random.default_rng(1)))
    assert verdict.status == "ok" and verdict.ok
    assert verdict.problems == ()
    assert verdict.to_frame().empty
    assert list(verdict.to_frame().columns) == ["kind", "status", "message", "advice", "variables"]
    assert str(verdict).startswith("Sampling check: OK (4 chains x 1000 draws; 0 divergences")


def test_divergences_fail_and_advise_target_accept():
    """Any divergence fails; the advice names target_accept."""
    diverging = np.zeros((CHAINS, DRAWS), bool)
    diverging[2, :5] = True
    verdict = check(_tree(np.random.default_rng(1), stats={"diverging": diverging}))
    assert verdict.status == "fail"
    problem = _problem(verdict, "divergences")
    assert problem.status == "fail"
    assert "5 of 4000 transitions (0.1 %) diverged" in problem.message
    assert "target_accept" in problem.advice
    assert problem.values == {"divergences": 5, "total": 4000}


@pytest.mark.parametrize(("shift", "status"), [(0.25, "warn"), (0.6, "fail")])
def test_rhat_warns_above_rhat_max_and_fails_above_1_05(shift, status):
    """Chains with shifted means: R-hat 1.02 warns, R-hat 1.11 fails; the message names mu."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(CHAINS, DRAWS))
    x[1] += shift
    x[3] -= shift
    verdict = check(_tree(rng, x=x))
    problem = _problem(verdict, "rhat")
    assert (problem.status, verdict.status) == (status, status)
    assert problem.variables == ("mu",)
    assert "R-hat > 1.01" in problem.message and "mu (1." in problem.message
    assert 1.01 < problem.values["mu"] == pytest.approx(verdict.summary["max_rhat"])


@pytest.mark.parametrize(("phi", "status"), [(0.9, "warn"), (0.99, "fail")])
def test_low_ess_warns_below_ess_min_and_fails_below_100(phi, status):
    """AR(1) chains: bulk ESS ~250 warns and advises more draws; ESS ~30 fails."""
    verdict = check(_tree(np.random.default_rng(2), x=_ar1(np.random.default_rng(3), phi)))
    problem = _problem(verdict, "ess_bulk")
    assert problem.status == status
    assert problem.variables == ("mu",)
    assert problem.values["mu"] < 400
    assert "bulk ESS < 400" in problem.message
    assert "kb.fit(..., draws=" in problem.advice
    assert verdict.status == status


def test_ess_min_is_configurable():
    """The same draws pass with a lower ess_min."""
    tree = _tree(np.random.default_rng(2), x=_ar1(np.random.default_rng(3), 0.85))
    assert "ess_bulk" in {p.kind for p in check(tree).problems}
    assert check(tree, ess_min=300).ok


def test_low_bfmi_warns_and_names_the_chain():
    """Energy that wanders like a random walk in chain 1 only: E-BFMI warning for chain 1."""
    rng = np.random.default_rng(4)
    energy = rng.normal(size=(CHAINS, DRAWS))
    energy[1] = np.cumsum(energy[1])
    verdict = check(_tree(rng, stats={"energy": energy}))
    problem = _problem(verdict, "bfmi")
    assert (problem.status, verdict.status) == ("warn", "warn")
    assert problem.variables == ("chain 1",)
    assert "E-BFMI (< 0.3) in chain 1 (0.0" in problem.message
    assert "Reparametrise" in problem.advice


@pytest.mark.parametrize("name", ["maxdepth_reached", "reached_max_treedepth"])
def test_tree_depth_warns_for_nutpie_and_pymc_stats(name):
    """Tree-depth hits are read from nutpie's and PyMC's statistic alike and only warn."""
    hits = np.zeros((CHAINS, DRAWS), bool)
    hits[0, :40] = True
    stats = {"maxdepth_reached": None, name: hits}
    verdict = check(_tree(np.random.default_rng(5), stats=stats))
    problem = _problem(verdict, "treedepth")
    assert (problem.status, verdict.status) == ("warn", "warn")
    assert "40 of 4000 transitions (1.0 %) stopped at the maximum tree depth (10)" in (
        problem.message
    )
    assert verdict.summary["treedepth_hits"] == 40


def test_missing_sample_stats_warns():
    """Without sample_stats the sampler checks cannot run, and the verdict says so."""
    rng = np.random.default_rng(6)
    tree = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"mu": (DIMS, rng.normal(size=(4, 500)))})}
    )
    verdict = check(tree)
    assert verdict.status == "warn"
    assert "no sample_stats group" in _problem(verdict, "sample_stats").message


@pytest.fixture(scope="module")
def funnel_fit() -> xr.DataTree:
    """Neal's funnel, centred, sampled by nutpie with a low target_accept and a short tune."""
    import nutpie

    with pm.Model() as funnel:
        v = pm.Normal("v", 0, 3)
        pm.Normal("x", 0, pm.math.exp(v / 2), shape=9)
    compiled = nutpie.compile_pymc_model(funnel)
    return nutpie.sample(
        compiled, draws=300, tune=100, chains=2, seed=1, target_accept=0.5, progress_bar=False
    )


def test_centred_funnel_fails_with_divergences(funnel_fit):
    """The funnel diverges: fail, with a divergence problem advising target_accept, and the
    chains have not mixed (R-hat fail, low ESS named for v)."""
    verdict = check(funnel_fit)
    assert verdict.status == "fail"
    problem = _problem(verdict, "divergences")
    assert problem.status == "fail"
    assert problem.values["divergences"] > 0
    assert "diverged" in problem.message
    assert "target_accept" in problem.advice and "now 0.5" in problem.advice
    assert "v" in _problem(verdict, "rhat").variables
    assert "v" in _problem(verdict, "ess_bulk").variables
    rendered = Console(record=True, width=120)
    rendered.print(verdict)
    text = rendered.export_text()
    assert "FAIL" in text and "target_accept" in text
    assert "divergences" in verdict.to_frame()["kind"].tolist()


def test_divergence_advice_names_the_specs_centred_random_effect(funnel_fit):
    """With a stored spec, the advice points at its centred random effect (priors.a)."""
    tree = funnel_fit.copy()
    tree.attrs["spec"] = json.dumps(load_spec("glutamate").source)
    advice = _problem(check(tree), "divergences").advice
    assert "centered = false under [priors.a]" in advice


@pytest.fixture(scope="module")
def simple_model() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0, 1)
        pm.Normal("y", mu, 1, observed=np.random.default_rng(1).normal(0.3, 1, 20))
    return model


def _pymc_nuts(model: pm.Model, draws: int, tune: int) -> xr.DataTree:
    return pm.sample(
        draws=draws,
        tune=tune,
        chains=2,
        cores=1,
        random_seed=1,
        model=model,
        nuts_sampler="pymc",
        progressbar=False,
        compute_convergence_checks=False,
    )


def test_good_pymc_fit_is_ok(simple_model):
    """PyMC's NUTS on a well-posed model: ok, and its own stat names were read."""
    idata = _pymc_nuts(simple_model, draws=1000, tune=500)
    assert "reached_max_treedepth" in idata.sample_stats
    verdict = check(idata)
    assert verdict.status == "ok", str(verdict)
    assert verdict.summary["divergences"] == 0
    assert verdict.summary["treedepth_hits"] == 0
    assert "min_bfmi" in verdict.summary


def test_very_short_chains_fail_on_ess(simple_model):
    """2 x 25 draws cannot give 100 effective draws: ESS problems, status fail."""
    verdict = check(_pymc_nuts(simple_model, draws=25, tune=25))
    assert verdict.status == "fail"
    kinds = {p.kind: p for p in verdict.problems}
    assert {"ess_bulk", "ess_tail"} & set(kinds)
    assert all(p.variables == ("mu",) for k, p in kinds.items() if k.startswith("ess"))

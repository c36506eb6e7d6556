"""Design priors: truths drawn per replicate, repeatable by seed."""

from __future__ import annotations

import numpy as np
import xarray as xr

import kbayes as kb
from kbayes.design_priors import PosteriorTruth, PredictiveTruth, PriorTruth


def test_design_priors_draw_per_replicate_and_repeat():
    from pymc_extras.prior import Prior

    seeds = [np.random.SeedSequence(1, spawn_key=(k,)) for k in range(4)]
    prior = PriorTruth({"gamma_N": Prior("Normal", mu=-2.6, sigma=1.0)})
    draws = [prior.draw(s).gamma_N for s in seeds]
    assert len(set(draws)) == 4 and draws == [prior.draw(s).gamma_N for s in seeds]
    assert prior.draw(seeds[0]).beta_N == kb.Truth().beta_N

    class Meta:  # the MetaAnalysis protocol: predictive_draws(n, seed)
        def predictive_draws(self, n, seed):
            return np.random.default_rng(seed).normal(-0.3, 0.1, n)

    pred = PredictiveTruth(Meta(), "gamma_N", transform=lambda d: 10 * d)
    assert -10 < pred.draw(seeds[0]).gamma_N < 0
    post = xr.Dataset({"gamma_N": (("chain", "draw"), [[-1.0, -2.0, -3.0]]),
                       "v_sigma": (("chain", "draw"), [[1.0, 2.0, 3.0]])})  # fmt: skip
    dt = xr.DataTree.from_dict({"posterior": post})
    drawn = [PosteriorTruth(dt).draw(s) for s in seeds]
    assert all(t.v_sigma == -t.gamma_N for t in drawn), "one posterior draw sets both fields"


def test_a_posterior_with_several_pretreatments_gives_each_its_effect():
    """A posterior whose pretreatment effect has a condition dim gives each replicate's
    truth one value per condition, from one draw (nothing of it dropped)."""
    draws = np.stack([np.linspace(-0.04, 0.0, 50), np.linspace(-0.02, 0.02, 50)], axis=-1)
    post = xr.Dataset(
        {"beta_N": (("chain", "draw", "condition"), draws[None]),
         "gamma0": (("chain", "draw"), np.linspace(10, 14, 50)[None])},
        coords={"condition": ["naltrexone", "nalmefene"]},
    )  # fmt: skip
    prior = PosteriorTruth(xr.DataTree.from_dict({"posterior": post}))
    truth = prior.draw(np.random.SeedSequence(4))
    k = int(np.argmin(np.abs(np.linspace(10, 14, 50) - truth.gamma0)))
    assert truth.beta_N == {"naltrexone": draws[k, 0], "nalmefene": draws[k, 1]}

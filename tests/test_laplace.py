"""Laplace screening engine: compiled once per shape, data swapped in, exact Hessian colouring."""

from __future__ import annotations

import numpy as np
import pytest

import kbayes as kb
from kbayes import laplace
from kbayes.build import model_inputs
from kbayes.simulation import simulate_inputs


@pytest.fixture(scope="module")
def improvement_engine():
    spec = kb.load_spec("improvement")
    design = kb.Design(n=12)
    inputs = [
        simulate_inputs(spec, design, kb.Truth(), np.random.SeedSequence(s)) for s in range(3)
    ]
    eng = laplace.engine(spec, inputs[0])
    eng.prepare("ref", inputs[:1])
    return spec, eng, inputs


def test_noncentred_reparametrises_every_hierarchical_prior():
    spec = kb.load_spec("joint")
    assert spec.priors["a"].centered  # the joint spec centres a, for NUTS
    nc = laplace.noncentred(spec)
    assert not nc.priors["a"].centered
    assert nc.estimands == spec.estimands and nc.hash != spec.hash


def test_compiled_once_per_shape_and_new_data_are_read(improvement_engine):
    spec, eng, inputs = improvement_engine
    count = laplace.compile_count["laplace"]
    fits = [eng.fit(x, reference="ref", draws=2000, seed=np.random.SeedSequence(1)) for x in inputs]
    assert laplace.engine(spec, inputs[2]) is eng
    assert laplace.compile_count["laplace"] == count
    means = [f.draws["ntx_imp_direct"].mean() for f in fits]
    assert all(f.converged for f in fits)
    assert len(set(np.round(means, 6))) == 3, "each data set gives its own fit"
    again = eng.fit(inputs[0], reference="ref", draws=2000, seed=np.random.SeedSequence(1))
    np.testing.assert_array_equal(again.draws["ntx_imp_direct"], fits[0].draws["ntx_imp_direct"])


def test_fits_from_threads_equal_serial_fits(improvement_engine):
    """A Dask worker may run several replicates at once in threads; new data are set into
    the engine's shared variables, so its fits take turns and give the serial answers."""
    from concurrent.futures import ThreadPoolExecutor

    _, eng, inputs = improvement_engine

    def fit(k: int) -> np.ndarray:
        seed = np.random.SeedSequence(k)
        return eng.fit(inputs[k % 3], reference="ref", draws=200, seed=seed).draws["ntx_imp_direct"]

    serial = [fit(k) for k in range(12)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(fit, range(12)))
    for k in range(12):
        np.testing.assert_array_equal(threaded[k], serial[k], err_msg=f"fit {k}")


def test_scales_fixed_at_reference_and_held(improvement_engine):
    eng = improvement_engine[1]
    ref = eng.references["ref"]
    held = [eng._slices[v].start for v in eng.scale_names.values()]
    assert set(eng.scale_names) == {"v_sigma", "sigma_y", "nu"}
    assert not np.isin(held, ref.free).any()
    sigma_y = np.exp(ref.mode[eng._slices["sigma_y_log__"]][0])
    assert 1 < sigma_y < 10, "the marginal mode of the residual SD is near the truth (3.5)"


def test_coloured_hessian_equals_full_joint():
    """The coloured finite-difference Hessian matches the column-by-column one (the joint
    model with its effects as parameters, whose Hessian is sparse)."""
    from kbayes.spec import parse_spec

    source = kb.load_spec("joint").source
    spec = parse_spec({k: v for k, v in source.items() if k != "integrate"}, "sampled")
    design = kb.Design(n=6, block_times=(-5.0, 5.0, 15.0))
    inputs = [simulate_inputs(spec, design, kb.Truth(), np.random.SeedSequence(s)) for s in (1, 2)]
    eng = laplace.engine(spec, inputs[0])
    eng.prepare("ref", inputs[:1])
    ref = eng.references["ref"]
    assert len(ref.colours.dense) + len(ref.colours.groups) < ref.free.size / 2
    eng.set_data(inputs[1])
    x = ref.mode + np.random.default_rng(3).normal(0, 0.05, ref.mode.size)
    full = eng._hessian(x, ref.free)
    coloured = eng._hessian(x, ref.free, ref.colours)
    np.testing.assert_allclose(coloured, full, rtol=1e-6, atol=1e-6 * np.abs(full).max())
    forward = eng._hessian(x, ref.free, ref.colours, grad=eng._neg(x)[1])
    np.testing.assert_allclose(forward, full, rtol=1e-4, atol=1e-4 * np.abs(full).max())


def test_loose_optimiser_and_newton_step_reach_the_mode(improvement_engine, monkeypatch):
    """A replicate's optimiser stops short of the mode and one Newton step finishes: the
    draws (same seed) are those of a fit converged 3000 times tighter."""
    _, eng, inputs = improvement_engine
    loose = eng.fit(inputs[1], reference="ref", draws=1000, seed=np.random.SeedSequence(2))
    monkeypatch.setattr(laplace, "_FIT_GTOL", 1e-5)
    tight = eng.fit(inputs[1], reference="ref", draws=1000, seed=np.random.SeedSequence(2))
    for name, draws in tight.draws.items():
        gap = np.abs(loose.draws[name] - draws).max()
        assert gap < 3e-3 * draws.std(), f"{name}: {gap / draws.std():.1e} SD"
    assert loose.converged and tight.converged


def test_a_fit_stopped_far_from_the_mode_is_a_problem(improvement_engine, monkeypatch):
    """An optimiser stopped at once (at the reference's mode, far from this data set's) is
    not hidden by the Newton step: the fit is flagged, with the distance in SDs."""
    _, eng, inputs = improvement_engine
    monkeypatch.setattr(laplace, "_FIT_GTOL", 1e9)
    fit = eng.fit(inputs[1], reference="ref", draws=100, seed=np.random.SeedSequence(2))
    assert not fit.converged and "posterior SDs from the mode" in fit.message


def test_latent_groups_are_the_conditionally_independent_random_effects(improvement_engine):
    assert improvement_engine[1].latent == ["v_offset"]


def test_joint_effects_agree_with_nuts(example, joint_example_fit):
    """The joint spec integrates every effect out, so the screen is a Laplace approximation
    over the scalars and Student-t weights only (no latent groups, no correction): means
    within 0.3 NUTS SD and SDs within a factor of 1.5 of the example's NUTS posterior
    (2 x 300 draws; against 4 x 1000 draws the shifts were at most 0.06 SD and the SD ratios
    0.74-0.99). With every effect a parameter the joint mode is far from the posterior's
    mass (direct and indirect effects 2-4 NUTS SDs away, docs/power.md)."""
    spec = kb.load_spec("joint")
    inputs = model_inputs(spec, example)
    eng = laplace.engine(spec, inputs)
    assert eng.latent == []
    eng.prepare("example", [inputs])
    fit = eng.fit(inputs, reference="example", draws=4000, seed=np.random.SeedSequence(0))
    assert fit.converged, fit.message
    for name in ("ntx_glu", "ntx_imp_total", "direct", "indirect", "slope_placebo"):
        nuts = joint_example_fit.posterior[name].values.ravel()
        shift = (fit.draws[name].mean() - nuts.mean()) / nuts.std()
        ratio = fit.draws[name].std() / nuts.std()
        assert abs(shift) < 0.3 and 1 / 1.5 < ratio < 1.5, f"{name}: {shift:.2f} SD, x{ratio:.2f}"

"""Laplace screening engine: compiled once per shape, data swapped in, exact Hessian colouring."""

from __future__ import annotations

import numpy as np
import pytest

import kbayes as kb
from kbayes import laplace
from kbayes.fit import compiled_model
from kbayes.power import simulate_inputs


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


def test_scales_fixed_at_reference_and_held(improvement_engine):
    eng = improvement_engine[1]
    ref = eng.references["ref"]
    held = [eng._slices[v].start for v in eng.scale_names.values()]
    assert set(eng.scale_names) == {"v_sigma", "sigma_y", "nu"}
    assert not np.isin(held, ref.free).any()
    sigma_y = np.exp(ref.mode[eng._slices["sigma_y_log__"]][0])
    assert 1 < sigma_y < 10, "the marginal mode of the residual SD is near the truth (3.5)"


def test_coloured_hessian_equals_full_joint():
    """The coloured finite-difference Hessian matches the column-by-column one (joint)."""
    spec = kb.load_spec("joint")
    design = kb.Design(n=6, block_times=(-5.0, 5.0, 15.0))
    inputs = [simulate_inputs(spec, design, kb.Truth(), np.random.SeedSequence(s)) for s in (1, 2)]
    eng = laplace.engine(spec, inputs[0])
    eng.prepare("ref", inputs[:1])
    ref = eng.references["ref"]
    dense, colours, _ = ref.colours
    assert len(dense) + len(colours) < ref.free.size / 2
    compiled_model(eng.fit_spec, inputs[1])
    x = ref.mode + np.random.default_rng(3).normal(0, 0.05, ref.mode.size)
    full = eng._hessian(x, ref.free)
    coloured = eng._hessian(x, ref.free, ref.colours)
    np.testing.assert_allclose(coloured, full, rtol=1e-6, atol=1e-6 * np.abs(full).max())

"""Design and Truth: validated values, parameter names of the model, true estimands."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kbayes.build import build_model, model_inputs
from kbayes.design import Design, Truth
from kbayes.spec import load_spec

TRUTH = Truth()
#: The centring of the simulated (joint) model.
CONSTANTS = load_spec("joint").constants
DELTA_CENTER, DELTA_SCALE = CONSTANTS["delta_center"], CONSTANTS["delta_scale"]


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
        (Truth, "u_sigma", -0.1),
        (Truth, "sigma_y", -1.0),
        (Truth, "uv_rho", 1.5),
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
    assert set(p) == {f.name for f in dataclasses.fields(Truth)} - {"effects"}
    assert Truth(effects={"gamma_age": -0.1}).params["gamma_age"] == -0.1
    d0, d1 = ((p["beta0"] + p["beta_N"] * c - DELTA_CENTER) / DELTA_SCALE for c in (0, 1))
    total = p["gamma_N"] + p["gamma_D"] * (d1 - d0) + p["gamma_DN"] * d1
    attenuation = -100 * total / (p["gamma0"] + p["gamma_D"] * d0)
    assert total == pytest.approx(-3.4)
    assert attenuation == pytest.approx(28.333, abs=1e-3)
    assert p["beta_N"] - p["beta_NM"] / 2 == pytest.approx(-0.01)  # women
    assert p["beta_N"] + p["beta_NM"] / 2 == pytest.approx(-0.03)  # men


def test_truth_estimands_agree_with_the_joint_spec():
    """Truth.estimands (via the spec) matches the hand computation."""
    est = TRUTH.estimands()
    assert est["ntx_imp_total"] == pytest.approx(-3.4)
    assert est["attenuation_pct"] == pytest.approx(28.333, abs=1e-3)
    assert est["ntx_glu_male"] == pytest.approx(-0.03)
    assert est["ntx_glu_female"] == pytest.approx(-0.01)


def test_truth_fields_are_the_model_parameter_names(example):
    """Every Truth field is a variable of the joint model (uv_rho: of its correlated-effects
    variant), so a truth and a posterior draw share names."""
    spec = load_spec("joint")
    names = set(build_model(spec, model_inputs(spec, example), integrated=False).named_vars)
    assert set(TRUTH.params) - {"uv_rho"} <= names


def test_categorical_design_covariates_and_effects_are_validated():
    design = Design(covariates={"site": {"A": 0.25, "B": 0.75}})
    assert design.covariates["site"] == {"A": 0.25, "B": 0.75}
    for bad in ({"A": 0.5, "B": 0.6}, {"A": 1.0}, {"A": -0.5, "B": 1.5}):
        with pytest.raises(ValueError, match=r"covariates\['site'\]"):
            Design(covariates={"site": bad})
    assert Truth(effects={"gamma_site": {"B": 2}}).params["gamma_site"] == {"B": 2.0}
    with pytest.raises(ValueError, match=r"effects\['gamma_site'\].*finite"):
        Truth(effects={"gamma_site": {"B": np.inf}})


def test_a_categorical_design_covariate_cannot_take_a_table_column_name():
    with pytest.raises(ValueError, match="names other than participant, sex"):
        Design(covariates={"sex": {"f": 0.5, "m": 0.5}})


def test_null_truth_has_no_pretreatment_effect_and_keeps_the_rest():
    truth = Truth(beta_N=-0.03, gamma_N=-2.0, gamma_DN=0.5, sigma_y=4.0)
    null = truth.null()
    est = null.estimands("joint")
    assert est["ntx_glu"] == 0 and est["ntx_imp_total"] == 0 and est["ntx_glu_male"] == 0
    assert null.sigma_y == 4.0 and null.gamma_D == truth.gamma_D

"""Model specs: loading, validation (one SpecError naming every bad key) and hashing.

Structural tier: nothing is compiled or sampled here.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import tomllib

import numpy as np
import pytest

import kbayes as kb
from kbayes.simulation import truth_values
from kbayes.spec import MODELS_DIR, parse_spec

BUILTIN = ["glutamate", "improvement", "joint", "madrs_items", "trajectory", "two_stage"]


def builtin_source(name: str) -> dict:
    """The plain data of a built-in spec, as read from its TOML file."""
    return tomllib.loads((MODELS_DIR / f"{name}.toml").read_text())


# --- a small TOML writer (no TOML writer is a dependency) -------------------------------
def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def dump_toml(source: dict) -> str:
    """TOML text of a spec dict: scalars first, then one table per section or entry."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in source.items() if not isinstance(v, dict)]
    for k, v in source.items():
        if not isinstance(v, dict):
            continue
        if v and all(isinstance(x, dict) for x in v.values()):  # e.g. [priors.beta0]
            for name, table in v.items():
                lines += ["", f"[{_key(k)}.{_key(name)}]"]
                lines += [f"{_key(a)} = {_value(b)}" for a, b in table.items()]
        else:
            lines += ["", f"[{_key(k)}]"]
            lines += [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
    return "\n".join(lines) + "\n"


def write_spec(tmp_path, source: dict, name: str = "spec.toml"):
    path = tmp_path / name
    path.write_text(dump_toml(source))
    return path


# --- loading ---------------------------------------------------------------------------
def test_builtin_specs_are_listed():
    assert kb.builtin_specs() == BUILTIN


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_spec_loads(name):
    spec = kb.load_spec(name)
    assert isinstance(spec, kb.ModelSpec)
    assert spec.name == name
    assert spec.estimands, "a spec without estimands reports nothing"
    for est in spec.estimands.values():
        assert est.label and est.unit
    assert re.fullmatch(r"[0-9a-f]{64}", spec.hash)


def test_load_spec_passes_a_spec_through():
    spec = kb.load_spec("joint")
    assert kb.load_spec(spec) is spec


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(kb.SpecError) as err:
        kb.load_spec("jiont")
    msg = str(err.value)
    assert "'jiont'" in msg
    for name in BUILTIN:
        assert name in msg


def test_spec_error_is_a_value_error():
    assert issubclass(kb.SpecError, ValueError)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(kb.SpecError, match="does not exist"):
        kb.load_spec(tmp_path / "nope.toml")


def test_invalid_toml_is_a_spec_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[priors\n")
    with pytest.raises(kb.SpecError, match="not valid TOML"):
        kb.load_spec(path)


def test_spec_is_frozen():
    spec = kb.load_spec("joint")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"


# --- validation: each problem names its key --------------------------------------------
def test_unknown_top_level_key_is_named(tmp_path):
    src = builtin_source("joint") | {"likelyhood": "normal"}
    with pytest.raises(kb.SpecError, match=r"likelyhood: unknown key"):
        kb.load_spec(write_spec(tmp_path, src))


def test_unknown_estimand_key_is_named():
    src = builtin_source("joint")
    src["estimands"]["ntx_glu"]["lable"] = "typo"
    with pytest.raises(kb.SpecError, match=r"estimands\.ntx_glu\.lable: unknown key"):
        parse_spec(src)


@pytest.mark.parametrize(
    ("prior", "pattern"),
    [
        ({"distribution": "Nromal", "mu": 0, "sigma": 1}, r"priors\.beta_N: "),
        ({"mu": 0, "sigma": 1}, r"priors\.beta_N: expected a table with a 'distribution'"),
        ("Normal(0, 1)", r"priors\.beta_N: expected a table"),
        (
            {"distribution": "Normal", "mu": 0, "sigma": {"distribution": "Nope", "sigma": 1}},
            r"priors\.beta_N\.sigma: ",
        ),
    ],
    ids=["unknown-distribution", "no-distribution", "not-a-table", "bad-hyperprior"],
)
def test_bad_prior_is_named(prior, pattern):
    src = builtin_source("joint")
    src["priors"]["beta_N"] = prior
    with pytest.raises(kb.SpecError, match=pattern) as err:
        parse_spec(src)
    assert "priors.beta_N: missing" not in str(err.value), "a bad prior is not a missing one"


@pytest.mark.parametrize(
    "cutpoints",
    [
        {"distribution": "StudentT", "nu": 4, "mu": [0.0] * 6, "sigma": 1.5},
        {"distribution": "Normal", "mu": [0.0] * 6, "tau": 0.4},
    ],
    ids=["other-distribution", "precision-not-sigma"],
)
def test_cutpoint_prior_the_model_cannot_honour_is_refused(cutpoints):
    """The item model builds ordered Normal cutpoints: anything else would be ignored."""
    src = builtin_source("madrs_items")
    src["priors"]["cutpoints"] = {**cutpoints, "dims": ["cutpoint"]}
    with pytest.raises(kb.SpecError, match=r"priors\.cutpoints: must be a Normal"):
        parse_spec(src)


@pytest.mark.parametrize("dims", [["participants"], "participant", ["participant", 1]])
def test_prior_with_unknown_dims_is_named(dims):
    """A dim typo is caught when the spec is read, not as a KeyError when the model is built."""
    src = builtin_source("joint")
    src["priors"]["u"]["dims"] = dims
    with pytest.raises(kb.SpecError, match=r"priors\.u\.dims: expected a list of dim names"):
        parse_spec(src)


def test_missing_and_superfluous_priors_are_named():
    src = builtin_source("glutamate")
    del src["priors"]["beta_NM"]
    assert parse_spec(copy.deepcopy(src)).defaulted == ("beta_NM",)  # the level's default
    del src["priors"]["default"]
    src["priors"]["gamma_N"] = {"distribution": "Normal", "mu": 0, "sigma": 5}
    with pytest.raises(kb.SpecError) as err:
        parse_spec(src)
    msg = str(err.value)
    assert "priors.beta_NM: missing" in msg
    assert "priors.gamma_N: not a parameter of this model" in msg


def test_estimand_referring_to_nothing_is_named():
    src = builtin_source("joint")
    src["estimands"]["ntx_glu"]["expr"] = "beta_N + beta_X"
    with pytest.raises(kb.SpecError, match=r"estimands\.ntx_glu\.expr: .*beta_X"):
        parse_spec(src)


def test_estimand_of_a_term_the_model_lacks_is_named():
    """gamma_NM is a real coefficient, but not of a model without the condition:sex term."""
    src = builtin_source("improvement")
    src["terms"]["improvement"].remove("condition:sex")
    del src["priors"]["gamma_NM"]
    with pytest.raises(kb.SpecError, match=r"estimands\.ntx_imp_direct_female\.expr: .*gamma_NM"):
        parse_spec(src)


@pytest.mark.parametrize(
    "expr", ["__import__('os').system('true')", "beta_N.real", "[beta_N][0]", "max(beta_N, 0)"]
)
def test_estimand_expressions_are_arithmetic_only(expr):
    src = builtin_source("glutamate")
    src["estimands"]["ntx_glu"]["expr"] = expr
    with pytest.raises(kb.SpecError, match=r"estimands\.ntx_glu\.expr: cannot parse"):
        parse_spec(src)


def test_every_problem_is_reported_at_once():
    src = builtin_source("joint")
    src["likelihood"] = "cauchy"
    src["profile"] = "sigmoid"
    src["terms"]["glutamate"].append("sex:period")  # registered parts, unregistered term
    src["estimands"]["ntx_glu"]["rope"] = [1, -1]
    del src["estimands"]["direct"]["unit"]
    with pytest.raises(kb.SpecError) as err:
        parse_spec(src, "mine.toml")
    msg = str(err.value)
    assert "mine.toml" in msg
    for key in (
        "likelihood:",
        "profile:",
        "terms.glutamate: unknown term 'sex:period'",
        "estimands.ntx_glu.rope:",
        "estimands.direct.unit: missing",
    ):
        assert key in msg, f"{key!r} not named in:\n{msg}"


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"schema_version": 2}, r"schema_version: expected 1"),
        ({"levels": ["mrs", "glutamate", "imaging"]}, r"levels: unknown level 'imaging'"),
        ({"levels": []}, r"levels: at least one level"),
        ({"delta": "guessed"}, r"delta: expected one of"),
        ({"ci_prob": 1.5}, r"ci_prob: must be between 0 and 1"),
        ({"ci_prob": "0.9"}, r"ci_prob: expected float"),
        ({"correlated_effects": True}, r"priors\.uv_rho: missing"),
        (
            {"constants": {"delta_center": 0.05, "delta_scale": "x", "baseline_center": 30}},
            r"constants\.delta_scale: expected a finite number",
        ),
    ],
)
def test_bad_top_level_values_are_named(change, pattern):
    src = builtin_source("joint") | change
    with pytest.raises(kb.SpecError, match=pattern):
        parse_spec(src)


def test_two_stage_needs_a_valid_first_stage():
    src = builtin_source("two_stage") | {"first_stage": "glutamat"}
    with pytest.raises(kb.SpecError, match=r"first_stage: .*'glutamat'"):
        parse_spec(src)


def test_normal_likelihood_needs_no_nu():
    src = builtin_source("improvement") | {"likelihood": "normal"}
    with pytest.raises(kb.SpecError, match=r"priors\.nu: not a parameter"):
        parse_spec(src)
    del src["priors"]["nu"]
    assert parse_spec(src).likelihood == "normal"


# --- hashing ---------------------------------------------------------------------------
def test_hash_is_sha256_of_the_canonical_form():
    src = builtin_source("joint")
    canonical = json.dumps(src, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert kb.load_spec("joint").hash == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("name", BUILTIN)
def test_spec_survives_write_read_with_the_same_hash(tmp_path, name):
    """A spec written out (other layout, no comments) and read back is the same spec."""
    spec = kb.load_spec(name)
    path = write_spec(tmp_path, spec.to_toml_dict(), f"{name}_copy.toml")
    assert path.read_text() != (MODELS_DIR / f"{name}.toml").read_text()
    again = kb.load_spec(path)
    assert again.hash == spec.hash
    assert again == spec


def test_comments_and_whitespace_do_not_change_the_hash(tmp_path):
    text = (MODELS_DIR / "joint.toml").read_text()
    noisy = "# pre-registered 2025-01-01\n\n" + text.replace(" = ", "   =   ").replace(
        "\n[", "\n\n# a comment\n["
    )
    path = tmp_path / "joint_noisy.toml"
    path.write_text(noisy)
    assert kb.load_spec(path).hash == kb.load_spec("joint").hash


def test_a_prior_change_changes_the_hash(tmp_path):
    text = (MODELS_DIR / "joint.toml").read_text()
    old = '[priors.beta_N]        # pretreatment effect on the change\ndistribution = "Normal"'
    changed = text.replace(old + "\nmu = 0\nsigma = 0.05", old + "\nmu = 0\nsigma = 0.06")
    assert changed != text
    path = tmp_path / "joint_changed.toml"
    path.write_text(changed)
    spec = kb.load_spec(path)
    assert spec.priors["beta_N"].parameters["sigma"] == 0.06
    assert spec.hash != kb.load_spec("joint").hash


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["priors"]["v"]["sigma"].update(sigma=4),
        lambda s: s["estimands"]["ntx_glu"].update(rope=[-0.01, 0.01]),
        lambda s: s["constants"].update(delta_scale=0.04),
        lambda s: s.update(likelihood="normal") or s["priors"].pop("nu"),
    ],
    ids=["hyperprior", "rope", "constant", "likelihood"],
)
def test_any_value_change_changes_the_hash(edit):
    src = copy.deepcopy(builtin_source("joint"))
    edit(src)
    assert parse_spec(src).hash != kb.load_spec("joint").hash


# --- priors and estimand expressions ---------------------------------------------------
def test_priors_follow_the_spec():
    spec = kb.load_spec("joint")
    beta_n = spec.priors["beta_N"]
    assert beta_n.distribution == "Normal"
    assert beta_n.parameters == {"mu": 0, "sigma": 0.05}
    u = spec.priors["u"]
    assert u.dims == ("participant",)
    assert u.centered is False
    assert u.parameters["sigma"].distribution == "HalfNormal"
    assert spec.priors["a"].centered is True


def test_estimand_values_follow_their_expressions():
    """Estimands evaluated on known parameters (here the simulator's default truth)."""
    p = kb.Truth().params
    est = kb.load_spec("joint").estimand_values(p)
    assert est["ntx_glu"] == p["beta_N"]
    assert est["ntx_glu_male"] == pytest.approx(p["beta_N"] + 0.5 * p["beta_NM"])
    assert est["ntx_glu_female"] == pytest.approx(p["beta_N"] - 0.5 * p["beta_NM"])
    assert est["slope_placebo"] == pytest.approx(0.01 * p["gamma_D"] / 0.05)  # per 0.01
    # d1 - d0 = beta_N / delta_scale; total = direct + indirect
    total = (
        p["gamma_N"]
        + p["gamma_D"] * p["beta_N"] / 0.05
        + p["gamma_DN"] * ((p["beta0"] + p["beta_N"] - 0.05) / 0.05)
    )
    assert est["ntx_imp_total"] == pytest.approx(total)
    assert est["indirect"] + est["direct"] == pytest.approx(est["ntx_imp_total"])
    assert est["prop_mediated"] == pytest.approx(est["indirect"] / est["ntx_imp_total"])
    reference = p["gamma0"] + p["gamma_D"] * (p["beta0"] - 0.05) / 0.05
    assert est["attenuation_pct"] == pytest.approx(-100 * total / reference)
    # the documented default truth: -3.4 points, i.e. 28 % attenuation
    assert est["ntx_imp_total"] == pytest.approx(-3.4)
    assert est["attenuation_pct"] == pytest.approx(28.3, abs=0.1)


def test_estimands_undefined_at_a_null_truth_are_nan_not_errors():
    """A null truth (no effect anywhere) leaves the mediated share 0 / 0: NaN, so that power
    and threshold calibration under the null can record the other estimands."""
    est = kb.Truth(beta_N=0, beta_NM=0, gamma_N=0).estimands("joint")
    assert est["ntx_imp_total"] == 0 and np.isnan(est["prop_mediated"])
    assert est["ntx_glu"] == 0


def test_estimands_evaluate_elementwise_on_arrays():
    p = {k: np.full(3, v) for k, v in kb.Truth().params.items()}
    p["beta_N"] = np.array([-0.02, 0.0, 0.02])
    est = kb.load_spec("glutamate").estimand_values(p)
    np.testing.assert_allclose(est["ntx_glu_male"], p["beta_N"] + 0.5 * p["beta_NM"])


# --- covariates, extends, with_priors / with_terms (issue 17) ----------------------------
AGE_SPEC = {
    "extends": "joint",
    "terms": {"improvement": "... + age + age:condition"},
    "covariates": {"age": {"center": "mean", "scale": "sd"}},
    "priors": {"default": {"improvement": {"distribution": "Normal", "mu": 0, "sigma": 5}}},
}


def test_a_spec_that_extends_joint_adds_covariate_terms_with_predictable_names():
    spec = parse_spec(copy.deepcopy(AGE_SPEC), origin="age.toml")
    joint = kb.load_spec("joint")
    assert spec.name == "age"
    assert spec.terms["improvement"] == (*joint.terms["improvement"], "age", "age:condition")
    assert spec.terms["glutamate"] == joint.terms["glutamate"]
    assert spec.coefficient("improvement", "age:condition") == "gamma_age_x_condition"
    assert spec.covariates == {"age": {"center": "mean", "scale": "sd"}}
    assert set(spec.defaulted) == {"gamma_age", "gamma_age_x_condition"}  # joint's own stay
    assert spec.priors["gamma_age"].parameters["sigma"] == 5
    assert spec.priors["gamma_N"] == joint.priors["gamma_N"]
    assert "extends" not in spec.source and spec.hash != joint.hash  # the resolved spec
    assert spec.term_labels()["gamma_age"] == "improvement per SD of age"


def test_a_formula_gives_the_same_terms_as_the_list():
    joint = kb.load_spec("joint")
    formula = "condition * sex + dglx * condition + baseline + period"
    spec = joint.with_terms(improvement=formula)
    assert set(spec.terms["improvement"]) == set(joint.terms["improvement"])
    with pytest.raises(kb.SpecError, match="intercept cannot be removed"):
        joint.with_terms(improvement="0 + condition")


def test_with_priors_replaces_one_prior_and_changes_the_hash():
    from pymc_extras.prior import Prior

    joint = kb.load_spec("joint")
    new = joint.with_priors(beta_N=Prior("Normal", mu=0, sigma=0.02))
    assert new.priors["beta_N"].parameters["sigma"] == 0.02
    assert joint.priors["beta_N"].parameters["sigma"] != 0.02  # the original is untouched
    assert new.hash != joint.hash
    assert {k: v for k, v in new.priors.items() if k != "beta_N"} == {
        k: v for k, v in joint.priors.items() if k != "beta_N"
    }


def test_a_covariate_coefficient_without_a_prior_is_a_spec_error_naming_it():
    source = builtin_source("joint")
    del source["priors"]["default"]
    source["terms"]["improvement"].append("age")
    with pytest.raises(kb.SpecError, match=r"priors\.gamma_age: missing"):
        parse_spec(source)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"covariates": {"age": {"centre": "mean"}}}, r"covariates\.age\.centre: unknown key"),
        ({"covariates": {"age": {"scale": -1}}}, r"covariates\.age\.scale: expected"),
        ({"covariates": {"bmi": {}}}, r"covariates\.bmi: not used by any term"),
        ({"terms": {"improvement": ["condition", "my-age"]}}, "not covariate names"),
        ({"extends": "nonexistent"}, "extends"),
    ],
)
def test_bad_covariate_settings_are_spec_errors(change, message):
    source = copy.deepcopy(AGE_SPEC) | change
    with pytest.raises(kb.SpecError, match=message):
        parse_spec(source)


def test_extends_merges_the_default_priors_level_by_level():
    child = {"extends": "joint", "terms": {"glutamate": "... + age"},
             "priors": {"default": {"glutamate": {"distribution": "Normal", "mu": 0,
                                                  "sigma": 0.01}}}}  # fmt: skip
    spec = parse_spec(child, origin="age.toml")
    joint = builtin_source("joint")["priors"]["default"]
    assert spec.source["priors"]["default"]["improvement"] == joint["improvement"]
    assert spec.priors["beta_age"].parameters["sigma"] == 0.01
    adjusted = spec.with_terms(improvement="... + age")  # still has the parent's default
    assert adjusted.priors["gamma_age"].parameters["sigma"] == joint["improvement"]["sigma"]


SITE = {"levels": ["A", "B", "C"]}


def test_a_categorical_covariate_gets_a_coefficient_with_a_dim_over_its_levels():
    joint = kb.load_spec("joint")
    spec = joint.with_terms(improvement="... + site + site:condition").with_covariates(
        site=SITE | {"reference": "B"}
    )
    assert spec.categorical == {"site": ("A", "C")}
    assert spec.covariates["site"] == SITE | {"reference": "B", "coding": "treatment"}
    assert spec.priors["gamma_site"].dims == ("site",)  # the level default, over the levels
    assert spec.priors["gamma_site_x_condition"].dims == ("site",)
    assert spec.categorical_coefficients == {"gamma_site": "site", "gamma_site_x_condition": "site"}
    assert spec.term_labels()["gamma_site"] == "improvement by site (vs B)"
    assert {"gamma_site_A", "gamma_site_C"} <= spec.parameters()  # for estimands


def test_level_values_express_a_truth_in_the_specs_coding():
    """A Truth's {level: effect} (levels not named: 0) as the spec's coefficients: against
    the reference (treatment) or the mean over levels (sum); draws by their last axis."""
    base = kb.load_spec("joint").with_terms(improvement="... + site")
    effects = {"gamma_site": {"B": 3.0, "C": -1.5}}
    treatment = base.with_covariates(site=SITE | {"reference": "B"})
    assert treatment.level_values(effects) == {"gamma_site_A": -3.0, "gamma_site_C": -4.5}
    total = base.with_covariates(site=SITE | {"coding": "sum"})
    assert total.level_values(effects) == pytest.approx({"gamma_site_B": 2.5, "gamma_site_C": -2.0})
    draws = np.arange(12.0).reshape(3, 2, 2)
    np.testing.assert_array_equal(total.level_values({"gamma_site": draws})["gamma_site_C"],
                                  draws[..., 1])  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"levels": ["A"]}, r"covariates\.site\.levels: expected two or more"),
        ({"levels": ["A", "A"]}, r"covariates\.site\.levels: expected two or more distinct"),
        (SITE | {"reference": "D"}, r"covariates\.site\.reference: 'D' is not one of"),
        (SITE | {"coding": "helmert"}, r"covariates\.site\.coding: 'helmert' is not one of"),
        (SITE | {"center": "mean"}, r"covariates\.site\.center: unknown key for a categorical"),
    ],
)
def test_bad_categorical_settings_are_spec_errors(settings, message):
    spec = kb.load_spec("joint").with_terms(improvement="... + site")
    with pytest.raises(kb.SpecError, match=message):
        spec.with_covariates(site=settings)


def test_categorical_terms_that_cannot_be_built_are_spec_errors():
    source = builtin_source("joint")
    source["terms"]["improvement"] += ["site:arm", "session"]
    source["covariates"] = {"site": SITE, "arm": {"levels": ["x", "y"]}}
    with pytest.raises(kb.SpecError) as err:
        parse_spec(source)
    assert "'site:arm' has more than one categorical covariate" in str(err.value)
    assert "['session'] in 'session' are names of model dims" in str(err.value)
    source = builtin_source("joint")
    source["terms"]["improvement"].append("site")
    source["covariates"] = {"site": SITE}
    source["priors"]["gamma_site"] = {"distribution": "Normal", "mu": 0, "sigma": 1,
                                      "dims": ["participant"]}  # fmt: skip
    with pytest.raises(kb.SpecError, match=r"priors\.gamma_site\.dims: expected \['site'\]"):
        parse_spec(source)


def test_p_above_is_the_probability_of_a_normal_plus_student_t_sum():
    from kbayes.expressions import p_above

    rng = np.random.default_rng(0)
    x = 0.3 + 2.0 * rng.standard_normal(1_000_000) + 1.5 * rng.standard_t(4, 1_000_000)
    assert p_above(2.0, 0.3, 2.0, 1.5, 4.0) == pytest.approx((x >= 2.0).mean(), abs=0.002)
    assert p_above(1.0, 0.0, 1.0, 1.0, np.inf) == pytest.approx(0.5 * math.erfc(0.5))


def test_response_and_remission_estimands_agree_with_simulated_sessions():
    """The joint spec's response and remission probabilities at the true parameters equal
    the shares of simulated sessions (latent improvement, baseline at baseline_center)
    that respond or remit, per condition: the predictive formula is the simulator's model."""
    design = kb.Design(n=20000, dropout=0.0, baseline_mean=30.0, baseline_sd=0.0,
                       baseline_session_sd=0.0)  # fmt: skip
    truth = kb.Truth(beta_NM=0.0, gamma_P=0.0, gamma_N=-4.0)
    sim = kb.simulate(design, truth, seed=3)
    spec = kb.load_spec("joint")
    expected = truth.estimands(spec)
    latent = sim.truth.latent["improvement"].to_numpy()
    active = (sim.sessions["condition"] == design.config.active).to_numpy()
    c = spec.constants
    for name, at in (("response", c["response_fraction"] * 30.0),
                     ("remission", 30.0 - c["remission_score"])):  # fmt: skip
        for condition, rows in (("placebo", ~active), ("naltrexone", active)):
            share = (latent[rows] >= at).mean()
            se = np.sqrt(share * (1 - share) / rows.sum())
            assert abs(expected[f"{name}_{condition}"] - share) < 4 * se, (name, condition)
    assert expected["response_rd"] < 0 and expected["response_or"] < 1  # gamma_N < 0


@pytest.mark.parametrize(
    ("questions", "pattern"),
    [
        ([{"ask": "Q?", "estimand": "nope", "yes_if": "< 0"}], r"questions\[0\]\.estimand: 'nope'"),
        ([{"ask": "Q?", "estimand": "ntx_glu", "yes_if": "negative"}], r"questions\[0\]\.yes_if"),
        ([{"ask": "Q?", "estimand": "ntx_glu", "yes_if": "<= 0"}], r"questions\[0\]\.yes_if"),
        (
            [{"ask": "Q?", "estimand": "ntx_glu"}],
            r"questions\[0\]: expected a table with ask, estimand, yes_if",
        ),
        (
            [{"ask": "Did {actve} work?", "estimand": "ntx_glu", "yes_if": "< 0"}],
            r"questions\[0\]\.ask: \{actve\} is neither a trial name",
        ),
    ],
)
def test_bad_questions_are_named(questions, pattern):
    with pytest.raises(kb.SpecError, match=pattern):
        parse_spec(builtin_source("joint") | {"questions": questions})


def test_questions_parse_in_order_with_their_side():
    """joint's questions: in file order, each naming an estimand and the side that says yes."""
    spec = kb.load_spec("joint")
    assert [q.estimand for q in spec.questions][:2] == ["ntx_glu", "ntx_imp_total"]
    slope = next(q for q in spec.questions if q.estimand == "slope_placebo")
    assert (slope.below, slope.threshold) == (False, 0.0)
    assert all(q.estimand in spec.estimands for q in spec.questions)


def test_label_placeholders_must_be_trial_names_or_constants():
    """A typo in a label's placeholder is a SpecError at parse time, not a KeyError after the
    fit; a constant (with a format spec) is allowed."""
    src = builtin_source("joint")
    src["estimands"]["ntx_glu"] = src["estimands"]["ntx_glu"] | {"label": "{metabolit} effect"}
    with pytest.raises(kb.SpecError, match=r"estimands\.ntx_glu\.label: \{metabolit\}"):
        parse_spec(src)
    src["estimands"]["ntx_glu"]["label"] = "effect per {slope_step:g} units"
    assert parse_spec(src).estimands["ntx_glu"].label == "effect per {slope_step:g} units"


def test_a_parallel_design_leaves_out_what_one_session_cannot_separate():
    """joint for a parallel trial: no a_session, e, v (their SDs the constant 0, so the
    response estimands' between-session SD is u's alone) and no period terms; the rest
    unchanged; a different hash; the same spec again for the same design."""
    joint = kb.load_spec("joint")
    parallel = joint.for_design("parallel")
    assert parallel.design == "parallel" and joint.for_design("crossover") is joint
    assert set(parallel.dropped) == {"a_session", "e", "v", "beta_P", "gamma_P"}
    assert not set(parallel.dropped) & (set(parallel.priors) | set(parallel.parameters()))
    assert parallel.integrate == ("a", "u")
    assert {k: parallel.constants[k] for k in ("a_session_sigma", "e_sigma", "v_sigma")} == {
        "a_session_sigma": 0.0, "e_sigma": 0.0, "v_sigma": 0.0
    }  # fmt: skip
    assert "period" not in parallel.terms["glutamate"] + parallel.terms["improvement"]
    assert set(parallel.estimands) == set(joint.estimands) and parallel.hash != joint.hash
    p = kb.Truth().params | {"v_sigma": 0.0, "e_sigma": 0.0}
    assert parallel.estimand_values(p)["response_placebo"] == pytest.approx(
        joint.estimand_values(p)["response_placebo"]
    )
    correlated = builtin_source("joint") | {"correlated_effects": True, "design": "parallel"}
    with pytest.raises(kb.SpecError, match="correlated_effects: a parallel trial cannot"):
        parse_spec(correlated)
    with pytest.raises(kb.SpecError, match="design: expected one of"):
        parse_spec(builtin_source("joint") | {"design": "cluster"})
    # nutpie's mass matrix: low-rank for the parallel design's intercept-slope ridge
    assert (joint.adaptation, parallel.adaptation) == ("diag", "low_rank")
    both = builtin_source("joint") | {"design": "parallel", "adaptation": "diag"}
    assert parse_spec(both).adaptation == "diag"
    with pytest.raises(kb.SpecError, match="adaptation: expected 'diag' or 'low_rank'"):
        parse_spec(builtin_source("joint") | {"adaptation": "dense"})
    # NUTS's target acceptance: 0.95 for the parallel design's divergences
    assert (joint.target_accept, parallel.target_accept) == (0.9, 0.95)
    assert parse_spec(both | {"target_accept": 0.8}).target_accept == 0.8
    with pytest.raises(kb.SpecError, match="target_accept: must be between 0 and 1"):
        parse_spec(builtin_source("joint") | {"target_accept": 1.5})


def test_a_spec_for_three_conditions_has_one_effect_per_pretreatment():
    """for_trial with three conditions: the pretreatment coefficients get a condition dim,
    the estimands that use them give a value per condition and per contrast (an odds
    ratio's contrast a ratio), the others one value; two conditions leave the spec as it is."""
    joint = kb.load_spec("joint")
    assert joint.for_trial(kb.TrialConfig()) is joint
    three = joint.for_trial(kb.TrialConfig(conditions=("placebo", "naltrexone", "nalmefene")))
    assert three.actives == ("naltrexone", "nalmefene") and three.hash != joint.hash
    assert (joint.adaptation, three.adaptation) == ("diag", "low_rank")  # docs/calibration.md
    assert three.priors["gamma_DN"].dims == ("condition",)
    assert three.priors["gamma_D"].dims is None
    assert three.estimand_dims["slope_placebo"] == ()
    assert all(three.estimand_dims[n] == ("condition",) for n in ("ntx_glu", "response_or"))
    truth = kb.Truth(gamma_N={"naltrexone": -4.0, "nalmefene": -1.0})
    values = three.estimand_values(truth.params)
    assert list(values) == list(three.estimand_rows)
    one = joint.estimand_values(truth.updated({"gamma_N": -1.0}).params)
    assert values["ntx_imp_total[nalmefene]"] == pytest.approx(one["ntx_imp_total"])
    assert values["slope_placebo"] == pytest.approx(one["slope_placebo"])
    total, odds = (
        {x: values[f"{name}[{x}]"] for x in ("naltrexone", "nalmefene", "nalmefene vs naltrexone")}
        for name in ("ntx_imp_total", "response_or")
    )
    assert total["nalmefene vs naltrexone"] == pytest.approx(
        total["nalmefene"] - total["naltrexone"]
    )
    assert odds["nalmefene vs naltrexone"] == pytest.approx(odds["nalmefene"] / odds["naltrexone"])
    draws = {k: np.broadcast_to(v, (2, 3, *np.shape(v)))  # (chain, draw[, condition])
             for k, v in truth_values(three, truth).items() if not isinstance(v, dict)}  # fmt: skip
    from_draws = three.estimand_values(draws)["ntx_imp_total[nalmefene]"]
    assert from_draws.shape == (2, 3) and np.allclose(from_draws, one["ntx_imp_total"])
    with pytest.raises(kb.SpecError, match="items level models two conditions"):
        kb.load_spec("madrs_items").for_trial(kb.TrialConfig(conditions=("a", "b", "c")))

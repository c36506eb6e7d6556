"""Spec + TrialData -> pm.Model: dims, data containers, coding, non-centring.

Structural tier: models are built but nothing is compiled or sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pytensor.graph.traversal import ancestors

import kbayes as kb
from kbayes.build import build_model, coded_covariate, model_inputs
from kbayes.spec import load_spec as _load
from kbayes.spec import parse_spec

BUILTIN = ["glutamate", "improvement", "joint", "madrs_items", "two_stage"]
#: pm.Data containers each spec's model holds.
DATA = {
    "glutamate": {"session_participant", "c", "m", "p", "mrs_session", "g", "glx_observed",
                  "glx_se", "session_period"},
    "improvement": {"session_participant", "c", "m", "p", "improvement_observed", "baseline_c",
                    "dglx_obs", "rating_session"},
    "joint": {"session_participant", "c", "m", "p", "mrs_session", "g", "glx_observed",
              "glx_se", "improvement_observed", "baseline_c", "session_period", "rating_session"},
    "madrs_items": {"session_participant", "c", "m", "p", "item_session", "item_visit",
                    "item_index", "item_score"},
}  # fmt: skip
DATA["two_stage"] = DATA["improvement"]
#: Observed variables -> (dim, pm.Data holding the observations).
OBSERVED = {
    "glx": ("mrs_obs", "glx_observed"),
    "improvement": ("rating", "improvement_observed"),  # one per session with a day-1 rating
    "items": ("item_obs", "item_score"),
}


def build(name, data, **kwargs):
    spec = _load(name) if isinstance(name, str) else name
    if spec.delta == "two_stage" and "dglx" not in kwargs:
        kwargs["dglx"] = data.session_table()["dglx_obs"].to_numpy()
    integrated = kwargs.pop("integrated", False)  # the generative model unless asked
    return build_model(spec, model_inputs(spec, data, **kwargs), integrated=integrated)


@pytest.fixture(scope="module")
def models(example):
    """Every built-in spec built on the example (no compilation)."""
    return {name: build(name, example) for name in BUILTIN}


@pytest.fixture(scope="module")
def sessions(example):
    return example.session_table()


def constant(model, name):
    return model[name].get_value()


# --- dims and coords -------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_dims_and_coords(models, example, sessions, name):
    model = models[name]
    coords = {k: list(v) for k, v in model.coords.items()}
    assert coords["participant"] == example.coords["participant"]
    assert len(coords["participant"]) == 26
    expected_sessions = [
        f"{p}/{q}" for p, q in zip(sessions.participant, sessions.period, strict=True)
    ]
    assert coords["session"] == expected_sessions
    assert len(coords["session"]) == len(example.sessions) == 50
    spec = _load(name)
    if "mrs" in spec.levels:
        assert len(coords["mrs_obs"]) == len(example.mrs) == 295
        assert coords["mrs_obs"][0] == "{}/{}/{}".format(*example.mrs.iloc[0][
            ["participant", "period", "block"]])  # fmt: skip
    else:
        assert "mrs_obs" not in coords
    if "items" in spec.levels:
        assert coords["item"] == [f"item{k}" for k in range(1, 11)]
        assert coords["cutpoint"] == ["0|1", "1|2", "2|3", "3|4", "4|5", "5|6"]
        assert len(coords["item_obs"]) == 50 * 2 * 10
    else:
        assert not {"item", "cutpoint", "item_obs"} & set(coords)


@pytest.mark.parametrize("name", BUILTIN)
def test_data_are_pm_data_with_dims(models, name):
    model = models[name]
    assert {d.name for d in model.data_vars} == DATA[name]
    for var in model.data_vars:
        dim = model.named_vars_to_dims[var.name]
        assert len(dim) == 1
        assert len(model.coords[dim[0]]) == var.get_value().shape[0], var.name


@pytest.mark.parametrize("name", BUILTIN)
def test_observations_are_pm_data_with_dims(models, name):
    model = models[name]
    observed = {rv.name for rv in model.observed_RVs}
    assert observed, "a model without observations"
    for rv_name in observed:
        dim, data_name = OBSERVED[rv_name]
        assert model.named_vars_to_dims[rv_name] == (dim,)
        value = model.rvs_to_values[model[rv_name]]  # the data itself, or a cast of it
        assert model[data_name] in set(ancestors([value])), rv_name


def test_parameter_dims_follow_the_spec(models):
    model = models["joint"]
    dims = model.named_vars_to_dims
    assert dims["u"] == ("participant",)
    assert dims["v"] == ("participant",)
    assert dims["a"] == ("participant",)
    assert dims["e"] == ("session",)
    assert dims["a_session"] == ("session",)
    assert dims["delta"] == ("session",)
    for scalar in ("beta0", "beta_N", "gamma_D", "sigma_y", "nu", "alpha0"):
        assert scalar not in dims or dims[scalar] in ((), None)
    items = models["madrs_items"].named_vars_to_dims
    assert items["item_loc"] == ("item",)
    assert items["cutpoints"] == ("cutpoint",)
    assert items["w_session"] == ("session",)


# --- priors: every parameter from the spec, non-centred where it says so ----------------
@pytest.mark.parametrize("name", BUILTIN)
def test_every_prior_becomes_a_variable(models, name):
    model, spec = models[name], _load(name)
    for prior_name, prior in spec.priors.items():
        if prior_name == "uv_rho":
            continue
        assert prior_name in model.named_vars, prior_name
        hyper = [k for k, v in prior.parameters.items() if hasattr(v, "distribution")]
        for k in hyper:
            assert f"{prior_name}_{k}" in model.named_vars


@pytest.mark.parametrize("name", BUILTIN)
def test_random_effects_are_noncentred_where_the_prior_says(models, name):
    model, spec = models[name], _load(name)
    free = {rv.name for rv in model.free_RVs}
    deterministic = {d.name for d in model.deterministics}
    hierarchical = {k: p for k, p in spec.priors.items() if "sigma" in p.parameters and p.dims}
    assert hierarchical, "every spec has participant effects"
    for k, prior in hierarchical.items():
        if prior.centered:
            assert k in free and f"{k}_offset" not in model.named_vars, k
        else:
            assert f"{k}_offset" in free and k in deterministic, k


def test_joint_participant_effects_are_noncentred(models):
    """u (glutamate) and v (improvement) participant effects use the non-centred form."""
    model = models["joint"]
    assert "u_offset" in model.named_vars
    assert "v_offset" in model.named_vars
    assert "e_offset" in model.named_vars
    assert "a_offset" not in model.named_vars  # the spec keeps a centred (centered = true)


def test_centring_follows_an_edited_prior(example):
    src = _load("joint").to_toml_dict()
    src = {**src, "priors": {**src["priors"], "a": {**src["priors"]["a"], "centered": False}}}
    model = build(parse_spec(src, "a-noncentred"), example)
    assert "a_offset" in model.named_vars


def test_a_new_term_is_one_registry_entry(example, monkeypatch):
    """A toy term registered once (condition x period on the glutamate change) is accepted by
    the spec, gets its coefficient in the model and enters the mean as c p; the population
    mean the plots draw includes it."""
    from kbayes.build import population_mean
    from kbayes.terms import TERMS, Term

    monkeypatch.setitem(TERMS["glutamate"], "condition:period", Term("beta_NP", "NP"))
    src = _load("glutamate").to_toml_dict()
    src = {
        **src,
        "terms": {"glutamate": [*src["terms"]["glutamate"], "condition:period"]},
        "priors": {**src["priors"], "beta_NP": {"distribution": "Normal", "sigma": 0.05}},
    }
    spec = parse_spec(src, "toy-term")
    assert "beta_NP" in spec.parameters()
    model = build(spec, example)
    point = {name: 0.01 * (k + 1) for k, name in enumerate(
        ["beta0", "beta_N", "beta_M", "beta_NM", "beta_P", "beta_NP"])}  # fmt: skip
    c, m, p = (constant(model, k) for k in ("c", "m", "p"))
    expected = point["beta0"] + point["beta_N"] * c + point["beta_M"] * m
    expected += point["beta_NM"] * c * m + point["beta_P"] * p + point["beta_NP"] * c * p
    zeros = {"u": np.zeros(len(model.coords["participant"])),
             "e": np.zeros(len(model.coords["session"]))}  # fmt: skip
    delta = model.compile_fn(model["delta"], inputs=[model[k] for k in [*point, "u", "e"]],
                             on_unused_input="ignore")(point | zeros)  # fmt: skip
    np.testing.assert_allclose(delta, expected, rtol=1e-12)
    with pytest.raises(kb.SpecError, match="unknown term"):
        parse_spec({**src, "terms": {"glutamate": ["sex:period"]}}, "unknown")
    mean = population_mean(spec, "glutamate", point, {"c": 1.0, "p": 0.5})
    assert mean == pytest.approx(0.01 + 0.02 + 0.05 * 0.5 + 0.06 * 0.5)


# --- coding of the covariates ----------------------------------------------------------
def test_condition_sex_and_period_coding(models, example, sessions):
    model = models["joint"]
    cfg = example.config
    c, m, p = (constant(model, k) for k in ("c", "m", "p"))
    np.testing.assert_array_equal(c, (sessions["condition"] == cfg.active).astype(float))
    assert set(np.unique(c)) == {0.0, 1.0}
    # sex coded -1/2 (first of config.sexes) and +1/2, so main effects average the sexes
    assert set(np.unique(m)) == {-0.5, 0.5}
    np.testing.assert_array_equal(m[sessions["sex"] == cfg.sexes[0]], -0.5)
    np.testing.assert_array_equal(m[sessions["sex"] == cfg.sexes[1]], 0.5)
    # period centred: -1/2, +1/2 for two periods
    np.testing.assert_array_equal(p, sessions["period"] - 1.5)
    assert set(np.unique(p)) == {-0.5, 0.5}
    # participant index of each session
    pi = constant(model, "session_participant")
    labels = np.asarray(model.coords["participant"])[pi]
    np.testing.assert_array_equal(labels, sessions["participant"])


def test_fmrs_arrays(models, example):
    model = models["joint"]
    mrs = example.mrs
    np.testing.assert_array_equal(constant(model, "glx_observed"), mrs["glx_ratio"])
    np.testing.assert_allclose(constant(model, "glx_se"), mrs["crlb"] / 100 * mrs["glx_ratio"])
    np.testing.assert_array_equal(constant(model, "g"), (mrs["time_min"] >= 0).astype(float))
    sessions = np.asarray(model.coords["session"])[constant(model, "mrs_session")]
    expected = mrs["participant"] + "/" + mrs["period"].astype(str)
    np.testing.assert_array_equal(sessions, expected)


def test_ramp_profile(example):
    src = _load("glutamate").to_toml_dict() | {"profile": "ramp"}
    model = build(parse_spec(src, "ramp"), example)
    g = constant(model, "g")
    t = example.mrs["time_min"].to_numpy()
    np.testing.assert_allclose(g, np.clip(t / example.config.infusion_min, 0, 1))
    assert ((g > 0) & (g < 1)).any()


def test_improvement_arrays(models, example, sessions):
    model = models["improvement"]
    s = example.sessions
    np.testing.assert_array_equal(
        constant(model, "improvement_observed"), s["madrs_baseline"] - s["madrs_day1"]
    )
    np.testing.assert_array_equal(constant(model, "baseline_c"), s["madrs_baseline"] - 30.0)
    # observed change with a step profile: mean during minus mean before the infusion
    mrs = example.mrs.assign(during=example.mrs["time_min"] >= 0)
    means = mrs.groupby(["participant", "period", "during"])["glx_ratio"].mean().unstack()
    diff = (means[True] - means[False]).reindex(
        pd.MultiIndex.from_frame(sessions[["participant", "period"]])
    )
    np.testing.assert_allclose(constant(model, "dglx_obs"), diff.to_numpy(), atol=1e-12)


def test_sessions_without_a_day1_rating_have_no_rating_row(example):
    """Improvement is observed per rating (a session with a day-1 score): the unrated
    sessions keep their session slot and blocks, but have no improvement or day-1 item
    observations (the missing values are left out of the likelihood, not filled in)."""
    s = example.sessions.copy()
    day1 = ["madrs_day1", *example.config.item_columns("day1")]
    s[day1] = s[day1].astype(float)
    s.loc[[3, 10], day1] = np.nan
    data = example.replace(sessions=s)
    inputs = model_inputs(_load("joint"), data)
    assert inputs.coords["session"] == model_inputs(_load("joint"), example).coords["session"]
    rated = np.delete(np.arange(len(s)), [3, 10])
    np.testing.assert_array_equal(inputs.data["rating_session"], rated)
    assert inputs.coords["rating"] == [inputs.coords["session"][k] for k in rated]
    expected = (s["madrs_baseline"] - s["madrs_day1"]).to_numpy()[rated]
    np.testing.assert_array_equal(inputs.data["improvement_observed"], expected)
    items = model_inputs(_load("madrs_items"), data)
    n_items = example.config.n_items
    assert len(items.coords["item_obs"]) == (2 * len(s) - 2) * n_items
    day1_of_unrated = (items.data["item_visit"] == 1) & np.isin(items.data["item_session"], [3, 10])
    assert not day1_of_unrated.any()


def test_two_stage_uses_the_given_change(example):
    dglx = np.linspace(-0.1, 0.1, len(example.sessions))
    model = build("two_stage", example, dglx=dglx)
    np.testing.assert_array_equal(constant(model, "dglx_obs"), dglx)


def test_item_arrays(models, example):
    model = models["madrs_items"]
    cfg = example.config
    scores = constant(model, "item_score").reshape(50, 2, 10)
    s = example.sessions
    np.testing.assert_array_equal(scores[:, 0], s[cfg.item_columns("baseline")])
    np.testing.assert_array_equal(scores[:, 1], s[cfg.item_columns("day1")])
    np.testing.assert_array_equal(scores.sum(axis=2)[:, 0], s["madrs_baseline"])
    np.testing.assert_array_equal(constant(model, "item_visit").reshape(50, 2, 10)[:, 1], 1.0)
    # the per-observation category probabilities (1000 x 7 per draw) are not stored
    assert "items_probs" not in model.named_vars


# --- what the graph depends on ---------------------------------------------------------
def test_measurement_error_enters_only_when_on(example):
    on = build("glutamate", example)
    assert on["glx_se"] in set(ancestors([on["glx"]]))
    src = _load("glutamate").to_toml_dict() | {"measurement_error": False}
    off = build(parse_spec(src, "no-me"), example)
    assert off["glx_se"] not in set(ancestors([off["glx"]]))


def test_joint_improvement_depends_on_the_latent_change(models):
    model = models["joint"]
    assert model["delta"] in set(ancestors([model["improvement"]]))
    assert "dglx_obs" not in model.named_vars


def test_likelihood_follows_the_spec(example, models):
    assert models["joint"]["improvement"].owner.op.name == "t"
    src = _load("improvement").to_toml_dict()
    src = {**src, "likelihood": "normal", "priors": {k: v for k, v in src["priors"].items()
                                                     if k != "nu"}}  # fmt: skip
    model = build(parse_spec(src, "normal"), example)
    assert model["improvement"].owner.op.name == "normal"
    assert "nu" not in model.named_vars


def test_correlated_participant_effects(example):
    src = _load("joint").to_toml_dict()
    priors = src["priors"] | {"uv_rho": {"distribution": "Uniform", "lower": -1, "upper": 1}}
    spec = parse_spec(src | {"correlated_effects": True, "priors": priors}, "corr")
    model = build(spec, example)
    assert list(model.coords["uv"]) == ["u", "v"]
    assert model.named_vars_to_dims["uv_offset"] == ("participant", "uv")
    assert {"u", "v"} <= {d.name for d in model.deterministics}
    assert "uv_rho" in model.named_vars
    assert model["uv_rho"] in set(ancestors([model["v"]]))


# --- data the model cannot use ---------------------------------------------------------
def test_item_model_needs_item_scores(make_tables):
    data = kb.TrialData(**make_tables(n=4))
    with pytest.raises(kb.DataError, match="item"):
        build("madrs_items", data)


def test_item_model_on_hand_made_items(make_tables):
    data = kb.TrialData(**make_tables(n=4, items=True))
    model = build("madrs_items", data)
    assert len(model.coords["item_obs"]) == 8 * 2 * 10


def test_observed_change_needs_blocks_before_and_during(make_tables):
    tables = make_tables(n=4)
    mrs = tables["mrs"]
    tables["mrs"] = mrs[~((mrs.participant == "P2") & (mrs.period == 1) & (mrs.block == 1))]
    data = kb.TrialData(**tables)
    with pytest.raises(kb.DataError, match=r"P2/1.*joint model"):
        build("improvement", data)
    build("joint", data)  # the latent change needs no pre-infusion block per session


def test_shape_key(example):
    spec = _load("joint")
    a = model_inputs(spec, example)
    mrs = example.mrs.copy()
    mrs["glx_ratio"] += 0.01
    b = model_inputs(spec, example.replace(mrs=mrs))
    assert a.shape == b.shape
    c = model_inputs(spec, kb.simulate(kb.Design(n=12), kb.Truth(), seed=1))
    assert c.shape != a.shape


# --- covariates (issue 17) -------------------------------------------------------------
def _with_age(example, age):
    participants = example.participants.assign(age=age)
    return example.replace(participants=participants)


def test_a_participant_covariate_is_coded_per_session_as_declared(example):
    """``age`` centred on the mean and scaled by the SD of the participants' values (not of
    the sessions', which count a completer twice); uncentred it is per year as given."""
    age = np.linspace(20, 60, len(example.participants))
    data = _with_age(example, age)
    spec = _load("joint").with_terms(improvement="... + age")
    scaled = parse_spec(spec.source | {"covariates": {"age": {"center": "mean", "scale": "sd"}}})
    by_id = dict(zip(example.participants["participant"], age, strict=True))
    per_session = np.array([by_id[q] for q in data.session_table()["participant"]])
    raw = constant(build(spec, data), "cov_age")
    np.testing.assert_allclose(raw, per_session)
    np.testing.assert_allclose(
        constant(build(scaled, data), "cov_age"), (per_session - age.mean()) / age.std(ddof=1)
    )
    assert build(spec, data).named_vars_to_dims["cov_age"] == ("session",)


def test_a_missing_covariate_column_or_value_is_a_data_error(example):
    spec = _load("joint").with_terms(improvement="... + age")
    with pytest.raises(
        kb.DataError, match=r"covariate 'age'.*not a column of table 'participants'"
    ):
        build(spec, example)
    age = np.full(len(example.participants), 40.0)
    age[[2, 5]] = np.nan
    with pytest.raises(
        kb.DataError, match=r"table 'participants', column 'age'.*2 of 26 rows.*row 2"
    ):
        build(spec, _with_age(example, age))
    sites = np.where(np.arange(len(age)) % 2, "B", "A")
    with pytest.raises(kb.DataError, match=r"column 'age'.*holds text \('A', 'B'\)"):
        build(spec, _with_age(example, sites))


SITES = {"levels": ["A", "B", "C"], "reference": "A"}


def _with_site(example, site):
    return example.replace(participants=example.participants.assign(site=site))


def test_a_categorical_covariate_is_coded_as_declared():
    values = np.array(["A", "B", "C", "B"])
    treatment = coded_covariate(SITES | {"coding": "treatment"}, values)
    np.testing.assert_array_equal(treatment, [[0, 0], [1, 0], [0, 1], [1, 0]])
    total = coded_covariate(SITES | {"coding": "sum", "reference": "C"}, values)
    np.testing.assert_array_equal(total, [[1, 0], [0, 1], [-1, -1], [0, 1]])  # columns A, B


def test_a_treatment_coded_covariate_is_the_model_with_its_dummy_columns(example):
    """The categorical ``site`` (dim over B, C) and two numeric 0/1 columns with the same
    priors are the same model: equal log densities at matched points."""
    site = np.resize(["A", "B", "C"], len(example.participants))
    data = _with_site(example, site).replace(
        participants=example.participants.assign(
            site=site, site_B=(site == "B") * 1.0, site_C=(site == "C") * 1.0
        )
    )
    base = _load("improvement")
    cat = base.with_terms(improvement="... + site + site:condition").with_covariates(site=SITES)
    dummy = base.with_terms(
        improvement="... + site_B + site_C + site_B:condition + site_C:condition"
    )
    m_cat, m_dummy = build(cat, data), build(dummy, data)
    assert m_cat.named_vars_to_dims["gamma_site"] == ("site",)
    assert m_cat.named_vars_to_dims["cov_site"] == ("session", "site")
    assert list(m_cat.coords["site"]) == ["B", "C"]
    point = m_cat.initial_point()
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
    matched = {k: v for k, v in point.items() if not k.startswith("gamma_site")}
    for j, level in enumerate("BC"):
        matched[f"gamma_site_{level}"] = point["gamma_site"][j]
        matched[f"gamma_site_{level}_x_condition"] = point["gamma_site_x_condition"][j]
    assert set(matched) == set(m_dummy.initial_point())
    np.testing.assert_allclose(m_cat.compile_logp()(point), m_dummy.compile_logp()(matched))


def test_categorical_levels_are_checked_against_the_spec(example):
    spec = _load("joint").with_terms(improvement="... + site").with_covariates(site=SITES)
    site = np.resize(["A", "B", "D"], len(example.participants)).astype(object)
    with pytest.raises(
        kb.DataError, match=r"column 'site'.* rows are not one of the levels.*row 2: 'D'"
    ):
        build(spec, _with_site(example, site))
    site[[0, 1]] = ["A", None]
    with pytest.raises(kb.DataError, match=r"1 of 26 rows are not.*row 1: nan"):
        build(spec, _with_site(example, np.where(site == "D", "C", site)))
    numeric = _load("joint").with_terms(improvement="... + site")
    with pytest.raises(kb.DataError, match=r"holds text.*\[covariates\.site\] levels"):
        build(numeric, _with_site(example, np.resize(["A", "B"], len(site))))


def test_a_trial_on_another_scale_is_refused_until_a_spec_says_its_units(example):
    """The built-in specs' constants, priors and ROPEs are in Glx/tNAA ratio units and MADRS
    points ([units]): a HAM-D trial is refused (not fitted with MADRS numbers), and fitted by
    a spec that extends one with its own units and constants."""
    config = kb.TrialConfig(scale="HAM-D", score_max=52)
    hamd = kb.TrialData(example.participants, example.sessions, example.mrs, config=config)
    with pytest.raises(kb.SpecError, match=r"baseline_center = 30.*TrialConfig says scale 'HAM-D'"):
        build("joint", hamd)
    with pytest.raises(kb.SpecError, match="scale 'HAM-D'"):
        kb.simulation.simulate_inputs(_load("joint"), kb.Design(config=config), kb.Truth(),
                                      np.random.SeedSequence(1))  # fmt: skip
    own = parse_spec({"extends": "joint", "units": {"scale": "HAM-D"},
                      "constants": {"baseline_center": 22.0}})  # fmt: skip
    assert own.units == {"metabolite": "Glx/tNAA", "scale": "HAM-D"}  # merged, key by key
    baseline = hamd.session_table()["madrs_baseline"].to_numpy()
    np.testing.assert_allclose(constant(build(own, hamd), "baseline_c"), baseline - 22.0)


def test_a_spec_for_another_design_is_refused_by_name(make_tables):
    """Model inputs of a parallel trial need the spec for that design: the crossover spec
    is a SpecError saying how to get it, and the parallel spec has one delta slot."""
    data = kb.TrialData(**make_tables(periods=1), config=kb.TrialConfig(design="parallel"))
    with pytest.raises(kb.SpecError, match=r"parallel one of 2 .*spec.for_trial\(config\)"):
        model_inputs(_load("joint"), data)
    inputs = model_inputs(_load("joint").for_design("parallel"), data)
    assert inputs.coords["period"] == ["1"] and (inputs.data["p"] == 0).all()


def test_a_trajectory_at_24_hours_is_the_day1_model(example):
    """The trajectory spec rated at 24 h only (no ratings table: the day-1 scores) has the
    joint model's log-density at random points, its coefficients with a time dim of one;
    rated at four times, each improvement coefficient has one value per time."""
    joint = _load("joint")
    day1 = _load("trajectory").for_trial(example.config)
    assert day1.times_h == (24.0,) and day1.priors["gamma_D"].dims == ("time",)
    inputs = model_inputs(day1, example)
    assert inputs.coords["time"] == ["24 h"] and (inputs.data["rating_time"] == 0).all()
    models = build_model(joint, model_inputs(joint, example)), build_model(day1, inputs)
    logp = [m.compile_logp() for m in models]
    rng = np.random.default_rng(3)
    for _ in range(3):
        point = {k: v + 0.2 * rng.standard_normal(np.shape(v))
                 for k, v in models[0].initial_point().items()}  # fmt: skip
        shaped = {
            k: np.reshape(point[k], np.shape(v)) for k, v in models[1].initial_point().items()
        }
        assert logp[1](shaped) == pytest.approx(logp[0](point), rel=1e-12)
    four = _load("trajectory").for_trial(kb.TrialConfig(rating_times_h=(4, 24, 72, 168)))
    assert four.index_dims == {"time": ("4 h", "24 h", "72 h", "168 h")}
    assert "ntx_imp_total[168 h]" in four.estimand_rows and "ntx_glu" in four.estimand_rows

"""Spec + TrialData -> pm.Model: dims, data containers, coding, non-centring.

Structural tier: models are built but nothing is compiled or sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest
import scipy.stats as st
from pytensor.graph.traversal import ancestors

import kbayes as kb
from kbayes.build import ModelInputs, build_model, draw_integrated, model_inputs
from kbayes.spec import load_spec as _load
from kbayes.spec import parse_spec

BUILTIN = ["glutamate", "improvement", "joint", "madrs_items", "two_stage"]
#: pm.Data containers each spec's model holds.
DATA = {
    "glutamate": {"session_participant", "c", "m", "p", "mrs_session", "g", "glx_observed",
                  "glx_se", "session_period"},
    "improvement": {"session_participant", "c", "m", "p", "improvement_observed", "baseline_c",
                    "dglx_obs"},
    "joint": {"session_participant", "c", "m", "p", "mrs_session", "g", "glx_observed",
              "glx_se", "improvement_observed", "baseline_c", "session_period"},
    "madrs_items": {"session_participant", "c", "m", "p", "item_session", "item_visit",
                    "item_index", "item_score"},
}  # fmt: skip
DATA["two_stage"] = DATA["improvement"]
#: Observed variables -> (dim, pm.Data holding the observations).
OBSERVED = {
    "glx": ("mrs_obs", "glx_observed"),
    "improvement": ("session", "improvement_observed"),
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


# --- offsets integrated out for sampling ------------------------------------------------
def _integrating(names: tuple[str, ...]):
    return parse_spec(_load("glutamate").to_toml_dict() | {"integrate": list(names)}, "int")


def _without_blocks(inputs: ModelInputs, sessions: list[int]) -> ModelInputs:
    """``inputs`` with every fMRS block of ``sessions`` removed."""
    keep = ~np.isin(inputs.data["mrs_session"], sessions)
    data = dict(inputs.data)
    for name in ("mrs_session", "g", "glx_observed", "glx_se"):
        data[name] = data[name][keep]
    coords = inputs.coords | {"mrs_obs": list(np.asarray(inputs.coords["mrs_obs"])[keep])}
    return ModelInputs(coords=coords, data=data)


def _dense_parts(inputs, integrate, sd_a, sd_session):
    """Block-to-participant and block-to-session indicator matrices and the prior
    covariance of the integrated offsets, written out densely."""
    d = inputs.data
    s = d["mrs_session"]
    p = d["session_participant"][s]
    Z = []
    prior = []
    if "a" in integrate:
        Z.append(p[:, None] == np.arange(len(inputs.coords["participant"]))[None])
        prior += [sd_a**2] * Z[-1].shape[1]
    if "a_session" in integrate:
        Z.append(s[:, None] == np.arange(len(inputs.coords["session"]))[None])
        prior += [sd_session**2] * Z[-1].shape[1]
    return np.hstack(Z).astype(float), np.array(prior)


@pytest.mark.parametrize("integrate", [("a", "a_session"), ("a_session",), ("a",)])
def test_integrated_likelihood_is_the_marginal_normal(example, integrate):
    """The integrated model's fMRS term equals the multivariate normal density of the
    blocks with the offsets' covariance written out (random point; one session and one
    participant without blocks)."""
    spec = _integrating(integrate)
    inputs = model_inputs(spec, example)
    pi = inputs.data["session_participant"]
    inputs = _without_blocks(inputs, [0, *np.flatnonzero(pi == pi[-1])])
    model = build_model(spec, inputs)
    assert "glx" not in model.named_vars and not set(integrate) & set(model.named_vars)
    rng = np.random.default_rng(3)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    kept = [n for n in ("a", "a_session") if n not in integrate]
    outs = [model["integrated"], model["alpha0"], model["sigma_mrs"], model["delta"]]
    outs += [model[f"{n}_sigma"] for n in integrate] + [model[n] for n in kept]
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    logp, alpha0, sigma_mrs, delta, *rest = fn(*[point[v.name] for v in model.value_vars])
    sds = dict(zip(integrate, rest[: len(integrate)], strict=True))
    sampled = dict(zip(kept, rest[len(integrate) :], strict=True))
    d = inputs.data
    s, p = d["mrs_session"], d["session_participant"][d["mrs_session"]]
    mean = alpha0 + delta[s] * d["g"]
    mean = mean + (sampled["a"][p] if "a" in sampled else 0)
    mean = mean + (sampled["a_session"][s] if "a_session" in sampled else 0)
    Z, prior = _dense_parts(inputs, integrate, sds.get("a", 0.0), sds.get("a_session", 0.0))
    cov = np.diag(sigma_mrs**2 + d["glx_se"] ** 2) + Z @ np.diag(prior) @ Z.T
    expected = st.multivariate_normal(mean, cov).logpdf(d["glx_observed"])
    np.testing.assert_allclose(logp, expected, rtol=1e-10)


def test_integrated_offsets_are_drawn_from_their_exact_conditional(example):
    """Given the other parameters, draws of a and a_session have the mean and covariance of
    the Gaussian conditional computed densely (precision = prior precision + Z' D^-1 Z);
    a session without blocks gets its prior back."""
    spec = _integrating(("a", "a_session"))
    inputs = _without_blocks(model_inputs(spec, example), [0])
    n_draws, d = 40_000, inputs.data
    rng = np.random.default_rng(4)
    fixed = {"alpha0": 1.02, "sigma_mrs": 0.03, "a_sigma": 0.08, "a_session_sigma": 0.04}
    values = {k: np.full((1, n_draws), v) for k, v in fixed.items()}
    delta = rng.normal(0.04, 0.02, len(inputs.coords["session"]))
    values["delta"] = np.broadcast_to(delta, (1, n_draws, delta.size))
    drawn = draw_integrated(spec, inputs, values, np.random.default_rng(5))
    x = np.concatenate([drawn["a"][0], drawn["a_session"][0]], axis=1)
    Z, prior = _dense_parts(inputs, ("a", "a_session"), 0.08, 0.04)
    w = 1 / (0.03**2 + d["glx_se"] ** 2)
    precision = np.diag(1 / prior) + Z.T @ (w[:, None] * Z)
    cov = np.linalg.inv(precision)
    resid = d["glx_observed"] - 1.02 - delta[d["mrs_session"]] * d["g"]
    mean = cov @ (Z.T @ (w * resid))
    sd = np.sqrt(np.diag(cov))
    z = (x.mean(0) - mean) / (sd / np.sqrt(n_draws))
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    corr_expected = cov / np.outer(sd, sd)
    corr_drawn = np.corrcoef(x, rowvar=False)
    assert np.abs(corr_drawn - corr_expected).max() < 0.03  # MC SE of a correlation ~0.005
    np.testing.assert_allclose(x.std(0) / sd, 1, atol=0.025)
    n_p = len(inputs.coords["participant"])
    assert abs(x[:, n_p].std() - np.sqrt(0.04**2 - 0)) / 0.04 < 0.5  # session 0: no blocks
    np.testing.assert_allclose(drawn["a_session_offset"][0] * 0.04, drawn["a_session"][0])


def _joint_variant(variant: str):
    src = _load("joint").to_toml_dict()
    if variant == "normal":
        src = {**src, "likelihood": "normal",
               "priors": {k: v for k, v in src["priors"].items() if k != "nu"}}  # fmt: skip
    if variant == "correlated":
        src = {**src, "correlated_effects": True,
               "priors": {**src["priors"], "uv_rho": {"distribution": "Uniform", "lower": -1,
                                                       "upper": 1}}}  # fmt: skip
    return parse_spec(src, variant)


_SCALARS = ["alpha0", "sigma_mrs", "a_sigma", "a_session_sigma", "u_sigma", "e_sigma",
            "v_sigma", "sigma_y", "gamma0", "gamma_N", "gamma_M", "gamma_NM", "gamma_D",
            "gamma_DN", "gamma_B", "gamma_P"]  # fmt: skip
_EXTRA = {"student_t": ["improvement_weight"], "normal": [],
          "correlated": ["improvement_weight", "uv_rho"]}  # fmt: skip


def _dense_joint(model, inputs, point, variant):
    """Every effect written out: the observations (blocks, then improvements) are
    mean + B z + noise with z = (a, a_session, u, e, v) ~ N(0, prior). Returns the model's
    likelihood term at ``point``, the free variables' values there, and the dense pieces."""
    outs = [model["integrated"], model["delta_known"]]
    outs += [model[n] for n in _SCALARS + _EXTRA[variant]]
    values = {rv.name: rv for rv in model.free_RVs}
    outs = model.replace_rvs_by_values([*outs, *values.values()])
    fn = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    logp, known, *rest = fn(*[point[v.name] for v in model.value_vars])
    n_named = len(_SCALARS + _EXTRA[variant])
    x = dict(zip(_SCALARS + _EXTRA[variant], rest[:n_named], strict=True))
    free = dict(zip(values, rest[n_named:], strict=True))
    d = inputs.data
    s, c, pi = d["mrs_session"], d["c"], d["session_participant"]
    n_p, n_s = len(inputs.coords["participant"]), len(inputs.coords["session"])
    dt = (known - 0.05) / 0.05
    eta = (x["gamma0"] + x["gamma_N"] * c + x["gamma_M"] * d["m"] + x["gamma_NM"] * c * d["m"]
           + x["gamma_D"] * dt + x["gamma_DN"] * dt * c + x["gamma_B"] * d["baseline_c"]
           + x["gamma_P"] * d["p"])  # fmt: skip
    slope = (x["gamma_D"] + x["gamma_DN"] * c) / 0.05
    mean = np.concatenate([x["alpha0"] + known[s] * d["g"], eta])
    blocks = [n_p, n_s, n_p, n_s, n_p]
    start = np.concatenate([[0], np.cumsum(blocks)])
    B = np.zeros((len(s) + n_s, start[-1]))
    rows = np.arange(len(s))
    B[rows, start[0] + pi[s]] = 1
    B[rows, start[1] + s] = 1
    B[rows, start[2] + pi[s]] = d["g"]
    B[rows, start[3] + s] = d["g"]
    rows = len(s) + np.arange(n_s)
    B[rows, start[2] + pi] = slope
    B[rows, start[3] + np.arange(n_s)] = slope
    B[rows, start[4] + pi] = 1
    sds = ["a_sigma", "a_session_sigma", "u_sigma", "e_sigma", "v_sigma"]
    prior = np.diag(np.repeat([x[n] ** 2 for n in sds], blocks))
    if variant == "correlated":
        cross = x["uv_rho"] * x["u_sigma"] * x["v_sigma"]
        prior[start[2] + np.arange(n_p), start[4] + np.arange(n_p)] = cross
        prior[start[4] + np.arange(n_p), start[2] + np.arange(n_p)] = cross
    weight = x.get("improvement_weight", np.ones(n_s))
    noise = np.concatenate([x["sigma_mrs"] ** 2 + d["glx_se"] ** 2, x["sigma_y"] ** 2 / weight])
    observed = np.concatenate([d["glx_observed"], d["improvement_observed"]])
    return logp, free, (mean, B, prior, noise, observed, start, known)


@pytest.mark.parametrize("variant", ["student_t", "normal", "correlated"])
def test_integrated_joint_likelihood_is_the_marginal_normal(example, variant):
    """With a, a_session, u, e and v integrated out, the joint model's likelihood term is
    the multivariate normal density of all fMRS blocks and improvements with every effect's
    covariance written out (Student-t: given the sampled scale-mixture weights; correlated
    u and v; random point; one participant without blocks)."""
    spec = _joint_variant(variant)
    inputs = model_inputs(spec, example)
    pi = inputs.data["session_participant"]
    inputs = _without_blocks(inputs, list(np.flatnonzero(pi == pi[3])))
    model = build_model(spec, inputs)
    assert not {"glx", "improvement", "a", "a_session", "u", "e", "v"} & set(model.named_vars)
    rng = np.random.default_rng(6)
    point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in model.initial_point().items()}
    logp, _, (mean, B, prior, noise, observed, _, _) = _dense_joint(model, inputs, point, variant)
    cov = B @ prior @ B.T + np.diag(noise)
    expected = st.multivariate_normal(mean, cov).logpdf(observed)
    np.testing.assert_allclose(logp, expected, rtol=1e-9)


def test_integrated_joint_effects_are_drawn_from_their_exact_conditional(example):
    """Given the sampled parameters, draws of every integrated effect (a, a_session, u, e,
    v, and the session changes) have the mean and covariance of the Gaussian conditional
    computed densely; the non-centred offsets are the effects over their SDs."""
    from kbayes.build import latent_conditional

    variant = "correlated"
    spec = _joint_variant(variant)
    inputs = model_inputs(spec, example)
    model = build_model(spec, inputs)
    rng = np.random.default_rng(7)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    _, free, (mean, B, prior, noise, observed, _, known) = _dense_joint(
        model, inputs, point, variant
    )
    n_draws = 6000
    values = {k: np.broadcast_to(v, (1, n_draws, *np.shape(v))) for k, v in free.items()}
    drawn = draw_integrated(spec, inputs, values, np.random.default_rng(8),
                            latent_conditional(model))  # fmt: skip
    x = np.concatenate([drawn[n][0] for n in ("a", "a_session", "u", "e", "v")], axis=1)
    gain = prior @ B.T @ np.linalg.inv(B @ prior @ B.T + np.diag(noise))
    cond_mean = gain @ (observed - mean)
    cond_cov = prior - gain @ B @ prior
    sd = np.sqrt(np.diag(cond_cov))
    z = (x.mean(0) - cond_mean) / (sd / np.sqrt(n_draws))
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    np.testing.assert_allclose(x.std(0) / sd, 1, atol=0.06)
    corr = np.corrcoef(x, rowvar=False)
    assert np.abs(corr - cond_cov / np.outer(sd, sd)).max() < 0.08  # MC SE ~0.013
    pi = inputs.data["session_participant"]
    delta = known + drawn["u"][0][:, pi] + drawn["e"][0]
    np.testing.assert_allclose(drawn["delta"][0], delta)
    np.testing.assert_allclose(drawn["e_offset"][0] * free["e_sigma"], drawn["e"][0])
    z1 = drawn["uv_offset"][0][..., 0]
    np.testing.assert_allclose(z1 * free["u_sigma"], drawn["u"][0])

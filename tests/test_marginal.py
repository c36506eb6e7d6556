"""Exact integration of the Gaussian effects: the integrated likelihood equals the
multivariate normal density written out, and effects drawn afterwards have the exact
conditional distribution (both checked against dense linear algebra)."""

from __future__ import annotations

import numpy as np
import pytensor
import pytest
import scipy.stats as st

from kbayes.build import ModelInputs, build_model, model_inputs
from kbayes.marginal import draw_integrated, latent_conditional
from kbayes.spec import load_spec as _load
from kbayes.spec import parse_spec


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
_EXTRA = {"student_t": ["improvement_weight"], "normal": [], "unrated": ["improvement_weight"],
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
    s, c, pi, rs = d["mrs_session"], d["c"], d["session_participant"], d["rating_session"]
    n_p, n_s, n_r = (len(inputs.coords[k]) for k in ("participant", "session", "rating"))
    dt = (known - 0.05) / 0.05
    eta = (x["gamma0"] + x["gamma_N"] * c + x["gamma_M"] * d["m"] + x["gamma_NM"] * c * d["m"]
           + x["gamma_D"] * dt + x["gamma_DN"] * dt * c + x["gamma_B"] * d["baseline_c"]
           + x["gamma_P"] * d["p"])  # fmt: skip
    slope = (x["gamma_D"] + x["gamma_DN"] * c) / 0.05
    mean = np.concatenate([x["alpha0"] + known[s] * d["g"], eta[rs]])
    blocks = [n_p, n_s, n_p, n_s, n_p]
    start = np.concatenate([[0], np.cumsum(blocks)])
    B = np.zeros((len(s) + n_r, start[-1]))
    rows = np.arange(len(s))
    B[rows, start[0] + pi[s]] = 1
    B[rows, start[1] + s] = 1
    B[rows, start[2] + pi[s]] = d["g"]
    B[rows, start[3] + s] = d["g"]
    rows = len(s) + np.arange(n_r)  # one per rated session
    B[rows, start[2] + pi[rs]] = slope[rs]
    B[rows, start[3] + rs] = slope[rs]
    B[rows, start[4] + pi[rs]] = 1
    sds = ["a_sigma", "a_session_sigma", "u_sigma", "e_sigma", "v_sigma"]
    prior = np.diag(np.repeat([x[n] ** 2 for n in sds], blocks))
    if variant == "correlated":
        cross = x["uv_rho"] * x["u_sigma"] * x["v_sigma"]
        prior[start[2] + np.arange(n_p), start[4] + np.arange(n_p)] = cross
        prior[start[4] + np.arange(n_p), start[2] + np.arange(n_p)] = cross
    weight = x.get("improvement_weight", np.ones(n_r))
    noise = np.concatenate([x["sigma_mrs"] ** 2 + d["glx_se"] ** 2, x["sigma_y"] ** 2 / weight])
    observed = np.concatenate([d["glx_observed"], d["improvement_observed"]])
    return logp, free, (mean, B, prior, noise, observed, start, known)


def _without_ratings(data, sessions: list[int]):
    """``data`` with the day-1 ratings (totals and items) of ``sessions`` (rows) removed."""
    s = data.sessions.copy()
    cols = ["madrs_day1", *data.config.item_columns("day1")]
    s[cols] = s[cols].astype(float)
    s.loc[sessions, cols] = np.nan
    return data.replace(sessions=s)


@pytest.mark.parametrize("variant", ["student_t", "normal", "correlated", "unrated"])
def test_integrated_joint_likelihood_is_the_marginal_normal(example, variant):
    """With a, a_session, u, e and v integrated out, the joint model's likelihood term is
    the multivariate normal density of all fMRS blocks and improvements with every effect's
    covariance written out (Student-t: given the sampled scale-mixture weights; correlated
    u and v; random point; one participant without blocks). ``unrated``: four sessions
    without a day-1 rating, both of one participant's among them: the density is that of
    the observations there are, the missing improvements integrated out."""
    if variant == "unrated":
        pi = example.sessions["participant"]
        example = _without_ratings(example, [0, 5, *np.flatnonzero(pi == pi[9])])
    spec = _joint_variant("student_t" if variant == "unrated" else variant)
    inputs = model_inputs(spec, example)
    pi = inputs.data["session_participant"]
    assert len(inputs.coords["rating"]) == len(pi) - 4 * (variant == "unrated")
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
    computed densely; the non-centred offsets are the effects over their SDs. Two
    sessions have no day-1 rating."""
    variant = "correlated"
    spec = _joint_variant(variant)
    inputs = model_inputs(spec, _without_ratings(example, [2, 11]))
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

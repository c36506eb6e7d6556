r"""Exact integration of the Gaussian effects: likelihood terms and conditional draws.

Given the scalar parameters, the fMRS, glutamate and (normal or scale-mixture) improvement
levels are linear-Gaussian in the effects a_i, a_is, u_i, e_is, v_i. This module holds the
maths that integrates them out of the likelihood (PyTensor, for NUTS) and draws them
afterwards from their conditional (numpy); :mod:`kbayes.build` wires it into the model.
The derivation is in docs/models.md ("How the model is sampled").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc_extras.prior import Prior
from pytensor.graph.replace import graph_replace

from kbayes.spec import ModelSpec


@dataclass(frozen=True)
class LatentLayout:
    """Per-participant vector of the integrated session-level effects: u, then e of each
    period slot, then v (those of ``spec.integrate``); ``size`` = K."""

    u: int | None
    e: int | None
    v: int | None
    slots: int
    size: int

    @classmethod
    def of(cls, integrate: tuple[str, ...], slots: int) -> LatentLayout:
        """The layout for the effects in ``integrate`` and ``slots`` periods."""
        k, index = 0, {}
        for name, width in (("u", 1), ("e", slots), ("v", 1)):
            if name in integrate:
                index[name], k = k, k + width
        return cls(index.get("u"), index.get("e"), index.get("v"), slots, k)

    @property
    def delta(self) -> bool:
        """Whether part of the session change is integrated out."""
        return self.u is not None or self.e is not None

    def delta_map(self) -> np.ndarray:
        """(slots, K): the integrated part of each slot's session change, from the vector."""
        out = np.zeros((self.slots, self.size))
        if self.u is not None:
            out[:, self.u] = 1
        if self.e is not None:
            out[np.arange(self.slots), self.e + np.arange(self.slots)] = 1
        return out

    def prior_covariance(self, sd: dict):
        """(K, K) prior covariance: SDs squared on the diagonal, rho sd_u sd_v off it."""
        diag = []
        for name, width in (("u", 1), ("e", self.slots), ("v", 1)):
            if getattr(self, name) is not None:
                diag += [pt.as_tensor(sd[name]) ** 2] * width
        cov = pt.diag(pt.stack(diag))
        if "rho" in sd:
            cross = sd["rho"] * sd["u"] * sd["v"]
            cov = pt.set_subtensor(cov[self.u, self.v], cross)
            cov = pt.set_subtensor(cov[self.v, self.u], cross)
        return cov


@dataclass(frozen=True)
class Quadratic:
    """Per participant, the log-likelihood's quadratic in the latent vector x:
    -x'Hx/2 + h'x, entries as nested lists of per-participant vectors (``H[i][j]``,
    ``h[i]``; K is small, and elementwise operations on them fuse: matrix products of
    PyTensor tensors were 60 % of a gradient)."""

    H: list[list]
    h: list

    @classmethod
    def zero(cls, layout: LatentLayout, dims: dict) -> Quadratic:
        k = layout.size
        zero = pt.zeros(dims["participant"])
        return cls([[zero] * k for _ in range(k)], [zero] * k)

    def __add__(self, other: Quadratic) -> Quadratic:
        k = len(self.h)
        H = [[self.H[i][j] + other.H[i][j] for j in range(k)] for i in range(k)]
        return Quadratic(H, [self.h[i] + other.h[i] for i in range(k)])

    def integrate(self, prior_cov):
        r"""Integrate x ~ N(0, prior_cov) out: returns the log of
        :math:`\int N(x \mid 0, \Sigma) e^{-x'Hx/2 + h'x} dx
        = -\tfrac12 \log|\Sigma| - \tfrac12\log|P| + \tfrac12 h' P^{-1} h`, with
        :math:`P = \Sigma^{-1} + H`, summed over participants, and the conditional of x:
        its mean :math:`P^{-1} h` and the Cholesky factor of :math:`P`.

        K is small (4 for two periods), so the factorisations are unrolled into
        elementwise operations over participants: PyTensor's batched Cholesky and
        triangular solves with their gradients took 140 of the 285 us of a gradient."""
        k = int(prior_cov.type.shape[-1])
        prior_chol = _cholesky(prior_cov, k)
        prior_inv = _inverse_lower(prior_chol, k)
        prec = [[sum(prior_inv[m][i] * prior_inv[m][j] for m in range(max(i, j), k))
                 for j in range(k)] for i in range(k)]  # fmt: skip
        P = [[self.H[i][j] + prec[i][j] for j in range(k)] for i in range(k)]
        chol = _cholesky(P, k)
        h = self.h
        z = []
        for i in range(k):
            z.append((h[i] - sum(chol[i][m] * z[m] for m in range(i))) / chol[i][i])
        mean: list = [None] * k
        for i in reversed(range(k)):
            rest = sum(chol[m][i] * mean[m] for m in range(i + 1, k))
            mean[i] = (z[i] - rest) / chol[i][i]
        n = h[0].shape[0]
        logp = (
            0.5 * sum((zi**2).sum() for zi in z)
            - n * sum(pt.log(prior_chol[i][i]) for i in range(k))
            - sum(pt.log(chol[i][i]).sum() for i in range(k))
        )
        zero = pt.zeros_like(h[0])
        rows = [pt.stack([chol[i][j] if j <= i else zero for j in range(k)], -1) for i in range(k)]
        return logp, pt.stack(mean, -1), pt.stack(rows, -2)


def _cholesky(A, k: int) -> list[list]:
    """Lower Cholesky factor of a k x k matrix (``A[i][j]`` or ``A[..., i, j]``), unrolled:
    entries as nested lists of (batched) tensors."""
    entry = (lambda i, j: A[i][j]) if isinstance(A, list) else (lambda i, j: A[..., i, j])
    L: list[list] = [[None] * k for _ in range(k)]
    for j in range(k):
        L[j][j] = pt.sqrt(entry(j, j) - sum(L[j][m] ** 2 for m in range(j)))
        for i in range(j + 1, k):
            L[i][j] = (entry(i, j) - sum(L[i][m] * L[j][m] for m in range(j))) / L[j][j]
    return L


def _inverse_lower(L: list[list], k: int) -> list[list]:
    """Inverse of a lower-triangular matrix given as nested lists (zeros above)."""
    inv: list[list] = [[0.0] * k for _ in range(k)]
    for i in range(k):
        inv[i][i] = 1 / L[i][i]
        for j in range(i):
            inv[i][j] = -sum(L[i][m] * inv[m][j] for m in range(j, i)) / L[i][i]
    return inv


@dataclass(frozen=True)
class OffsetStats:
    """Sufficient statistics of the fMRS residuals r (blocks minus everything but the
    offsets) with precisions w = 1 / var: per session W = sum w, mean ``rbar`` = sum w r / W
    (0 without blocks) and ``q`` = sum w (r - rbar)^2; ``session_participant`` indexes
    sessions to participants."""

    W: Any
    rbar: Any
    q: Any
    session_participant: Any
    gbar: Any = None  # with g(t): its weighted session mean,
    sgg: Any = None  # sum w (g - gbar)^2
    sgr: Any = None  # and sum w (g - gbar)(r - rbar)


def mrs_offset_stats(xp, resid, var, s_idx, pi, segment_sum, g=None) -> OffsetStats:
    """:class:`OffsetStats` from per-block residuals and variances (``xp``: numpy or
    pytensor.tensor; ``segment_sum(x, index, n)`` sums x's last axis into n groups), with
    those of the infusion profile ``g`` if given."""
    n_session = pi.shape[0]
    w = 1 / var
    W = segment_sum(w * xp.ones_like(resid), s_idx, n_session)
    safe = xp.where(W > 0, W, 1.0)
    rbar = segment_sum(w * resid, s_idx, n_session) / safe
    centred = resid - rbar[..., s_idx]
    q = segment_sum(w * centred**2, s_idx, n_session)
    if g is None:
        return OffsetStats(W=W, rbar=rbar, q=q, session_participant=pi)
    gbar = segment_sum(w * g, s_idx, n_session) / safe
    gc = g - gbar[..., s_idx]
    sgg = segment_sum(w * gc**2, s_idx, n_session)
    sgr = segment_sum(w * gc * centred, s_idx, n_session)
    return OffsetStats(W, rbar, q, pi, gbar, sgg, sgr)


def integrated_mrs_logp(stats: OffsetStats, var, sd2_a, sd2_session, n_participant: int):
    r"""Log-likelihood (PyTensor) of the fMRS blocks with the participant offsets (variance
    ``sd2_a``) and session offsets (``sd2_session``) integrated out; a variance of 0 means
    that offset is not integrated (it is in the residuals).

    Per session, integrating :math:`a_{is} \sim N(0, \tau^2)` leaves
    :math:`-\tfrac12[\log(1 + \tau^2 W) + q + \tilde W (\bar r - a_i)^2]`,
    :math:`\tilde W = W / (1 + \tau^2 W)`; per participant, integrating
    :math:`a_i \sim N(0, \sigma^2)` with :math:`T = \sum_s \tilde W_s`,
    :math:`m = \sum_s \tilde W_s \bar r_s / T` leaves
    :math:`-\tfrac12[\log(1 + \sigma^2 T) + \sum_s \tilde W_s (\bar r_s - m)^2
    + T m^2 / (1 + \sigma^2 T)]` (the centred forms avoid cancellation).
    """
    pi = stats.session_participant
    wt = stats.W / (1 + sd2_session * stats.W)
    T = segment_sum(wt, pi, n_participant)
    m = segment_sum(wt * stats.rbar, pi, n_participant) / pt.switch(T > 0, T, 1.0)
    total = (
        pt.log(2 * np.pi * var).sum()
        + pt.log1p(sd2_session * stats.W).sum()
        + stats.q.sum()
        + pt.log1p(sd2_a * T).sum()
        + (wt * (stats.rbar - m[pi]) ** 2).sum()
        + (T * m**2 / (1 + sd2_a * T)).sum()
    )
    return -0.5 * total


@dataclass(frozen=True)
class SessionQuadratic:
    r"""The fMRS log-likelihood (offsets integrated) as a quadratic in d, the integrated
    part of each session's change: :math:`-\tfrac12 d'Ad + d'b` with, per participant,
    :math:`A = \operatorname{diag}(s_{gg} + \tilde W \bar g^2) - \phi \psi\psi'`,
    :math:`b = s_{gr} + \tilde W \bar g \bar r - \phi \psi \sum_t \tilde W_t \bar r_t`,
    :math:`\psi = \tilde W \bar g`, :math:`\phi = \sigma^2 / (1 + \sigma^2 T)` (the
    nested Woodbury identity of :func:`integrated_mrs_logp`). Per-session arrays."""

    a_diag: Any
    psi: Any
    b: Any
    phi: Any  # per participant
    session_participant: Any

    @classmethod
    def of(cls, stats: OffsetStats, sd2_a, sd2_session, n_participant) -> SessionQuadratic:
        pi = stats.session_participant
        wt = stats.W / (1 + sd2_session * stats.W)
        T = segment_sum(wt, pi, n_participant)
        U = segment_sum(wt * stats.rbar, pi, n_participant)
        phi = sd2_a / (1 + sd2_a * T)
        psi = wt * stats.gbar
        b = stats.sgr + psi * stats.rbar - phi[pi] * psi * U[pi]
        return cls(stats.sgg + psi * stats.gbar, psi, b, phi, pi)

    def to_latent(self, layout: LatentLayout, d: dict) -> Quadratic:
        """The quadratic in the participant's latent vector (d = M x per slot)."""
        n = self.phi.shape[0]
        out = Quadratic.zero(layout, {"participant": n})
        if not layout.delta:
            return out
        cell = self.session_participant * layout.slots + d["session_period"]  # (i, slot)

        def grid(x):  # per-session values into participants x slots (a flat index is fast)
            return segment_sum(x, cell, n * layout.slots).reshape((n, layout.slots))

        diag, psi, b = grid(self.a_diag), grid(self.psi), grid(self.b)
        S, M = layout.slots, layout.delta_map()
        A = [[(diag[:, s] if s == t else 0) - self.phi * psi[:, s] * psi[:, t] for t in range(S)]
             for s in range(S)]  # fmt: skip
        used = [np.flatnonzero(M[:, i]) for i in range(layout.size)]
        H = [[sum(A[s][t] for s in used[i] for t in used[j]) for j in range(layout.size)]
             for i in range(layout.size)]  # fmt: skip
        return out + Quadratic(H, [sum(b[:, s] for s in used[i]) for i in range(layout.size)])


def scale_mixture_weights(nu):
    r"""Weights w of the Student-t as a normal scale mixture, :math:`t_\nu(\mu, s) =
    N(\mu, s^2 / w)` with :math:`w \sim \mathrm{Gamma}(\nu/2, \nu/2)`, non-centred:
    :math:`\log w = m(\nu) + s(\nu) z` with z free (its density the Gamma's, changed
    by the Jacobian, so the model is unchanged) and m, s the asymptotic mean and SD of
    :math:`\log w` (:math:`-1/\nu`, :math:`\sqrt{2/\nu + 2/\nu^2}`). Sampled as Gamma
    variables, the weights and nu formed a funnel (bulk ESS of nu below 100 on 60 of 100
    SBC fits)."""
    k = nu / 2
    spread = pt.sqrt(1 / k + 1 / (2 * k**2))
    z = pm.Flat("improvement_weight_z", dims="rating")
    log_w = -1 / (2 * k) + spread * z
    weight = pm.Deterministic("improvement_weight", pt.exp(log_w), dims="rating")
    density = pm.logp(pm.Gamma.dist(alpha=k, beta=k), weight) + log_w + pt.log(spread)
    pm.Potential("improvement_weight_prior", density.sum())
    return weight


def latent_conditional(model: pm.Model) -> Callable[[dict], tuple[np.ndarray, ...]]:
    """Compiled map from one draw of the free variables (constrained values by name) to
    the known part of the session change, and the conditional mean and precision Cholesky
    factor of each participant's integrated latent vector."""
    rvs = list(model.free_RVs)
    inputs = [rv.type(name=rv.name) for rv in rvs]
    outs = [model["delta_known"], model["latent_mean"], model["latent_chol"]]
    outs = graph_replace(outs, dict(zip(rvs, inputs, strict=True)), strict=False)
    fn = pytensor.function(inputs, outs, on_unused_input="ignore")
    names = [rv.name for rv in rvs]
    return lambda point: fn(*[point[n] for n in names])


def draw_integrated(
    spec: ModelSpec,
    inputs: Any,
    values: dict[str, np.ndarray],
    rng: np.random.Generator,
    conditional: Callable[[dict], tuple[np.ndarray, ...]] | None = None,
) -> dict[str, np.ndarray]:
    r"""Draws of the integrated-out effects from their exact conditional given each draw of
    the sampled parameters (``values``: arrays with leading ``(chain, draw)`` axes).

    First the latent vector x of each participant (u, e, v; ``conditional`` from
    :func:`latent_conditional`): :math:`x \mid \cdot \sim N(P^{-1}h, P^{-1})`
    (:meth:`Quadratic.integrate`), giving the session changes ``delta``; then, given
    them, :math:`a_i \mid \cdot \sim N(\sigma^2 T m / (1 + \sigma^2 T), \sigma^2 / (1 +
    \sigma^2 T))` and :math:`a_{is} \mid a_i, \cdot \sim N(\tau^2 W (\bar r_s - a_i) / (1 +
    \tau^2 W), \tau^2 / (1 + \tau^2 W))` (notation of :func:`integrated_mrs_logp`). Returns
    each effect by name, ``{name}_offset`` (standardised) for a non-centred prior and
    ``uv_offset`` for correlated effects, so the result holds every free variable of the
    full model.
    """
    d = inputs.data
    pi = d["session_participant"]
    n_session, n_participant = len(inputs.coords["session"]), len(inputs.coords["participant"])
    lead = values["alpha0"].shape if "alpha0" in values else values["sigma_y"].shape
    values = dict(values)
    out: dict[str, np.ndarray] = {}
    layout = LatentLayout.of(spec.integrate, len(inputs.coords.get("period", ())))
    sds = {n: _sd_draws(spec, n, values, lead) for n in ("u", "e", "v", "a", "a_session")
           if n in spec.integrate}  # fmt: skip
    if layout.size:
        flat = {k: v.reshape((-1, *v.shape[len(lead) :])) for k, v in values.items()}
        known, mean, chol = map(np.stack, zip(*(
            conditional({k: v[j] for k, v in flat.items()}) for j in range(int(np.prod(lead)))
        ), strict=True))  # fmt: skip
        noise = rng.standard_normal(mean.shape)[..., None]
        x = mean + np.linalg.solve(np.swapaxes(chol, -1, -2), noise)[..., 0]
        x = x.reshape((*lead, n_participant, layout.size))
        known = known.reshape((*lead, n_session))
        if layout.delta:
            out["delta"] = known
            if layout.u is not None:
                out["u"] = x[..., layout.u]
                out["delta"] = out["delta"] + out["u"][..., pi]
            if layout.e is not None:
                slot = d["session_period"]
                out["e"] = x[..., layout.e : layout.e + layout.slots][..., pi, slot]
                out["delta"] = out["delta"] + out["e"]
            values["delta"] = out["delta"]
        if layout.v is not None:
            out["v"] = x[..., layout.v]
        for name in ("u", "e", "v"):
            if name in out:
                out[name] = out[name] + spec.priors[name].parameters["mu"]
    if {"a", "a_session"} & set(spec.integrate):
        out |= _draw_offsets(spec, inputs, values, sds, rng, lead)
    for name, sd in sds.items():
        if not spec.priors[name].centered and not (spec.correlated_effects and name in ("u", "v")):
            mu = spec.priors[name].parameters["mu"]
            out[f"{name}_offset"] = (out[name] - mu) / sd[..., None]
    if spec.correlated_effects and "u" in out:
        z1 = out["u"] / sds["u"][..., None]
        rho = values["uv_rho"][..., None]
        z2 = (out["v"] / sds["v"][..., None] - rho * z1) / np.sqrt(1 - rho**2)
        out["uv_offset"] = np.stack([z1, z2], axis=-1)
    return out


def _sd_draws(spec: ModelSpec, name: str, values: dict, lead: tuple) -> np.ndarray:
    """Draws of the SD of an integrated effect (its hyperparameter, or the fixed value)."""
    sd = spec.priors[name].parameters["sigma"]
    return np.asarray(values[f"{name}_sigma"] if isinstance(sd, Prior) else np.full(lead, sd))


def _draw_offsets(spec, inputs, values, sds, rng, lead) -> dict[str, np.ndarray]:
    """The fMRS offsets a and a_session given the session changes (see draw_integrated)."""
    d = inputs.data
    pi, s_idx = d["session_participant"], d["mrs_session"]
    n_session, n_participant = len(inputs.coords["session"]), len(inputs.coords["participant"])
    var = values["sigma_mrs"][..., None] ** 2 + (d["glx_se"] ** 2 if spec.measurement_error else 0)
    mu = values["alpha0"][..., None] + values["delta"][..., s_idx] * d["g"]
    sd2 = {}
    for name, index in (("a", pi[s_idx]), ("a_session", s_idx)):
        if name in spec.integrate:
            sd2[name] = sds[name] ** 2
            mu = mu + spec.priors[name].parameters["mu"]
        else:
            sd2[name] = np.zeros(lead)
            if name in spec.priors:  # (else not in this model: its design left it out)
                mu = mu + values[name][..., index]
    stats = mrs_offset_stats(np, d["glx_observed"] - mu, var, s_idx, pi, segment_sum_np)
    tau2, sig2 = sd2["a_session"][..., None], sd2["a"][..., None]
    wt = stats.W / (1 + tau2 * stats.W)
    T = segment_sum_np(wt, pi, n_participant)
    U = segment_sum_np(wt * stats.rbar, pi, n_participant)
    out, a = {}, np.zeros((*lead, n_participant))
    if "a" in spec.integrate:
        sd_a = np.sqrt(sig2 / (1 + sig2 * T))
        a = sig2 * U / (1 + sig2 * T) + rng.standard_normal(a.shape) * sd_a
        out["a"] = a + spec.priors["a"].parameters["mu"]
    if "a_session" in spec.integrate:
        shrink = 1 + tau2 * stats.W
        noise = rng.standard_normal((*lead, n_session)) * np.sqrt(tau2 / shrink)
        out["a_session"] = tau2 * stats.W * (stats.rbar - a[..., pi]) / shrink + noise
        out["a_session"] = out["a_session"] + spec.priors["a_session"].parameters["mu"]
    return out


def segment_sum(x, index, n: int):
    """Sum of ``x`` into ``n`` groups by ``index`` (PyTensor)."""
    return pt.inc_subtensor(pt.zeros(n)[index], x)


def segment_sum_np(x: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``x``'s last axis into ``n`` groups by ``index`` (numpy)."""
    return x @ np.eye(n)[index]

"""Sampling diagnostics: a fitted result -> a :class:`Verdict` ("ok", "warn" or "fail").

Every problem comes with one plain-language message and what to do about it. The rules:

================  ==========================================  ===============================
check             fail                                        warn
================  ==========================================  ===============================
divergences       any divergent transition                    --
R-hat             any R-hat > 1.05                            any R-hat > ``rhat_max`` (1.01)
bulk / tail ESS   any ESS < 100                               any ESS < ``ess_min`` (400)
E-BFMI            --                                          a chain below ``bfmi_min`` (0.3)
tree depth        --                                          a transition hit the maximum
sample_stats      --                                          the group is missing
================  ==========================================  ===============================

Divergences fail because they mean the sampler could not follow the posterior's geometry, so
the draws may miss part of it and be biased, however many there are. R-hat above 1.05 or an
ESS below 100 fail because the chains have then not mixed well enough for the summaries (or
for the R-hat and ESS estimates themselves, Vehtari et al. 2021) to be trusted. The rest
cost precision or speed, not validity: the results stand, with wider Monte-Carlo error.

R-hat and ESS are computed (rank-normalised, ArviZ) for every element of every numeric
posterior variable, including deterministic ones and the spec's estimands: the estimands
are what a report quotes, and a ratio such as the proportion mediated can mix worse than
any parameter it is made of.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kbayes.results import result_spec

Status = Literal["ok", "warn", "fail"]
#: The thresholds of every convergence verdict in kbayes (check, power and SBC replicates).
#: R-hat above RHAT_FAIL fails, above RHAT_WARN (the default ``rhat_max``) warns.
RHAT_FAIL, RHAT_WARN = 1.05, 1.01
#: Bulk or tail ESS below ESS_FAIL fails, below ESS_WARN (the default ``ess_min``) warns.
ESS_FAIL, ESS_WARN = 100, 400
#: A chain with E-BFMI below this (the default ``bfmi_min``) warns.
BFMI_WARN = 0.3
_ORDER = {"ok": 0, "warn": 1, "fail": 2}
_COLOUR = {"ok": "green", "warn": "yellow", "fail": "red"}
_SHOWN = 5  # how many worst variables a message names


@dataclass(frozen=True)
class Problem:
    """One failed check: what went wrong, in words, and what to do about it.

    ``variables`` names the offending parameters (worst first) or chains; ``values`` holds
    the numbers behind the message (e.g. R-hat per parameter, divergence count).
    """

    kind: str
    status: Status
    message: str
    advice: str
    variables: tuple[str, ...] = ()
    values: dict[str, float] = field(default_factory=dict)
    #: The advice in command-line terms (``--draws 4800``), where it names a call.
    cli_advice: str = ""


def _refit(**settings: Any) -> tuple[str, str]:
    """A refit with ``settings`` in Python and in command-line terms."""
    python = "kb.fit(..., " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"
    cli = "kbayes fit ... " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
    return python, cli


@dataclass(frozen=True)
class Verdict:
    """Result of :func:`check`: overall status, the problems found and headline numbers."""

    status: Status
    problems: tuple[Problem, ...]
    summary: dict[str, float]

    @property
    def ok(self) -> bool:
        """True when no check failed or warned."""
        return self.status == "ok"

    def for_cli(self) -> Verdict:
        """The same verdict with its advice in command-line terms (``--draws 4800``)."""
        problems = tuple(
            dataclasses.replace(p, advice=p.cli_advice) if p.cli_advice else p
            for p in self.problems
        )
        return dataclasses.replace(self, problems=problems)

    def to_frame(self) -> pd.DataFrame:
        """One row per problem: kind, status, message, advice and the variables named."""
        rows = [
            {
                "kind": p.kind,
                "status": p.status,
                "message": p.message,
                "advice": p.advice,
                "variables": ", ".join(p.variables),
            }
            for p in self.problems
        ]
        return pd.DataFrame(rows, columns=["kind", "status", "message", "advice", "variables"])

    def headline(self) -> str:
        """One line: status and the headline numbers."""
        s = self.summary
        parts = [f"{s['chains']:.0f} chains x {s['draws']:.0f} draws"]
        if "divergences" in s:
            parts.append(f"{s['divergences']:.0f} divergence{'' if s['divergences'] == 1 else 's'}")
        parts.append(f"max R-hat {s['max_rhat']:.3f}")
        parts.append(f"min ESS bulk {s['min_ess_bulk']:.0f}, tail {s['min_ess_tail']:.0f}")
        if "min_bfmi" in s:
            parts.append(f"min E-BFMI {s['min_bfmi']:.2f}")
        return f"Sampling check: {self.status.upper()} ({'; '.join(parts)})"

    def __str__(self) -> str:
        lines = [self.headline()]
        for p in self.problems:
            lines += [f"  [{p.status}] {p.message}", f"      what to do: {p.advice}"]
        return "\n".join(lines)

    def __rich__(self) -> Panel:
        colour = _COLOUR[self.status]
        body: list = [Text(self.headline())]
        if self.problems:
            table = Table(show_lines=True, expand=True)
            table.add_column("", no_wrap=True)
            table.add_column("Problem", ratio=3)
            table.add_column("What to do", ratio=2)
            for p in self.problems:
                table.add_row(Text(p.status, style=_COLOUR[p.status]), p.message, p.advice)
            body.append(table)
        return Panel(Group(*body), title=f"[bold {colour}]{self.status.upper()}", expand=False)


def check(
    idata: xr.DataTree,
    *,
    var_names: list[str] | None = None,
    ess_min: float = ESS_WARN,
    rhat_max: float = RHAT_WARN,
    bfmi_min: float = BFMI_WARN,
) -> Verdict:
    """Check a fit's sampling diagnostics and say, in words, what to do about problems.

    Parameters
    ----------
    idata : xarray.DataTree
        Fitted result with ``posterior`` and ``sample_stats`` groups (from :func:`kbayes.fit`,
        nutpie or PyMC's NUTS).
    var_names : list of str, optional
        Posterior variables whose R-hat and ESS are checked. Default: every numeric one,
        deterministic quantities and estimands included.
    ess_min : float, default 400
        Bulk and tail ESS below this warn (below 100 fails).
    rhat_max : float, default 1.01
        R-hat above this warns (above 1.05 fails).
    bfmi_min : float, default 0.3
        A chain whose E-BFMI is below this warns.

    Returns
    -------
    Verdict
        ``status`` ("ok", "warn" or "fail", the worst of the problems), ``problems`` (one
        :class:`Problem` each, with message and advice), ``summary`` (chains, draws,
        divergences, max R-hat, min ESS, min E-BFMI). Prints as text or with rich;
        ``to_frame()`` gives the problems as a table. See the module docstring for the rules.

    Examples
    --------
    >>> verdict = kb.check(kb.fit(kb.load_example(), "glutamate", seed=1))  # doctest: +SKIP
    >>> print(verdict)  # doctest: +SKIP
    Sampling check: OK (4 chains x 2000 draws; 0 divergences; max R-hat 1.002; ...)

    References
    ----------
    .. [1] Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021). Rank-normalization, folding,
       and localization: an improved R-hat for assessing convergence of MCMC. Bayesian
       Analysis 16(2). doi:10.1214/20-BA1221
    .. [2] Betancourt (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian
       Monte Carlo. arXiv:1604.00695
    """
    post = idata.posterior.to_dataset()
    names = var_names or [v for v in post.data_vars if np.issubdtype(post[v].dtype, np.number)]
    post = post[names]
    rhat = _flatten(az.rhat(post))
    ess_bulk = _flatten(az.ess(post, method="bulk"))
    ess_tail = _flatten(az.ess(post, method="tail"))
    summary = {
        "chains": post.sizes["chain"],
        "draws": post.sizes["draw"],
        "max_rhat": float(rhat.max()),
        "min_ess_bulk": float(ess_bulk.min()),
        "min_ess_tail": float(ess_tail.min()),
    }
    problems = [
        *_rhat_problem(rhat, rhat_max),
        *_ess_problem("bulk", ess_bulk, ess_min, summary),
        *_ess_problem("tail", ess_tail, ess_min, summary),
    ]
    if "sample_stats" in idata.children:
        problems = _sampler_problems(idata, bfmi_min, summary) + problems
    else:
        problems.append(
            Problem(
                "sample_stats",
                "warn",
                "The result has no sample_stats group, so divergences, tree depth and E-BFMI "
                "could not be checked.",
                "Check a result straight from kb.fit (or keep sample_stats when saving).",
                cli_advice="Check a result saved by kbayes fit.",
            )
        )
    status = max((p.status for p in problems), key=_ORDER.__getitem__, default="ok")
    return Verdict(status, tuple(problems), summary)


def _flatten(result: xr.DataTree | xr.Dataset) -> pd.Series:
    """Per-element diagnostics as a Series labelled ``var`` or ``var[coord, ...]``."""
    ds = result.to_dataset() if isinstance(result, xr.DataTree) else result
    out: dict[str, float] = {}
    for name, da in ds.data_vars.items():
        if da.ndim == 0:
            out[str(name)] = float(da)
            continue
        for idx, value in da.to_series().items():
            labels = idx if isinstance(idx, tuple) else (idx,)
            out[f"{name}[{', '.join(map(str, labels))}]"] = float(value)
    return pd.Series(out, dtype=float).dropna()  # NaN: a constant quantity, nothing to mix


def _worst(values: pd.Series, ascending: bool, fmt: str = ".3g") -> tuple[tuple[str, ...], str]:
    """The offending labels (worst first) and a phrase naming at most ``_SHOWN`` of them."""
    ordered = values.sort_values(ascending=ascending)
    shown = ", ".join(f"{k} ({v:{fmt}})" for k, v in ordered.head(_SHOWN).items())
    more = len(ordered) - _SHOWN
    return tuple(ordered.index), shown + (f" and {more} more" if more > 0 else "")


def _rhat_problem(rhat: pd.Series, rhat_max: float) -> list[Problem]:
    bad = rhat[rhat > rhat_max]
    if bad.empty:
        return []
    names, shown = _worst(bad, ascending=False, fmt=".3f")  # 1.012, not 1.01 > 1.01
    status: Status = "fail" if bad.max() > RHAT_FAIL else "warn"
    return [
        Problem(
            "rhat",
            status,
            f"The chains disagree (R-hat > {rhat_max:g}) for {len(bad)} quantities: {shown}. "
            "Summaries of these are not yet reliable.",
            "Run longer (more tune and draws); if R-hat stays high, look at these "
            "parameters' trace plots for stuck chains or several modes, and consider "
            "stronger priors or a reparametrisation.",
            names,
            bad.to_dict(),
        )
    ]


def _ess_problem(kind: str, ess: pd.Series, ess_min: float, summary: dict) -> list[Problem]:
    bad = ess[ess < ess_min]
    if bad.empty:
        return []
    names, shown = _worst(bad, ascending=True)
    status: Status = "fail" if bad.min() < ESS_FAIL else "warn"
    what = "means and medians" if kind == "bulk" else "intervals and tail probabilities"
    draws = math.ceil(summary["draws"] * ess_min / max(bad.min(), 1) / 100) * 100
    calls = _refit(draws=draws)
    advice = [
        f"Draw more: about {call} per chain should reach {ess_min:g}; if ESS per draw stays "
        "this low, the sampler is struggling and a reparametrisation helps more than draws."
        for call in calls
    ]
    return [
        Problem(
            f"ess_{kind}",
            status,
            f"Too few effective draws ({kind} ESS < {ess_min:g}) for {len(bad)} quantities: "
            f"{shown}. Their {what} carry a large Monte-Carlo error"
            + (", and below 100 even R-hat and ESS are unreliable." if status == "fail" else "."),
            advice[0],
            names,
            bad.to_dict(),
            cli_advice=advice[1],
        )
    ]


def _sampler_problems(idata: xr.DataTree, bfmi_min: float, summary: dict) -> list[Problem]:
    """Divergences, tree depth and E-BFMI from nutpie's or PyMC's ``sample_stats``."""
    stats = idata.sample_stats.to_dataset()
    settings = json.loads(stats.attrs.get("inference_library_settings", "{}")).get("settings", {})
    total = summary["chains"] * summary["draws"]
    problems = []
    if "diverging" in stats:
        n = int(stats["diverging"].sum())
        summary["divergences"] = n
        if n:
            problems.append(_divergence_problem(idata, n, total, settings))
    depth_var = "maxdepth_reached" if "maxdepth_reached" in stats else "reached_max_treedepth"
    if depth_var in stats:
        n = int(stats[depth_var].sum())
        summary["treedepth_hits"] = n
        if n:
            limit = settings.get("maxdepth", 10)
            problems.append(
                Problem(
                    "treedepth",
                    "warn",
                    f"{n} of {total} transitions ({100 * n / total:.1f} %) stopped at the "
                    f"maximum tree depth ({limit}): the sampler needed very long trajectories, "
                    "so it ran slowly and explored less per draw.",
                    "The results stand; to speed up, reparametrise (strong correlations or "
                    "very different parameter scales are the usual cause, e.g. rescale "
                    "covariates or non-centre random effects), or raise the maximum depth.",
                    values={"transitions": n, "total": total, "max_depth": limit},
                )
            )
    if "energy" in stats:
        bfmi = az.bfmi(stats, var_names="energy")["energy"]
        summary["min_bfmi"] = float(bfmi.min())
        values = zip(bfmi["chain"].values, bfmi.values, strict=True)
        chains = {f"chain {c}": float(v) for c, v in values if v < bfmi_min}
        if chains:
            listed = ", ".join(f"{c} ({v:.2f})" for c, v in chains.items())
            problems.append(
                Problem(
                    "bfmi",
                    "warn",
                    f"Low E-BFMI (< {bfmi_min:g}) in {listed}: the sampler moves slowly between "
                    "energy levels, so it may explore the tails of the posterior poorly.",
                    "Reparametrise (non-centre random effects) or tighten the priors on "
                    "scale parameters (hierarchical SDs); a longer tune may help.",
                    tuple(chains),
                    chains,
                )
            )
    return problems


def _divergence_problem(idata: xr.DataTree, n: int, total: int, settings: dict) -> Problem:
    target = settings.get("adapt_options", {}).get("step_size_settings", {}).get("target_accept")
    now = f" (now {target:g})" if target else ""
    centred = _centred_effects(idata)
    if centred:
        keys = ", ".join(f"[priors.{c}]" for c in centred)
        reparam = (
            f"the spec's centred random effect(s) {', '.join(centred)} are the usual cause "
            f"(a funnel between the effects and their SD): set centered = false under {keys}"
        )
    else:
        reparam = "non-centre random effects or tighten priors on scale parameters"
    advice = [
        f"Refit with a higher target_accept{now}, e.g. {call}; if divergences remain, "
        f"reparametrise: {reparam}."
        for call in _refit(target_accept=0.99)
    ]
    return Problem(
        "divergences",
        "fail",
        f"{n} of {total} transitions ({100 * n / total:.1f} %) diverged: the sampler could "
        "not follow the posterior's curvature, so the draws may miss part of it and be biased.",
        advice[0],
        values={"divergences": n, "total": total},
        cli_advice=advice[1],
    )


def _centred_effects(idata: xr.DataTree) -> list[str]:
    """Names of the stored spec's centred random effects (hierarchical priors, centred)."""
    if "spec" not in idata.attrs:
        return []
    spec = result_spec(idata)
    return [name for name in spec.hierarchical if spec.priors[name].centered]

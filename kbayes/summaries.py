"""Estimand summaries: one row per estimand, with a plain-language sentence each.

The interval mass, ROPEs and decision thresholds come from the spec stored with the result
(``idata.attrs["spec"]``), never from a library default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from kbayes.config import TrialConfig
from kbayes.index_dims import CONDITION, TIME
from kbayes.results import estimand_draws, estimand_names, result_spec, trial_config
from kbayes.spec import level_name

_UNITLESS = {"", "proportion", "probability", "odds ratio"}
#: Words for the posterior probability of "yes", each from its probability up.
ANSWER_WORDS: tuple[tuple[float, str], ...] = (
    (0.99, "Almost certainly yes"),
    (0.95, "Very probably yes"),
    (0.80, "Probably yes"),
    (0.20, "Unclear"),
    (0.05, "Probably not"),
    (0.01, "Very probably not"),
    (0.0, "Almost certainly not"),
)


def estimands(
    idata: xr.DataTree,
    *,
    ci_prob: float | None = None,
    rope: Mapping[str, tuple[float, float]] | None = None,
    thresholds: Mapping[str, Sequence[float]] | None = None,
    var_names: list[str] | None = None,
) -> pd.DataFrame:
    """Summarise the spec's estimands: estimates, intervals and decision probabilities.

    Parameters
    ----------
    idata : xarray.DataTree
        Fitted result (from :func:`kbayes.fit`) with a ``posterior`` group whose estimands
        carry the attrs ``estimand=1``, ``label`` and ``unit``.
    ci_prob : float, optional
        Mass of the highest-density interval. Default: the spec's ``ci_prob``.
    rope : dict of {str: (float, float)}, optional
        Region of practical equivalence per estimand, replacing the spec's for those named.
    thresholds : dict of {str: sequence of float}, optional
        Decision thresholds per estimand, replacing the spec's for those named.
    var_names : list of str, optional
        Posterior variables to summarise (scalar per draw), in this order. Default: the
        estimands, in the order of the spec.

    Returns
    -------
    pandas.DataFrame
        Indexed by estimand name. Columns: ``label``, ``unit``; ``mean``, ``median``, ``sd``
        of the posterior; ``hdi_low``, ``hdi_high`` (HDI of mass ``ci_prob``);
        ``p_direction`` (posterior probability of the more probable sign; NaN for a
        probability and for an estimand whose thresholds leave out 0); ``rope_low``,
        ``rope_high`` and ``in_rope_pct`` (percent of the whole posterior inside the ROPE,
        NaN without one); ``P(>t)`` for every threshold t of any row (NaN for rows without
        that threshold; P(< t) is 1 - P(>t)); ``ess_bulk``, ``ess_tail``, ``rhat``; and
        ``text``, one sentence per row quoting the median, the HDI, the probabilities on
        the side of the posterior median and the ROPE share. ``attrs`` hold ``ci_prob``,
        ``spec_name`` and ``spec_hash``.

    Raises
    ------
    ValueError
        No estimands in the result (and no ``var_names``), an unknown or non-scalar
        variable, or no ``ci_prob`` given for a result without a stored spec.

    Examples
    --------
    >>> idata = kb.fit(kb.load_example(), "glutamate", seed=1)  # doctest: +SKIP
    >>> kb.estimands(idata).loc["ntx_glu", "text"]  # doctest: +SKIP
    'Naltrexone effect on the Glx/tNAA change, averaged over sexes: -0.021 Glx/tNAA ratio
    units (95 % HDI -0.045 to 0.002); P(< 0) = 0.96; 7 % in the ROPE [-0.005, 0.005].'
    """
    post = idata.posterior.to_dataset()
    spec = result_spec(idata) if "spec" in idata.attrs else None
    if not (var_names or estimand_names(idata)):
        raise ValueError(
            "the posterior has no estimands (variables with attrs estimand=1); fit with "
            "kb.fit or pass var_names"
        )
    ds = estimand_draws(post, var_names or estimand_names(idata))
    names = [str(n) for n in ds.data_vars]
    for name in names:
        if set(ds[name].dims) != {"chain", "draw"}:
            extra = sorted(set(ds[name].dims) - {"chain", "draw"})
            raise ValueError(f"{name!r} has dims {extra} besides chain and draw; not scalar")
    if ci_prob is None:
        if spec is None:
            raise ValueError("the result stores no spec, so pass ci_prob (e.g. ci_prob=0.95)")
        ci_prob = spec.ci_prob
    ropes, cuts = {}, {}
    for name in names:  # a contrast between pretreatments: against no difference
        est = spec.estimands.get(ds[name].attrs["estimand"]) if spec else None
        if est and est.rope:
            ropes[name] = est.rope
        cuts[name] = est.thresholds if est else ()
        if est and " vs " in name:
            cuts[name] = (1.0,) if est.unit == "odds ratio" else (0.0,)
    ropes |= dict(rope or {})
    cuts |= dict(thresholds or {})
    hdi = az.hdi(ds, prob=ci_prob)
    diag = {
        "ess_bulk": az.ess(ds, method="bulk"),
        "ess_tail": az.ess(ds, method="tail"),
        "rhat": az.rhat(ds),
    }
    rows = []
    for name in names:
        draws = ds[name].to_numpy().ravel()
        lo, hi = (float(hdi[name].sel(ci_bound=b)) for b in ("lower", "upper"))
        # the sign means nothing for a probability, or what is judged against another value
        unit, given = ds[name].attrs.get("unit", ""), cuts.get(name, ())
        signed = unit != "probability" and (not given or 0 in given)
        row = {
            "label": ds[name].attrs.get("label", name),
            "unit": ds[name].attrs.get("unit", ""),
            "mean": draws.mean(),
            "median": np.median(draws),
            "sd": draws.std(ddof=1),
            "hdi_low": lo,
            "hdi_high": hi,
            "p_direction": max((draws > 0).mean(), (draws < 0).mean()) if signed else np.nan,
            "rope_low": np.nan,
            "rope_high": np.nan,
            "in_rope_pct": np.nan,
        }
        if name in ropes:
            r_lo, r_hi = ropes[name]
            in_rope = 100 * ((draws >= r_lo) & (draws <= r_hi)).mean()
            row |= {"rope_low": r_lo, "rope_high": r_hi, "in_rope_pct": in_rope}
        row |= {_p_col(t): (draws > t).mean() for t in cuts.get(name, ())}
        row |= {k: float(v[name]) for k, v in diag.items()}
        row["text"] = _sentence(row, ci_prob, cuts.get(name, ()))
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(names, name="estimand"))
    p_cols = [c for c in table.columns if c.startswith("P(>")]
    head = ["label", "unit", "mean", "median", "sd", "hdi_low", "hdi_high", "p_direction"]
    rope_cols = ["rope_low", "rope_high", "in_rope_pct"]
    table = table[[*head, *rope_cols, *p_cols, "ess_bulk", "ess_tail", "rhat", "text"]]
    table.attrs = {
        "ci_prob": ci_prob,
        "spec_name": idata.attrs.get("spec_name"),
        "spec_hash": idata.attrs.get("spec_hash"),
    }
    return table


def covariate_effects(idata: xr.DataTree, *, ci_prob: float | None = None) -> pd.DataFrame:
    """Summarise the coefficients of the spec's covariate terms as :func:`estimands` does:
    one row per coefficient (``gamma_age``, per unit of the covariate as its label says) or
    per coded level of a categorical one (``gamma_site_B``: level B against the reference,
    or against the mean over levels under sum coding).

    Raises
    ------
    ValueError
        The model has no covariate terms.
    """
    spec = result_spec(idata)
    post = idata.posterior.to_dataset()
    names = [name for name in spec.covariate_coefficients if name in post]
    if not names:
        raise ValueError(f"the {spec.name!r} model has no covariate terms")
    by_level = spec.level_values({name: post[name] for name in names})
    ds = post[[name for name in names if name not in spec.categorical_coefficients]]
    for name, covariate in spec.categorical_coefficients.items():
        attrs = post[name].attrs
        for level in spec.categorical[covariate]:
            label = f"{attrs.get('label', name)}: {level}"
            key = level_name(name, level)
            ds[key] = by_level[key].assign_attrs(attrs, label=label)
    tree = xr.DataTree.from_dict({"posterior": ds})
    tree.attrs = dict(idata.attrs)
    return estimands(tree, ci_prob=ci_prob, var_names=list(ds.data_vars))


def answers(idata: xr.DataTree, *, ci_prob: float | None = None) -> pd.DataFrame:
    """The spec's questions (``[[questions]]``) answered in words from the posterior.

    Returns
    -------
    pandas.DataFrame
        One row per question, in the spec's order: ``question`` (with the trial's names),
        ``estimand``, ``p_yes`` (the posterior probability of the side that answers yes),
        ``answer`` (``p_yes`` to two decimals in words, :data:`ANSWER_WORDS`) and ``text``:
        the question, the answer, ``p_yes``, the estimand's median and interval (and ROPE
        share), a note when half the posterior or more lies in the ROPE, and the question's
        ``note``. Empty without questions.

    Examples
    --------
    >>> kb.answers(idata).loc[0, "text"]  # doctest: +SKIP
    'Did naltrexone reduce the Glx/tNAA rise during ketamine? Probably yes (P(< 0) = 0.94).
    Naltrexone effect on the Glx/tNAA change, averaged over sexes: -0.020 ...'
    """
    spec = result_spec(idata)
    names = spec.constants | TrialConfig(**trial_config(idata)).label_names
    asked = list(dict.fromkeys(q.estimand for q in spec.questions))  # only these summarised
    post = idata.posterior.to_dataset()
    table = estimands(idata, ci_prob=ci_prob, var_names=asked) if asked else None
    rows = []
    for q in spec.questions:  # several pretreatments: the question asked of each
        for name, da in estimand_draws(post, [q.estimand], contrasts=False).items():
            draws = da.to_numpy().ravel()
            p_yes = float((draws < q.threshold).mean() if q.below else (draws > q.threshold).mean())
            answer = next(words for low, words in ANSWER_WORDS if round(p_yes, 2) >= low)
            at = da.attrs.get("at", {})
            fill = names | ({"active": at[CONDITION]} if CONDITION in at else {})
            fill |= {"time": at[TIME]} if TIME in at else {}
            question = q.ask.format(**fill)
            side = f"P({'<' if q.below else '>'} {q.threshold:g}) {_prob(p_yes)}"
            numbers = _sentence(table.loc[name], table.attrs["ci_prob"], ())  # one P only
            text = f"{question} {answer} ({side}). {numbers}"
            if table.loc[name, "in_rope_pct"] >= 50:
                text += " With half or more of it in the ROPE, the effect may be too small"
                text += " to matter."
            if q.note:
                text += f" {q.note.format(**fill)}"
            rows.append({"question": question, "estimand": str(name), "p_yes": p_yes,
                         "answer": answer, "text": text})  # fmt: skip
    return pd.DataFrame(rows, columns=["question", "estimand", "p_yes", "answer", "text"])


def _p_col(threshold: float) -> str:
    """Column name of P(estimand > threshold): ``P(>0)``, ``P(>-3)``, ``P(>0.5)``."""
    return f"P(>{threshold:g})"


def _number(x: float, sd: float) -> str:
    """``x`` with as many decimals as its posterior SD warrants (two significant digits)."""
    decimals = 2 if not sd > 0 or not math.isfinite(sd) else 1 - math.floor(math.log10(sd))
    text = f"{x:.{min(max(decimals, 0), 8)}f}"
    return text.removeprefix("-") if float(text) == 0 else text  # never "-0"


def _prob(p: float) -> str:
    if p > 0.995:
        return "> 0.99"
    if p < 0.005:
        return "< 0.01"
    return f"= {p:.2f}"


def _sentence(row: dict, ci_prob: float, cuts: Sequence[float]) -> str:
    """E.g. "Effect: -3.1 MADRS points (95 % HDI -5.9 to -0.4); P(< 0) = 0.98."."""
    sd = row["sd"]
    unit = "" if row["unit"] in _UNITLESS else f" {row['unit']}"
    label = row["label"][:1].upper() + row["label"][1:]
    text = (
        f"{label}: {_number(row['median'], sd)}{unit} ({100 * ci_prob:g} % HDI "
        f"{_number(row['hdi_low'], sd)} to {_number(row['hdi_high'], sd)})"
    )
    below = row["median"] < 0  # quote probabilities on the side where the posterior lies
    for t in cuts:
        p = row[_p_col(t)]
        text += f"; P({'<' if below else '>'} {t:g}) {_prob(1 - p if below else p)}"
    if not math.isnan(row["in_rope_pct"]):
        text += (
            f"; {row['in_rope_pct']:.0f} % in the ROPE [{row['rope_low']:g}, {row['rope_high']:g}]"
        )
    return text + "."

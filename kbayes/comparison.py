"""Model comparison by PSIS-LOO on an observed variable the variants share.

Variants (e.g. ``joint`` and ``two_stage``) are compared on the pointwise log likelihood of
one observed variable, by default the only one they all have (``improvement``). They must
have been fitted to the same data; unreliable LOO terms (high Pareto k) are explained in
words.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr


def compare(
    results: Mapping[str, xr.DataTree],
    *,
    var_name: str | None = None,
    method: str = "stacking",
) -> pd.DataFrame:
    """Compare model variants fitted to the same data by leave-one-out cross-validation.

    Parameters
    ----------
    results : dict of {str: xarray.DataTree}
        Two or more fitted results (from :func:`kbayes.fit` with ``log_likelihood=True``),
        keyed by the name to show.
    var_name : str, optional
        Observed variable to compare on. Default: the one observed variable all results
        share (``improvement`` for joint vs two_stage vs improvement).
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}, default "stacking"
        How :func:`arviz.compare` weights the models.

    Returns
    -------
    pandas.DataFrame
        :func:`arviz.compare`'s table, best model first: ``rank``, ``elpd`` (expected log
        predictive density of a held-out observation, summed; higher predicts better),
        ``se``, ``elpd_diff`` and ``dse`` (difference to the best and its SE), ``p_worse``,
        ``p`` (effective number of parameters), ``weight``, ``diag_diff``, ``diag_elpd``;
        plus ``n_high_k`` (observations whose Pareto k is too high for PSIS). ``attrs``:
        ``var_name``, ``text`` (the result in one sentence) and ``warnings`` (one
        plain-language paragraph per model with high Pareto k, saying what to do).

    Raises
    ------
    ValueError
        Fewer than two results, a result without ``log_likelihood`` for ``var_name``, no
        (or several) shared observed variables and no ``var_name``, or results fitted to
        different data.

    Examples
    --------
    >>> table = kb.compare({"joint": a, "two_stage": b})  # doctest: +SKIP
    >>> print(table.attrs["text"])  # doctest: +SKIP

    References
    ----------
    .. [1] Vehtari, Gelman, Gabry (2017). Practical Bayesian model evaluation using
       leave-one-out cross-validation and WAIC. Statistics and Computing 27.
       doi:10.1007/s11222-016-9696-4
    .. [2] Vehtari, Simpson, Gelman, Yao, Gabry (2024). Pareto smoothed importance
       sampling. JMLR 25(72).
    """
    if len(results) < 2:
        raise ValueError("kb.compare needs at least two results, e.g. {'joint': a, 'two_stage': b}")
    var_name = _shared_variable(results, var_name)
    _check_same_data(results, var_name)
    loos, notes = {}, []
    for name, idata in results.items():
        with warnings.catch_warnings():  # ArviZ's generic Pareto-k warning; explained below
            warnings.filterwarnings("ignore", message=".*Pareto distribution", category=UserWarning)
            loos[name] = az.loo(idata, var_name=var_name, pointwise=True)
        note = _pareto_note(name, loos[name], var_name)
        if note:
            notes.append(note)
    table = az.compare(loos, method=method, round_to="none")
    table["n_high_k"] = [int((loos[m].pareto_k > loos[m].good_k).sum()) for m in table.index]
    table.attrs = {"var_name": var_name, "text": _sentence(table, var_name), "warnings": notes}
    return table


def _shared_variable(results: Mapping[str, xr.DataTree], var_name: str | None) -> str:
    """``var_name`` after checking every result has it, or the one variable all share."""
    for name, idata in results.items():
        if "log_likelihood" not in idata.children or "observed_data" not in idata.children:
            raise ValueError(
                f"result {name!r} has no log_likelihood or observed_data group; refit with "
                "kb.fit(..., log_likelihood=True)"
            )
    shared = set.intersection(*(set(r.log_likelihood.data_vars) for r in results.values()))
    if var_name is not None:
        missing = [n for n, r in results.items() if var_name not in r.log_likelihood.data_vars]
        if missing:
            raise ValueError(
                f"results {missing} have no log likelihood for {var_name!r}; variables all "
                f"results share: {sorted(shared) or 'none'}"
            )
        return var_name
    if not shared:
        raise ValueError("the results share no observed variable, so LOO cannot compare them")
    if len(shared) > 1:
        raise ValueError(
            f"the results share the observed variables {sorted(shared)}; pass var_name= to "
            "choose the one to compare on"
        )
    return shared.pop()


def _check_same_data(results: Mapping[str, xr.DataTree], var_name: str) -> None:
    """Raise unless every result observed the same values of ``var_name``."""
    (first, ref), *others = ((n, r.observed_data[var_name]) for n, r in results.items())
    for name, obs in others:
        same_shape = obs.shape == ref.shape and all(
            np.array_equal(obs[d].values, ref[d].values) for d in ref.dims if d in ref.coords
        )
        if not same_shape:
            raise ValueError(
                f"results {first!r} and {name!r} were not fitted to the same data: observed "
                f"{var_name!r} has other dims or coordinates ({dict(ref.sizes)} vs "
                f"{dict(obs.sizes)}); LOO compares models on the same observations only"
            )
        differ = ~np.isclose(obs.values, ref.values, equal_nan=True)
        if differ.any():
            where = np.flatnonzero(differ.ravel())
            dim = ref.dims[0] if ref.ndim == 1 and ref.dims[0] in ref.coords else None
            at = f"{dim} {ref[dim].values[where[0]]}" if dim else f"position {where[0]}"
            raise ValueError(
                f"results {first!r} and {name!r} were not fitted to the same data: "
                f"{len(where)} of {ref.size} observed {var_name!r} values differ (first at "
                f"{at}: {ref.values.ravel()[where[0]]:g} vs "
                f"{obs.values.ravel()[where[0]]:g}); LOO compares models on the same "
                "observations only"
            )


def _pareto_note(name: str, loo, var_name: str) -> str | None:
    """A paragraph on high Pareto k values of one model, or None when all are fine."""
    k = loo.pareto_k
    high = k.where(k > loo.good_k, drop=True)
    if high.size == 0:
        return None
    labels = [str(v) for v in high[k.dims[0]].values] if k.ndim == 1 else []
    shown = f" ({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})" if labels else ""
    very = int((k > 1).sum())
    more = (
        "draw more (the k limit rises to 0.7 with about 2,200 draws), " if loo.good_k < 0.7 else ""
    )
    return (
        f"{name}: {high.size} of {k.size} {var_name} observations{shown} "
        f"{'has' if high.size == 1 else 'have'} Pareto k > {loo.good_k:.2f}"
        + (f" ({very} above 1)" if very else "")
        + ". For these, leaving the observation out changes the posterior too much for "
        "importance sampling to estimate its held-out fit, so this model's ELPD is "
        "unreliable and probably too optimistic; they are often influential participants "
        f"or outliers. What to do: {more}use moment matching "
        "(arviz.loo(..., moment_match=True)) or K-fold "
        "cross-validation (refit leaving out groups of participants); if they are outliers, "
        "consider a heavier-tailed likelihood."
    )


def _sentence(table: pd.DataFrame, var_name: str) -> str:
    """The ranking in one sentence."""
    best = table.index[0]
    text = (
        f"{best!r} predicts held-out {var_name} best "
        f"(ELPD {table.loc[best, 'elpd']:.1f} ± {table.loc[best, 'se']:.1f})"
    )
    for name in table.index[1:]:
        row = table.loc[name]
        text += f"; {name!r} is {abs(row['elpd_diff']):.1f} ± {row['dse']:.1f} worse" + (
            f" (P(worse) = {row['p_worse']:.2f})" if np.isfinite(row["p_worse"]) else ""
        )
    return text + "."

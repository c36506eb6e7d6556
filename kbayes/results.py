"""Fitted results: what a DataTree of :func:`kbayes.fit` records about itself (its spec,
trial configuration and estimands), and saving and loading it (netCDF) so that it reloads
identically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kbayes.errors import DataError
from kbayes.spec import CONDITION, CONTRAST_SUFFIX, ModelSpec, parse_spec

#: Sampler warm-up groups: large, not used downstream, not saved.
WARMUP_GROUPS = ("warmup_posterior", "warmup_sample_stats")


def result_spec(idata: xr.DataTree) -> ModelSpec:
    """The spec a result was fitted with (``attrs["spec"]``)."""
    if "spec" not in idata.attrs:
        raise ValueError("the result stores no spec (attrs['spec']); make it with kb.fit")
    return parse_spec(json.loads(idata.attrs["spec"]), origin=idata.attrs.get("spec_name", "?"))


def trial_config(idata: xr.DataTree) -> dict[str, Any]:
    """The result's trial configuration as plain data (``attrs["trial_config"]``; ``{}``
    if none is stored)."""
    return json.loads(idata.attrs.get("trial_config", "{}"))


def rated_sessions(idata: xr.DataTree) -> np.ndarray:
    """Index of each improvement observation's session (``constant_data.rating_session``;
    every session, in order, in a result saved before sessions could lack a rating)."""
    cd = idata.constant_data
    if "rating_session" in cd:
        return cd["rating_session"].to_numpy()
    return np.arange(cd.sizes["session"])


def estimand_names(idata: xr.DataTree) -> list[str]:
    """Posterior variables marked as estimands (attrs ``estimand=1``), in stored order."""
    return [str(v) for v, da in idata.posterior.data_vars.items() if da.attrs.get("estimand") == 1]


def estimand_rows(idata: xr.DataTree) -> list[str]:
    """The estimands as the tables list them: one row per estimand, per condition of one
    with a value per pretreatment, and per contrast between pretreatments
    (:func:`estimand_draws`)."""
    post = idata.posterior.to_dataset()
    return [str(n) for n in estimand_draws(post, estimand_names(idata)).data_vars]


def estimand_variables(idata: xr.DataTree) -> list[str]:
    """The posterior variables of the estimands: each, and its contrasts between
    pretreatments where it has them (``ntx_glu_contrast``)."""
    post = idata.posterior
    return [v for n in estimand_names(idata) for v in (n, n + CONTRAST_SUFFIX) if v in post]


def row_variable(row: str) -> str:
    """The posterior variable of an estimand table's row (``ntx_glu[nalmefene]`` ->
    ``ntx_glu``; a contrast, ``ntx_glu[nalmefene vs naltrexone]`` -> ``ntx_glu_contrast``)."""
    base, _, coord = row.partition("[")
    return base + CONTRAST_SUFFIX if " vs " in coord else base


def estimand_draws(
    posterior: xr.Dataset, names: Sequence[str], *, contrasts: bool = True
) -> xr.Dataset:
    """The estimands ``names`` as scalars per draw. One with a value per pretreatment (a
    ``condition`` dim) gives one variable per condition, ``ntx_glu[nalmefene]``, and, with
    ``contrasts``, per pair, ``ntx_glu[nalmefene - naltrexone]``, each labelled as such; a
    name may also be one of those. Attrs: ``label``, ``unit``, ``estimand`` (the spec's
    name)."""
    out = {}
    for name in names:
        base, _, coord = name.partition("[")
        found = False
        for var in (base, base + CONTRAST_SUFFIX):
            da = posterior.get(var)
            if da is None or (var != base and not (contrasts or coord)):
                continue
            extra = [d for d in da.dims if d not in ("chain", "draw")]
            if extra not in ([CONDITION], ["contrast"]):  # a scalar, or not an estimand's dims
                if var == name:
                    out[name], found = da.assign_attrs(estimand=base), True
                continue
            labels = json.loads(da.attrs.get("labels", "{}"))
            for x in da[extra[0]].to_numpy().tolist():
                if coord in ("", f"{x}]"):
                    attrs = da.attrs | {"label": labels.get(x, f"{base} [{x}]"), "estimand": base}
                    out[f"{base}[{x}]"] = da.sel({extra[0]: x}, drop=True).assign_attrs(attrs)
                    found = True
        if not found:
            raise ValueError(f"{name!r} is not a posterior variable (nor one of its conditions)")
    for da in out.values():
        da.attrs.pop("labels", None)
    return xr.Dataset(out)


def save(idata: xr.DataTree, path: str | Path) -> Path:
    """Write a result to ``path`` (netCDF via h5netcdf), without the warm-up groups.

    Text-valued sampler statistics (nutpie's ``divergence_message``) are stored as strings.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = idata.copy()
    for group in WARMUP_GROUPS:
        if group in out.children:
            del out[group]
    stats = out["sample_stats"].to_dataset()
    for name, var in stats.data_vars.items():
        if var.dtype == object:
            stats[name] = var.fillna("").astype(str)
    out["sample_stats"] = xr.DataTree(stats)
    out.to_netcdf(path, engine="h5netcdf")
    return path


def load(path: str | Path) -> xr.DataTree:
    """Read a result written by :func:`save` fully into memory."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"result file {str(path)!r} does not exist")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            result = tree.load()
    except (OSError, ValueError) as exc:
        raise DataError(f"result file {str(path)!r} is not a kbayes result: {exc}") from None
    if "posterior" not in result.children or "spec_hash" not in result.attrs:
        raise DataError(f"result file {str(path)!r} has no posterior or spec: not a kbayes result")
    return result


__all__ = [
    "estimand_draws",
    "estimand_names",
    "estimand_rows",
    "estimand_variables",
    "load",
    "rated_sessions",
    "result_spec",
    "row_variable",
    "save",
    "trial_config",
]

"""Fitted results: what a DataTree of :func:`kbayes.fit` records about itself (its spec,
trial configuration and estimands), and saving and loading it (netCDF) so that it reloads
identically."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kbayes.errors import DataError
from kbayes.index_dims import CONTRAST, CONTRAST_SUFFIX, INDEX_DIMS
from kbayes.spec import ModelSpec, parse_spec

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
    """The estimands ``names`` as scalars per draw. One with index dims (a value per
    pretreatment, ``condition``, or per rating time, ``time``) gives one variable per
    combination of their levels, ``ntx_glu[nalmefene]``, ``ntx_imp_total[naltrexone, 4 h]``,
    and, with ``contrasts``, per contrast between pretreatments,
    ``ntx_glu[nalmefene vs naltrexone]``, each labelled as such; a name may also be one of
    those. Attrs: ``label``, ``unit``, ``estimand`` (the spec's name) and ``at`` (dim ->
    level of a row with index dims)."""
    out = {}
    for name in names:
        base, _, coord = name.partition("[")
        found = False
        for var in (base, base + CONTRAST_SUFFIX):
            da = posterior.get(var)
            if da is None or (var != base and not (contrasts or coord)):
                continue
            extra = [d for d in da.dims if d not in ("chain", "draw")]
            if not extra or not set(extra) <= {*INDEX_DIMS, CONTRAST}:  # a scalar, or not ours
                if var == name:
                    out[name], found = da.assign_attrs(estimand=base), True
                continue
            labels = json.loads(da.attrs.get("labels", "{}"))
            levels = [da[d].to_numpy().tolist() for d in extra]
            for combo in itertools.product(*levels):
                cell = ", ".join(combo)
                if coord in ("", f"{cell}]"):
                    at = dict(zip(extra, combo, strict=True))
                    attrs = da.attrs | {"label": labels.get(cell, f"{base} [{cell}]"),
                                        "estimand": base, "at": at}  # fmt: skip
                    out[f"{base}[{cell}]"] = da.sel(at, drop=True).assign_attrs(attrs)
                    found = True
        if not found:
            raise ValueError(f"{name!r} is not a posterior variable (nor one of its levels)")
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

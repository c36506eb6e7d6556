"""Fitted results: what a DataTree of :func:`kbayes.fit` records about itself (its spec,
trial configuration and estimands), and saving and loading it (netCDF) so that it reloads
identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kbayes.errors import DataError
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


__all__ = ["estimand_names", "load", "rated_sessions", "result_spec", "save", "trial_config"]

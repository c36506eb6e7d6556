"""Saving and loading fitted results (DataTree as netCDF) so that they reload identically."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from kbayes.errors import DataError

#: Sampler warm-up groups: large, not used downstream, not saved.
WARMUP_GROUPS = ("warmup_posterior", "warmup_sample_stats")


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


__all__ = ["load", "save"]

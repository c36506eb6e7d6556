"""Wall time and min bulk ESS per second of three ways to sample, on the bundled example.

- ``kbayes``: nutpie compiled once per (spec, data shape), refit with ``with_data``;
- ``pm.sample``: PyMC 6's default ``pm.sample`` (which picks nutpie and compiles every call);
- ``pymc_nuts``: PyMC's own NUTS implementation (``nuts_sampler="pymc"``).

Run: ``.venv/bin/python benchmarks/fit.py [spec ...]`` (default: every built-in spec).
All run in this process on the same data, draws and chains. ``wall_s`` is a first fit
(compile included); ``sample_s`` a second fit of the same data (kbayes reuses its compiled
model; the others cannot). ESS/s uses ``sample_s``; ratios are against ``pymc_nuts``.
"""

from __future__ import annotations

import sys
import time

import arviz as az
import numpy as np
import pymc as pm

import kbayes as kb
from kbayes.build import build_model, model_inputs
from kbayes.sampling import sample


def min_bulk_ess(idata) -> float:
    post = idata.posterior.to_dataset()
    names = [v for v in post.data_vars if not post[v].attrs.get("estimand")]
    ess = az.ess(post[names], method="bulk")
    return float(min(np.min(ess[v].values) for v in ess.data_vars))


def run(spec_name: str, data, draws=2000, tune=1000, chains=4, seed=1) -> list[dict]:
    spec = kb.load_spec(spec_name)
    inputs = model_inputs(spec, data) if spec.delta != "two_stage" else None
    if inputs is None:  # two-stage: time the whole fit (both stages), nutpie only
        start = time.perf_counter()
        dt = kb.fit(data, spec, draws=draws, tune=tune, chains=chains, seed=seed, progress=False)
        wall = time.perf_counter() - start
        return [
            dict(
                spec=spec_name,
                sampler="kbayes",
                wall_s=wall,
                sample_s=np.nan,
                min_ess=min_bulk_ess(dt),
                ess_per_s=min_bulk_ess(dt) / wall,
            )
        ]
    rows = []
    for sampler in ("kbayes", "pm.sample", "pymc_nuts"):
        times = []
        for k in range(2):  # first fit (compile included), then a refit of the same data
            start = time.perf_counter()
            if sampler == "pm.sample":
                model = build_model(spec, inputs)
                dt = pm.sample(
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    random_seed=seed + k,
                    model=model,
                    progressbar=False,
                )
            else:
                engine = "nutpie" if sampler == "kbayes" else "pymc"
                dt, _ = sample(
                    spec,
                    inputs,
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    seed=seed + k,
                    sampler=engine,
                    progress=False,
                )
            times.append(time.perf_counter() - start)
        wall, sample_s = times
        ess = min_bulk_ess(dt)
        rows.append(
            dict(
                spec=spec_name,
                sampler=sampler,
                wall_s=wall,
                sample_s=sample_s,
                min_ess=ess,
                ess_per_s=ess / sample_s,
            )
        )
    return rows


def main(names: list[str]) -> None:
    import pandas as pd

    data = kb.load_example()
    rows = []
    for name in names or kb.builtin_specs():
        rows += run(name, data)
        table = pd.DataFrame(rows)
        print(table.to_string(float_format="{:.1f}".format), flush=True)
    table = pd.DataFrame(rows).set_index(["spec", "sampler"])["ess_per_s"].unstack()
    if "pymc_nuts" in table:
        table["kbayes/pymc_nuts"] = table["kbayes"] / table["pymc_nuts"]
        table["pm.sample/pymc_nuts"] = table["pm.sample"] / table["pymc_nuts"]
    print("\nmin bulk ESS per second of sampling (after compile):")
    print(table.to_string(float_format="{:.2f}".format))


if __name__ == "__main__":
    main(sys.argv[1:])

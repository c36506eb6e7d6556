"""Wall time and min bulk ESS per second, nutpie vs PyMC's default NUTS, on the example.

Run: ``.venv/bin/python benchmarks/fit.py [spec ...]`` (default: every built-in spec).
Both samplers run in this process on the same data, draws and chains; the ratio column is
nutpie's min-ESS/s over PyMC's. Compile time is reported separately from sampling.
"""

from __future__ import annotations

import sys
import time

import arviz as az
import numpy as np

import kbayes as kb
from kbayes.build import model_inputs
from kbayes.fit import sample


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
                sampler="nutpie",
                wall_s=wall,
                sample_s=np.nan,
                min_ess=min_bulk_ess(dt),
                ess_per_s=min_bulk_ess(dt) / wall,
            )
        ]
    rows = []
    for sampler in ("nutpie", "pymc"):
        start = time.perf_counter()
        dt, _ = sample(
            spec,
            inputs,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            sampler=sampler,
            progress=False,
        )
        wall = time.perf_counter() - start
        # sampling time alone: refit the same data (compiled model reused)
        start = time.perf_counter()
        dt, _ = sample(
            spec,
            inputs,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed + 1,
            sampler=sampler,
            progress=False,
        )
        sample_s = time.perf_counter() - start
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
    if "pymc" in table:
        table["nutpie/pymc"] = table["nutpie"] / table["pymc"]
    print("\nmin bulk ESS per second of sampling (after compile):")
    print(table.to_string(float_format="{:.2f}".format))


if __name__ == "__main__":
    main(sys.argv[1:])

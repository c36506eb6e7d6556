"""The model core: effects sampled by NUTS against effects integrated out (``integrate``).

Both are the same model (``docs/models.md``, "How the model is sampled"); only the spec's
``integrate`` list differs. Measured in one run, on the same data and seeds:

- a fit of the bundled example (4 chains x 1000 draws after 1000 tuning steps, 2 cores):
  wall time of ``kbayes.sampling.sample`` (for the integrated core this includes drawing the
  effects afterwards), leapfrog steps per iteration, min bulk ESS over the scalar
  parameters and its rate;
- power replicates at the default design (n = 26, default Truth, power's NUTS settings,
  one core each, serial): seconds per replicate and the share flagged by the problem rule.

Run: ``.venv/bin/python -u benchmarks/core.py [--spec joint] [--replicates 40]``.
"""

from __future__ import annotations

import argparse
import time

import arviz_stats as azs
import pandas as pd

import kbayes as kb
from kbayes.build import model_inputs
from kbayes.sampling import sample
from kbayes.spec import parse_spec


def cores(name: str) -> dict:
    spec = kb.load_spec(name)
    sampled = parse_spec({k: v for k, v in spec.source.items() if k != "integrate"}, "sampled")
    return {"sampled": sampled, "integrated": spec}


def example_fit(spec, data, seed: int = 1) -> dict:
    inputs = model_inputs(spec, data)
    settings = {"draws": 1000, "tune": 1000, "chains": 4, "progress": False, "cores": 2}
    sample(spec, inputs, seed=seed + 100, **settings)  # compile and warm up
    start = time.perf_counter()
    dt, model = sample(spec, inputs, seed=seed, **settings)
    wall = time.perf_counter() - start
    scalars = [rv.name for rv in model.free_RVs if rv.ndim == 0]
    ess = azs.ess(dt.posterior.to_dataset()[scalars], method="bulk")
    worst = min(scalars, key=lambda k: float(ess[k]))
    return {
        "seconds": wall,
        "steps_per_iteration": float(dt.sample_stats["n_steps"].mean()),
        "min_bulk_ess": float(ess[worst]),
        "worst": worst,
        "ess_per_second": float(ess[worst]) / wall,
        "divergences": int(dt.sample_stats["diverging"].sum()),
    }


def replicates(spec, n_reps: int, seed: int = 2026) -> dict:
    start = time.perf_counter()
    table = kb.power(kb.Design(n=26), kb.Truth(), "P(ntx_glu < 0) > 0.95", replicates=n_reps,
                     seed=seed, model=spec, client="serial", progress=False)  # fmt: skip
    wall = time.perf_counter() - start
    row = table.iloc[0]
    return {"seconds_per_replicate": wall / n_reps, "problem_share": row["n_problem"] / n_reps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", default="joint")
    parser.add_argument("--replicates", type=int, default=40)
    args = parser.parse_args()
    data = kb.load_example()
    rows = {}
    for label, spec in cores(args.spec).items():
        rows[label] = example_fit(spec, data) | replicates(spec, args.replicates)
        print(label, rows[label], flush=True)
    table = pd.DataFrame(rows).T
    numeric = table.drop(columns="worst").astype(float)
    ratio = numeric.loc["integrated"] / numeric.loc["sampled"]
    print(table.to_string())
    print("\nintegrated / sampled:")
    print(ratio.to_string(float_format="{:.2f}".format))
    print(f"\nreplicate speed-up: {1 / ratio['seconds_per_replicate']:.2f}x; "
          f"min-ESS-per-second gain: {ratio['ess_per_second']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()

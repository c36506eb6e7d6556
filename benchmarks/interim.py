"""Wall time of an interim study: 5 looks x 8 sample sizes, with the Laplace screen and NUTS.

``kb.sequential`` on the ``joint`` spec (default), looks at 20, 40, 60, 80 and 100 % of n,
n = 16, 24, ..., 72, the calibrated Jelen 2025 truth, efficacy ``P(ntx_glu < 0) > 0.95``
and futility ``P(ntx_glu < 0) < 0.2``; in this process (``client="serial"``, one core).
Every look has its own data shape, so a study compiles 40 models per engine; the time is
split into the first replicate of each design point (compilation and, for the screen, its
reference fits) and the rest (per-replicate fitting). NUTS runs fewer replicates (default
2 per point) and its study time is extrapolated to the screen's replicate count from the
measured per-replicate time. Run:
``.venv/bin/python -u benchmarks/interim.py [--spec joint] [--replicates 50] [--nuts 2]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import kbayes as kb

LOOKS = (0.2, 0.4, 0.6, 0.8, 1.0)
N = tuple(range(16, 73, 8))
RULE, FUTILITY = "P(ntx_glu < 0) > 0.95", "P(ntx_glu < 0) < 0.2"


def study(engine: str, replicates: int, spec: str, design, truth) -> tuple[float, float, object]:
    """(seconds for the first replicate of every point, seconds for the rest, result)."""
    kw = {"looks": LOOKS, "futility": FUTILITY, "model": spec, "engine": engine,
          "client": "serial", "progress": False, "seed": 1}  # fmt: skip
    start = time.perf_counter()
    kb.sequential(design, truth, RULE, n=N, replicates=1, **kw)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = kb.sequential(design, truth, RULE, n=N, replicates=replicates, **kw)
    return first, time.perf_counter() - start, result  # replicate 0 refitted: counted in rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="joint")
    ap.add_argument("--replicates", type=int, default=50)
    ap.add_argument("--nuts", type=int, default=2, help="NUTS replicates per design point")
    args = ap.parse_args()
    design, truth = kb.from_published("jelen2025")
    points = len(N)
    rows = []
    for engine, reps in (("laplace", args.replicates), ("nutpie", args.nuts)):
        first, rest, result = study(engine, reps, args.spec, design, truth)
        per_rep = rest / (points * reps)
        total = first + per_rep * points * args.replicates
        rows.append((engine, first, per_rep, total, result))
        print(f"{engine}: first replicate of the 8 points (40 compiled looks) {first:.0f} s; "
              f"then {per_rep:.2f} s per replicate (5 fits); a {args.replicates}-replicate "
              f"study: {total / 60:.1f} min", flush=True)
    (_, _, lap, lap_total, lap_res), (_, _, nuts, nuts_total, _) = rows
    print(f"NUTS / screen per replicate: {nuts / lap:.0f}x; study: {nuts_total / lap_total:.0f}x")
    table = lap_res.table[["n", "power", "power_se", "p_futility", "expected_n"]]
    print(table.round(3).to_string(index=False))
    print("problems (screen):", int(np.sum(lap_res.table["n_problem"])))


if __name__ == "__main__":
    main()

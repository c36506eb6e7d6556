"""Time per power replicate of three ways to fit, and the speed-up of 2 Dask workers over 1.

For one design (default: the ``joint`` spec, n = 26, the default Truth, NUTS with 500 draws,
500 tuning steps and 2 chains on one core per replicate):

- (a) the naive loop: simulate, build the model and ``pm.sample`` every replicate (PyMC 6
  picks nutpie and compiles it on every call);
- (b) kbayes: the model compiled once per data shape and refitted with new data;
- (c) the Laplace screening engine, compiled once per shape, on the same simulated trials
  as (b), with its decision agreement with (b);
- (b) again on the same trials with other sampler seeds: how often NUTS agrees with
  itself, the ceiling of (c)'s agreement with (b);
- (d) (b) on a Dask LocalCluster of 1 and of 2 worker processes, models compiled in every
  worker before the clock starts.

Times include simulating the data. First calls (compilation) are reported separately.
Run: ``.venv/bin/python benchmarks/power.py [--spec joint] [--replicates 30] [--naive 2]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pymc as pm

import kbayes as kb
from kbayes.build import build_model, model_inputs
from kbayes.power import (
    LAPLACE_DRAWS,
    NUTS_DEFAULTS,
    Task,
    _child,
    _nuts,
    run_replicate,
    simulate_inputs,
)
from kbayes.rules import Rule

RULES = {"joint": "P(ntx_glu < 0) > 0.95", "improvement": "P(ntx_imp_direct < 0) > 0.95",
         "glutamate": "P(ntx_glu < 0) > 0.95"}  # fmt: skip


def rule_target(spec) -> str:
    return Rule(RULES[spec.name]).estimands[0]


def tasks(spec, design, engine: str, count: int, seed: int = 1) -> list[Task]:
    settings = NUTS_DEFAULTS if engine == "nutpie" else {"draws": LAPLACE_DRAWS}
    return [
        Task(spec.source, f"bench-{engine}", r, design, kb.Truth(), kb.Truth(),
             np.random.SeedSequence(seed, spawn_key=(7, r)), engine, settings, rule_target(spec))
        for r in range(count)
    ]  # fmt: skip


def timed(fn, items) -> tuple[float, list]:
    start = time.perf_counter()
    out = [fn(x) for x in items]
    return (time.perf_counter() - start) / max(len(items), 1), out


def nuts_other_seed(spec, task: Task, rule: Rule) -> str | None:
    """The decision of (b) on the same simulated trial with another sampler seed."""
    inputs = simulate_inputs(spec, task.design, task.truth, _child(task.seed, 1))
    used = tuple(dict.fromkeys((*rule.estimands, task.target)))
    draws, _ = _nuts(spec, inputs, _child(task.seed, 3), task.settings, used)
    return rule.outcome(rule.probabilities(draws, spec))


def naive(spec, design, count: int) -> float:
    def one(r: int) -> None:
        data = kb.simulate(design, kb.Truth(), seed=r)
        with build_model(spec, model_inputs(spec, data)):
            pm.sample(draws=500, tune=500, chains=2, cores=1, random_seed=r, progressbar=False)

    return timed(one, range(count))[0]


def dask_speedup(spec, design, rule: Rule, count: int) -> dict[str, float]:
    from dask.distributed import Client, LocalCluster

    out = {}
    for workers in (1, 2):
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            warm = tasks(spec, design, "nutpie", 1, seed=99)[0]
            client.run(run_replicate, warm, rule)  # compile in every worker
            todo = tasks(spec, design, "nutpie", count, seed=3)
            start = time.perf_counter()
            futures = client.map(run_replicate, todo, rule=rule, pure=False)
            client.gather(futures)
            out[workers] = (time.perf_counter() - start) / count
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="joint")
    parser.add_argument("--n", type=int, default=26)
    parser.add_argument("--replicates", type=int, default=30, help="for (b), (c) and (d)")
    parser.add_argument("--naive", type=int, default=2, help="replicates of the naive loop")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    logging.getLogger("kbayes").setLevel(logging.ERROR)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    spec, design = kb.load_spec(args.spec), kb.Design(n=args.n)
    rule = Rule(RULES[args.spec])
    print(f"spec={args.spec} n={args.n} replicates={args.replicates} NUTS={NUTS_DEFAULTS}")

    t_a = naive(spec, design, args.naive)
    print(f"(a) naive loop:            {t_a:8.3f} s per replicate ({args.naive} replicates)")

    nuts, lap = tasks(spec, design, "nutpie", args.replicates + 1), None
    first_b, _ = timed(lambda t: run_replicate(t, rule), nuts[:1])
    t_b, rec_b = timed(lambda t: run_replicate(t, rule), nuts[1:])
    print(
        f"(b) kbayes compiled once:  {t_b:8.3f} s per replicate (first, compiling: {first_b:.1f} s)"
    )
    lap = tasks(spec, design, "laplace", args.replicates + 1)
    first_c, _ = timed(lambda t: run_replicate(t, rule), lap[:1])
    t_c, rec_c = timed(lambda t: run_replicate(t, rule), lap[1:])
    print(f"(c) Laplace engine:        {t_c:8.4f} s per replicate (first, compiling and "
          f"reference scales: {first_c:.1f} s)")  # fmt: skip
    same = np.array([a["outcome"] == c["outcome"] for a, c in zip(rec_b, rec_c, strict=True)])
    ok = np.array([not a["problem"] for a in rec_b])
    p_b = np.array([next(iter(a["probabilities"].values())) for a in rec_b])
    near = np.abs(p_b - rule.conditions[0].prob) < 0.03
    print(f"ratios: (a)/(b) = {t_a / t_b:.1f}x, (b)/(c) = {t_b / t_c:.1f}x")
    print(f"decision agreement (c) vs (b): {same.mean():.1%} of {same.size} "
          f"({same[ok].mean():.1%} of the {ok.sum()} NUTS fits without problems); "
          f"disagreements with the NUTS probability within 0.03 of the bound: "
          f"{(~same & near).sum()} of {(~same).sum()}; problem replicates (b) "
          f"{(~ok).sum()}, (c) {sum(r['problem'] for r in rec_c)}")  # fmt: skip
    again = np.array([a["outcome"] == nuts_other_seed(spec, t, rule)
                      for a, t in zip(rec_b, nuts[1:], strict=True)])  # fmt: skip
    print(f"decision agreement of (b) with itself (same trials, other sampler seeds): "
          f"{again.mean():.1%} of {again.size}: the ceiling of (c) vs (b)")  # fmt: skip
    if not args.skip_dask:
        per = dask_speedup(spec, design, rule, args.replicates)
        print(f"(d) Dask, compiled in workers: 1 worker {per[1]:.3f} s, 2 workers {per[2]:.3f} s "
              f"per replicate; speed-up {per[1] / per[2]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()

"""Time per power replicate of three ways to fit, and the speed-up of 2 Dask workers over 1.

For one design (default: the ``joint`` spec, n = 26, the default Truth, NUTS with 500 draws,
500 tuning steps and 2 chains on one core per replicate):

- (a) the naive loop: simulate, build the model and ``pm.sample`` every replicate, with
  the same sampler settings as (b) (PyMC 6 picks nutpie and compiles it on every call);
- (b) kbayes: the model compiled once per data shape and refitted with new data;
- (c) the Laplace screening engine, compiled once per shape, on the same simulated trials
  as (b), with its decision agreement with (b);
- (b') (b) again on the same trials with other sampler seeds: how often NUTS agrees with
  itself, and (c) with it;
- (d) (b) on a Dask LocalCluster of 1 and of 2 worker processes, models compiled in every
  worker before the clock starts; two rounds (1, 2, 1, 2 workers), the speed-up from the
  summed times (a 2-core virtual machine's speed drifts by 10-20 % between minutes).

(a), (b) and (c) run interleaved, replicate by replicate, so that drift in the machine's
speed affects them alike. Times include simulating the data. First calls (compilation)
are reported separately. ``--agreement-n 12 40`` also reports the decision agreements at
other trial sizes (power there is further from 0.5, so fewer trials sit near the bound).
Run: ``.venv/bin/python -u benchmarks/power.py [--spec joint] [--replicates 30] [--naive 2]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pymc as pm

import kbayes as kb
from kbayes.build import build_model, model_inputs
from kbayes.planning import LAPLACE_DRAWS, Task, run_replicate
from kbayes.replicates import NUTS_DEFAULTS, child
from kbayes.rules import Rule
from kbayes.sampling import sample_scalars, sampler_seed
from kbayes.simulation import simulate_inputs

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
    inputs = simulate_inputs(spec, task.design, task.truth, child(task.seed, 1))
    seed = sampler_seed(child(task.seed, 3))
    scalars, _, _ = sample_scalars(spec, inputs, seed=seed, **task.settings)
    draws = {k: np.asarray(v).reshape(-1) for k, v in spec.estimand_values(scalars).items()}
    return rule.outcome(rule.probabilities(draws, spec))


def agreement(b: list, b_again: list, c: list) -> str:
    """Decision agreements of (c) with (b), of (c) with (b) at other sampler seeds, and of
    (b) with itself, and the share of go decisions of each."""
    b, b_again, c = (np.array(x, dtype=object) for x in (b, b_again, c))
    go = ", ".join(f"{k} {np.mean(x == 'go'):.2f}" for k, x in [("(b)", b), ("(c)", c)])
    return (f"(c) vs (b) {np.mean(c == b):.1%}, (c) vs (b') {np.mean(c == b_again):.1%}, "
            f"(b) vs (b') {np.mean(b == b_again):.1%} of {b.size} trials; power {go}")  # fmt: skip


def agreement_at(spec, n: int, rule: Rule, count: int) -> str:
    design = kb.Design(n=n)
    nuts, lap = tasks(spec, design, "nutpie", count), tasks(spec, design, "laplace", count)
    b = [run_replicate(t, rule)["outcome"] for t in nuts]
    b_again = [nuts_other_seed(spec, t, rule) for t in nuts]
    c = [run_replicate(t, rule)["outcome"] for t in lap]
    return agreement(b, b_again, c)


def naive(spec, design, r: int) -> float:
    """Seconds of one replicate of the naive loop."""
    start = time.perf_counter()
    data = kb.simulate(design, kb.Truth(), seed=r)
    with build_model(spec, model_inputs(spec, data)):
        pm.sample(**NUTS_DEFAULTS, cores=1, random_seed=r, progressbar=False)
    return time.perf_counter() - start


def dask_speedup(spec, design, rule: Rule, count: int, rounds: int = 2) -> dict[int, list]:
    """Seconds per replicate of (b) on 1 and on 2 Dask workers, per round."""
    from dask.distributed import Client, LocalCluster

    out: dict[int, list] = {1: [], 2: []}
    for _ in range(rounds):
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
                out[workers].append((time.perf_counter() - start) / count)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="joint")
    parser.add_argument("--n", type=int, default=26)
    parser.add_argument("--replicates", type=int, default=30, help="for (b), (c) and (d)")
    parser.add_argument("--naive", type=int, default=2, help="replicates of the naive loop")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--agreement-n", type=int, nargs="*", default=[],
                        help="other trial sizes at which to report decision agreement")  # fmt: skip
    args = parser.parse_args()
    logging.getLogger("kbayes").setLevel(logging.ERROR)
    logging.getLogger("pymc").setLevel(logging.ERROR)
    spec, design = kb.load_spec(args.spec), kb.Design(n=args.n)
    rule = Rule(RULES[args.spec])
    print(f"spec={args.spec} n={args.n} replicates={args.replicates} NUTS={NUTS_DEFAULTS}")

    # (a), (b) and (c) interleaved, so that the machine's drift in speed (10-20 % between
    # minutes on a shared 2-core virtual machine) affects them alike
    nuts = tasks(spec, design, "nutpie", args.replicates + 1)
    lap = tasks(spec, design, "laplace", args.replicates + 1)
    first_b, _ = timed(lambda t: run_replicate(t, rule), nuts[:1])
    first_c, _ = timed(lambda t: run_replicate(t, rule), lap[:1])
    naive_at = set(np.linspace(0, args.replicates, args.naive, endpoint=False).astype(int))
    seconds, rec_b, rec_c = {"a": [], "b": [], "c": []}, [], []
    for r, (b, c) in enumerate(zip(nuts[1:], lap[1:], strict=True)):
        if r in naive_at:
            seconds["a"].append(naive(spec, design, r))
        for key, task, records in (("b", b, rec_b), ("c", c, rec_c)):
            t, (record,) = timed(lambda t: run_replicate(t, rule), [task])
            seconds[key].append(t)
            records.append(record)
    t_a, t_b, t_c = (float(np.mean(seconds[k])) for k in "abc")
    print(f"(a) naive loop:            {t_a:8.3f} s per replicate ({args.naive} replicates)")
    print(
        f"(b) kbayes compiled once:  {t_b:8.3f} s per replicate (first, compiling: {first_b:.1f} s)"
    )
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
    b_again = [nuts_other_seed(spec, t, rule) for t in nuts[1:]]
    print(
        "decision agreement, (b') = (b) on the same trials with other sampler seeds: "
        + agreement([a["outcome"] for a in rec_b], b_again, [c["outcome"] for c in rec_c])
    )
    for n in args.agreement_n:
        print(f"n = {n}: " + agreement_at(spec, n, rule, args.replicates))
    if not args.skip_dask:
        per = dask_speedup(spec, design, rule, args.replicates)
        rounds = ", ".join(f"{a:.3f} / {b:.3f} s" for a, b in zip(per[1], per[2], strict=True))
        print(f"(d) Dask, compiled in workers, s per replicate on 1 / 2 workers by round: "
              f"{rounds}; speed-up {sum(per[1]) / sum(per[2]):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()

"""The replicate runner that power (:mod:`kbayes.planning`) and SBC (:mod:`kbayes.calibration`)
share: seeds, keys, the store with resume, serial or Dask execution, the problem rule.

* **Seeds.** A replicate's seed is a ``numpy.random.SeedSequence`` addressed by key
  (:func:`child`), so its streams do not depend on what was drawn before it; the integer a
  sampler takes is derived from it by :func:`kbayes.sampling.sampler_seed` alone.
* **Keys.** :func:`digest` hashes the JSON of what defines a run (spec, design, settings).
* **Store.** Each finished replicate is a small JSON file, written atomically
  (:func:`write_record`); :func:`run` reads the files present and runs only the rest, so an
  interrupted run resumes where it stopped, and says so.
* **Execution.** Serially in this process, or on Dask distributed: a ``LocalCluster`` of
  processes by default, or an existing cluster (a Client or a ``tcp://`` address). The
  shared part of the work (a rule, a setup) is sent to each worker once.
* **Problems.** :func:`is_problem`: divergences, or R-hat or bulk ESS past the fail
  thresholds of :func:`kbayes.check` (:data:`~kbayes.diagnostics.RHAT_FAIL`,
  :data:`~kbayes.diagnostics.ESS_FAIL`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kbayes.diagnostics import ESS_FAIL, RHAT_FAIL

log = logging.getLogger("kbayes")
#: NUTS settings of a replicate fit, power or SBC (shorter than a full fit).
NUTS_DEFAULTS = {"draws": 500, "tune": 500, "chains": 2, "target_accept": 0.9}


# --- seeds and keys --------------------------------------------------------------------
def child(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """Child ``key`` of ``seed`` (a copy of ``seed`` for no key), without mutating ``seed``.

    ``SeedSequence.spawn`` counts its children, so spawning twice gives other streams;
    children addressed by key do not depend on what was spawned before.
    """
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


def seed_record(seed: np.random.SeedSequence) -> dict[str, Any]:
    """A replicate's seed as stored in its record, to rerun it by hand:
    ``np.random.SeedSequence(r["entropy"], spawn_key=r["spawn_key"])``."""
    return {"entropy": seed.entropy, "spawn_key": list(seed.spawn_key)}


def digest(obj: Any) -> str:
    """SHA-256 (hex) of ``obj`` as canonical JSON (sorted keys; other objects by ``str``)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --- the problem rule ------------------------------------------------------------------
def is_problem(divergences: int, max_rhat: float, min_ess: float) -> bool:
    """A fit not to use: any divergence, R-hat above ``RHAT_FAIL`` or bulk ESS below
    ``ESS_FAIL`` (NaN counts as a problem)."""
    return bool(divergences > 0 or not max_rhat <= RHAT_FAIL or not min_ess >= ESS_FAIL)


def failed(exc: Exception) -> dict[str, Any]:
    """The diagnostics of a fit that raised: a problem, with the error as its message."""
    return {"divergences": 0, "max_rhat": np.nan, "min_ess": np.nan, "problem": True,
            "message": f"{type(exc).__name__}: {exc}"}  # fmt: skip


# --- store and execution ---------------------------------------------------------------
def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as JSON atomically: a temporary file in the same folder, then
    ``os.replace`` (an interrupted write leaves no partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, allow_nan=True))
    os.replace(tmp, path)


def run_jobs(
    jobs: Sequence[tuple[Path | None, Any]],
    work: Callable[[Any, Any], dict],
    shared: Any,
    *,
    client: Any = "serial",
    workers: int = 2,
    progress: bool = True,
    label: str = "replicates",
) -> list[dict]:
    """The record of every job, in order: read from its store file where that exists, else
    ``work(task, shared)`` (then written there).

    ``jobs`` are (store path or None, task) pairs; tasks and ``shared`` must pickle when
    ``client`` is not ``"serial"``. ``client``: ``"serial"`` (this process), ``None`` (a
    local cluster of ``workers`` processes, one thread each), a Dask Client or a scheduler
    address. A rich progress bar counts the jobs run.
    """
    records: dict[int, dict] = {}
    for k, (path, _) in enumerate(jobs):
        if path is not None and path.is_file():
            records[k] = json.loads(path.read_text())
    if records:
        log.warning("resuming: %d of %d %s already done (store %s)",
                    len(records), len(jobs), label, jobs[0][0].parent)  # fmt: skip
    pending = [k for k in range(len(jobs)) if k not in records]
    for k, record in _execute([jobs[k][1] for k in pending], work, shared, client, workers,
                              progress, label):  # fmt: skip
        k = pending[k]
        records[k] = record
        if jobs[k][0] is not None:
            write_record(jobs[k][0], record)
    return [records[k] for k in range(len(jobs))]


def _execute(tasks: list, work: Callable, shared: Any, client: Any, workers: int,
             progress: bool, label: str) -> Iterator[tuple[int, dict]]:  # fmt: skip
    """(index, record) of each task as it finishes, serially or on Dask."""
    from rich.progress import Progress

    with Progress(disable=not progress, transient=False) as bar:
        job = bar.add_task(label, total=len(tasks))
        if not tasks:
            return
        if client == "serial":
            for k, task in enumerate(tasks):
                yield k, work(task, shared)
                bar.advance(job)
            return
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = own = None
        if client is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)  # fmt: skip
            client = own = Client(cluster)
        elif isinstance(client, str):
            client = own = Client(client)
        try:
            shared_future = client.scatter(shared, broadcast=True)
            futures = {client.submit(work, t, shared_future, pure=False): k
                       for k, t in enumerate(tasks)}  # fmt: skip
            for future in as_completed(futures):
                yield futures[future], future.result()
                bar.advance(job)
        finally:
            if own is not None:
                own.close()
            if cluster is not None:
                cluster.close()

"""The worked notebooks in ``notebooks/``: each runs top to bottom, and is committed clean.

Each notebook is executed (nbclient, in a subprocess with its own kernel) with
``KBAYES_NOTEBOOK_FAST=1``, which the notebooks read to use tiny sampling settings, replicate
counts and grids. The kernel's working directory and ``TMPDIR`` are a pytest temporary
folder, so nothing is written into the repository (checked). A failing cell fails that
notebook's test with the cell's index, source and traceback.

Compiling a model for nutpie is most of the cost (about a minute for the joint model on one
core here), so the selected notebooks run two at a time, longest first, as soon as the first
of their tests starts; each test then waits for its own notebook and prints its wall time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = [
    "01_fit_crossover_trial.ipynb",
    "02_reanalyse_published.ipynb",
    "03_plan_next_trial.ipynb",
    "04_model_comparison.ipynb",
]
#: Longest first, so that two workers finish together (measured, FAST settings).
LONGEST_FIRST = [EXPECTED[i] for i in (3, 0, 2, 1)]
#: Notebooks executed at once (each compile runs on one core).
WORKERS = max(1, min(2, os.cpu_count() or 1))
#: Seconds one cell may take; a hung kernel fails its test instead of blocking the suite.
CELL_TIMEOUT = 300
#: Seconds a whole notebook may take (a guard; FAST runs take one to two minutes).
NOTEBOOK_TIMEOUT = 1200

_RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

source, out, cwd, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
nb = nbformat.read(source, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                        resources={"metadata": {"path": cwd}})
status = 0
try:
    client.execute()
except (CellExecutionError, CellTimeoutError) as err:
    sys.stderr.write(str(err))
    status = 1
finally:
    nbformat.write(nb, out)
sys.exit(status)
"""


def _files(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def _execute(name: str, folder: Path) -> dict:
    """Run one notebook in a subprocess; the executed copy is written to ``folder``."""
    out = folder / f"executed_{name}"
    env = {**os.environ, "KBAYES_NOTEBOOK_FAST": "1", "TMPDIR": str(folder)}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(NOTEBOOKS / name), str(out), str(folder),
             str(CELL_TIMEOUT)],
            env=env, cwd=folder, capture_output=True, text=True, timeout=NOTEBOOK_TIMEOUT,
        )  # fmt: skip
        status, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        status, stderr = -1, f"timed out after {NOTEBOOK_TIMEOUT} s\n{exc.stderr or ''}"
    return {"status": status, "stderr": stderr, "out": out,
            "seconds": time.perf_counter() - start}  # fmt: skip


def _failure(name: str, run: dict) -> str:
    """The failing cell (index, source, traceback without colour codes), else stderr."""
    if run["out"].exists():
        nb = nbformat.read(run["out"], as_version=4)
        for i, cell in enumerate(nb.cells):
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if errors:
                trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0].traceback))
                head = f"{name}: cell {i} failed\n--- source ---\n{cell.source}"
                return f"{head}\n--- error ---\n{trace}"
    return f"{name}: failed (exit status {run['status']})\n{run['stderr'][-5000:]}"


@pytest.fixture(scope="module")
def executions(request, tmp_path_factory) -> tuple[dict[str, Future], dict[str, float]]:
    """Start every selected notebook run on ``WORKERS`` threads (longest first); also the
    files of ``notebooks/`` before any run."""
    selected = {
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and getattr(item, "originalname", "") == "test_notebook_runs"
    }
    before = _files(NOTEBOOKS)
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    futures = {
        name: pool.submit(_execute, name, tmp_path_factory.mktemp(name.split("_")[0]))
        for name in LONGEST_FIRST
        if name in selected
    }
    yield futures, before
    pool.shutdown(wait=True, cancel_futures=True)


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED
    assert sorted(LONGEST_FIRST) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_committed_without_outputs(name):
    """No outputs, no execution counts, and the FAST switch the tests rely on."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    dirty = [i for i, c in code if c.outputs or c.execution_count is not None]
    assert not dirty, f"{name}: code cells {dirty} have outputs or execution counts; strip them"
    assert 'os.environ.get("KBAYES_NOTEBOOK_FAST") == "1"' in code[0][1].source, (
        f"{name}: the first code cell must read KBAYES_NOTEBOOK_FAST"
    )
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs(name, executions, record_property):
    futures, before = executions
    run = futures[name].result()
    record_property("seconds", round(run["seconds"], 1))
    print(f"{name}: {run['seconds']:.0f} s (wall time, {WORKERS} notebooks at a time)")
    if run["status"] != 0:
        pytest.fail(_failure(name, run), pytrace=False)
    nb = nbformat.read(run["out"], as_version=4)
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in ran), f"{name}: not every cell ran"
    assert _files(NOTEBOOKS) == before, f"a notebook wrote into {NOTEBOOKS}"

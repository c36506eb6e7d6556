"""Same seed, same draws whether compile caches are cold or warm.

Each run is a fresh process whose HOME, XDG cache, numba cache and PyTensor compile folder
are new empty folders (cold), then run again on the same folders (warm). Before numba
fast-math was turned off, the warm run gave other draws. The slow suite adds a run on other
new folders (a second machine) and covers every spec, NUTS power on one and on two Dask
workers (each a cold process: workers inherit the folders) and SBC.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = """
import hashlib, numpy as np, kbayes as kb
sim = kb.simulate(kb.Design(n=19, dropout=0, block_missing=0), kb.Truth(), seed=3)
x = kb.fit(sim, "glutamate", seed=1, draws=100, tune=100, chains=2, progress=False,
           log_likelihood=False, posterior_predictive=False, log_prior=False)
h = hashlib.sha256(np.ascontiguousarray(x["posterior"]["beta_N"].values).tobytes())
t = kb.power(kb.Design(), kb.Truth(), "P(ntx_imp_direct < 0) > 0.95", n=[12], replicates=2,
             seed=4, model="improvement", engine="laplace", client="serial", progress=False)
for r in t.attrs["replicates"]:
    h.update(repr(sorted(r["summary"].items())).encode())
print("HASH", h.hexdigest())
"""


#: Every built-in spec, NUTS power on 1 and 2 cold Dask workers, SBC and the Laplace engine.
_EVERYTHING = """
import hashlib, numpy as np, kbayes as kb
h = hashlib.sha256()
data = kb.simulate(kb.Design(n=10, dropout=0, block_missing=0, items=True), kb.Truth(), seed=3)
for spec in kb.builtin_specs():
    x = kb.fit(data, spec, seed=1, draws=60, tune=60, chains=2, progress=False,
               log_likelihood=False, posterior_predictive=False, log_prior=False)
    for name in sorted(x["posterior"].data_vars):
        h.update(np.ascontiguousarray(x["posterior"][name].values).tobytes())
tables = [kb.power(kb.Design(n=10), kb.Truth(), "P(ntx_imp_direct < 0) > 0.95", replicates=4,
                   seed=4, model="improvement", client=None, workers=w, draws=100, tune=100,
                   progress=False) for w in (1, 2)]
summaries = [[repr(sorted(r["summary"].items())) for r in t.attrs["replicates"]] for t in tables]
assert summaries[0] == summaries[1], "1 and 2 Dask workers differ"
h.update(repr(summaries[0]).encode())
sbc = kb.calibrate("improvement", 2, design=kb.Design(n=8), seed=5, draws=100, tune=100,
                   thin=20, progress=False)
h.update(sbc.ranks.to_csv().encode())
t = kb.power(kb.Design(), kb.Truth(), "P(ntx_imp_direct < 0) > 0.95", n=[12], replicates=2,
             seed=4, model="improvement", engine="laplace", client="serial", progress=False)
h.update(repr([sorted(r["summary"].items()) for r in t.attrs["replicates"]]).encode())
print("HASH", h.hexdigest())
"""


def _run(folder: Path, script: str = _SCRIPT) -> str:
    dirs = {k: folder / k for k in ("home", "cache", "numba", "pytensor")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "HOME": str(dirs["home"]),
        "XDG_CACHE_HOME": str(dirs["cache"]),
        "NUMBA_CACHE_DIR": str(dirs["numba"]),
        "PYTENSOR_FLAGS": f"base_compiledir={dirs['pytensor']}",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=3600, check=True).stdout  # fmt: skip
    return next(line for line in out.splitlines() if line.startswith("HASH"))


def test_cold_and_warm_caches_give_identical_draws(tmp_path):
    assert _run(tmp_path / "a") == _run(tmp_path / "a")


@pytest.mark.slow
def test_cold_warm_and_other_cold_caches_give_identical_draws_everywhere(tmp_path):
    cold = _run(tmp_path / "a", _EVERYTHING)
    warm = _run(tmp_path / "a", _EVERYTHING)
    other = _run(tmp_path / "b", _EVERYTHING)
    assert cold == warm == other

"""Same seed, same draws whether compile caches are cold or warm.

Each run is a fresh process whose HOME, XDG cache, numba cache and PyTensor compile folder
are new empty folders (cold), then run again on the same folders (warm). Before numba
fast-math was turned off, the warm run gave other draws. The slow suite adds a run on other
new folders (a second machine).
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


def _run(folder: Path) -> str:
    dirs = {k: folder / k for k in ("home", "cache", "numba", "pytensor")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "HOME": str(dirs["home"]),
        "XDG_CACHE_HOME": str(dirs["cache"]),
        "NUMBA_CACHE_DIR": str(dirs["numba"]),
        "PYTENSOR_FLAGS": f"base_compiledir={dirs['pytensor']}",
    }
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=900, check=True).stdout  # fmt: skip
    return next(line for line in out.splitlines() if line.startswith("HASH"))


def test_cold_and_warm_caches_give_identical_draws(tmp_path):
    assert _run(tmp_path / "a") == _run(tmp_path / "a")


@pytest.mark.slow
def test_cold_warm_and_other_cold_caches_give_identical_draws(tmp_path):
    cold = _run(tmp_path / "a")
    warm = _run(tmp_path / "a")
    other = _run(tmp_path / "b")
    assert cold == warm == other

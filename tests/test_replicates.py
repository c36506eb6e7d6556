"""The replicate runner: seeds by key, digests, the problem rule, and the store with resume."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from kbayes.diagnostics import ESS_FAIL, RHAT_FAIL
from kbayes.replicates import child, digest, failed, is_problem, run_jobs, write_record
from kbayes.sampling import sampler_seed


def test_children_are_addressed_by_key_and_leave_the_parent_alone():
    root = np.random.SeedSequence(7)
    first = child(root, 3).generate_state(2)
    root.spawn(5)  # spawning counts children: keyed children must not notice
    np.testing.assert_array_equal(child(root, 3).generate_state(2), first)
    assert not np.array_equal(child(root, 4).generate_state(2), first)
    assert child(child(root, 3), 1).spawn_key == (3, 1)


def test_sampler_seed_is_one_rule_for_every_seed_kind():
    ss = np.random.SeedSequence(11, spawn_key=(2,))
    assert sampler_seed(5) == 5
    assert sampler_seed(ss) == sampler_seed(np.random.SeedSequence(11, spawn_key=(2,)))
    assert sampler_seed(ss) == int(ss.generate_state(1)[0] >> 1) < 2**31
    assert sampler_seed(np.random.default_rng(1)) == sampler_seed(np.random.default_rng(1))


def test_digest_is_canonical_json():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


@pytest.mark.parametrize(
    ("divergences", "rhat", "ess", "problem"),
    [(0, 1.0, 1000.0, False), (1, 1.0, 1000.0, True), (0, RHAT_FAIL + 1e-3, 1000.0, True),
     (0, 1.0, ESS_FAIL - 1, True), (0, np.nan, 1000.0, True), (0, RHAT_FAIL, ESS_FAIL, False)],
)  # fmt: skip
def test_problem_rule_uses_the_check_thresholds(divergences, rhat, ess, problem):
    assert is_problem(divergences, rhat, ess) is problem


def test_a_failed_fit_is_a_problem_with_its_message():
    diag = failed(ValueError("no mode"))
    assert diag["problem"] and diag["message"] == "ValueError: no mode"


def _square(task: int, shared: int) -> dict:
    return {"task": task, "value": task**2 + shared}


def test_run_jobs_keeps_order_stores_and_resumes(tmp_path, caplog):
    jobs = [(tmp_path / f"r{k}.json", k) for k in range(5)]
    first = run_jobs(jobs, _square, 10, progress=False)
    assert [r["value"] for r in first] == [k**2 + 10 for k in range(5)]
    assert sorted(p.name for p in tmp_path.glob("r*.json")) == [f"r{k}.json" for k in range(5)]
    (tmp_path / "r1.json").unlink()
    write_record(tmp_path / "r3.json", {"task": 3, "value": -1})  # a stored record is kept
    with caplog.at_level(logging.WARNING, logger="kbayes"):
        again = run_jobs(jobs, _square, 10, progress=False)
    assert "resuming: 4 of 5" in caplog.text
    assert [r["value"] for r in again] == [10, 11, 14, -1, 26]
    assert json.loads((tmp_path / "r1.json").read_text())["value"] == 11
    assert not list(tmp_path.glob("*.tmp*")), "atomic writes leave no temporary files"


def test_run_jobs_without_a_store_runs_everything():
    assert [r["task"] for r in run_jobs([(None, 2), (None, 1)], _square, 0, progress=False)] == [
        2,
        1,
    ]

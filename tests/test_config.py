"""TrialConfig: the design and its periods."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kbayes import TrialConfig


def test_a_crossover_has_two_periods_and_a_parallel_trial_one():
    assert TrialConfig().periods == 2 and TrialConfig(periods=3).periods == 3
    parallel = TrialConfig(design="parallel")
    assert parallel.periods == 1
    assert TrialConfig(**json.loads(json.dumps(dataclasses.asdict(parallel)))) == parallel


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"design": "cluster"}, r"TrialConfig.design must be one of \('crossover', 'parallel'\)"),
        ({"design": "parallel", "periods": 2}, r"design='parallel'\) has one period"),
    ],
)
def test_bad_designs_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TrialConfig(**fields)

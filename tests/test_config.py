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


def test_several_pretreatments_are_configuration():
    """Conditions: the reference first, then one or more pretreatments (a crossover has one
    period per condition by default); fewer than two or repeated names are refused."""
    three = TrialConfig(conditions=["placebo", "naltrexone", "nalmefene"])
    assert three.conditions == ("placebo", "naltrexone", "nalmefene") and three.periods == 3
    assert three.actives == ("naltrexone", "nalmefene") and TrialConfig().active == "naltrexone"
    for bad in (("placebo",), ("placebo", "placebo"), ("placebo", "")):
        with pytest.raises(ValueError, match="two or more distinct names"):
            TrialConfig(conditions=bad)


def test_rating_times_are_increasing_hours_after_infusion_start():
    """rating_times_h: the ratings' schedule in hours, increasing and > 0; lists (TOML,
    JSON) become tuples of floats; the day-1 rating is the one at 24 h (the default)."""
    assert TrialConfig().rating_times_h == (24.0,)
    week = TrialConfig(rating_times_h=[4, 24, 72, 168])
    assert week.rating_times_h == (4.0, 24.0, 72.0, 168.0)
    assert all(isinstance(t, float) for t in week.rating_times_h)
    assert TrialConfig(**json.loads(json.dumps(dataclasses.asdict(week)))) == week
    assert "the day-1 rating (sessions' madrs_day1) is the one at 24 h" in " ".join(
        TrialConfig.__doc__.split()
    )
    for bad in [(), (0, 24), (-4, 24), (24, 4), (4, 4), ("4 h",), (float("nan"),), (True,)]:
        with pytest.raises(ValueError, match=r"TrialConfig.rating_times_h must be .*increasing"):
            TrialConfig(rating_times_h=bad)

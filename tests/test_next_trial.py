"""kb.plan: from the published trial to a planning report, end to end (Laplace screen on the
``glutamate`` spec, small replicate counts)."""

from __future__ import annotations

import numpy as np
import pytest

import kbayes as kb

RULE = "P(ntx_glu < 0) > 0.95"
SMALL = {"model": "glutamate", "n_range": (8, 40), "replicates": 40, "null_replicates": 200,
         "rounds": 1, "client": "serial", "progress": False, "seed": 2}  # fmt: skip


@pytest.fixture(scope="module")
def plan():
    return kb.plan("jelen2025", RULE, looks=[0.5, 1.0], futility="P(ntx_glu < 0) < 0.2", **SMALL)


def test_plan_chains_the_calibrated_design_threshold_and_size(plan):
    calibrated = kb.from_published("jelen2025", seed=2)
    assert plan.calibrated.truth == calibrated.truth  # the design the paper implies
    # the threshold was calibrated under the truth without the pretreatment effects
    (cond,) = plan.rule.conditions
    assert cond.event == "ntx_glu < 0" and plan.threshold.n_ok + plan.threshold.n_problem == 200
    t = pd_row(plan.threshold.table)
    assert t["true_value"] == 0.0
    # the chosen n reaches the target on the fitted curve, and the one below does not
    fitted = plan.size.fitted.set_index("n")["power"]
    assert 8 <= plan.n <= 40 and fitted[plan.n] >= 0.8 > fitted.get(plan.n - 1, 0.0)
    # calibrated again at the chosen n; on fresh null trials its rate is alpha within MC error
    assert pd_row(plan.threshold.table)["n"] == plan.n  # the bound is the chosen n's
    assert plan.n in plan.settings["threshold calibrated at n"]
    row = pd_row(plan.null_check)
    assert row["n"] == plan.n and abs(row["power"] - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 200)
    assert plan.n in plan.assurance["n"].tolist()


def test_interim_bound_holds_the_overall_rate_and_stops_early(plan):
    assert plan.interim_threshold.threshold >= plan.threshold.threshold  # two looks: stricter
    null = pd_row(plan.interim_null.table)
    assert null["power"] < 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)  # fresh null trials
    effect = pd_row(plan.interim.table)
    assert effect["expected_n"] < plan.n and effect["p_stop_early"] > 0


def test_report_of_a_plan_is_one_self_contained_page(plan, tmp_path):
    path = kb.report(plan, tmp_path / "plan.html")
    text = path.read_text()
    for section in ("summary", "design", "threshold", "size", "interim", "settings"):
        assert f'<section id="{section}">' in text
    assert text.count("data:image/png;base64,") == 4  # threshold, size, assurance, interim
    assert 'src="http' not in text and "<link" not in text  # nothing loaded from elsewhere
    assert f"n = {plan.n} reaches power 0.8" in text
    with pytest.raises(ValueError, match="HTML"):
        plan.write_report(tmp_path / "plan.md")


def pd_row(table):
    assert len(table) == 1
    return table.iloc[0]


def test_kbayes_plan_prints_the_plan_and_writes_its_report(plan, tmp_path):
    """The command line runs the same plan (same settings and seed, so the same n)."""
    from typer.testing import CliRunner

    from kbayes.cli import app

    out = tmp_path / "plan.html"
    args = ["plan", "--model", "glutamate", "--n-min", "8", "--n-max", "40", "--replicates",
            "40", "--null-replicates", "200", "--rounds", "1", "--seed", "2", "--looks", "0.5",
            "--looks", "1.0", "--futility", "P(ntx_glu < 0) < 0.2", "--serial", "--out",
            str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"n = {plan.n} reaches power 0.8" in result.output and out.is_file()

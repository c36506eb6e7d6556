"""Plots: each returns a matplotlib Figure with drawn artists; missing groups are named."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from kbayes import plots
from kbayes.spec import load_spec


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _drawn(fig: Figure) -> bool:
    """Whether the figure has axes and at least one line, collection or patch in them."""
    return bool(fig.axes) and any(ax.lines or ax.collections or ax.patches for ax in fig.axes)


def _without(tree: xr.DataTree, *groups: str) -> xr.DataTree:
    out = tree.copy()
    for group in groups:
        del out[group]
    return out


def _with_spec(tree: xr.DataTree, name: str) -> xr.DataTree:
    out = tree.copy()
    out.attrs["spec"] = json.dumps(load_spec(name).source)
    return out


@pytest.mark.parametrize(
    "plot",
    [
        plots.plot_trace,
        plots.plot_estimands,
        plots.plot_timecourse,
        plots.plot_improvement,
        plots.plot_ppc,
        plots.plot_prior_sensitivity,
    ],
)
def test_plot_returns_drawn_figure(joint_example_fit, plot):
    """Every plot of the joint fit is a Figure with axes and something drawn in them."""
    fig = plot(joint_example_fit)
    assert isinstance(fig, Figure)
    assert _drawn(fig), f"{plot.__name__} drew nothing"


def test_trace_rank_and_selected_variables(joint_example_fit):
    """Rank plots too; var_names selects the panels."""
    fig = plots.plot_trace(joint_example_fit, ["beta_N", "gamma_N"], kind="rank")
    assert _drawn(fig)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="kind must be"):
        plots.plot_trace(joint_example_fit, kind="pairs")


def test_estimands_grouped_by_unit_with_sexes_after_average(joint_example_fit):
    """One panel per unit; each average is followed by its female and male rows."""
    fig = plots.plot_estimands(joint_example_fit)
    units = {
        da.attrs["unit"]
        for da in joint_example_fit.posterior.data_vars.values()
        if da.attrs.get("estimand") == 1
    }
    assert len(fig.axes) == len(units)
    order = plots._estimand_order(["a", "a_male", "b", "a_female", "c_female"])
    assert order == [
        ("a", ""),
        ("a_female", "female"),
        ("a_male", "male"),
        ("b", ""),
        ("c_female", "female"),
    ]


def test_timecourse_uses_time_and_falls_back_to_blocks(joint_example_fit):
    """Minutes from infusion start on the x axis; the block number without ``time_min``."""
    fig = plots.plot_timecourse(joint_example_fit)
    assert "minutes" in fig.axes[0].get_xlabel()
    tree = joint_example_fit.copy()
    tree["constant_data"] = xr.DataTree(tree.constant_data.to_dataset().drop_vars("time_min"))
    fig = plots.plot_timecourse(tree)
    assert fig.axes[0].get_xlabel() == "fMRS block"
    assert _drawn(fig)


def test_prior_predictive_check(joint_example_fit):
    """group="prior_predictive" draws the prior predictive check."""
    assert _drawn(plots.plot_ppc(joint_example_fit, ["improvement"], group="prior_predictive"))


def test_ppc_rootogram_for_ordinal_items():
    """Integer-valued outcomes (item scores) get a rootogram."""
    rng = np.random.default_rng(1)
    coords = {"item_obs": np.arange(40)}
    pp = xr.Dataset(
        {"items": (("chain", "draw", "item_obs"), rng.integers(0, 7, (2, 30, 40)))},
        coords=coords,
    )
    obs = xr.Dataset({"items": ("item_obs", rng.integers(0, 7, 40))}, coords=coords)
    tree = xr.DataTree.from_dict({"posterior_predictive": pp, "observed_data": obs})
    assert _drawn(plots.plot_ppc(tree))


@pytest.mark.parametrize(
    ("plot", "group", "call"),
    [
        (plots.plot_ppc, "posterior_predictive", "posterior_predictive=True"),
        (plots.plot_prior_sensitivity, "log_prior", "log_prior=True"),
        (plots.plot_timecourse, "constant_data", "kb.fit"),
        (plots.plot_improvement, "observed_data", "kb.fit"),
        (plots.plot_estimands, "posterior", "kb.fit"),
    ],
)
def test_missing_group_is_named(joint_example_fit, plot, group, call):
    """A missing group raises ValueError naming the group and the call that adds it."""
    with pytest.raises(ValueError, match=rf"no '{group}' group.*{call}"):
        plot(_without(joint_example_fit, group))


def test_prior_predictive_missing_names_prior_flag(joint_example_fit):
    """Without the prior predictive group the error says to fit with prior=True."""
    tree = _without(joint_example_fit, "prior_predictive")
    with pytest.raises(ValueError, match=r"prior=True"):
        plots.plot_ppc(tree, group="prior_predictive")


def test_plots_that_do_not_apply_to_the_spec_say_so(joint_example_fit):
    """No fMRS level: no time course; no glutamate term on improvement: no improvement plot."""
    with pytest.raises(ValueError, match="no fMRS level"):
        plots.plot_timecourse(_with_spec(joint_example_fit, "madrs_items"))
    with pytest.raises(ValueError, match="does not relate improvement"):
        plots.plot_improvement(_with_spec(joint_example_fit, "glutamate"))


def test_prior_sensitivity_scales_only_top_level_priors(joint_example_fit):
    """Random-effect distributions (hierarchical priors, non-centred offsets) are not scaled."""
    names = plots.top_level_priors(joint_example_fit)
    assert {"beta_N", "gamma_N", "nu", "u_sigma"} <= set(names)
    assert not {"a", "u_offset", "v_offset", "a_session_offset"} & set(names)


def test_ppc_panels_are_titled_in_words_with_units(joint_example_fit):
    fig = plots.plot_ppc(joint_example_fit)
    titles = {ax.get_title() for ax in fig.axes}
    assert {"Glx/tNAA ratio of each fMRS block", "day-1 improvement (MADRS points)"} <= titles


def test_a_result_saved_before_ratings_could_be_missing_still_plots(joint_example_fit):
    """Without ``constant_data.rating_session`` (results saved by earlier versions) every
    session counts as rated: the improvement plot shows one point per session."""
    old = joint_example_fit.copy()
    old["constant_data"] = xr.DataTree(
        old["constant_data"].to_dataset().drop_vars("rating_session")
    )
    fig = plots.plot_improvement(old)
    points = sum(len(line.get_xdata()) for line in fig.axes[0].lines if line.get_marker() == "o")
    assert points == old.constant_data.sizes["session"]

"""Converters against hand-computed values; prior sets; reanalysis reproduces reported p.

Hand values are the R expressions in each docstring (base R, stats package).
"""

import math

import matplotlib as mpl
import pytest

from kbayes import published
from kbayes.published import convert
from kbayes.reanalysis import NormalPrior, plot_reanalysis, prior_set, reanalyse


def test_f_to_t_and_p_hand_values():
    """F(1, 74) = 5.39 -> |t| = 2.32, two-sided p = 0.023.

    R: sqrt(5.39); 2 * pt(sqrt(5.39), 74, lower.tail = FALSE)
    """
    t, df = convert.t_from_f(5.39, (1, 74), direction=1)
    assert (round(t, 2), df) == (2.32, 74)
    assert round(convert.p_from_t(t, df), 3) == 0.023
    assert convert.t_from_f(5.39, 74, direction=-1)[0] == pytest.approx(-2.3216374, abs=1e-6)


def test_f_with_several_numerator_df_is_refused():
    """F(3, 39) has no single signed effect."""
    with pytest.raises(ValueError, match="only F\\(1, df\\)"):
        convert.from_f(1.70, (3, 39), direction=1)


def test_from_t_p_matches_t_distribution():
    """R: 2 * pt(2, 20, lower.tail = FALSE) = 0.05926554."""
    assert convert.from_t(2.0, 20).p_value == pytest.approx(0.05926554, abs=1e-7)


def test_from_f_with_estimate_uses_test_based_se():
    """SE = 28 / z, z = qnorm(1 - p / 2) with p from F(1, 74) = 5.39 (z = 2.273305)."""
    lik = convert.from_f(5.39, (1, 74), direction=1, estimate=28.0, scale="%")
    assert lik.se == pytest.approx(28 / 2.2733046, rel=1e-6)
    assert "Altman & Bland" in lik.approximation


def test_from_p_paired_gives_cohens_dz():
    """p = 0.05, n = 16 paired: d_z = qt(0.975, 15) / 4 = 0.5328624; SE = d_z / qnorm(0.975)."""
    lik = convert.from_p(0.05, direction=1, n=16, design="paired")
    assert lik.scale == "d_z"
    assert lik.estimate == pytest.approx(0.5328624, abs=1e-6)
    assert lik.se == pytest.approx(0.2718736, abs=1e-6)


def test_from_p_parallel_gives_cohens_d():
    """p = 0.05, 20 + 20: d = qt(0.975, 38) * sqrt(1/20 + 1/20) = 0.6401696."""
    lik = convert.from_p(0.05, direction=-1, n=20, n2=20, design="parallel")
    assert (lik.scale, lik.estimate) == ("d", pytest.approx(-0.6401696, abs=1e-6))
    assert lik.se == pytest.approx(0.3266232, abs=1e-6)


def test_from_p_without_n_is_on_z_scale():
    """No estimate, no n: estimate = qnorm(1 - p/2), SE = 1."""
    lik = convert.from_p(0.05, direction=1)
    assert (lik.estimate, lik.se, lik.scale) == (pytest.approx(1.959964, abs=1e-6), 1.0, "z")


def test_from_ci_hand_value():
    """95 % CI 1 to 3: SE = 2 / (2 * qnorm(0.975)) = 0.5102135."""
    lik = convert.from_ci(2.0, 1.0, 3.0, scale="MADRS points")
    assert lik.se == pytest.approx(0.5102135, abs=1e-6)
    assert "asymmetric" in convert.from_ci(2.0, 1.5, 4.0, scale="x").approximation


@pytest.mark.parametrize(
    ("kwargs", "se"),
    [
        ({"n": 36}, 1.0),  # 6 / sqrt(36)
        ({"n": 36, "design": "crossover", "r": 0.75}, 6 * math.sqrt(0.5) / 6),
        ({"n": 18, "n2": 18, "design": "parallel"}, 2.0),  # 6 * sqrt(2 / 18)
    ],
)
def test_mean_difference_se(kwargs, se):
    """Paired, crossover with assumed r, parallel."""
    lik = convert.from_mean_difference(3.0, 6.0, scale="MADRS points", **kwargs)
    assert lik.se == pytest.approx(se)


def test_estimate_against_test_direction_is_refused():
    """A negative estimate with a positive t is an input error."""
    with pytest.raises(ValueError, match="disagree"):
        convert.from_t(2.5, 30, estimate=-4.0, scale="MADRS points")


def test_multi_df_f_in_registry_is_refused():
    """F = 3.76 with P = 0.04 cannot be an F(1, df): min P of F(1, df) = 3.76 is 0.052."""
    (res,) = published.study("hippocampal_glx_pmid27480494").results
    with pytest.raises(ValueError, match="several"):
        convert.from_result(res, direction=1, n=15)


def test_prior_set_tail_probabilities():
    """Sceptical: P(> delta) = 5 %; enthusiastic: P(< 0) = 5 %; sd = 25 / qnorm(0.95)."""
    sceptical, neutral, enthusiastic = prior_set(25.0)
    assert sceptical.sd == pytest.approx(15.198921, abs=1e-5)
    assert (sceptical.mean, enthusiastic.mean, math.isinf(neutral.sd)) == (0.0, 25.0, True)
    assert enthusiastic.sd == sceptical.sd


def test_conjugate_update_hand_value():
    """Prior N(0, 1) x likelihood N(2, 1) -> N(1, sqrt(1/2))."""
    lik = convert.from_estimate(2.0, 1.0, scale="x")
    table = reanalyse(lik, delta=1.0, priors=(NormalPrior("unit", 0.0, 1.0, ""),))
    row = table.loc["unit"]
    assert (row["post_mean"], row["post_sd"]) == (1.0, pytest.approx(math.sqrt(0.5)))
    assert row["p_beyond"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("study", "key", "delta", "p_reported"),
    [
        ("jelen2025", "madrs_day1", None, 0.023),
        ("jelen2025", "glx_infusion", None, 0.029),
        ("abdallah2018_13c", "glutamine_enrichment", 10.0, 0.02),
    ],
)
def test_flat_prior_reproduces_reported_p(study, key, delta, p_reported):
    """Under the flat prior, 2 min(P(effect > 0), P(effect < 0)) is the paper's p."""
    row = reanalyse(study, outcome=key, delta=delta).loc["neutral"]
    assert 2 * min(row["p_benefit"], row["p_harm"]) == pytest.approx(p_reported, abs=5e-4)


def test_jelen_madrs_day1_table():
    """Default call of DESIGN.md: three priors, harm = attenuation, citation carried."""
    table = reanalyse("jelen2025", outcome="madrs_day1")
    assert list(table.index) == ["sceptical", "neutral", "enthusiastic"]
    assert table.attrs["doi"] == "10.1038/s41591-025-03800-w"
    assert table.attrs["delta"] == 25.0
    assert (table.attrs["estimate"], table.attrs["scale"]) == (28.0, "%")
    means = table["post_mean"]
    assert 0 < means["sceptical"] < means["enthusiastic"] < means["neutral"] == 28.0
    assert (table["p_harm"] > 0.95).all()  # attenuation > 0 is harm
    assert table["text"].str.contains("P\\(harm: effect > 0\\)").all()


def test_likelihood_needs_delta_and_study_needs_outcome():
    """Missing choices raise errors naming what to give."""
    with pytest.raises(ValueError, match="delta"):
        reanalyse(convert.from_estimate(1.0, 1.0, scale="x"))
    with pytest.raises(KeyError, match="madrs_day1"):
        reanalyse("jelen2025")
    with pytest.raises(ValueError, match="delta"):
        reanalyse("abdallah2018_13c")


def test_figure_has_one_panel_per_prior():
    """plot_reanalysis returns a Figure with three panels."""
    fig = plot_reanalysis(reanalyse("jelen2025", outcome="madrs_day1"))
    assert isinstance(fig, mpl.figure.Figure)
    assert len(fig.axes) == 3

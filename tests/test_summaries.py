"""kb.estimands: the table matches direct numpy computation on the draws, takes interval mass,
ROPEs and thresholds from the stored spec, and says each result in a sentence."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy import stats

import kbayes as kb
from kbayes.summaries import estimands


@pytest.fixture(scope="session")
def example_fit() -> xr.DataTree:
    """The bundled example fitted by the glutamate spec, short chains."""
    return kb.fit(
        kb.load_example(), "glutamate", draws=300, tune=300, chains=2, seed=1, progress=False
    )


def _hdi(draws: np.ndarray, prob: float) -> tuple[float, float]:
    """Shortest interval between two draws holding floor(prob * n) + 1 of the n draws."""
    x = np.sort(draws)
    k = int(np.floor(prob * len(x)))
    start = int(np.argmin(x[k:] - x[: len(x) - k]))
    return x[start], x[start + k]


def _with_spec(idata: xr.DataTree, **changes) -> xr.DataTree:
    """A copy of ``idata`` whose stored spec has the top-level ``changes``."""
    tree = idata.copy()
    tree.attrs["spec"] = json.dumps(json.loads(idata.attrs["spec"]) | changes)
    return tree


def test_rows_are_the_spec_estimands_in_spec_order(example_fit):
    """One row per estimand, in the spec's order, with the fit's labels and units."""
    table = estimands(example_fit)
    spec = kb.load_spec("glutamate")
    assert list(table.index) == list(spec.estimands)
    assert table.index.name == "estimand"
    post = example_fit.posterior
    assert table["label"].tolist() == [post[n].attrs["label"] for n in table.index]
    assert table.loc["ntx_glu", "unit"] == "Glx/tNAA ratio units"
    assert table.attrs["ci_prob"] == spec.ci_prob == 0.95
    assert table.attrs["spec_hash"] == example_fit.attrs["spec_hash"]
    fixed = ["label", "unit", "mean", "median", "sd", "hdi_low", "hdi_high", "p_direction"]
    assert table.columns[: len(fixed)].tolist() == fixed
    assert table.columns[-4:].tolist() == ["ess_bulk", "ess_tail", "rhat", "text"]


def test_values_match_direct_computation(example_fit):
    """Mean, median, SD, HDI, P(direction), P(>0) and % in ROPE, recomputed with numpy."""
    table = estimands(example_fit)
    for name, row in table.iterrows():
        x = example_fit.posterior[name].to_numpy().ravel()
        assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert row["median"] == pytest.approx(np.median(x), rel=1e-12)
        assert row["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
        assert (row["hdi_low"], row["hdi_high"]) == pytest.approx(_hdi(x, 0.95))
        assert row["P(>0)"] == pytest.approx((x > 0).mean())
        assert row["p_direction"] == pytest.approx(max((x > 0).mean(), (x < 0).mean()))
    x = example_fit.posterior["ntx_glu"].to_numpy().ravel()
    assert table.loc["ntx_glu", ["rope_low", "rope_high"]].tolist() == [-0.005, 0.005]
    in_rope = 100 * np.mean((x >= -0.005) & (x <= 0.005))
    assert table.loc["ntx_glu", "in_rope_pct"] == pytest.approx(in_rope)
    assert table.loc[table.index != "ntx_glu", "in_rope_pct"].isna().all()


def test_ess_and_rhat_are_arviz_values(example_fit):
    """ESS and R-hat columns are ArviZ's (rank-normalised) for each estimand."""
    table = estimands(example_fit)
    post = example_fit.posterior.to_dataset()[list(table.index)]
    for col, values in [
        ("ess_bulk", az.ess(post, method="bulk")),
        ("ess_tail", az.ess(post, method="tail")),
        ("rhat", az.rhat(post)),
    ]:
        expected = [float(values[n]) for n in table.index]
        assert table[col].tolist() == pytest.approx(expected)


def test_interval_mass_comes_from_the_spec_or_the_argument(example_fit):
    """ci_prob defaults to the stored spec's (not ArviZ's 0.89) and can be overridden."""
    x = example_fit.posterior["ntx_glu"].to_numpy().ravel()
    from_spec = estimands(_with_spec(example_fit, ci_prob=0.8))
    assert from_spec.attrs["ci_prob"] == 0.8
    assert tuple(from_spec.loc["ntx_glu", ["hdi_low", "hdi_high"]]) == pytest.approx(_hdi(x, 0.8))
    assert "(80 % HDI" in from_spec.loc["ntx_glu", "text"]
    given = estimands(example_fit, ci_prob=0.5)
    assert tuple(given.loc["ntx_glu", ["hdi_low", "hdi_high"]]) == pytest.approx(_hdi(x, 0.5))


def test_rope_and_thresholds_can_be_overridden(example_fit):
    """rope= and thresholds= replace the spec's for the estimands named."""
    table = estimands(
        example_fit,
        rope={"ntx_glu_male": (-0.01, 0.01)},
        thresholds={"ntx_glu": [-0.01, 0.0]},
        var_names=["ntx_glu", "ntx_glu_male"],
    )
    x = example_fit.posterior["ntx_glu"].to_numpy().ravel()
    male = example_fit.posterior["ntx_glu_male"].to_numpy().ravel()
    assert table.loc["ntx_glu", "P(>-0.01)"] == pytest.approx((x > -0.01).mean())
    assert table.loc["ntx_glu_male", "in_rope_pct"] == pytest.approx(
        100 * np.mean(np.abs(male) <= 0.01)
    )
    assert table.loc["ntx_glu", "rope_low"] == -0.005  # the spec's, untouched
    assert np.isnan(table.loc["ntx_glu_male", "P(>-0.01)"])


def test_sentence_for_a_negative_effect():
    """The text quotes the median, the HDI and P(< 0) for an effect below zero, and the ROPE."""
    q = stats.norm.ppf((np.arange(4000) + 0.5) / 4000, loc=-3.1, scale=1.4)
    draws = np.random.default_rng(1).permutation(q).reshape(4, 1000)
    spec = kb.load_spec("improvement")
    label = "Naltrexone effect on day-1 improvement"
    attrs = {"label": label, "unit": "MADRS points", "estimand": 1}
    post = xr.Dataset({"ntx_imp_direct": (("chain", "draw"), draws, attrs)})
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs["spec"] = json.dumps(spec.source)
    row = estimands(tree).loc["ntx_imp_direct"]
    assert row["text"] == (
        f"{label}: -3.1 MADRS points (95 % HDI -5.8 to -0.4); P(< 0) = 0.99; "
        "22 % in the ROPE [-2, 2]."
    )


def test_errors_name_the_problem(example_fit):
    """Non-scalar or unknown variables, and a result without spec or ci_prob, raise."""
    with pytest.raises(ValueError, match=r"'u' has dims \['participant'\]"):
        estimands(example_fit, var_names=["u"])
    with pytest.raises(ValueError, match="'nope' is not a posterior variable"):
        estimands(example_fit, var_names=["nope"])
    bare = xr.DataTree.from_dict({"posterior": example_fit.posterior.to_dataset()})
    with pytest.raises(ValueError, match="pass ci_prob"):
        estimands(bare)
    assert estimands(bare, ci_prob=0.9).attrs["ci_prob"] == 0.9
    no_estimands = xr.DataTree.from_dict(
        {"posterior": example_fit.posterior.to_dataset()[["beta_N"]]}
    )
    with pytest.raises(ValueError, match="no estimands"):
        estimands(no_estimands)


def _answered(p_yes: float, *, sd: float = 1.0) -> xr.DataTree:
    """The improvement spec's result with ntx_imp_direct ~ Normal(m, sd), P(< 0) = p_yes (its
    question's yes side), as exact quantiles in 4 chains."""
    loc = -sd * stats.norm.ppf(p_yes)
    q = stats.norm.ppf((np.arange(4000) + 0.5) / 4000, loc=loc, scale=sd)
    draws = np.random.default_rng(2).permutation(q).reshape(4, 1000)
    attrs = {"label": "Direct effect", "unit": "MADRS points", "estimand": 1}
    post = xr.Dataset(
        {name: (("chain", "draw"), draws, attrs) for name in ("ntx_imp_direct", "slope_placebo")}
    )
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs["spec"] = json.dumps(kb.load_spec("improvement").source)
    return tree


@pytest.mark.parametrize(
    ("p_yes", "words"),
    [
        (0.998, "Almost certainly yes"),
        (0.97, "Very probably yes"),
        (0.85, "Probably yes"),
        (0.5, "Unclear"),
        (0.12, "Probably not"),
        (0.03, "Very probably not"),
        (0.002, "Almost certainly not"),
    ],
)
def test_answers_put_the_probability_of_yes_in_words(p_yes, words):
    """The spec's question about ntx_imp_direct (yes if < 0) is answered by P(< 0) in the
    words of ANSWER_WORDS, with the trial's names and the estimand's sentence."""
    table = kb.answers(_answered(p_yes))
    row = table.set_index("estimand").loc["ntx_imp_direct"]
    assert row["p_yes"] == pytest.approx(p_yes, abs=1 / 4000)
    assert row["answer"] == words
    assert row["question"] == (
        "Did naltrexone reduce the day-1 improvement at the same Glx/tNAA change?"
    )
    sentence = estimands(_answered(p_yes)).loc["ntx_imp_direct", "text"]
    assert row["text"].startswith(f"{row['question']} {words} (P(< 0) ")
    assert sentence.split(";")[0] in row["text"]  # the median and interval
    assert row["text"].count("P(") == 1  # one probability, the answer's


def test_answers_follow_the_spec_and_note_the_rope():
    """Questions in the spec's order, the slope's yes on the other side (> 0); a posterior
    half or more inside the ROPE says so; a spec without questions gives an empty table."""
    tree = _answered(0.6, sd=0.5)  # ntx_imp_direct's ROPE is [-2, 2]: almost all inside
    table = kb.answers(tree)
    assert table["estimand"].tolist() == ["ntx_imp_direct", "slope_placebo"]
    assert table.loc[1, "p_yes"] == pytest.approx(0.4, abs=1 / 4000)  # P(> 0)
    assert table.loc[0, "text"].endswith(
        "With half or more of it in the ROPE, the effect may be too small to matter."
    )
    assert "may be too small" not in table.loc[1, "text"]  # no ROPE on the slope
    none = _with_spec(tree, questions=[])
    assert kb.answers(none).empty


def test_the_sign_is_not_reported_for_probabilities_or_other_reference_values():
    """P(sign) is NaN for a probability (always > 0) and for an odds ratio judged against 1;
    an effect judged against 0 keeps it."""
    spec = kb.load_spec("joint")
    draws = np.random.default_rng(3).uniform(0.1, 0.9, (2, 500))
    post = xr.Dataset({
        name: (("chain", "draw"), draws - (name == "ntx_glu") * 0.5,
               {"label": name, "unit": unit, "estimand": 1})
        for name, unit in (("response_placebo", "probability"), ("response_or", "odds ratio"),
                           ("ntx_glu", "Glx/tNAA ratio units"))
    })  # fmt: skip
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs["spec"] = json.dumps(spec.source)
    table = estimands(tree, var_names=["response_placebo", "response_or", "ntx_glu"])
    assert table["p_direction"].isna().tolist() == [True, True, False]

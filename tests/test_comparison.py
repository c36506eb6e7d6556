"""kb.compare: LOO ranking on a shared observed variable, same-data checks, Pareto-k
warnings in words; synthetic log likelihoods for the logic, two kbayes fits for the wiring."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import kbayes as kb
from kbayes.comparison import compare
from kbayes.spec import parse_spec

RANK_COLUMNS = ["rank", "elpd", "se", "elpd_diff", "dse", "p_worse", "weight", "n_high_k"]


def _result(y: np.ndarray, shift: float, name: str = "y") -> xr.DataTree:
    """Normal model y ~ N(mu, 1) with posterior draws of mu centred ``shift`` from the mean."""
    rng = np.random.default_rng(1)
    mu = y.mean() + shift + rng.normal(size=(2, 500)) / np.sqrt(len(y))
    obs = {"obs": [f"o{i}" for i in range(len(y))]}
    log_lik = stats.norm.logpdf(y[None, None, :], mu[..., None], 1)
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"mu": (("chain", "draw"), mu)}),
            "log_likelihood": xr.Dataset({name: (("chain", "draw", "obs"), log_lik)}, obs),
            "observed_data": xr.Dataset({name: ("obs", y)}, obs),
        }
    )


@pytest.fixture
def y() -> np.ndarray:
    return np.random.default_rng(0).normal(size=30)


def test_ranks_the_better_model_first(y):
    """A model centred on the data beats one shifted away from it."""
    table = compare({"shifted": _result(y, 1.0), "centred": _result(y, 0.0)})
    assert table.index.tolist() == ["centred", "shifted"]
    assert set(RANK_COLUMNS) <= set(table.columns)
    assert table["rank"].tolist() == [0, 1]
    assert table.loc["shifted", "elpd_diff"] < 0 == table.loc["centred", "elpd_diff"]
    assert table["weight"].sum() == pytest.approx(1)
    assert table.attrs["var_name"] == "y"
    assert table.attrs["warnings"] == []
    assert table.attrs["text"].startswith("'centred' predicts held-out y best (ELPD -")


def test_high_pareto_k_is_explained(y):
    """An outlier gives a high Pareto k; the warning names it and says what to do."""
    y = np.append(y, 12.0)
    table = compare({"a": _result(y, 0.0), "b": _result(y, 1.0)})
    assert table["n_high_k"].tolist() == [1, 1]
    first = table.attrs["warnings"][0]
    assert first.startswith("a: 1 of 31 y observations (o30) has Pareto k > 0.67")
    assert "moment matching" in first and "K-fold" in first and "draw more" in first


def test_results_fitted_to_other_data_raise(y):
    """Other observed values, other observations, or too few results: a clear error."""
    other = y.copy()
    other[3] += 1
    with pytest.raises(ValueError, match=r"not fitted to the same data: 1 of 30 .* obs o3"):
        compare({"a": _result(y, 0.0), "b": _result(other, 0.0)})
    with pytest.raises(ValueError, match="not fitted to the same data"):
        compare({"a": _result(y, 0.0), "b": _result(y[:20], 0.0)})
    with pytest.raises(ValueError, match="at least two results"):
        compare({"a": _result(y, 0.0)})


def test_observed_variable_is_chosen_or_named(y):
    """No shared variable, or a var_name one result lacks: errors that list what is shared."""
    with pytest.raises(ValueError, match="share no observed variable"):
        compare({"a": _result(y, 0.0), "b": _result(y, 0.0, name="z")})
    with pytest.raises(ValueError, match=r"results \['b'\] have no log likelihood for 'y'"):
        compare({"a": _result(y, 0.0), "b": _result(y, 0.0, name="z")}, var_name="y")
    no_loglik = xr.DataTree.from_dict({"posterior": _result(y, 0.0).posterior.to_dataset()})
    with pytest.raises(ValueError, match="log_likelihood=True"):
        compare({"a": _result(y, 0.0), "b": no_loglik})


def test_compares_two_kbayes_variants_on_improvement():
    """The improvement model against a variant whose glutamate slopes are held near zero."""
    source = copy.deepcopy(kb.load_spec("improvement").source)
    source["name"] = "improvement_no_link"
    for name in ("gamma_D", "gamma_DN"):
        source["priors"][name]["sigma"] = 0.01
    no_link = parse_spec(source)
    data = kb.load_example()
    fits = {
        name: kb.fit(data, spec, draws=300, tune=300, chains=2, seed=1, progress=False)
        for name, spec in [("improvement", "improvement"), ("no_link", no_link)]
    }
    table = compare(fits)
    assert table.attrs["var_name"] == "improvement"
    assert sorted(table.index) == ["improvement", "no_link"]
    assert set(RANK_COLUMNS) <= set(table.columns)
    assert table["weight"].sum() == pytest.approx(1)
    assert table.attrs["text"].startswith(f"{table.index[0]!r} predicts held-out improvement")

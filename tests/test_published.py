"""Registry of published results: shipped verbatim, every result cited, outcome keys resolve."""

from importlib.resources import files
from pathlib import Path

import pytest

from kbayes import published

SHARED = Path(__file__).resolve().parents[2] / "shared" / "published" / "registry.toml"


def test_registry_ships_as_package_data():
    """registry.toml is inside the package and loads through importlib.resources."""
    path = files("kbayes.published").joinpath("registry.toml")
    assert path.is_file()
    assert "Every number below was read in the text" in published.registry_text()


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ copy of the registry not beside repo")
def test_registry_is_a_verbatim_copy_of_the_shared_one():
    """No number is added, dropped or edited relative to shared/published/registry.toml."""
    assert published.registry_text() == SHARED.read_text(encoding="utf-8")


def test_studies_lists_the_registry_with_citations():
    """One row per study; Jelen 2025 carries its DOI and outcome keys."""
    table = published.studies()
    assert len(table) == 17
    assert table.loc["jelen2025", "doi"] == "10.1038/s41591-025-03800-w"
    assert table.loc["jelen2025", "outcomes"] == "madrs_day1, glx_infusion"
    assert (table["citation"].str.len() > 0).all()


def test_every_result_keeps_its_citation_and_verbatim_value():
    """Each result row names its study's citation; reported numbers are unchanged."""
    rows = published.results()
    assert (rows["citation"].str.len() > 0).all()
    jelen = published.results("jelen2025")
    f = jelen[(jelen["statistic"] == "F") & jelen["outcome"].str.startswith("MADRS")].iloc[0]
    assert (f["value"], list(f["df"])) == (5.39, [1, 74])
    assert f["doi"] == "10.1038/s41591-025-03800-w"


def test_result_source_names_a_secondary_source():
    """A number read outside the article says where it was read."""
    pct = next(r for r in published.study("jelen2025").results if r.statistic == "percent")
    assert pct.extra["approximate"] is True
    assert "Legal Reader" in pct.source


@pytest.mark.parametrize("o", published.OUTCOMES, ids=lambda o: f"{o.study}:{o.key}")
def test_outcome_keys_resolve_to_exactly_one_result(o):
    """Every short key points at one registry result (and one estimate, if any)."""
    assert published.find(o.study, o.test).statistic == o.test.statistic
    if o.estimate is not None:
        assert published.find(o.study, o.estimate).statistic == o.estimate.statistic
    assert o.direction in (1, -1)
    assert o.benefit in ("positive", "negative")


def test_outcome_keys_are_unique():
    """(study, key) pairs are unique."""
    pairs = [(o.study, o.key) for o in published.OUTCOMES]
    assert len(pairs) == len(set(pairs))


def test_unknown_names_list_the_valid_ones():
    """Errors name what would have worked."""
    with pytest.raises(KeyError, match="jelen2025"):
        published.study("jelen2024")
    with pytest.raises(KeyError, match="madrs_day1"):
        published.outcome("jelen2025", "madrs")

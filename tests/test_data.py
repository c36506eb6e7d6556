"""TrialData: reading, column mapping, configuration and the derived views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kbayes import DataError, TrialConfig, TrialData
from kbayes.data import OPTIONAL_TABLES, TABLES, combine_ratio, infusion_profile


@pytest.fixture
def tables(make_tables):
    return make_tables()


@pytest.fixture
def data(tables):
    return TrialData(**tables)


def assert_same(a: TrialData, b: TrialData) -> None:
    for name in ["participants", "sessions", "mrs"]:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


# --- building and reading ------------------------------------------------------------------


def test_from_frames(data):
    assert len(data.participants) == 4 and len(data.sessions) == 8 and len(data.mrs) == 32
    assert data.coords["participant"] == ["P1", "P2", "P3", "P4"]
    assert data.coords["period"] == [1, 2] and data.coords["block"] == [1, 2, 3, 4]
    assert data.truth is None
    assert "4 participants (female: 2, male: 2), 8 sessions, 32 fMRS blocks." in data.summary()
    assert "No exclusions." in repr(data)
    assert "4 of 4 participants have a session in each of the 2 periods; 0 have fewer." in (
        data.summary()
    )


def test_summary_counts_completeness_against_the_design(data):
    """One period each is not complete (it was reported as "completed every period")."""
    first = data.replace(
        sessions=data.sessions[data.sessions["period"] == 1],
        mrs=data.mrs[data.mrs["period"] == 1],
    )
    assert "0 of 4 participants have a session in each of the 2 periods; 4 have fewer." in (
        first.summary()
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_round_trip(data, tmp_path, fmt):
    folder = data.to_files(tmp_path / "trial", fmt=fmt)
    paths = {name: folder / f"{name}.{fmt}" for name in ["participants", "sessions", "mrs"]}
    assert_same(TrialData.from_files(**paths), data)
    assert_same(TrialData.from_folder(folder), data)


def test_tsv_and_leading_zero_ids(make_tables, tmp_path):
    """IDs are read as text, so "01" stays "01"."""
    t = make_tables()
    for df in t.values():
        df["participant"] = df["participant"].str.replace("P", "0")
    for name, df in t.items():
        df.to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
    data = TrialData.from_folder(tmp_path)
    assert data.participants["participant"].tolist() == ["01", "02", "03", "04"]


def test_folder_suffixes_as_from_files_and_ambiguity_refused(tables, data, tmp_path):
    tables["participants"].to_parquet(tmp_path / "participants.pq", index=False)
    tables["sessions"].to_csv(tmp_path / "sessions.TAB", sep="\t", index=False)
    tables["mrs"].to_csv(tmp_path / "mrs.CSV", index=False)
    assert_same(TrialData.from_folder(tmp_path), data)
    tables["mrs"].to_parquet(tmp_path / "mrs.parquet", index=False)
    with pytest.raises(DataError, match=r"table 'mrs': expected one mrs file .* found 'mrs.CSV', "):
        TrialData.from_folder(tmp_path)


def test_column_mapping(tables, data, tmp_path):
    for name, df in tables.items():
        df.rename(columns={"participant": "subject"}).to_csv(tmp_path / f"{name}.csv", index=False)
    paths = {name: tmp_path / f"{name}.csv" for name in tables}
    assert_same(TrialData.from_files(**paths, columns={"subject": "participant"}), data)
    renamed = {k: df.rename(columns={"participant": "subject"}) for k, df in tables.items()}
    assert_same(TrialData(**renamed, columns={"subject": "participant"}), data)


def test_metabolite_column_read_as_ratio(tables, data):
    tables["mrs"] = tables["mrs"].rename(columns={"glx_ratio": "Glx/tNAA"})
    assert_same(TrialData(**tables), data)


def test_separate_glx_and_tnaa_are_combined(tables):
    mrs = tables["mrs"].drop(columns=["glx_ratio", "crlb"])
    mrs["glx"] = np.linspace(8.0, 12.0, len(mrs))
    mrs["tnaa"] = np.linspace(10.0, 11.0, len(mrs))
    mrs["crlb_glx"] = 6.0
    mrs["crlb_tnaa"] = np.linspace(2.0, 4.0, len(mrs))
    data = TrialData(tables["participants"], tables["sessions"], mrs)
    np.testing.assert_allclose(data.mrs["glx_ratio"], mrs["glx"] / mrs["tnaa"])
    np.testing.assert_allclose(data.mrs["crlb"], np.sqrt(36.0 + mrs["crlb_tnaa"] ** 2))
    assert data.mrs.at[0, "crlb"] == pytest.approx(np.sqrt(6.0**2 + 2.0**2))
    assert not {"glx", "tnaa", "crlb_glx", "crlb_tnaa"} & set(data.mrs)


def test_combine_ratio_keeps_a_given_ratio(tables):
    mrs = tables["mrs"].assign(glx=1.0, tnaa=2.0)
    pd.testing.assert_frame_equal(combine_ratio(mrs), mrs)


def test_custom_condition_and_sex_codes(make_tables):
    config = TrialConfig(conditions=("saline", "nalmefene"), sexes=("F", "M"))
    t = make_tables()
    t["participants"]["sex"] = t["participants"]["sex"].map({"female": "F", "male": "M"})
    t["sessions"]["condition"] = t["sessions"]["condition"].map(
        {"placebo": "saline", "naltrexone": "nalmefene"}
    )
    data = TrialData(**t, config=config)
    assert data.coords["condition"] == ["saline", "nalmefene"]
    assert data.coords["sex"] == ["F", "M"]
    assert data.describe().index.tolist() == ["saline", "nalmefene"]
    with pytest.raises(DataError, match=r"column 'condition'.*'saline', 'nalmefene'"):
        TrialData(**make_tables(), config=config)


# --- files that cannot be read -------------------------------------------------------------


@pytest.fixture
def paths(tables, tmp_path):
    for name, df in tables.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    return {name: tmp_path / f"{name}.csv" for name in tables}


def test_empty_file(paths):
    paths["sessions"].write_text("")
    with pytest.raises(DataError, match=r"table 'sessions': file .* is empty"):
        TrialData.from_files(**paths)


def test_header_only_file(paths):
    paths["mrs"].write_text("participant,period,block,time_min,glx_ratio,crlb\n")
    with pytest.raises(DataError, match=r"table 'mrs': file .* has a header but no rows"):
        TrialData.from_files(**paths)


def test_missing_file(paths, tmp_path):
    paths["participants"] = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"table 'participants': file .* does not exist"):
        TrialData.from_files(**paths)


def test_wrong_delimiter_file(paths, tables):
    tables["participants"].to_csv(paths["participants"], sep=";", index=False)
    with pytest.raises(DataError) as err:
        TrialData.from_files(**paths)
    msg = str(err.value)
    assert "table 'participants', column 'participant'" in msg
    assert "found ['participant;sex']; is the delimiter right?" in msg


def test_text_in_numeric_file_column(paths, tables):
    tables["sessions"].astype({"madrs_day1": object}).assign(
        madrs_day1=lambda d: d["madrs_day1"].where(d.index != 2, "ten")
    ).to_csv(paths["sessions"], index=False)
    with pytest.raises(DataError, match=r"column 'madrs_day1'.*row 2 \(participant 'P2'"):
        TrialData.from_files(**paths)


# --- views ---------------------------------------------------------------------------------


def test_to_xarray_coords_and_values(data):
    ds = data.to_xarray()
    assert ds["participant"].values.tolist() == ["P1", "P2", "P3", "P4"]
    assert ds["period"].values.tolist() == [1, 2]
    assert ds["block"].values.tolist() == [1, 2, 3, 4]
    assert ds["glx_ratio"].dims == ("participant", "period", "block")
    # P2 has naltrexone in period 1 (rise 0.05): 1 + 0.02 + 0.05 + 0.003 at block 3
    assert ds["glx_ratio"].sel(participant="P2", period=1, block=3) == pytest.approx(1.073)
    assert ds["glx_ratio"].sel(participant="P2", period=1, block=1) == pytest.approx(1.021)
    assert ds["condition"].sel(participant="P3", period=2) == "naltrexone"
    assert ds["madrs_day1"].sel(participant="P3", period=2) == 21
    assert ds["sex"].sel(participant="P2") == "male"
    assert ds.attrs["conditions"] == ["placebo", "naltrexone"]


def test_to_xarray_marks_missing_session(tables):
    tables["sessions"] = tables["sessions"].drop(index=7)
    tables["mrs"] = tables["mrs"].iloc[:28]
    ds = TrialData(**tables).to_xarray()
    assert ds["condition"].sel(participant="P4", period=2) == ""
    assert np.isnan(ds["madrs_day1"].sel(participant="P4", period=2))
    assert ds["glx_ratio"].sel(participant="P4", period=2).isnull().all()


def test_session_table_step_change(data):
    s = data.session_table()
    m = data.mrs.assign(during=data.mrs["time_min"] >= 0)
    means = m.groupby(["participant", "period", "during"])["glx_ratio"].mean().unstack()
    expected = (means[True] - means[False]).rename("dglx_obs").reset_index()
    merged = s.merge(expected, on=["participant", "period"], suffixes=("", "_direct"))
    np.testing.assert_allclose(merged["dglx_obs"], merged["dglx_obs_direct"])
    placebo = s["condition"] == "placebo"
    np.testing.assert_allclose(s.loc[placebo, "dglx_obs"], 0.102)  # rise 0.1 + 0.001 * (3 - 1)
    assert (s["improvement"] == s["madrs_baseline"] - s["madrs_day1"]).all()
    assert s["sex"].tolist() == ["female"] * 2 + ["male"] * 2 + ["female"] * 2 + ["male"] * 2


def test_session_table_ramp_profile(data):
    g = infusion_profile(data.mrs["time_min"], "ramp", 40.0)
    assert g.tolist()[:4] == [0.0, 0.125, 0.375, 0.625]
    assert data.session_table(shape="ramp")["dglx_obs"].notna().all()


def test_describe_matches_pandas(data):
    d = data.describe()
    s = data.sessions.assign(
        improvement=data.sessions["madrs_baseline"] - data.sessions["madrs_day1"]
    )
    g = s.groupby("condition")
    for cond in ["placebo", "naltrexone"]:
        assert d.at[cond, "n"] == (s["condition"] == cond).sum()
        assert d.at[cond, "baseline_mean"] == pytest.approx(g["madrs_baseline"].mean()[cond])
        assert d.at[cond, "baseline_std"] == pytest.approx(g["madrs_baseline"].std()[cond])
        assert d.at[cond, "day1_mean"] == pytest.approx(g["madrs_day1"].mean()[cond])
        assert d.at[cond, "improvement_mean"] == pytest.approx(g["improvement"].mean()[cond])
        assert d.at[cond, "improvement_std"] == pytest.approx(g["improvement"].std()[cond])
    assert d.at["placebo", "dglx_mean"] == pytest.approx(0.102)
    assert d.at["naltrexone", "dglx_mean"] == pytest.approx(0.052)


def test_has_items(make_tables):
    assert TrialData(**make_tables(items=True)).has_items
    assert not TrialData(**make_tables()).has_items


def test_replace_validates_again(data):
    sessions = data.sessions.assign(madrs_day1=data.sessions["madrs_day1"] + 1)
    assert (data.replace(sessions=sessions).sessions["madrs_day1"] == sessions["madrs_day1"]).all()
    with pytest.raises(DataError, match="column 'madrs_day1'"):
        data.replace(sessions=sessions.assign(madrs_day1=99))


def test_covariate_distribution_describes_participant_columns_for_the_simulator(data):
    site = np.resize(["B", "A", "A"], len(data.participants))
    age = np.linspace(20.0, 60.0, len(data.participants))
    with_cov = data.replace(participants=data.participants.assign(age=age, site=site))
    got = with_cov.covariate_distribution("age", "site")
    assert got["age"] == pytest.approx((age.mean(), age.std(ddof=1)))
    assert got["site"] == pytest.approx({"A": (site == "A").mean(), "B": (site == "B").mean()})
    n_a, n_b = (site == "A").sum(), (site == "B").sum()
    assert f"participants' site: A ({n_a}), B ({n_b})." in with_cov.summary()
    with pytest.raises(DataError, match=r"'period' is a column of 'sessions'.*here: age, site"):
        with_cov.covariate_distribution("period")


# --- ratings over time (optional) ----------------------------------------------------------
WEEK = TrialConfig(rating_times_h=(4, 24, 72, 168))


@pytest.fixture
def rated(tables, make_ratings):
    """The trial with a full ratings table (4, 24, 72, 168 h; items) but for P2/1 at 72 h."""
    ratings = make_ratings(tables["sessions"], items=True).drop(index=10)
    return TrialData(**tables, ratings=ratings, config=WEEK)


def test_only_three_tables_are_required():
    assert TABLES == ("participants", "sessions", "mrs") and OPTIONAL_TABLES == ("ratings",)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ratings_round_trip_through_files(rated, tmp_path, fmt):
    folder = rated.to_files(tmp_path / "trial", fmt=fmt)
    assert (folder / f"ratings.{fmt}").is_file()
    paths = {name: folder / f"{name}.{fmt}" for name in [*TABLES, *OPTIONAL_TABLES]}
    for again in (
        TrialData.from_files(**paths, config=WEEK),
        TrialData.from_files(*paths.values(), config=WEEK),
        TrialData.from_folder(folder, config=WEEK),
    ):
        assert_same(again, rated)
        pd.testing.assert_frame_equal(again.ratings, rated.ratings)
        pd.testing.assert_frame_equal(again.exclusions, rated.exclusions)
    without = TrialData.from_files(*list(paths.values())[:3], config=WEEK)
    assert without.ratings is None and without.exclusions.empty
    assert TrialData.from_folder(folder, ratings=None, config=WEEK).ratings is None


def test_ratings_files_follow_the_suffix_rules(rated, data, tmp_path):
    """A folder without a ratings file has none; a TSV is read; two are ambiguous; a ratings
    path given wins; an unreadable or missing file names table 'ratings'."""
    data.to_files(tmp_path)
    assert TrialData.from_folder(tmp_path).ratings is None
    rated.ratings.to_csv(tmp_path / "ratings.TSV", sep="\t", index=False)
    pd.testing.assert_frame_equal(
        TrialData.from_folder(tmp_path, config=WEEK).ratings, rated.ratings
    )
    rated.ratings.to_parquet(tmp_path / "ratings.pq")
    with pytest.raises(DataError, match=r"table 'ratings': expected one ratings file .*found"):
        TrialData.from_folder(tmp_path, config=WEEK)
    elsewhere = tmp_path / "other" / "r.csv"
    elsewhere.parent.mkdir()
    rated.ratings.iloc[:4].to_csv(elsewhere, index=False)
    assert len(TrialData.from_folder(tmp_path, ratings=elsewhere, config=WEEK).ratings) == 4
    with pytest.raises(DataError, match=r"table 'ratings': file .*nope.csv' does not exist"):
        TrialData.from_folder(tmp_path, ratings=tmp_path / "nope.csv", config=WEEK)
    elsewhere.write_text("participant,period,time_h,score\n")
    with pytest.raises(DataError, match=r"table 'ratings': file .* has a header but no rows"):
        TrialData.from_folder(tmp_path, ratings=elsewhere, config=WEEK)


def test_replace_swaps_or_drops_the_ratings(rated, data):
    assert_same(rated.replace(ratings=None), data)
    assert rated.replace(ratings=None).ratings is None
    fewer = rated.replace(ratings=rated.ratings[rated.ratings["time_h"] != 168.0])
    assert len(fewer.ratings) == 23 and "1 session lacks the rating at 72 h, 8 at 168 h." in (
        fewer.summary()
    )
    with pytest.raises(DataError, match=r"table 'ratings', column 'score'"):
        rated.replace(ratings=rated.ratings.assign(score=99))
    with pytest.raises(TypeError, match=r"not \['rating'\]"):
        rated.replace(rating=rated.ratings)


def test_ratings_in_the_views(rated, data):
    """to_xarray: rating_* variables over (participant, period, time_h), NaN where missing;
    describe: mean and SD per time; summary: counts and the missing times; coords: time_h."""
    ds = rated.to_xarray()
    assert ds["rating_score"].dims == ("participant", "period", "time_h")
    assert ds["time_h"].values.tolist() == [4.0, 24.0, 72.0, 168.0]
    assert ds["rating_score"].sel(participant="P2", period=1, time_h=4.0) == 20 + 3
    assert np.isnan(ds["rating_score"].sel(participant="P2", period=1, time_h=72.0))
    np.testing.assert_array_equal(
        ds["rating_score"].sel(time_h=24.0), ds["madrs_day1"]
    )  # the day-1 rating is the one at 24 h
    assert "rating_item10" in ds and "time_h" not in data.to_xarray().dims
    assert rated.coords["time_h"] == [4.0, 24.0, 72.0, 168.0] and "time_h" not in data.coords
    d = rated.describe()
    pd.testing.assert_frame_equal(d.iloc[:, :9], data.describe())
    assert list(d.columns[9:11]) == ["rating_4h_mean", "rating_4h_std"]
    assert d.at["placebo", "rating_24h_mean"] == pytest.approx(d.at["placebo", "day1_mean"])
    assert d.at["naltrexone", "rating_168h_mean"] == pytest.approx(
        d.at["naltrexone", "day1_mean"] - 2
    )
    summary = rated.summary()
    assert "31 ratings at 4, 24, 72, 168 h; 1 session lacks the rating at 72 h." in summary
    assert "kept: no rating at 72 h (1)" in summary
    assert "ratings at" not in data.summary()

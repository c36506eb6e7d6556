"""Validation of the trial tables: every bad input is a DataError naming table, column, rows."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import kbayes as kb
from kbayes import DataError, TrialConfig, TrialData
from kbayes.validate import DAY1_IN_SESSIONS_ONLY, EXCLUSION_COLUMNS, NOT_RATED, validate_tables

# Fixture layout (conftest.trial_tables, 4 participants x 2 periods x 4 blocks):
# sessions row 2 * (i - 1) + (period - 1) is participant P{i}; odd participants have placebo
# in period 1. mrs row 8 * (i - 1) + 4 * (period - 1) + (block - 1); block 1 at -10 min.


def put(t: dict, table: str, row, column: str, value) -> None:
    """Set one cell whatever its dtype (pandas 3 refuses to upcast on assignment)."""
    df = t[table]
    numeric = isinstance(value, float) and pd.api.types.is_numeric_dtype(df[column])
    df[column] = df[column].astype(float if numeric else object)
    df.loc[row, column] = value


def drop(t: dict, table: str, column: str) -> None:
    t[table] = t[table].drop(columns=column)


def replace(t: dict, table: str, old: str, new: str, column: str = "participant") -> None:
    t[table][column] = t[table][column].replace(old, new)


def append_copy(t: dict, table: str, row: int) -> None:
    t[table] = pd.concat([t[table], t[table].iloc[[row]]], ignore_index=True)


CASES = [
    # --- participants --------------------------------------------------------------------
    pytest.param(
        lambda t: put(t, "participants", 1, "sex", "f"),
        "participants", "sex", ["row 1 (participant 'P2'): 'f'", "'female', 'male'"],
        id="unknown-sex-code",
    ),
    pytest.param(
        lambda t: put(t, "participants", 3, "sex", None),
        "participants", "sex", ["row 3 (participant 'P4')", "no missing values"],
        id="missing-sex",
    ),
    pytest.param(
        lambda t: put(t, "participants", 2, "participant", ""),
        "participants", "participant", ["row 2", "non-empty participant ID"],
        id="empty-participant-id",
    ),
    pytest.param(
        lambda t: append_copy(t, "participants", 0),
        "participants", "participant", ["2 rows", "row 0 (participant 'P1')", "row 4"],
        id="duplicate-participant",
    ),
    pytest.param(
        lambda t: drop(t, "participants", "sex"),
        "participants", "sex", ["found ['participant']"],
        id="missing-column-participants",
    ),
    pytest.param(
        lambda t: t.update(participants=pd.DataFrame({"participant;sex": ["P1;female"]})),
        "participants", "participant", ["found ['participant;sex']", "delimiter"],
        id="wrong-delimiter",
    ),
    pytest.param(
        lambda t: t.update(participants=pd.concat([t["participants"]] * 2, axis=1)),
        "participants", "sex", ["one column of this name"],
        id="duplicate-column-name",
    ),
    pytest.param(
        lambda t: t.update(participants=t["participants"].iloc[:0]),
        "participants", None, ["at least one row"],
        id="no-rows",
    ),
    # --- sessions ------------------------------------------------------------------------
    pytest.param(
        lambda t: put(t, "sessions", 3, "madrs_baseline", "abc"),
        "sessions", "madrs_baseline", ["row 3 (participant 'P2', period 2): 'abc'", "0-60"],
        id="text-in-score",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 2, "madrs_day1", 75),
        "sessions", "madrs_day1", ["row 2 (participant 'P2', period 1): 75"],
        id="madrs-75",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 0, "madrs_baseline", -1),
        "sessions", "madrs_baseline", ["row 0 (participant 'P1', period 1): -1"],
        id="negative-madrs",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 1, "madrs_day1", 30.5),
        "sessions", "madrs_day1", ["row 1 (participant 'P1', period 2): 30.5", "whole number"],
        id="fractional-madrs",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 4, "madrs_baseline", np.nan),
        "sessions", "madrs_baseline", ["row 4 (participant 'P3', period 1): nan", "missing"],
        id="nan-baseline",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 5, "madrs_day1", np.nan),
        "sessions", "madrs_day1",
        ["row 5 (participant 'P3', period 2)", "a total where day1_item1..day1_item10 are given"],
        id="nan-day1-total-with-items",
    ),
    pytest.param(
        lambda t: t["sessions"].__setitem__("madrs_day1", True),
        "sessions", "madrs_day1", ["8 rows", "row 0 (participant 'P1', period 1): True",
                                   "and 3 more"],
        id="boolean-dtype-score",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 2, "condition", "ketamine"),
        "sessions", "condition", ["row 2 (participant 'P2', period 1): 'ketamine'",
                                  "'placebo', 'naltrexone'"],
        id="unknown-condition",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 0, "period", 0),
        "sessions", "period", ["row 0 (participant 'P1', period 0): 0", "1-2"],
        id="period-0",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 1, "period", 1.5),
        "sessions", "period", ["row 1 (participant 'P1', period 1.5)", "whole number"],
        id="fractional-period",
    ),
    pytest.param(
        lambda t: append_copy(t, "sessions", 0),
        "sessions", "period", ["one session per period", "row 0 (participant 'P1', period 1)",
                               "row 8 (participant 'P1', period 1)"],
        id="duplicate-session",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 1, "condition", "placebo"),
        "sessions", "condition", ["each condition once", "row 0 (participant 'P1', period 1)",
                                  "row 1 (participant 'P1', period 2): 'placebo'"],
        id="two-placebo-sessions",
    ),
    pytest.param(
        lambda t: (replace(t, "sessions", "P4", "P9"), replace(t, "mrs", "P4", "P9")),
        "sessions", "participant", ["listed in table 'participants'", "2 rows",
                                    "row 6 (participant 'P9', period 1)"],
        id="session-of-unknown-participant",
    ),
    pytest.param(
        lambda t: drop(t, "sessions", "madrs_day1"),
        "sessions", "madrs_day1", ["found ['participant', 'period', 'condition'"],
        id="missing-column-sessions",
    ),
    pytest.param(
        lambda t: drop(t, "sessions", "baseline_item3"),
        "sessions", "baseline_item3", ["found ['participant'"],
        id="missing-item-column",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 0, "baseline_item1", 7),
        "sessions", "baseline_item1", ["row 0 (participant 'P1', period 1): 7", "0-6"],
        id="item-above-6",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 6, "day1_item10", -1),
        "sessions", "day1_item10", ["row 6 (participant 'P4', period 1): -1"],
        id="negative-item",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 7, "day1_item4", np.nan),
        "sessions", "day1_item4",
        ["row 7 (participant 'P4', period 2)", "a value where madrs_day1 is given"],
        id="nan-item",
    ),
    pytest.param(
        lambda t: put(t, "sessions", 1, "day1_item2", t["sessions"].at[1, "day1_item2"] + 1),
        "sessions", "madrs_day1", ["sum of day1_item1..day1_item10",
                                   "row 1 (participant 'P1', period 2): total 19, items sum to 20"],
        id="items-not-summing",
    ),
    # --- mrs -----------------------------------------------------------------------------
    pytest.param(
        lambda t: put(t, "mrs", 6, "crlb", -1.0),
        "mrs", "crlb", ["row 6 (participant 'P1', period 2, block 3): -1.0", "0-999"],
        id="negative-crlb",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 7, "crlb", 1200.0),
        "mrs", "crlb", ["row 7 (participant 'P1', period 2, block 4): 1200.0"],
        id="crlb-1200",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 8, "glx_ratio", 0.0),
        "mrs", "glx_ratio", ["row 8 (participant 'P2', period 1, block 1): 0.0", "> 0"],
        id="zero-ratio",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 9, "glx_ratio", -0.5),
        "mrs", "glx_ratio", ["row 9 (participant 'P2', period 1, block 2): -0.5"],
        id="negative-ratio",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 10, "glx_ratio", np.inf),
        "mrs", "glx_ratio", ["row 10 (participant 'P2', period 1, block 3): inf", "finite"],
        id="infinite-ratio",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 11, "time_min", np.nan),
        "mrs", "time_min", ["row 11 (participant 'P2', period 1, block 4)", "missing"],
        id="nan-time",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 12, "time_min", "5 min"),
        "mrs", "time_min", ["row 12 (participant 'P2', period 2, block 1): '5 min'"],
        id="text-time",
    ),
    pytest.param(
        lambda t: t["mrs"].__setitem__("time_min", pd.Timestamp("2025-01-01")),
        "mrs", "time_min", ["32 rows", "row 0 (participant 'P1', period 1, block 1)"],
        id="datetime-dtype-time",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 1, "block", 1.5),
        "mrs", "block", ["row 1 (participant 'P1', period 1, block 1.5): 1.5", "whole number"],
        id="non-integer-block",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 13, "participant", None),
        "mrs", "participant", ["row 13 (participant None, period 2, block 2)"],
        id="missing-participant-in-mrs",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 2, "time_min", -20.0),
        "mrs", "time_min", ["increasing with block", "row 2 (participant 'P1', period 1, "
                            "block 3): time -20.0 after 5.0"],
        id="time-going-backwards",
    ),
    pytest.param(
        lambda t: put(t, "mrs", 3, "block", 3),
        "mrs", "block", ["one row per block", "row 2 (participant 'P1', period 1, block 3)",
                         "row 3 (participant 'P1', period 1, block 3)"],
        id="duplicate-block",
    ),
    pytest.param(
        lambda t: t["mrs"].loc.__setitem__((slice(0, 3), "participant"), "P9"),
        "mrs", None, ["columns 'participant', 'period'", "listed in table 'sessions'",
                      "4 rows", "row 0 (participant 'P9', period 1, block 1)"],
        id="block-of-unknown-session",
    ),
    pytest.param(
        lambda t: drop(t, "mrs", "crlb"),
        "mrs", "crlb", ["or crlb_glx and crlb_tnaa", "found ['participant'"],
        id="missing-column-mrs",
    ),
    pytest.param(
        lambda t: drop(t, "mrs", "glx_ratio"),
        "mrs", "glx_ratio", ["or both glx and tnaa"],
        id="missing-ratio-column",
    ),
    pytest.param(
        lambda t: t.update(
            mrs=t["mrs"].drop(columns="glx_ratio").assign(glx=1.0, tnaa=["n/a"] + [1.2] * 31)
        ),
        "mrs", "tnaa", ["row 0 (participant 'P1', period 1, block 1): 'n/a'", "a number"],
        id="text-in-tnaa",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "table", "column", "expected"), CASES)
def test_malformed_input_raises_data_error(make_tables, mutate, table, column, expected):
    """The error names the table, the column, the first offending rows and the expectation."""
    tables = make_tables(items=True)
    mutate(tables)
    with pytest.raises(DataError) as err:
        TrialData(**tables)
    msg = str(err.value)
    assert f"table {table!r}" in msg
    if column is not None:
        assert repr(column) in msg
    for text in expected:
        assert text in msg, f"{text!r} not in:\n{msg}"
    assert all(line.startswith("table '") for line in msg.splitlines()), msg


def test_every_failing_column_is_in_one_error(make_tables):
    """Column problems of all three tables are gathered into one error, one line each."""
    t = make_tables()
    put(t, "participants", 0, "sex", "x")
    put(t, "sessions", 0, "madrs_day1", 99)
    put(t, "sessions", 1, "condition", "saline")
    put(t, "mrs", 0, "crlb", 1e4)
    with pytest.raises(DataError) as err:
        TrialData(**t)
    lines = str(err.value).splitlines()
    assert len(lines) == 4
    assert [line.split(":")[0] for line in lines] == [
        "table 'participants', column 'sex'",
        "table 'sessions', column 'condition'",
        "table 'sessions', column 'madrs_day1'",
        "table 'mrs', column 'crlb'",
    ]


def test_not_a_dataframe(make_tables):
    t = make_tables()
    with pytest.raises(DataError, match="table 'sessions': expected a pandas DataFrame"):
        TrialData(t["participants"], t["sessions"].to_dict("records"), t["mrs"])


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --- valid input ---------------------------------------------------------------------------


def test_valid_tables_pass_with_canonical_dtypes(make_tables):
    t = make_tables(items=True)
    data = TrialData(**t)
    assert data.exclusions.empty
    assert list(data.exclusions.columns) == EXCLUSION_COLUMNS
    assert pd.api.types.is_string_dtype(data.participants["participant"])
    assert pd.api.types.is_string_dtype(data.participants["sex"])
    assert pd.api.types.is_string_dtype(data.sessions["condition"])
    for col in ["period", "madrs_baseline", "madrs_day1", "baseline_item1", "day1_item10"]:
        assert data.sessions[col].dtype == np.int64, col
    assert data.mrs["block"].dtype == np.int64
    for col in ["time_min", "glx_ratio", "crlb"]:
        assert data.mrs[col].dtype == np.float64, col
    pd.testing.assert_frame_equal(data.mrs, t["mrs"])


def test_validate_tables_direct_call(make_tables):
    tables, exclusions = validate_tables(**make_tables(), config=TrialConfig())
    assert set(tables) == {"participants", "sessions", "mrs"}
    assert list(exclusions.columns) == EXCLUSION_COLUMNS
    assert exclusions.empty


def test_inputs_are_not_modified(make_tables):
    t = make_tables()
    shuffled = {name: df.sample(frac=1, random_state=0) for name, df in t.items()}
    before = {name: df.copy() for name, df in shuffled.items()}
    TrialData(**shuffled)
    for name in t:
        pd.testing.assert_frame_equal(shuffled[name], before[name])


def test_sorted_in_natural_participant_order_with_fresh_index(make_tables):
    t = {name: df.sample(frac=1, random_state=1) for name, df in make_tables(n=11).items()}
    data = TrialData(**t)
    assert data.participants["participant"].tolist() == [f"P{i}" for i in range(1, 12)]
    assert data.sessions[["participant", "period"]].head(3).values.tolist() == [
        ["P1", 1], ["P1", 2], ["P2", 1]
    ]  # fmt: skip
    assert data.mrs["block"].head(5).tolist() == [1, 2, 3, 4, 1]
    assert data.mrs.index.equals(pd.RangeIndex(len(data.mrs)))


def test_whole_floats_and_numeric_text_become_ints(make_tables):
    t = make_tables()
    t["sessions"]["madrs_baseline"] = t["sessions"]["madrs_baseline"].astype(float)
    t["sessions"]["madrs_day1"] = t["sessions"]["madrs_day1"].astype(str)
    data = TrialData(**t)
    assert data.sessions["madrs_baseline"].dtype == np.int64
    assert data.sessions["madrs_day1"].tolist() == make_tables()["sessions"]["madrs_day1"].tolist()


def test_numeric_ids_match_text_ids(make_tables):
    """IDs given as numbers in one table and text in another are the same participants."""
    t = make_tables()
    for name in ["sessions", "mrs"]:
        t[name]["participant"] = t[name]["participant"].str[1:].astype(int)
    t["participants"]["participant"] = t["participants"]["participant"].str[1:].astype(float)
    t["mrs"]["participant"] = t["mrs"]["participant"].astype(str)
    data = TrialData(**t)
    assert data.participants["participant"].tolist() == ["1", "2", "3", "4"]
    assert set(data.mrs["participant"]) == {"1", "2", "3", "4"}


def test_unknown_columns_are_kept(make_tables):
    t = make_tables()
    t["participants"]["age"] = [30, 41, 25, 38]
    t["sessions"]["rater"] = "AB"
    t["mrs"]["scanner_note"] = "ok"
    data = TrialData(**t)
    assert data.participants["age"].tolist() == [30, 41, 25, 38]
    assert (data.sessions["rater"] == "AB").all()
    assert (data.mrs["scanner_note"] == "ok").all()


# --- reported, not raised ------------------------------------------------------------------


def notes(data: TrialData, reason: str) -> pd.DataFrame:
    return data.exclusions[data.exclusions["reason"] == reason]


def test_crlb_above_cut_off_is_excluded_and_reported(make_tables, caplog):
    t = make_tables()  # crlb is 5 + block: blocks 3 and 4 (8 %, 9 %) fail a 7.5 % cut-off
    with caplog.at_level(logging.WARNING, logger="kbayes"):
        data = TrialData(**t, config=TrialConfig(crlb_max=7.5))
    excluded = notes(data, "CRLB above 7.5% cut-off")
    assert len(excluded) == 16
    assert (excluded["action"] == "excluded").all() and (excluded["table"] == "mrs").all()
    assert sorted(set(excluded["block"])) == [3, 4]
    assert excluded.iloc[0][["participant", "period", "block"]].tolist() == ["P1", 1, 3]
    assert len(data.mrs) == 16 and data.mrs["crlb"].max() <= 7.5
    assert len(data.mrs) + len(excluded) == len(t["mrs"])  # nothing dropped silently
    assert "excluded: CRLB above 7.5% cut-off (16)" in data.summary()
    assert "mrs: CRLB above 7.5% cut-off (excluded, 16 rows: P1/1/3, P1/1/4" in caplog.text


def test_default_cut_off_keeps_good_blocks(make_tables):
    t = make_tables()
    put(t, "mrs", 5, "crlb", 20.5)
    data = TrialData(**t)
    row = notes(data, "CRLB above 20% cut-off")
    assert row[["participant", "period", "block", "action"]].values.tolist() == [
        ["P1", 2, 2, "excluded"]
    ]
    assert len(data.mrs) == 31


def test_one_period_only_is_kept_and_reported(make_tables, caplog):
    t = make_tables()
    t["sessions"] = t["sessions"].drop(index=7)
    t["mrs"] = t["mrs"][~((t["mrs"]["participant"] == "P4") & (t["mrs"]["period"] == 2))]
    with caplog.at_level(logging.WARNING, logger="kbayes"):
        data = TrialData(**t)
    row = notes(data, "one period only")
    assert row[["table", "participant", "period", "action"]].values.tolist() == [
        ["sessions", "P4", 1, "kept"]
    ]
    assert "P4" in set(data.sessions["participant"])
    assert "kept: one period only (1)" in data.summary()
    assert "3 of 4 participants have a session in each of the 2 periods; 1 has fewer." in (
        data.summary()
    )
    assert "sessions: one period only (kept, 1 row: P4/1)" in caplog.text


def test_missing_blocks_are_kept_and_reported(make_tables):
    t = make_tables()
    t["mrs"] = t["mrs"].drop(index=[10, 11])  # P2, period 1, blocks 3 and 4
    data = TrialData(**t)
    row = notes(data, "fewer fMRS blocks than the most complete session")
    assert row[["participant", "period", "action"]].values.tolist() == [["P2", 1, "kept"]]
    assert "kept: fewer fMRS blocks than the most complete session (1)" in data.summary()


def test_session_with_every_block_excluded_is_reported(make_tables):
    t = make_tables()
    put(t, "mrs", [0, 1, 2, 3], "crlb", 50.0)
    data = TrialData(**t)
    row = notes(data, "every fMRS block excluded")
    assert row[["table", "participant", "period", "action"]].values.tolist() == [
        ["sessions", "P1", 1, "kept"]
    ]
    assert len(notes(data, "CRLB above 20% cut-off")) == 4
    assert np.isnan(data.session_table().loc[0, "dglx_obs"])


def test_session_without_blocks_is_reported(make_tables):
    t = make_tables()
    t["mrs"] = t["mrs"].drop(index=range(20, 24))  # P3, period 2
    data = TrialData(**t)
    row = notes(data, "no fMRS blocks")
    assert row[["participant", "period"]].values.tolist() == [["P3", 2]]


def test_participant_without_sessions_is_reported(make_tables):
    t = make_tables()
    t["participants"] = pd.concat(
        [t["participants"], pd.DataFrame({"participant": ["P5"], "sex": ["male"]})]
    )
    data = TrialData(**t)
    row = notes(data, "no sessions")
    assert row[["table", "participant", "action"]].values.tolist() == [
        ["participants", "P5", "kept"]
    ]
    assert pd.isna(row["period"]).all()
    assert "kept: no sessions (1)" in data.summary()


def test_crlb_given_as_fractions_is_refused_with_the_conversion(make_tables):
    t = make_tables()
    t["mrs"]["crlb"] = t["mrs"]["crlb"] / 100
    with pytest.raises(DataError, match=r"column 'crlb'.*percent.*100 \* mrs\['crlb'\]"):
        validate_tables(**t, config=TrialConfig())
    t["mrs"].loc[0, "crlb"] = 4.0  # one value in percent: not all fractions, accepted
    validate_tables(**t, config=TrialConfig())


def test_unknown_codes_name_the_config_field_and_the_call_that_accepts_them(make_tables):
    t = make_tables()
    t["participants"]["sex"] = t["participants"]["sex"].map({"female": "F", "male": "M"})
    with pytest.raises(DataError) as err:
        validate_tables(**t, config=TrialConfig())
    assert "TrialConfig.sexes" in str(err.value)
    assert "config=kb.TrialConfig(sexes=('F', 'M'))" in str(err.value)
    validate_tables(**t, config=TrialConfig(sexes=("F", "M")))  # the call it suggests accepts them
    t = make_tables()
    t["sessions"]["condition"] = t["sessions"]["condition"].map(
        {"placebo": "PBO", "naltrexone": "NTX"}
    )
    with pytest.raises(DataError, match=r"TrialConfig.conditions.*conditions=\('NTX', 'PBO'\)"):
        validate_tables(**t, config=TrialConfig())


def test_a_period_outside_the_design_is_refused(make_tables):
    """A period 3 in a two-period crossover would recode the period term of every
    participant (centred on the middle period); it is an error naming the rows."""
    t = make_tables()
    t["sessions"].loc[1, "period"] = 3
    t["mrs"].loc[t["mrs"]["participant"].eq("P1") & t["mrs"]["period"].eq(2), "period"] = 3
    with pytest.raises(DataError, match=r"table 'sessions', column 'period'.*1-2 \(TrialConfig"):
        validate_tables(**t, config=TrialConfig())
    validate_tables(**t, config=TrialConfig(periods=3))


def test_a_missing_day1_rating_is_kept_and_reported(make_tables):
    """A session without a day-1 rating (total and items empty) keeps its row and its fMRS
    blocks, is listed as kept, and the summary says how many; the column becomes float
    with NaN there (nothing else changes)."""
    t = make_tables(items=True)
    day1 = ["madrs_day1", *TrialConfig().item_columns("day1")]
    t["sessions"][day1] = t["sessions"][day1].astype(object)
    t["sessions"].loc[[2, 5], day1] = None
    data = TrialData(**t)
    assert data.sessions["madrs_day1"].isna().tolist() == [False, False, True, False, False,
                                                           True, False, False]  # fmt: skip
    assert data.sessions["madrs_baseline"].dtype == np.int64
    assert len(data.mrs) == len(t["mrs"])
    row = notes(data, NOT_RATED)
    assert row[["participant", "period", "action"]].values.tolist() == [
        ["P2", 1, "kept"], ["P3", 2, "kept"]
    ]  # fmt: skip
    assert "2 of 8 sessions have no day-1 rating" in data.summary()


@pytest.mark.parametrize(
    ("empty", "message"),
    [
        (
            ["madrs_day1"],
            r"column 'madrs_day1': expected a total where day1_item1\.\.day1_item10 "
            r"are given.*row 2 \(participant 'P2', period 1\)",
        ),
        (
            ["day1_item3"],
            r"column 'day1_item3': expected a value where madrs_day1 is given.*row 2 ",
        ),
        (["madrs_baseline"], r"column 'madrs_baseline'.*no missing values"),
    ],
)
def test_a_rating_is_missing_whole_or_not_at_all(make_tables, empty, message):
    """A day-1 total without its items or items without the total is an error naming the
    rows; a missing baseline stays an error."""
    t = make_tables(items=True)
    t["sessions"][empty] = t["sessions"][empty].astype(object)
    t["sessions"].loc[2, empty] = None
    with pytest.raises(DataError, match=message):
        TrialData(**t)


def test_a_parallel_trial_has_one_session_per_participant(make_tables):
    """Parallel groups: period 1 only; a second session of a participant, or a period 2,
    is an error naming the rows and the design; the summary counts the arms."""
    config = TrialConfig(design="parallel")
    t = make_tables(periods=1)
    data = TrialData(**t, config=config)
    assert "Parallel groups, one session per participant (placebo: 2, naltrexone: 2)." in (
        data.summary()
    )
    assert not (data.exclusions["reason"] == "one period only").any()
    two = make_tables(periods=2)
    with pytest.raises(DataError, match=r"column 'period'.*TrialConfig\(design='parallel'\)"):
        TrialData(**two, config=config)
    twice = make_tables(periods=1)
    twice["sessions"] = pd.concat([twice["sessions"], twice["sessions"].iloc[[0]]])
    with pytest.raises(DataError, match=r"one session per participant \(TrialConfig\(design="):
        TrialData(**twice, config=config)


def test_a_three_condition_trial_names_a_condition_or_period_outside_it():
    """A three-condition crossover validates with its config; a condition not in it and a
    fourth period are DataErrors naming table, column and rows."""
    three = TrialConfig(conditions=("placebo", "naltrexone", "nalmefene"))
    sim = kb.simulate(kb.Design(n=6, dropout=0.0, config=three), seed=1)
    tables = {"participants": sim.participants, "sessions": sim.sessions, "mrs": sim.mrs}
    validate_tables(**tables, config=three)
    with pytest.raises(DataError, match=r"expected one of 'placebo', 'naltrexone'"):
        validate_tables(**tables, config=TrialConfig())
    bad = tables | {"sessions": sim.sessions.assign(condition=lambda s: s["condition"].where(
        s.index != 4, "naloxone"))}  # fmt: skip
    with pytest.raises(DataError, match=r"table 'sessions', column 'condition'.*naloxone"):
        validate_tables(**bad, config=three)
    late = tables | {"sessions": sim.sessions.assign(period=lambda s: s["period"].where(
        s.index != 2, 4))}  # fmt: skip
    with pytest.raises(DataError, match=r"table 'sessions', column 'period'.*1-3"):
        validate_tables(**late, config=three)


# --- ratings over time (the optional fourth table) ------------------------------------------
# ratings_table(sessions): row 4 * s + k is sessions row s at RATING_TIMES[k] (4, 24, 72, 168 h),
# e.g. row 5 is P1, period 2, 24 h; score = madrs_day1 + (3, 0, -1, -2)[k].
WEEK = TrialConfig(rating_times_h=(4, 24, 72, 168))


def rated_tables(make_tables, make_ratings, *, items: bool = True) -> dict[str, pd.DataFrame]:
    t = make_tables()
    return t | {"ratings": make_ratings(t["sessions"], items=items)}


RATING_CASES = [
    pytest.param(
        lambda t: put(t, "ratings", 3, "participant", " "),
        "participant", ["row 3 (participant ' ', period 1, time_h 168.0)",
                        "a non-empty participant ID"],
        id="empty-participant",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 5, "period", 3),
        "period", ["row 5 (participant 'P1', period 3, time_h 24.0): 3", "1-2 (TrialConfig"],
        id="period-outside-the-design",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 6, "period", 1.5),
        "period", ["row 6 (participant 'P1', period 1.5, time_h 72.0)", "whole number"],
        id="fractional-period",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 6, "time_h", "day 3"),
        "time_h", ["a finite number of hours", "row 6 (participant 'P1', period 2, "
                   "time_h 'day 3'): 'day 3'"],
        id="text-time",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 7, "time_h", np.inf),
        "time_h", ["a finite number of hours", "row 7 (participant 'P1', period 2, time_h inf)"],
        id="infinite-time",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 8, "time_h", np.nan),
        "time_h", ["no missing values", "row 8 (participant 'P2', period 1, time_h nan)"],
        id="missing-time",
    ),
    pytest.param(
        lambda t: (put(t, "ratings", 0, "time_h", 0.0), put(t, "ratings", 4, "time_h", -2.0)),
        "time_h", ["a rating before or at infusion start: the baseline is "
                   "sessions.madrs_baseline", "2 rows failed",
                   "row 0 (participant 'P1', period 1, time_h 0.0): 0.0",
                   "row 4 (participant 'P1', period 2, time_h -2.0)"],
        id="time-at-or-before-infusion-start",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 2, "time_h", 48.0),
        "time_h", ["one of the scheduled times 4, 24, 72, 168 h (TrialConfig.rating_times_h)",
                   "times found: 4, 24, 48, 72, 168 h",
                   "row 2 (participant 'P1', period 1, time_h 48.0): 48.0"],
        id="time-off-the-schedule",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 9, "score", 61),
        "score", ["a whole number 0-60", "row 9 (participant 'P2', period 1, time_h 24.0): 61"],
        id="score-above-60",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 10, "score", 12.5),
        "score", ["whole number", "row 10 (participant 'P2', period 1, time_h 72.0): 12.5"],
        id="fractional-score",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 11, "score", np.nan),
        "score", ["no missing values", "row 11 (participant 'P2', period 1, time_h 168.0)"],
        id="missing-score",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 12, "score", "twelve"),
        "score", ["row 12 (participant 'P2', period 2, time_h 4.0): 'twelve'"],
        id="text-score",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 13, "item3", 7),
        "item3", ["a whole number 0-6", "row 13 (participant 'P2', period 2, time_h 24.0): 7"],
        id="item-above-6",
    ),
    pytest.param(
        lambda t: put(t, "ratings", 14, "item2", t["ratings"].at[14, "item2"] + 1),
        "score", ["the sum of item1..item10", "row 14 (participant 'P2', period 2, time_h 72.0): "
                  "score 11, items sum to 12"],
        id="items-not-summing",
    ),
    pytest.param(
        lambda t: drop(t, "ratings", "item4"),
        "item4", ["a column named 'item4'", "found ['participant', 'period', 'time_h'"],
        id="missing-item-column",
    ),
    pytest.param(
        lambda t: drop(t, "ratings", "score"),
        "score", ["a column named 'score'"],
        id="missing-score-column",
    ),
    pytest.param(
        lambda t: t.update(ratings=t["ratings"].iloc[:0]),
        None, ["at least one row"],
        id="no-rows",
    ),
    pytest.param(
        lambda t: append_copy(t, "ratings", 1),
        None, ["columns 'participant', 'period', 'time_h'", "one row per session",
               "row 1 (participant 'P1', period 1, time_h 24.0)", "row 32 (participant 'P1'"],
        id="two-ratings-at-one-time",
    ),
    pytest.param(
        lambda t: replace(t, "ratings", "P4", "P9"),
        None, ["columns 'participant', 'period'", "listed in table 'sessions'", "8 rows",
               "row 24 (participant 'P9', period 1, time_h 4.0)", "and 3 more"],
        id="rating-of-unknown-session",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "column", "expected"), RATING_CASES)
def test_malformed_ratings_raise_a_data_error_naming_table_column_and_rows(
    make_tables, make_ratings, mutate, column, expected
):
    tables = rated_tables(make_tables, make_ratings)
    mutate(tables)
    with pytest.raises(DataError) as err:
        TrialData(**tables, config=WEEK)
    msg = str(err.value)
    assert "table 'ratings'" in msg
    if column is not None:
        assert f"column {column!r}" in msg
    for text in expected:
        assert text in msg, f"{text!r} not in:\n{msg}"
    assert all(line.startswith("table 'ratings'") for line in msg.splitlines()), msg


def test_every_failing_ratings_column_is_in_one_error(make_tables, make_ratings):
    t = rated_tables(make_tables, make_ratings, items=False)
    put(t, "ratings", 0, "time_h", -1.0)
    put(t, "ratings", 1, "time_h", 36.0)
    put(t, "ratings", 2, "score", 70)
    put(t, "sessions", 0, "madrs_day1", 99)
    with pytest.raises(DataError) as err:
        TrialData(**t, config=WEEK)
    heads = [line.split(":")[0] for line in str(err.value).splitlines()]
    assert heads == [
        "table 'sessions', column 'madrs_day1'",
        "table 'ratings', column 'time_h'",
        "table 'ratings', column 'time_h'",
        "table 'ratings', column 'score'",
    ]


def test_ratings_must_be_a_dataframe(make_tables, make_ratings):
    t = rated_tables(make_tables, make_ratings)
    with pytest.raises(DataError, match="table 'ratings': expected a pandas DataFrame"):
        TrialData(**t | {"ratings": t["ratings"].to_dict("records")}, config=WEEK)


def test_valid_ratings_pass_with_canonical_dtypes_sorted(make_tables, make_ratings):
    """Shuffled, with text numbers and an extra column: validated, typed, sorted by
    participant, period and time, fresh index, the extra column kept, the input unchanged."""
    t = rated_tables(make_tables, make_ratings)
    expected = t["ratings"].assign(rater="AB")
    given = expected.sample(frac=1, random_state=2).astype({"score": str, "period": float})
    before = given.copy()
    data = TrialData(**t | {"ratings": given}, config=WEEK)
    pd.testing.assert_frame_equal(given, before)
    assert data.exclusions.empty
    r = data.ratings
    assert list(r.columns[:4]) == ["participant", "period", "time_h", "score"]
    assert pd.api.types.is_string_dtype(r["participant"]) and r["time_h"].dtype == np.float64
    for col in ["period", "score", "item1", "item10"]:
        assert r[col].dtype == np.int64, col
    assert r.index.equals(pd.RangeIndex(len(r)))
    pd.testing.assert_frame_equal(r, expected, check_dtype=False)
    tables, exclusions = validate_tables(**t, config=WEEK)
    assert set(tables) == {"participants", "sessions", "mrs", "ratings"} and exclusions.empty
    assert TrialData(**make_tables()).ratings is None  # optional


def test_default_schedule_is_the_day1_rating_and_column_mapping_applies(make_tables, make_ratings):
    t = make_tables()
    day1 = make_ratings(t["sessions"], (24.0,)).rename(columns={"participant": "subject"})
    renamed = {k: df.rename(columns={"participant": "subject"}) for k, df in t.items()}
    data = TrialData(**renamed, ratings=day1, columns={"subject": "participant"})
    assert (data.ratings["score"] == data.sessions["madrs_day1"]).all()
    with pytest.raises(DataError, match=r"scheduled times 24 h .*times found: 4, 24 h"):
        TrialData(**t, ratings=make_ratings(t["sessions"], (4.0, 24.0)))


def test_a_24h_rating_must_agree_with_the_sessions_day1_rating(make_tables, make_ratings):
    """The day-1 rating is the one at 24 h: a different score there is an error naming both;
    a session without madrs_day1 may have its 24 h rating in ratings only."""
    t = rated_tables(make_tables, make_ratings, items=False)
    put(t, "ratings", [5, 9], "score", 0)  # P1/2 and P2/1 at 24 h
    with pytest.raises(DataError) as err:
        TrialData(**t, config=WEEK)
    (line,) = str(err.value).splitlines()
    assert line.startswith("table 'ratings', column 'score': expected the session's madrs_day1")
    assert "the two must agree; 2 rows failed" in line
    assert (
        "row 5 (participant 'P1', period 2, time_h 24.0): score 0, sessions' madrs_day1 19" in line
    )
    t = rated_tables(make_tables, make_ratings, items=False)
    put(t, "sessions", 2, "madrs_day1", np.nan)  # P2/1 rated at 24 h in ratings only
    data = TrialData(**t, config=WEEK)
    assert not (data.exclusions["reason"] == DAY1_IN_SESSIONS_ONLY).any()
    append_copy(t, "sessions", 0)  # a repeated session: its error, with the rating's rules run
    with pytest.raises(DataError, match=r"table 'sessions', columns 'participant', 'period'"):
        TrialData(**t, config=WEEK)


def test_missing_ratings_are_kept_and_noted_with_their_times(make_tables, make_ratings, caplog):
    """Times of the schedule without a row are missing (at random, given the model): each
    such session is a "kept" note naming its missing times; the summary counts them per time;
    a day-1 rating in sessions without the 24 h row is noted too, nothing is filled in."""
    t = rated_tables(make_tables, make_ratings)
    t["ratings"] = t["ratings"].drop(index=[2, 3, 7, 13, *range(16, 20)])
    with caplog.at_level(logging.WARNING, logger="kbayes"):
        data = TrialData(**t, config=WEEK)
    assert len(data.ratings) == 24 and len(data.sessions) == 8
    said = data.exclusions[["table", "participant", "period", "action", "reason"]]
    assert said.values.tolist() == [
        ["sessions", "P1", 1, "kept", "no rating at 72, 168 h"],
        ["sessions", "P1", 2, "kept", "no rating at 168 h"],
        ["sessions", "P2", 2, "kept", "no rating at 24 h"],
        ["sessions", "P3", 1, "kept", "no rating at 4, 24, 72, 168 h"],
        ["sessions", "P2", 2, "kept", DAY1_IN_SESSIONS_ONLY],
        ["sessions", "P3", 1, "kept", DAY1_IN_SESSIONS_ONLY],
    ]
    summary = data.summary()
    assert ("24 ratings at 4, 24, 72, 168 h; 1 session lacks the rating at 4 h, 2 at 24 h, "
            "2 at 72 h, 3 at 168 h.") in summary  # fmt: skip
    assert "kept: no rating at 72, 168 h (1)" in summary
    assert f"kept: {DAY1_IN_SESSIONS_ONLY} (2)" in summary
    assert "sessions: no rating at 4, 24, 72, 168 h (kept, 1 row: P3/1)" in caplog.text
    assert data.sessions["madrs_day1"].notna().all()  # nothing filled or removed
    no_day1 = TrialConfig(rating_times_h=(4, 72, 168))  # no 24 h in the schedule: no such note
    t["ratings"] = t["ratings"][t["ratings"]["time_h"] != 24.0]
    assert not (TrialData(**t, config=no_day1).exclusions["reason"] == DAY1_IN_SESSIONS_ONLY).any()
    complete = TrialData(**rated_tables(make_tables, make_ratings), config=WEEK)
    assert "32 ratings at 4, 24, 72, 168 h; every session has all of them." in complete.summary()

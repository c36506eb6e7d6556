"""Validation of the trial tables: pandera schemas for columns, pandas for rows.

Three tables are required (participants, sessions, mrs); a fourth, ``ratings`` (one row per
session and rating time), is optional.

:func:`validate_tables` works in stages and each stage reports *all* its problems in one
:class:`~kbayes.errors.DataError`, one line per failed rule, written by :func:`_problem`:

1. shape: every table has rows, unique column names and its required columns (item
   columns of a visit: all or none);
2. columns (pandera, lazy): no missing values (but a day-1 rating, and a CRLB, may be
   empty), numbers where numbers belong (numbers
   written as text, e.g. ``"30"``, are accepted; other text, booleans and dates are not),
   whole numbers for periods, blocks and scores (``30.0`` is fine, ``30.5`` is not),
   ranges, codes from the :class:`~kbayes.config.TrialConfig`, rating times from its
   ``rating_times_h``;
3. rows (pandas, on normalised dtypes): unique keys, each condition at most once per
   participant, every session's participant and every block's and rating's session known,
   block times increasing, item scores summing to the visit's (or rating's) total, a
   rating at 24 h agreeing with the session's ``madrs_day1``;
4. reports, not errors: blocks with CRLB above ``config.crlb_max`` are removed and listed
   as ``"excluded"``; a session without a day-1 rating, a participant with one period
   only or without sessions, a session with fewer blocks than the most complete one,
   without blocks or with every block excluded, with fewer ratings than the schedule or
   with its day-1 rating in sessions only are kept and listed as ``"kept"``.

Rows are numbered from 0 in the order given (row 0 is the first row under a CSV header),
and named by their participant, period and block (ratings: time) where the table has them. Unknown
columns are kept unchanged in every table: covariates in ``participants``, anything else
(scanner, rater, notes) in ``sessions`` and ``mrs``. Returned tables are sorted by
participant (natural order: P2 before P10), period and block (ratings: time), with a fresh
index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa

from kbayes.config import DAY1_H, TrialConfig
from kbayes.errors import DataError

MAX_ROWS = 5
VISITS = ("baseline", "day1")
IDS = ["participant", "period", "block"]
#: The ids naming a row in a message (a rating is named by its time).
ROW_IDS = [*IDS, "time_h"]
KEYS = {"participants": IDS[:1], "sessions": IDS[:2], "mrs": IDS,
        "ratings": ["participant", "period", "time_h"]}  # fmt: skip
REQUIRED = {
    "participants": ["participant", "sex"],
    "sessions": ["participant", "period", "condition", "madrs_baseline", "madrs_day1"],
    "mrs": ["participant", "period", "block", "time_min", "glx_ratio", "crlb"],
    "ratings": ["participant", "period", "time_h", "score"],
}
ALTERNATIVES = {"glx_ratio": " (or both glx and tnaa)", "crlb": " (or crlb_glx and crlb_tnaa)"}
EXCLUSION_COLUMNS = ["table", "participant", "period", "block", "action", "reason"]
#: The note of a session kept without its day-1 rating (its improvement is missing at random
#: given the model: left out of the improvement likelihood, which integrates it out).
NOT_RATED = "no day-1 rating (fMRS kept; improvement missing at random)"
#: The note of a session whose ``madrs_day1`` is given but whose ratings lack the 24 h row.
DAY1_IN_SESSIONS_ONLY = "day-1 rating in sessions only"
#: The note of a session with fewer ratings than ``TrialConfig.rating_times_h`` (kept: the
#: missing ones are missing at random given the model).
MISSING_RATINGS = "no rating at {times} h"


def rating_item_columns(config: TrialConfig) -> list[str]:
    """Names of the optional item columns of the ``ratings`` table: item1..item{n_items}."""
    return [f"item{k}" for k in range(1, config.n_items + 1)]


def hours(times: Iterable[float]) -> str:
    """Times in hours as text: ``(4.0, 24.0)`` -> ``"4, 24"``."""
    return ", ".join(f"{t:g}" for t in times)


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _problem(
    table: str,
    column: str | list[str] | None,
    expected: str,
    df: pd.DataFrame | None = None,
    rows: Iterable[int] | None = None,
    found: pd.Series | None = None,
) -> list[str]:
    """The line of a DataError for one failed rule: table, column(s), expectation, rows.

    Each failing row is shown by number, ids and what was found (``found``, as text; by
    default the column's value, nothing for several columns), at most ``MAX_ROWS`` of
    them, then the count of the others. Returns ``[]`` if ``rows`` is given but empty.
    """
    column = column[0] if isinstance(column, list) and len(column) == 1 else column
    where = f"table {table!r}"
    if isinstance(column, str):
        where += f", column {column!r}"
        found = df[column].map(_show) if found is None and df is not None else found
    elif column:
        where += ", columns " + ", ".join(map(repr, column))
    if rows is None:
        return [f"{where}: expected {expected}"]
    rows = sorted(rows)
    shown = []
    for r in rows[:MAX_ROWS]:
        ids = ", ".join(f"{c} {_show(df.at[r, c])}" for c in ROW_IDS if c in df)
        shown.append(f"row {r} ({ids})" + ("" if found is None else f": {found[r]}"))
    more = f"; and {len(rows) - MAX_ROWS} more" if len(rows) > MAX_ROWS else ""
    n = f"{len(rows)} row{'s' * (len(rows) > 1)}"
    return [f"{where}: expected {expected}; {n} failed: " + "; ".join(shown) + more] if rows else []


def _raise(problems: list[str]) -> None:
    if problems:
        raise DataError("\n".join(problems))


def _number(s: pd.Series) -> pd.Series:
    """Values as floats; NaN where a value is not a number (text, booleans, dates, missing)."""
    if s.dtype == object:
        ok = s.map(
            lambda v: isinstance(v, str | int | float | np.number) and not isinstance(v, bool)
        )
        s = s.where(ok)
    elif pd.api.types.is_bool_dtype(s) or not (
        pd.api.types.is_numeric_dtype(s) or pd.api.types.is_string_dtype(s)
    ):
        return pd.Series(np.nan, index=s.index)
    return pd.to_numeric(s, errors="coerce").astype(float)


def as_numbers(table: str, df: pd.DataFrame, columns: list[str]) -> list[pd.Series]:
    """The ``columns`` of ``df`` as floats, or a DataError naming the rows that are not numbers.

    Used where values are computed with before validation (e.g. :func:`kbayes.data.combine_ratio`).
    """
    df = df.reset_index(drop=True)
    values = [_number(df[c]) for c in columns]
    problems = []
    for c, x in zip(columns, values, strict=True):
        problems += _problem(table, c, "a number", df, df.index[x.isna()])
    _raise(problems)
    return values


def _column(ok: Callable[[pd.Series], pd.Series], expected: str) -> pa.Column:
    return pa.Column(checks=pa.Check(ok, error=expected), nullable=False)


def _numeric(
    expected: str,
    lo: float = -np.inf,
    hi: float = np.inf,
    *,
    whole: bool = False,
    above: bool = False,
    missing_ok: bool = False,
) -> pa.Column:
    """Rule: finite numbers from ``lo`` (excluded if ``above``) to ``hi``, whole if asked;
    empty cells too if ``missing_ok``."""

    def ok(s: pd.Series) -> pd.Series:
        x = _number(s)
        good = np.isfinite(x) & ((x > lo) if above else (x >= lo)) & (x <= hi)
        good = good & (x % 1 == 0) if whole else good
        return good | s.isna() if missing_ok else good  # empty, not text that is no number

    column = _column(ok, expected)
    column.nullable = missing_ok
    return column


def _schemas(
    config: TrialConfig, items: list[str], tables: dict[str, pd.DataFrame]
) -> dict[str, pa.DataFrameSchema]:
    """Per-column rules of each table; ``items`` are the item columns present in sessions."""
    score = _numeric(f"a whole number 0-{config.score_max}", 0, config.score_max, whole=True)
    item = _numeric(f"a whole number 0-{config.item_max}", 0, config.item_max, whole=True)
    item_day1 = _numeric(f"a whole number 0-{config.item_max}, or empty where not rated", 0,
                         config.item_max, whole=True, missing_ok=True)  # fmt: skip
    rating = _numeric(f"a whole number 0-{config.score_max}, or empty where not rated", 0,
                      config.score_max, whole=True, missing_ok=True)  # fmt: skip
    periods = ("1 (TrialConfig(design='parallel'): one session each)"
               if config.design == "parallel" else
               f"a whole number 1-{config.periods} (TrialConfig.periods)")  # fmt: skip
    period = _numeric(periods, 1, config.periods, whole=True)
    participant = _column(lambda s: s.astype(str).str.strip() != "", "a non-empty participant ID")

    def codes(field: str, table: str, column: str) -> pa.Column:
        values = getattr(config, field)
        ok = lambda s: s.astype(str).isin(list(values))  # noqa: E731
        expected = f"one of {', '.join(map(repr, values))} (TrialConfig.{field})"
        if column in tables[table]:
            found = tuple(sorted(tables[table][column].dropna().astype(str).unique()))
            if len(found) == len(values):
                order = " (reference first)" if field == "conditions" else ""
                expected += (f"; to use the codes found, pass "
                             f"config=kb.TrialConfig({field}={found!r}){order}")  # fmt: skip
        return _column(ok, expected)

    sessions = {"participant": participant, "period": period,
                "condition": codes("conditions", "sessions", "condition")}  # fmt: skip
    mrs = {
        "participant": participant,
        "period": period,
        "block": _numeric("a whole number >= 0", 0, whole=True),
        "time_min": _numeric("a finite number of minutes"),
        "glx_ratio": _numeric("a finite number > 0", 0, above=True),
        "crlb": _numeric(
            "a number 0-999 (%), or empty where not reported", 0, 999, missing_ok=True
        ),
    }
    schemas = {
        "participants": pa.DataFrameSchema(
            {"participant": participant, "sex": codes("sexes", "participants", "sex")}
        ),
        "sessions": pa.DataFrameSchema(
            sessions
            | {"madrs_baseline": score, "madrs_day1": rating}
            | dict.fromkeys(items, item)
            | dict.fromkeys(set(items) & set(config.item_columns("day1")), item_day1)
        ),
        "mrs": pa.DataFrameSchema(mrs),
    }
    if "ratings" in tables:
        ratings = {"participant": participant, "period": period,
                   "time_h": _rating_time(config, tables["ratings"]), "score": score}  # fmt: skip
        ratings |= dict.fromkeys(_rating_items(tables["ratings"], config), item)
        schemas["ratings"] = pa.DataFrameSchema(ratings)
    return schemas


def _rating_time(config: TrialConfig, ratings: pd.DataFrame) -> pa.Column:
    """Rules of ``ratings.time_h``: a finite number, after infusion start, on the schedule."""
    times = config.rating_times_h
    x = _number(ratings["time_h"]) if "time_h" in ratings else pd.Series(dtype=float)
    found = sorted(set(x[np.isfinite(x) & (x > 0)]))
    union = tuple(sorted(set(times) | set(found)))
    scheduled = (f"one of the scheduled times {hours(times)} h (TrialConfig.rating_times_h); "
                 f"times found: {hours(found)} h; to rate at those, pass "
                 f"config=kb.TrialConfig(rating_times_h={union!r})")  # fmt: skip
    after = ("a time > 0 h (a rating before or at infusion start: the baseline is "
             "sessions.madrs_baseline)")  # fmt: skip
    checks = [
        pa.Check(lambda s: np.isfinite(_number(s)), error="a finite number of hours"),
        pa.Check(lambda s: ~np.isfinite(_number(s)) | (_number(s) > 0), error=after),
        pa.Check(lambda s: ~(_number(s) > 0) | _number(s).isin(times), error=scheduled),
    ]
    return pa.Column(checks=checks, nullable=False)


def _rating_items(ratings: pd.DataFrame, config: TrialConfig) -> list[str]:
    """The item columns of ``ratings``: all of them if it has any, else none."""
    columns = rating_item_columns(config)
    return columns if any(c in ratings for c in columns) else []


def _item_columns(sessions: pd.DataFrame, config: TrialConfig) -> list[str]:
    """Item columns of the visits that have any."""
    return [
        c
        for visit in VISITS
        if any(c in sessions for c in config.item_columns(visit))
        for c in config.item_columns(visit)
    ]


def _items(name: str, df: pd.DataFrame, config: TrialConfig) -> list[str]:
    """The item columns of table ``name`` (sessions: per visit; ratings: item1..N)."""
    if name == "sessions":
        return _item_columns(df, config)
    return _rating_items(df, config) if name == "ratings" else []


def _shape_problems(tables: dict[str, pd.DataFrame], config: TrialConfig) -> list[str]:
    """Stage 1: rows, unique column names, required columns."""
    problems = []
    for name, df in tables.items():
        found = list(map(str, df.columns))
        hint = "; is the delimiter right?" if any(re.search("[;\t,|]", c) for c in found) else ""
        required = REQUIRED[name] + _items(name, df, config)
        for c in (c for c in required if c not in df):
            expected = f"a column named {c!r}{ALTERNATIVES.get(c, '')}; found {found}{hint}"
            problems += _problem(name, c, expected)
        for c in df.columns[df.columns.duplicated()].unique():
            problems += _problem(name, c, "one column of this name (check the column mapping)")
        if df.empty:
            problems += _problem(name, None, "at least one row; the table is empty")
    return problems


def _column_problems(tables: dict[str, pd.DataFrame], config: TrialConfig) -> list[str]:
    """Stage 2: pandera's failure cases, one line per column and rule."""
    problems = []
    items = _item_columns(tables["sessions"], config)
    for name, schema in _schemas(config, items, tables).items():
        try:
            schema.validate(tables[name], lazy=True)
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            for (column, check), failed in cases.groupby(["column", "check"], sort=False):
                expected = "a value (no missing values)" if check == "not_nullable" else check
                problems += _problem(name, column, expected, tables[name], failed["index"])
    return problems


def _as_id(s: pd.Series) -> pd.Series:
    """Participant IDs as text; whole numbers without a decimal point (1.0 -> "1")."""
    if pd.api.types.is_numeric_dtype(s) and (s % 1 == 0).all():
        s = s.astype("int64")
    return s.astype(str)


def _normalise(name: str, df: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    """Canonical dtypes for the validated columns; other columns unchanged."""
    out = df.copy()
    for c in REQUIRED[name] + items:
        if c == "participant":
            out[c] = _as_id(out[c])
        elif c in ("sex", "condition"):
            out[c] = out[c].astype(str)
        elif c in ("time_min", "glx_ratio", "crlb", "time_h") or out[c].isna().any():
            out[c] = _number(out[c])  # not made: float, NaN (validated: nothing else is empty)
        else:
            out[c] = _number(out[c]).astype("int64")
    return out


def _duplicates(table: str, df: pd.DataFrame, keys: list[str], expected: str) -> list[str]:
    rows = df.index[df.duplicated(keys, keep=False)]
    found = None if keys[-1] in ROW_IDS else df[keys[-1]].map(_show)
    return _problem(table, keys, expected, df, rows, found)


def _unknown(
    table: str, df: pd.DataFrame, other: str, known: pd.DataFrame, keys: list[str]
) -> list[str]:
    known_keys = pd.MultiIndex.from_frame(known[keys])
    rows = df.index[~pd.MultiIndex.from_frame(df[keys]).isin(known_keys)]
    what = "participant" if keys == ["participant"] else "session (participant, period)"
    return _problem(table, keys, f"a {what} listed in table {other!r}", df, rows)


def _row_problems(t: dict[str, pd.DataFrame], config: TrialConfig) -> list[str]:
    """Stage 3: keys, links between tables, block times, item sums."""
    p, s, m = t["participants"], t["sessions"], t["mrs"]
    one = ("one session per period" if config.design == "crossover" else
           "one session per participant (TrialConfig(design='parallel'))")  # fmt: skip
    problems = [
        *_duplicates("participants", p, ["participant"], "one row per participant"),
        *_duplicates("sessions", s, ["participant", "period"], one),
        *_duplicates(
            "sessions", s, ["participant", "condition"], "each condition once per participant"
        ),
        *_duplicates("mrs", m, IDS, "one row per block of a session"),
        *_unknown("sessions", s, "participants", p, ["participant"]),
        *_unknown("mrs", m, "sessions", s, ["participant", "period"]),
    ]
    if m["crlb"].notna().any() and (m["crlb"].dropna() <= 1).all():
        problems += _problem("mrs", "crlb", (
            "CRLB in percent (0-999); every value is at most 1, which looks like fractions "
            "(0.05 for 5 %): convert with mrs['crlb'] = 100 * mrs['crlb']"))  # fmt: skip
    ordered = m.sort_values(IDS)
    before = ordered.groupby(IDS[:2])["time_min"].shift()
    rows = before.index[ordered["time_min"] <= before]
    found = "time " + m["time_min"].astype(str) + " after " + before.astype(str)
    expected = "times increasing with block number within a session"
    problems += _problem("mrs", "time_min", expected, m, rows, found)
    for visit in VISITS:
        cols, total = config.item_columns(visit), f"madrs_{visit}"
        if cols[0] in s:
            unrated = s[total].isna()  # a day-1 rating not made: its items empty too
            for col in cols:
                rows = s.index[~unrated & s[col].isna()]
                expected = f"a value where {total} is given (empty only with it)"
                problems += _problem("sessions", col, expected, s, rows)
            sums = s[cols].sum(axis=1, min_count=len(cols))
            rows = s.index[~unrated & sums.notna() & (sums != s[total])]
            found = "total " + s[total].astype(str) + ", items sum to " + sums.astype(str)
            expected = f"the sum of {cols[0]}..{cols[-1]}"
            problems += _problem("sessions", total, expected, s, rows, found)
            rows = s.index[unrated & s[cols].notna().any(axis=1)]
            expected = f"a total where {cols[0]}..{cols[-1]} are given (empty only with them)"
            problems += _problem("sessions", total, expected, s, rows)
    if "ratings" in t:
        problems += _rating_problems(t["ratings"], s, config)
    return problems


def _rating_problems(r: pd.DataFrame, s: pd.DataFrame, config: TrialConfig) -> list[str]:
    """Stage 3 of ``ratings``: one row per session and time, a known session, items summing
    to the score, a rating at 24 h agreeing with the session's ``madrs_day1``."""
    keys = KEYS["ratings"]
    problems = [
        *_duplicates("ratings", r, keys, "one row per session (participant, period) and time"),
        *_unknown("ratings", r, "sessions", s, keys[:2]),
    ]
    cols = _rating_items(r, config)
    if cols:
        sums = r[cols].sum(axis=1)
        found = "score " + r["score"].astype(str) + ", items sum to " + sums.astype(str)
        rows = r.index[sums != r["score"]]
        expected = f"the sum of {cols[0]}..{cols[-1]}"
        problems += _problem("ratings", "score", expected, r, rows, found)
    known = s[[*keys[:2], "madrs_day1"]].drop_duplicates(keys[:2])  # repeats: an error above
    day1 = r[keys[:2]].merge(known, on=keys[:2], how="left")["madrs_day1"].set_axis(r.index)
    rows = r.index[(r["time_h"] == DAY1_H) & day1.notna() & (r["score"] != day1)]
    found = "score " + r["score"].astype(str) + ", sessions' madrs_day1 " + day1.map("{:g}".format)
    expected = (f"the session's madrs_day1 (table 'sessions') in the rating at {DAY1_H:g} h: "
                "the day-1 rating is the one at 24 h, the two must agree")  # fmt: skip
    problems += _problem("ratings", "score", expected, r, rows, found)
    return problems


def _notes(table: str, ids: pd.DataFrame, action: str, reason: str) -> pd.DataFrame:
    return ids.reindex(columns=IDS).assign(table=table, action=action, reason=reason)


def _exclusions(
    t: dict[str, pd.DataFrame], config: TrialConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Remove blocks above the CRLB cut-off; list them and incomplete data. Returns (mrs, notes)."""
    p, s, m = t["participants"], t["sessions"], t["mrs"]
    bad = m["crlb"] > config.crlb_max
    session = pd.MultiIndex.from_frame(s[IDS[:2]])
    n_all = m.groupby(IDS[:2]).size().reindex(session, fill_value=0).to_numpy()
    n_kept = m[~bad].groupby(IDS[:2]).size().reindex(session, fill_value=0).to_numpy()
    n_sessions = s.groupby("participant").size().reindex(p["participant"], fill_value=0)
    fewer = "fewer fMRS blocks than the most complete session"
    notes = [
        _notes("mrs", m[bad], "excluded", f"CRLB above {config.crlb_max:g}% cut-off"),
        _notes("mrs", m[m["crlb"].isna()], "kept", "CRLB not reported"),
        _notes(
            "sessions",
            s[(s["participant"].map(n_sessions) == 1) & (config.periods > 1)],
            "kept",
            "one period only",
        ),
        _notes("sessions", s[s["madrs_day1"].isna()], "kept", NOT_RATED),
        _notes("sessions", s[n_all == 0], "kept", "no fMRS blocks"),
        _notes("sessions", s[(n_all > 0) & (n_all < n_all.max())], "kept", fewer),
        _notes("sessions", s[(n_all > 0) & (n_kept == 0)], "kept", "every fMRS block excluded"),
        _notes("participants", p[n_sessions.to_numpy() == 0], "kept", "no sessions"),
        *(_rating_notes(s, t["ratings"], config) if "ratings" in t else []),
    ]
    notes = [n for n in notes if len(n)]
    out = pd.concat(notes, ignore_index=True) if notes else pd.DataFrame(columns=EXCLUSION_COLUMNS)
    out = out.astype({"participant": str, "period": "Int64", "block": "Int64"})
    return m[~bad], out[EXCLUSION_COLUMNS]


def _rating_notes(s: pd.DataFrame, r: pd.DataFrame, config: TrialConfig) -> list[pd.DataFrame]:
    """Sessions with fewer ratings than the schedule (one note per set of missing times),
    and sessions whose day-1 rating is in ``sessions`` only (no 24 h row in ``ratings``)."""
    times = config.rating_times_h
    session = pd.MultiIndex.from_frame(s[IDS[:2]])
    at = {t: pd.MultiIndex.from_frame(r.loc[r["time_h"] == t, IDS[:2]]) for t in times}
    rated = pd.DataFrame({t: session.isin(known) for t, known in at.items()})
    missing = rated.apply(lambda row: tuple(t for t in times if not row[t]), axis=1)
    notes = []
    for gap in (g for g in dict.fromkeys(missing) if g):
        rows = s[missing.map(gap.__eq__).to_numpy(bool)]
        notes.append(_notes("sessions", rows, "kept", MISSING_RATINGS.format(times=hours(gap))))
    if DAY1_H in times:
        only = s["madrs_day1"].notna().to_numpy() & ~rated[DAY1_H].to_numpy()
        notes.append(_notes("sessions", s[only], "kept", DAY1_IN_SESSIONS_ONLY))
    return notes


def _natural(text: str) -> list:
    """Sort key putting P2 before P10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _tidy(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rank = {pid: k for k, pid in enumerate(sorted(set(df["participant"]), key=_natural))}
    key = lambda col: col.map(rank) if col.name == "participant" else col  # noqa: E731
    return df.sort_values(keys, key=key, kind="stable").reset_index(drop=True)


def validate_tables(
    participants: pd.DataFrame,
    sessions: pd.DataFrame,
    mrs: pd.DataFrame,
    ratings: pd.DataFrame | None = None,
    *,
    config: TrialConfig,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Validate and normalise the tables of a crossover trial.

    Parameters
    ----------
    participants, sessions, mrs : pandas.DataFrame
        The tables with canonical column names (see :mod:`kbayes.data`).
    ratings : pandas.DataFrame, optional
        Ratings over time: participant, period, time_h, score, optional item1..N.
    config : TrialConfig
        Condition and sex codes, score ranges, rating times and the CRLB cut-off.

    Returns
    -------
    tables : dict of str to pandas.DataFrame
        ``participants``, ``sessions`` and ``mrs`` (and ``ratings`` if given) with canonical
        dtypes (IDs, sex and condition as text; period, block and scores as int; times,
        ratio and CRLB as float), sorted and re-indexed; blocks above the CRLB cut-off
        removed.
    exclusions : pandas.DataFrame
        One row per removed block or incompleteness note: table, participant, period,
        block, action (``"excluded"`` or ``"kept"``) and reason.

    Raises
    ------
    kbayes.DataError
        Listing every failed rule of the first failing stage (module docstring), each with
        table, column, the first offending rows with their count, and what was expected.
    """
    raw = {"participants": participants, "sessions": sessions, "mrs": mrs}
    raw |= {} if ratings is None else {"ratings": ratings}
    raw = {name: df.reset_index(drop=True) for name, df in raw.items()}
    _raise(_shape_problems(raw, config))
    _raise(_column_problems(raw, config))
    tables = {name: _normalise(name, df, _items(name, df, config)) for name, df in raw.items()}
    _raise(_row_problems(tables, config))
    tables["mrs"], exclusions = _exclusions(tables, config)
    return {name: _tidy(df, KEYS[name]) for name, df in tables.items()}, exclusions

"""TrialData: the validated tables of a crossover pharmaco-imaging trial.

Tables (long format, canonical column names; other names are mapped with ``columns=``):

=============  ==========================  ===============================================
table          one row per                 columns
=============  ==========================  ===============================================
participants   participant                 participant, sex, optional covariates
sessions       participant x period        participant, period, condition, madrs_baseline,
                                           madrs_day1, optional baseline_item1..N and
                                           day1_item1..N
mrs            participant x period x      participant, period, block, time_min, glx_ratio
               block                       (or glx and tnaa), crlb (or crlb_glx, crlb_tnaa)
ratings        participant x period x      participant, period, time_h, score, optional
(optional)     rating time                 item1..N
=============  ==========================  ===============================================

``time_min`` is minutes from infusion start (negative = before infusion); ``crlb`` is the
Cramér-Rao lower bound in percent, i.e. a relative SD. ``time_h`` is hours from infusion
start, one of ``TrialConfig.rating_times_h`` (the rating at 24 h is the day-1 rating,
``sessions.madrs_day1``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kbayes.config import TrialConfig
from kbayes.design import SimulatedTruth
from kbayes.errors import DataError
from kbayes.validate import as_numbers, hours, validate_tables

log = logging.getLogger("kbayes")

TABLES = ("participants", "sessions", "mrs")
#: Tables a trial may have besides :data:`TABLES` (None where it has not).
OPTIONAL_TABLES = ("ratings",)
#: File suffixes read as tables (case-insensitive): Parquet, tab-separated, else CSV.
PARQUET, TSV = {".parquet", ".pq"}, {".tsv", ".tab"}
SUFFIXES = (".csv", *sorted(TSV), *sorted(PARQUET))
EXCLUSION_COLUMNS = ["table", "participant", "period", "block", "action", "reason"]


def infusion_profile(time_min, shape: str = "step", infusion_min: float = 40.0) -> np.ndarray:
    """g(t): 0 before infusion start, rising to 1 during it.

    ``shape="step"`` jumps to 1 at t = 0; ``shape="ramp"`` rises linearly over the infusion
    (1 at ``infusion_min`` minutes and after).
    """
    t = np.asarray(time_min, dtype=float)
    if shape == "step":
        return (t >= 0).astype(float)
    if shape == "ramp":
        return np.clip(t / infusion_min, 0.0, 1.0)
    raise ValueError(f"unknown infusion profile shape {shape!r}; expected 'step' or 'ramp'")


def session_change(
    session: np.ndarray, g: np.ndarray, y: np.ndarray, n_sessions: int
) -> np.ndarray:
    """Per-session least-squares slope of the ratio ``y`` on g(t) (ratio units).

    ``session`` gives each block's session index (0..n_sessions-1). With a step profile this
    is the mean during the infusion minus the mean before it. NaN where a session has no
    blocks both before and during the infusion.
    """
    count = np.bincount(session, minlength=n_sessions).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        g_c = g - (np.bincount(session, g, n_sessions) / count)[session]
        y_c = y - (np.bincount(session, y, n_sessions) / count)[session]
        sxx = np.bincount(session, g_c**2, n_sessions)
        slope = np.bincount(session, g_c * y_c, n_sessions) / sxx
    return np.where(sxx > 0, slope, np.nan)


def combine_ratio(mrs: pd.DataFrame) -> pd.DataFrame:
    """Glx/tNAA from separate ``glx`` and ``tnaa`` columns.

    The ratio's relative SD combines the two CRLBs in quadrature,
    ``crlb = sqrt(crlb_glx**2 + crlb_tnaa**2)``: first-order error propagation that ignores
    the correlation of the two estimates (they come from one fit of one spectrum), so it is
    an approximation, usually a slight overstatement. Raises DataError where a source value
    is not a number.
    """
    out = mrs.copy()
    if "glx_ratio" not in out and {"glx", "tnaa"} <= set(out):
        glx, tnaa = as_numbers("mrs", out, ["glx", "tnaa"])
        out["glx_ratio"] = (glx / tnaa).to_numpy()
        out = out.drop(columns=["glx", "tnaa"])
    if "crlb" not in out and {"crlb_glx", "crlb_tnaa"} <= set(out):
        crlb_glx, crlb_tnaa = as_numbers("mrs", out, ["crlb_glx", "crlb_tnaa"])
        out["crlb"] = np.hypot(crlb_glx, crlb_tnaa).to_numpy()
        out = out.drop(columns=["crlb_glx", "crlb_tnaa"])
    return out


def _read_table(name: str, path: str | Path, columns: dict[str, str]) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"table {name!r}: file {str(path)!r} does not exist")
    id_sources = [src for src, dst in columns.items() if dst == "participant"] + ["participant"]
    try:
        if path.suffix.lower() in PARQUET:
            df = pd.read_parquet(path)
        else:
            sep = "\t" if path.suffix.lower() in TSV else ","
            df = pd.read_csv(path, sep=sep, dtype={c: str for c in id_sources})
    except pd.errors.EmptyDataError:
        raise DataError(f"table {name!r}: file {str(path)!r} is empty (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"table {name!r}: cannot read {str(path)!r}: {exc}") from None
    if df.empty:
        raise DataError(f"table {name!r}: file {str(path)!r} has a header but no rows")
    return df


class TrialData:
    """Validated tables of one crossover trial.

    Parameters
    ----------
    participants, sessions, mrs : pandas.DataFrame
        The three required tables (see the module docstring for their columns).
    ratings : pandas.DataFrame, optional
        Ratings over time, one row per session and time: ``participant``, ``period``,
        ``time_h`` (hours from infusion start, one of ``config.rating_times_h``), ``score``
        and optional ``item1..N``. A time of the schedule without a row is missing.
    columns : dict, optional
        Source name -> canonical name, applied to every table, e.g. ``{"subject":
        "participant"}``. A column named like ``config.metabolite`` ("Glx/tNAA") is read as
        ``glx_ratio``; separate ``glx`` and ``tnaa`` columns are combined (:func:`combine_ratio`).
    config : TrialConfig, optional
        Condition and sex codes, scale ranges, rating times and the CRLB cut-off.

    Raises
    ------
    kbayes.DataError
        Naming the table, column, first offending rows (and their count) and what was expected.

    Attributes
    ----------
    exclusions : pandas.DataFrame
        What was excluded (CRLB above ``config.crlb_max``) or kept but is incomplete (one
        period only, missing blocks, missing ratings): one row each, with table, ids,
        action and reason.
    ratings : pandas.DataFrame or None
        The validated ratings (``time_h`` float, ``score`` and items int), or None.
    truth : kbayes.Truth or None
        Parameter values and true estimands when the data were simulated.
    """

    def __init__(
        self,
        participants: pd.DataFrame,
        sessions: pd.DataFrame,
        mrs: pd.DataFrame,
        ratings: pd.DataFrame | None = None,
        *,
        columns: dict[str, str] | None = None,
        config: TrialConfig | None = None,
    ):
        self.config = config or TrialConfig()
        mapping = {self.config.metabolite: "glx_ratio", **(columns or {})}
        raw = {}
        given = zip(TABLES + OPTIONAL_TABLES, (participants, sessions, mrs, ratings), strict=True)
        for name, df in given:
            if df is None and name in OPTIONAL_TABLES:
                continue
            if not isinstance(df, pd.DataFrame):
                raise DataError(f"table {name!r}: expected a pandas DataFrame, got {type(df)}")
            raw[name] = df.rename(columns=mapping)
        raw["mrs"] = combine_ratio(raw["mrs"])
        tables, exclusions = validate_tables(**raw, config=self.config)
        self.participants: pd.DataFrame = tables["participants"]
        self.sessions: pd.DataFrame = tables["sessions"]
        self.mrs: pd.DataFrame = tables["mrs"]
        self.ratings: pd.DataFrame | None = tables.get("ratings")
        self.exclusions: pd.DataFrame = exclusions.reindex(columns=EXCLUSION_COLUMNS)
        self.truth: SimulatedTruth | None = None
        for (table, action, reason), rows in self.exclusions.groupby(
            ["table", "action", "reason"], sort=False
        ):
            ids = [
                "/".join(str(int(x)) if isinstance(x, float) else str(x) for x in r if pd.notna(x))
                for r in rows[["participant", "period", "block"]].itertuples(index=False)
            ]
            more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
            log.warning(
                "%s: %s (%s, %d %s: %s%s)",
                table,
                reason,
                action,
                len(ids),
                "row" if len(ids) == 1 else "rows",
                ", ".join(ids[:5]),
                more,
            )

    @classmethod
    def from_files(
        cls,
        participants: str | Path,
        sessions: str | Path,
        mrs: str | Path,
        ratings: str | Path | None = None,
        *,
        columns: dict[str, str] | None = None,
        config: TrialConfig | None = None,
    ) -> TrialData:
        """Read the three tables (and ``ratings`` if given) from CSV, TSV or Parquet files
        (chosen by suffix)."""
        columns = columns or {}
        paths = zip(TABLES + OPTIONAL_TABLES, (participants, sessions, mrs, ratings), strict=True)
        frames = {
            name: _read_table(name, path, columns) for name, path in paths if path is not None
        }
        return cls(**frames, columns=columns, config=config)

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> TrialData:
        """Read ``participants``, ``sessions`` and ``mrs`` from a folder (one file each, named
        ``participants.csv`` etc., with a suffix from :data:`SUFFIXES`, in any case), and
        ``ratings`` if the folder has such a file (a ``ratings=`` path given wins)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"data folder {str(folder)!r} does not exist or is not a folder")
        paths = {}
        for name in TABLES + OPTIONAL_TABLES:
            if name in OPTIONAL_TABLES and name in kwargs:
                continue
            found = sorted(p for p in folder.glob(f"{name}.*") if p.suffix.lower() in SUFFIXES)
            if not found and name in OPTIONAL_TABLES:
                continue
            if len(found) != 1:
                names = ", ".join(repr(p.name) for p in found)
                raise DataError(
                    f"table {name!r}: expected one {name} file ({'/'.join(SUFFIXES)}) in "
                    f"{str(folder)!r}, found {names or 'none'}"
                )
            paths[name] = found[0]
        return cls.from_files(**paths, **kwargs)

    def to_files(self, folder: str | Path, fmt: str = "csv") -> Path:
        """Write the three tables (and ``ratings`` if present) to ``folder`` as CSV or
        Parquet; returns the folder."""
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in TABLES + OPTIONAL_TABLES:
            df = getattr(self, name)
            if df is None:
                continue
            if fmt == "csv":
                df.to_csv(folder / f"{name}.csv", index=False)
            else:
                df.to_parquet(folder / f"{name}.parquet", index=False)
        return folder

    # --- views -------------------------------------------------------------------------
    @property
    def coords(self) -> dict[str, list]:
        """Named coordinates: participant, period, block, condition, sex (and, with
        ratings, time_h: the scheduled rating times)."""
        coords = {
            "participant": self.participants["participant"].tolist(),
            "period": sorted(self.sessions["period"].unique().tolist()),
            "block": sorted(self.mrs["block"].unique().tolist()),
            "condition": list(self.config.conditions),
            "sex": list(self.config.sexes),
        }
        if self.ratings is not None:
            coords["time_h"] = list(self.config.rating_times_h)
        return coords

    @property
    def has_items(self) -> bool:
        """Whether item scores are present for both visits."""
        cols = self.config.item_columns("baseline") + self.config.item_columns("day1")
        return set(cols) <= set(self.sessions)

    def session_table(self, shape: str = "step") -> pd.DataFrame:
        """Sessions joined with sex, improvement and the observed glutamate change.

        ``improvement`` = baseline - day-1 score (points; positive = better). ``dglx_obs`` is
        the per-session least-squares slope of the ratio on g(t) (ratio units): with a step
        profile, the mean during infusion minus the mean before it. NaN where a session has no
        blocks both before and during the infusion.
        """
        s = self.sessions.merge(self.participants[["participant", "sex"]], on="participant")
        s["improvement"] = s["madrs_baseline"] - s["madrs_day1"]
        key = s["participant"] + "/" + s["period"].astype(str)
        index = pd.Series(np.arange(len(s)), index=key.to_numpy())
        m = self.mrs
        session = index.loc[(m["participant"] + "/" + m["period"].astype(str)).to_numpy()]
        g = infusion_profile(m["time_min"], shape, self.config.infusion_min)
        s["dglx_obs"] = session_change(
            session.to_numpy(), g, m["glx_ratio"].to_numpy(float), len(s)
        )
        return s

    def to_xarray(self) -> xr.Dataset:
        """All tables as one Dataset with coords participant, period and block (and, with
        ratings, time_h: the scheduled times; ratings' columns prefixed ``rating_``, e.g.
        ``rating_score``).

        Sessions, blocks or ratings that were not observed are NaN (condition: empty string).
        """
        p = self.participants.set_index("participant")
        s = self.session_table().set_index(["participant", "period"]).drop(columns="sex")
        m = self.mrs.set_index(["participant", "period", "block"])
        frames = [p, s, m]
        if self.ratings is not None:
            r = self.ratings.set_index(["participant", "period", "time_h"]).add_prefix("rating_")
            frames.append(r)
        ds = xr.merge([xr.Dataset.from_dataframe(f) for f in frames])
        ds = ds.reindex(participant=self.coords["participant"])
        if self.ratings is not None:
            ds = ds.reindex(time_h=list(self.config.rating_times_h))
        ds["condition"] = ds["condition"].fillna("")
        ds.attrs.update(
            conditions=list(self.config.conditions),
            scale=self.config.scale,
            metabolite=self.config.metabolite,
            drug=self.config.drug,
        )
        return ds

    def describe(self) -> pd.DataFrame:
        """Per-condition summary: n sessions, mean and SD of baseline and day-1 score,
        improvement (points) and observed glutamate change (ratio units); with ratings, the
        mean and SD of the score at each scheduled time (``rating_24h_mean``, ...)."""
        s = self.session_table()
        cols = {
            "madrs_baseline": "baseline",
            "madrs_day1": "day1",
            "improvement": "improvement",
            "dglx_obs": "dglx",
        }
        agg = s.groupby("condition")[list(cols)].agg(["mean", "std"])
        agg.columns = [f"{cols[c]}_{stat}" for c, stat in agg.columns]
        agg.insert(0, "n", s.groupby("condition").size())
        if self.ratings is not None:
            r = self.ratings.merge(self.sessions[["participant", "period", "condition"]])
            at = r.groupby(["condition", "time_h"])["score"].agg(["mean", "std"]).unstack()
            at = at.reindex(columns=list(self.config.rating_times_h), level="time_h")
            at.columns = [f"rating_{t:g}h_{stat}" for stat, t in at.columns]
            order = [f"rating_{t:g}h_{stat}" for t in self.config.rating_times_h
                     for stat in ("mean", "std")]  # fmt: skip
            agg = agg.join(at.reindex(columns=order))
        return agg.reindex(list(self.config.conditions))

    def summary(self) -> str:
        """A few plain-language lines: sizes, completeness and exclusions."""
        n_p = len(self.participants)
        periods = self.config.periods
        per = self.sessions.groupby("participant")["period"].nunique()
        sexes = ", ".join(f"{k}: {v}" for k, v in self.participants["sex"].value_counts().items())
        complete = int((per == periods).sum())
        fewer = n_p - complete
        lines = [
            f"{n_p} participants ({sexes}), "
            f"{len(self.sessions)} sessions, {len(self.mrs)} fMRS blocks.",
            f"{complete} of {n_p} participants have a session in each of the {periods} periods; "
            f"{fewer} {'has' if fewer == 1 else 'have'} fewer.",
        ]
        if self.config.design == "parallel":
            arms = self.sessions["condition"].value_counts().reindex(self.config.conditions)
            said = ", ".join(f"{k}: {v}" for k, v in arms.fillna(0).astype(int).items())
            lines[1] = f"Parallel groups, one session per participant ({said})."
        if self.ratings is not None:
            lines.append(self._ratings_line())
        unrated = int(self.sessions["madrs_day1"].isna().sum())
        if unrated:
            lines.append(f"{unrated} of {len(self.sessions)} sessions have no day-1 rating: "
                         "their fMRS data are used, their improvement is missing at random "
                         "given the model.")  # fmt: skip
        for name in self._covariate_columns():
            column = self.participants[name]
            if not pd.api.types.is_numeric_dtype(column):
                counts = ", ".join(
                    f"{k} ({v})" for k, v in column.value_counts().sort_index().items()
                )
                lines.append(f"participants' {name}: {counts}.")
        if len(self.exclusions):
            counts = self.exclusions.groupby(["action", "reason"]).size()
            lines.append(f"{len(self.exclusions)} exclusion/completeness notes:")
            lines += [f"  {action}: {reason} ({n})" for (action, reason), n in counts.items()]
        else:
            lines.append("No exclusions.")
        return "\n".join(lines)

    def _ratings_line(self) -> str:
        """ "k ratings at 4, 24 h; m sessions lack the rating at 4 h, ..." (or "every session
        has all")."""
        times = self.config.rating_times_h
        counts = self.ratings.groupby("time_h").size().reindex(list(times), fill_value=0)
        lacking = [(t, len(self.sessions) - n) for t, n in counts.items() if n < len(self.sessions)]
        said = ", ".join(
            f"{m} {'session lacks' if m == 1 else 'sessions lack'} the rating at {t:g} h"
            if k == 0 else f"{m} at {t:g} h"
            for k, (t, m) in enumerate(lacking)
        )  # fmt: skip
        return (f"{len(self.ratings)} ratings at {hours(times)} h; "
                + (said + "." if said else "every session has all of them."))  # fmt: skip

    def _covariate_columns(self) -> list[str]:
        """The ``participants`` columns besides ID and sex (participant covariates)."""
        return list(self.participants.columns.difference(["participant", "sex"], sort=False))

    def covariate_distribution(self, *names: str) -> dict[str, Any]:
        """Participant covariates as :class:`~kbayes.Design` simulates them, from this trial:
        a numeric column as (mean, SD), a text column as {level: share}; e.g.
        ``kb.Design(covariates=data.covariate_distribution("age", "site"))``."""
        out: dict[str, Any] = {}
        covariates = self._covariate_columns()
        for name in names:
            if name not in covariates:
                where = "a column of 'sessions'" if name in self.sessions else "not a column"
                raise DataError(
                    f"table 'participants': {name!r} is {where}; the simulator draws "
                    f"participant covariates (here: {', '.join(covariates) or 'none'})"
                )
            column = self.participants[name]
            if column.isna().any():
                rows = list(np.flatnonzero(column.isna().to_numpy())[:5])
                raise DataError(f"table 'participants', column {name!r}: missing in rows {rows}")
            if pd.api.types.is_numeric_dtype(column):
                out[name] = (float(column.mean()), float(column.std(ddof=1)))
            else:
                shares = column.astype(str).value_counts(normalize=True).sort_index()
                out[name] = {str(k): float(v) for k, v in shares.items()}
        return out

    def __repr__(self) -> str:
        return f"TrialData(\n  {self.summary().replace(chr(10), chr(10) + '  ')}\n)"

    def replace(self, **tables: pd.DataFrame) -> TrialData:
        """A new TrialData with some tables replaced (validated again); ``ratings=None``
        drops the ratings."""
        unknown = sorted(set(tables) - set(TABLES + OPTIONAL_TABLES))
        if unknown:
            raise TypeError(f"replace() takes tables {TABLES + OPTIONAL_TABLES}, not {unknown}")
        names = TABLES + OPTIONAL_TABLES
        frames = {name: tables.get(name, getattr(self, name)) for name in names}
        return TrialData(**frames, config=self.config)

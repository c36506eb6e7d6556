"""Readers for MRS quantification output (LCModel, FSL-MRS, Osprey) -> kbayes's ``mrs`` table.

:func:`parse_lcmodel` and :func:`parse_fsl_mrs` read one file into a tidy table, one row per
metabolite or combination; :func:`read_lcmodel` and :func:`read_fsl_mrs` read many files,
mapped to participant, period and block by a manifest or a filename pattern, into the
``mrs`` table; :func:`read_osprey` reads an Osprey table (one row per spectrum) with a
manifest of its rows. Sections are found by their markers, numbers may be in E-notation, and a CRLB
of 999 % ("not determined" in both programs) becomes NaN. Names are canonicalised (``key``):
the parts of a combination are sorted (``PCh+GPC`` == ``GPC+PCh``) and the Osprey names
``Glx``, ``tNAA``, ``tCr``, ``tCho`` stand for ``Glu+Gln``, ``NAA+NAAG``, ``Cr+PCr``,
``GPC+PCh``.

References
----------
Provencher SW. LCModel & LCMgui user's manual (LCModel 6.3).
Clarke WT, Stagg CJ, Jbabdi S. FSL-MRS. Magn Reson Med 2021;85:2950-2964,
doi:10.1002/mrm.28630 (columns as written by ``fsl_mrs/utils/results.py``).
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from itertools import takewhile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from kbayes.errors import DataError

ALIASES = {"Glx": "Glu+Gln", "tNAA": "NAA+NAAG", "tCr": "Cr+PCr", "tCho": "GPC+PCh"}
MANIFEST_COLUMNS = ["file", "participant", "period", "block", "time_min"]
UNDETERMINED_PCT = 999.0  # the CRLB LCModel and FSL-MRS print when it is not determined
CSV_NAME_LENGTH = 13  # LCModel cuts names to 13 characters in .csv headers

# conc (fixed or E-notation), %SD, '%', ratio, name; the lazy conc splits a 3-digit %SD
# glued to the number before it ("12.943999%" -> 12.943, 999)
_CONC_ROW = re.compile(
    r"^\s*(?P<conc>\S*?)\s*(?P<sd>\d{1,3})%\s*(?P<ratio>\S+)\s+(?P<name>\S+)\s*$"
)
_CONC_HEADER = re.compile(r"Conc\.\s+%SD\s+/(?P<denominator>\S+)")
_MISC = {
    "fwhm_ppm": re.compile(r"FWHM\s*=\s*([-\d.]+)\s*ppm"),
    "snr": re.compile(r"S/N\s*=\s*(\d+)"),
    "data_shift_ppm": re.compile(r"Data shift\s*=\s*([-\d.]+)"),
}


def _canonical(name: str) -> str:
    name = ALIASES.get(name.strip(), name.strip())
    return "+".join(sorted(part.strip() for part in name.split("+")))


def _float(text: str, where: str, blank_ok: bool = False) -> float:
    if blank_ok and not text.strip():
        return np.nan
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: cannot read {text.strip()!r}") from None


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None


def _rows(path: Path, rows: list[list[str]], first: int, width: int) -> Iterator[tuple]:
    """Non-blank CSV rows from line ``first`` on, checked to have ``width`` fields."""
    for lineno, fields in enumerate(rows[first - 1 :], start=first):
        if any(f.strip() for f in fields):
            where = f"line {lineno} of {str(path)!r}"
            if len(fields) != width:
                raise DataError(f"{where}: {len(fields)} fields, the header has {width}")
            yield fields, where


def _values(head: list, fields: list[str], where: str) -> dict:
    """The numeric fields of a CSV row by column name (blank -> NaN), after the name column."""
    return {
        h: _float(v, f"column {h!r} on {where}", True)
        for h, v in zip(head[1:], fields[1:], strict=True)
    }


def _tidy(path: Path, records: list[tuple], denominator: str | None, **meta) -> pd.DataFrame:
    df = pd.DataFrame(records, columns=["metabolite", "conc", "crlb_pct", "ratio"])
    df.insert(0, "file", str(path))
    df.insert(2, "key", df["metabolite"].map(_canonical))
    df["crlb_pct"] = df["crlb_pct"].where(df["crlb_pct"] < UNDETERMINED_PCT)
    df["determined"] = df["crlb_pct"].notna() & (df["conc"] > 0)
    df["denominator"] = denominator
    return df.assign(**meta)


# --- LCModel -------------------------------------------------------------------------------
def _section(lines: list[str], kind: str) -> tuple[int, int] | None:
    """Index of the line "N lines in following <kind>" and its count N."""
    marker = re.compile(rf"(\d+)\s+lines in following {kind}")
    return next(((i, int(m[1])) for i, ln in enumerate(lines) if (m := marker.search(ln))), None)


def _section_lines(lines: list[str], kind: str) -> list[str]:
    start, count = _section(lines, kind) or (0, 0)
    return list(takewhile(str.strip, lines[start + 1 : start + 1 + count]))


def _parse_table(path: Path, lines: list[str]) -> pd.DataFrame:
    found = _section(lines, "concentration table")
    if found is None:
        raise DataError(
            f"{str(path)!r} is not LCModel output: no '$$CONC ... lines in following "
            "concentration table' marker (.table, .coord) and no 'Row, Col' header (.csv)"
        )
    start, count = found
    header = lines[start + 1] if start + 1 < len(lines) else ""
    if (head := _CONC_HEADER.search(header)) is None:
        raise DataError(
            f"line {start + 2} of {str(path)!r}: expected the $$CONC column header "
            f"'Conc.  %SD /<denominator>  Metabolite', found {header.strip()!r}"
        )
    records = []
    for i in range(start + 2, start + 1 + count):
        where = f"$$CONC row on line {i + 1} of {str(path)!r}"
        line = lines[i] if i < len(lines) else ""
        if not line.strip():
            raise DataError(f"{where}: the table ends after {len(records)} of the {count - 1} rows")
        if (m := _CONC_ROW.match(line)) is None:
            raise DataError(
                f"{where}: cannot read {line.strip()!r} (expected 'conc sd% ratio name')"
            )
        records.append((m["name"], *(_float(m[g], where) for g in ("conc", "sd", "ratio"))))
    misc = "\n".join(_section_lines(lines, "misc"))
    quality = {k: float(m[1]) if (m := rx.search(misc)) else np.nan for k, rx in _MISC.items()}
    diag = [line.split() for line in _section_lines(lines, "diagnostic")]
    diag = [" ".join(d) for d in diag if not "".join(d[1:2]).lower().startswith("info")]
    if errors := [d for d in diag if "ERROR" in d.upper()]:
        warnings.warn(
            f"{str(path)!r}: LCModel's $$DIAG reports {'; '.join(errors)}; the concentrations "
            "were read, but check the fit",
            UserWarning,
            stacklevel=3,
        )
    return _tidy(path, records, head["denominator"], **quality, diagnostics="; ".join(diag))


def _parse_lcmodel_csv(path: Path, lines: list[str]) -> pd.DataFrame:
    rows = list(csv.reader(lines, skipinitialspace=True))
    head = [h.strip() for h in rows[0][2:]]
    names, denominator = head[::3], None
    for k, name in enumerate(names):
        found = head[3 * k : 3 * k + 3]
        if found[1:2] != [f"{name} %SD"] or not "".join(found[2:]).startswith(f"{name}/"):
            raise DataError(
                f"header (line 1) of {str(path)!r}: columns {3 * k + 3}-{3 * k + 5} should be "
                f"'{name}', '{name} %SD', '{name}/<denominator>'; found {found}"
            )
        denominator = found[2][len(name) + 1 :]
    frames = []
    for fields, where in _rows(path, rows, 2, len(head) + 2):
        values = [_float(f, where) for f in fields]
        records = [(name, *values[2 + 3 * k : 5 + 3 * k]) for k, name in enumerate(names)]
        meta = {k: np.nan for k in _MISC} | {"diagnostics": ""}
        frames.append(_tidy(path, records, denominator, **meta, row=values[0], col=values[1]))
    if not frames or not names:
        raise DataError(f"{str(path)!r}: an LCModel .csv header without metabolites or data rows")
    return pd.concat(frames, ignore_index=True).astype({"row": int, "col": int})


def parse_lcmodel(path: str | Path) -> pd.DataFrame:
    """Read one LCModel ``.table``, ``.coord`` or ``.csv`` file (told apart by content).

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    pandas.DataFrame
        One row per metabolite or combination, in file order: ``file``, ``metabolite`` (as
        printed; ``-CrCH2`` keeps its minus), ``key`` (canonical name), ``conc`` (in the
        run's units, e.g. institutional units/mM when water-scaled; the file does not say),
        ``crlb_pct`` (%SD; NaN where LCModel prints 999), ``ratio`` (conc / denominator),
        ``denominator`` (from the column header, e.g. ``Cr+PCr``), ``determined`` (CRLB
        < 999 % and conc > 0), ``fwhm_ppm``, ``snr`` and ``data_shift_ppm`` (ppm, from
        $$MISC; NaN in a .csv), ``diagnostics`` ($$DIAG warning and ERROR lines). A .csv
        adds ``row`` and ``col`` (the voxel; one block of rows per voxel).

    Raises
    ------
    kbayes.DataError
        Not LCModel output, or an unreadable row (naming the file and line).

    Warns
    -----
    UserWarning
        When $$DIAG holds ERROR lines (the concentrations are still returned).
    """
    path = Path(path)
    lines = _lines(path)
    if next((ln for ln in lines if ln.strip()), "").replace(" ", "").startswith("Row,Col,"):
        return _parse_lcmodel_csv(path, lines)
    return _parse_table(path, lines)


# --- FSL-MRS -------------------------------------------------------------------------------
def _fsl_summary(path: Path, rows: list[list[str]]) -> pd.DataFrame:
    head = [h.strip() for h in rows[0]]
    ref = next((h[1:] for h in head if h.startswith("/") and not h.endswith(" CRLB")), None)
    conc = next((c for c in ("mM", "mMol/kg", "Raw conc", f"/{ref}") if c in head), None)
    if conc is None or "%CRLB" not in head:
        raise DataError(
            f"header (line 1) of {str(path)!r}: expected 'Metab', a concentration column "
            f"('mM', 'mMol/kg', 'Raw conc' or '/<ref>') and '%CRLB'; found {head}"
        )
    table = [
        (f[0].strip(), _values(head, f, where)) for f, where in _rows(path, rows, 2, len(head))
    ]
    records = [(m, v[conc], v["%CRLB"], v.get(f"/{ref}", np.nan)) for m, v in table]
    unit = {"mM": "mM", "mMol/kg": "mmol/kg", "Raw conc": "raw"}.get(conc, conc)
    snr, fwhm = ([v.get(k, np.nan) for _, v in table] for k in ("SNR", "FWHM"))
    return _tidy(path, records, ref, unit=unit, snr=snr, fwhm_hz=fwhm)


def _fsl_concentrations(path: Path, rows: list[list[str]]) -> pd.DataFrame:
    head = [(a.strip(), b.strip()) for a, b in zip(*rows[:2], strict=False)]
    scaling = next((s for s in ("molarity", "molality", "raw") if ("mean", s) in head), None)
    if scaling is None or ("std", "raw") not in head:
        raise DataError(
            f"header (lines 1-2) of {str(path)!r}: expected 'mean' and 'std' over 'raw', "
            f"'internal', 'molality', 'molarity'; found {head}"
        )
    records = []
    for f, where in _rows(path, rows, 3, len(rows[0])):
        v = _values(head, f, where)
        pct = 100 * v["std", "raw"] / v["mean", "raw"] if v["mean", "raw"] > 0 else np.inf
        records.append((f[0].strip(), v["mean", scaling], pct, v.get(("mean", "internal"), np.nan)))
    unit = {"molarity": "mM", "molality": "mmol/kg", "raw": "raw"}[scaling]
    return _tidy(path, records, None, unit=unit, snr=np.nan, fwhm_hz=np.nan)


def parse_fsl_mrs(path: str | Path) -> pd.DataFrame:
    """Read one FSL-MRS ``summary.csv`` or ``concentrations.csv`` (told apart by header).

    Parameters
    ----------
    path : str or Path
        The file, or an ``fsl_mrs --output`` folder (its summary.csv, else concentrations.csv).

    Returns
    -------
    pandas.DataFrame
        One row per metabolite or combination: ``file``, ``metabolite``, ``key``, ``conc``
        (mM if present, else mmol/kg, else raw, else the ``/<ref>`` ratio; see ``unit``),
        ``crlb_pct`` (``%CRLB``: raw SD / raw mean x 100; NaN at 999), ``ratio`` (the
        ``/<ref>`` column), ``denominator`` (``<ref>``; None for concentrations.csv, which
        does not name it), ``determined``, ``unit``, ``snr`` and ``fwhm_hz`` (per
        metabolite, summary.csv only). The ``... CRLB`` columns of summary.csv are absolute
        SDs and are not used.

    Raises
    ------
    kbayes.DataError
        Not an FSL-MRS results file, or an unreadable value (naming the file and line).
    """
    path = Path(path)
    if path.is_dir():
        path = path / ("summary.csv" if (path / "summary.csv").exists() else "concentrations.csv")
    rows = list(csv.reader(_lines(path)))
    first = rows[0][0].strip() if rows and rows[0] else ""
    if first in ("Metab", "Metabs"):
        return (_fsl_summary if first == "Metab" else _fsl_concentrations)(path, rows)
    raise DataError(
        f"{str(path)!r} is not an FSL-MRS summary.csv or concentrations.csv: the first "
        f"header is {first!r}, expected 'Metab' or 'Metabs'"
    )


# --- Osprey -------------------------------------------------------------------------------
#: Units of an Osprey quantification table, from its file name (Osprey writes them nowhere else).
OSPREY_UNITS = {"AlphaCorrWaterScaled": "i.u. (alpha-corrected water-scaled)",
                "TissCorrWaterScaled": "i.u. (tissue-corrected water-scaled)",
                "rawWaterScaled": "i.u. (water-scaled)", "tCr": "ratio to tCr"}  # fmt: skip


def _osprey_unit(path: Path) -> str:
    return next((u for k, u in OSPREY_UNITS.items() if k in path.name), "unknown")


def _osprey_rows(path: Path) -> tuple[list[str], list[tuple[list[float], str]]]:
    """Header and numeric rows (with 'line N of FILE') of an Osprey CSV or TSV table."""
    lines = _lines(path)
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    if not rows or not any(h.strip() for h in rows[0]):
        raise DataError(f"{str(path)!r}: empty; expected a header of metabolite names")
    head = [h.strip() for h in rows[0]]
    out = []
    for fields, where in _rows(path, rows, 2, len(head)):
        out.append(
            (
                [_float(v, f"column {h!r} on {where}") for h, v in zip(head, fields, strict=True)],
                where,
            )
        )
    return head, out


def read_osprey(
    table: str | Path,
    manifest: pd.DataFrame | str | Path,
    *,
    crlb: float | str | Iterable[float] | None = None,
    numerator: str = "Glx",
    denominator: str = "tNAA",
    qm: str | Path | None = None,
    undetermined: Literal["raise", "flag"] = "raise",
) -> pd.DataFrame:
    """Read an Osprey quantification table (one row per spectrum, here one fMRS block, in
    Osprey's job order) into the ``mrs`` table.

    Parameters
    ----------
    table : str or Path
        An Osprey ``QuantifyResults`` table (CSV or TSV, e.g. ``off_tCr.csv``,
        ``A_tCr_Voxel_1_Basis_1.tsv``): a header of metabolite names, one row per spectrum,
        no ID column. Its unit comes from its name (:data:`OSPREY_UNITS`).
    manifest : DataFrame or path
        One row per table row, in the same order: ``participant, period, block, time_min``.
    crlb : number, str, iterable or None
        Osprey tables carry no CRLB. The ratio's SD as a percent of it per block: one number
        for every block, a column of ``manifest``, or one value per row. ``None`` leaves
        ``crlb`` empty ("not reported"): such data fit only a spec with
        ``measurement_error = false`` (its ``sigma_mrs`` absorbs all block-level noise); a
        spec that uses the CRLB refuses them.
    numerator, denominator : str, default "Glx", "tNAA"
        Columns of the ratio (Osprey names; ``Glu+Gln`` and ``NAA+NAAG`` match them too). A
        ``tCr`` denominator of a tCr-ratio table without a tCr column is 1.
    qm : str or Path, optional
        Osprey's ``QM_processed_spectra`` table (same order): adds ``snr`` (NAA SNR) and
        ``fwhm_hz`` (NAA FWHM, Hz).
    undetermined : {"raise", "flag"}, default "raise"
        A ratio metabolite at 0 (not fitted): raise a DataError naming file and line, or keep
        the row with ``undetermined=True`` and NaN ``glx_ratio``.

    Returns
    -------
    pandas.DataFrame
        One row per table row, sorted: ``participant, period, block, time_min, glx_ratio,
        crlb`` and, for provenance, ``file``, ``line``, ``glx``, ``tnaa`` (the two columns),
        ``unit`` (and ``snr``, ``fwhm_hz`` with ``qm``).

    Raises
    ------
    kbayes.DataError
        Naming the file, line and field of an unreadable value, a missing column, a manifest
        of another length, or an undetermined ratio.
    """
    path = Path(table)
    head, rows = _osprey_rows(path)
    unit = _osprey_unit(path)
    if isinstance(manifest, pd.DataFrame):
        blocks = manifest.reset_index(drop=True)
    else:
        blocks = pd.read_csv(manifest, sep="\t" if str(manifest).endswith(".tsv") else ",",
                             dtype={"participant": str})  # fmt: skip
    if missing := [c for c in MANIFEST_COLUMNS[1:] if c not in blocks]:
        raise DataError(f"manifest: missing column(s) {missing}; expected {MANIFEST_COLUMNS[1:]}")
    if len(blocks) != len(rows):
        raise DataError(
            f"{str(path)!r} has {len(rows)} spectra (rows) but the manifest {len(blocks)} "
            "blocks; Osprey tables have no ID column, so the manifest lists every row in order"
        )
    keys = {_canonical(h): k for k, h in enumerate(head)}

    def column(name: str) -> np.ndarray:
        if (k := keys.get(_canonical(name))) is not None:
            return np.array([values[k] for values, _ in rows])
        if _canonical(name) == "Cr+PCr" and unit == "ratio to tCr":
            return np.ones(len(rows))
        raise DataError(f"{str(path)!r}: no column {name!r} (columns: {', '.join(head)})")

    num, den = column(numerator), column(denominator)
    bad = (num <= 0) | (den <= 0)
    if bad.any() and undetermined == "raise":
        where = ", ".join(rows[k][1] for k in np.flatnonzero(bad)[:5])
        raise DataError(
            f"{numerator}/{denominator} is undetermined (a concentration <= 0, not fitted) on "
            f"{where}; drop those blocks or pass undetermined='flag'"
        )
    if isinstance(crlb, str):
        crlb = blocks[crlb].to_numpy(float)
    out = blocks[MANIFEST_COLUMNS[1:]].assign(
        participant=blocks["participant"].astype(str),
        glx_ratio=np.where(bad, np.nan, num / np.where(bad, 1.0, den)),
        crlb=np.nan if crlb is None else np.broadcast_to(np.asarray(crlb, float), len(rows)),
        file=str(path), line=[int(where.split()[1]) for _, where in rows],
        glx=num, tnaa=den, unit=unit,
    )  # fmt: skip
    if undetermined == "flag":
        out["undetermined"] = bad
    if qm is not None:
        qm_head, qm_rows = _osprey_rows(Path(qm))
        if len(qm_rows) != len(rows) or not {"NAA_SNR", "NAA_FWHM"} <= set(qm_head):
            raise DataError(
                f"QM table {str(qm)!r}: expected NAA_SNR and NAA_FWHM for each of the "
                f"{len(rows)} spectra; found {len(qm_rows)} rows of {qm_head}"
            )
        values = np.array([v for v, _ in qm_rows])
        out["snr"] = values[:, qm_head.index("NAA_SNR")]
        out["fwhm_hz"] = values[:, qm_head.index("NAA_FWHM")]
    out = out.sort_values(["participant", "period", "block"], ignore_index=True)
    out.attrs.update(numerator=numerator, denominator=denominator, unit=unit)
    return out


# --- many files -> the mrs table -------------------------------------------------------------
def _from_manifest(source: pd.DataFrame | str | Path) -> list[tuple[dict, str]]:
    base, label = Path(), None
    if not isinstance(source, pd.DataFrame):
        base, label = Path(source).parent, Path(source).name
        sep = "\t" if Path(source).suffix.lower() in {".tsv", ".tab"} else ","
        try:
            source = pd.read_csv(source, sep=sep, dtype={"participant": str, "file": str})
        except (OSError, ValueError) as exc:
            raise DataError(
                f"manifest {str(source)!r}: cannot read it ({exc}); a folder or a list of "
                "files needs pattern="
            ) from None
    if missing := [c for c in MANIFEST_COLUMNS if c not in source.columns]:
        raise DataError(f"manifest: missing column(s) {missing}; expected {MANIFEST_COLUMNS}")
    entries = []
    for pos, row in enumerate(source[MANIFEST_COLUMNS].to_dict("records")):
        where = f"manifest row {pos + 1}" + (f" (line {pos + 2} of {label})" if label else "")
        if not (file := base / Path(row["file"])).exists():
            raise DataError(
                f"{where}: file {str(file)!r} not found (participant {row['participant']!r}, "
                f"period {row['period']!r}, block {row['block']!r})"
            )
        entries.append((row | {"file": file, "participant": str(row["participant"])}, where))
    return entries


def _from_pattern(
    source: str | Path | Iterable[str | Path],
    pattern: str | re.Pattern,
    times: Mapping[int | str, float] | None,
    glob: str,
) -> list[tuple[dict, str]]:
    rx = re.compile(pattern)
    if missing := [g for g in ("participant", "period", "block") if g not in rx.groupindex]:
        raise ValueError(f"pattern {rx.pattern!r} lacks the named group(s) {missing}")
    if times is None and "time_min" not in rx.groupindex:
        raise ValueError("give times={block: minutes} or a (?P<time_min>...) group in the pattern")
    if isinstance(source, str | Path) and Path(source).is_dir():
        files = sorted(Path(source).glob(glob))
    else:
        files = [Path(f) for f in ([source] if isinstance(source, str | Path) else source)]
    if not files:
        raise DataError(f"no files to read: none matches {glob!r} in {str(source)!r}")
    entries = []
    for file in files:
        where = f"file {str(file)!r}"
        if (m := rx.search(file.as_posix())) is None:
            raise DataError(f"{where} does not match the pattern {rx.pattern!r}")
        if not file.exists():
            raise DataError(f"{where} not found")
        ids = {k: int(m[k]) if m[k].isdigit() else m[k] for k in ("period", "block")}
        if "time_min" in rx.groupindex:
            time = _float(m["time_min"], f"time_min group of {where}")
        elif ids["block"] in times:
            time = times[ids["block"]]
        else:
            raise DataError(
                f"{where}: block {ids['block']!r} is not in times (keys: {list(times)})"
            )
        entries.append(
            ({"file": file, "participant": m["participant"], **ids, "time_min": time}, where)
        )
    return entries


def _pick(tidy: pd.DataFrame, name: str, where: str) -> pd.Series:
    """The row of ``name``; a .csv name cut to 13 characters matches by prefix."""
    full, names = ALIASES.get(name.strip(), name.strip()), tidy["metabolite"]
    exact = tidy["key"] == _canonical(name)
    cut = (names.str.len() == CSV_NAME_LENGTH) & names.map(full.startswith)
    hit = tidy[exact] if exact.any() else tidy[cut]
    if hit.empty:
        raise DataError(
            f"{where}: no {name!r} in {tidy['file'].iat[0]!r} (combination order ignored); "
            f"metabolites present: {', '.join(tidy['metabolite'])}. Combinations must come "
            "from the fit (LCModel combination rows, fsl_mrs --combine)."
        )
    return hit.iloc[0]


def _read_many(
    source: pd.DataFrame | str | Path | Iterable[str | Path],
    fmt: str,
    pattern: str | re.Pattern | None,
    times: Mapping[int | str, float] | None,
    numerator: str,
    denominator: str,
    undetermined: Literal["raise", "flag"],
) -> pd.DataFrame:
    parse, glob, quality = _FORMATS[fmt]
    if undetermined not in ("raise", "flag"):
        raise ValueError(f"undetermined must be 'raise' or 'flag', not {undetermined!r}")
    if pattern is not None:
        entries = _from_pattern(source, pattern, times, glob)
    elif isinstance(source, pd.DataFrame | str | Path):
        entries = _from_manifest(source)
    else:
        raise ValueError("a list of files needs pattern= (or pass a manifest)")
    records = []
    for entry, where in entries:
        tidy = parse(entry["file"])
        if "row" in tidy and len(tidy[["row", "col"]].drop_duplicates()) > 1:
            raise DataError(f"{where}: {tidy['file'].iat[0]!r} holds several voxels; one per file")
        num, den = _pick(tidy, numerator, where), _pick(tidy, denominator, where)
        bad = [r for r in (num, den) if not r["determined"]]
        if bad and undetermined == "raise":
            what = " and ".join(
                f"{r.metabolite} (conc {r.conc:g}, CRLB {np.nan_to_num(r.crlb_pct, nan=999):g} %)"
                for r in bad
            )
            raise DataError(
                f"{where}: {what} not determined in {tidy['file'].iat[0]!r}, so {numerator}/"
                f"{denominator} is undetermined; drop the block or pass undetermined='flag'"
            )
        naa = tidy[tidy["key"] == "NAA"]
        records.append(
            {k: entry[k] for k in MANIFEST_COLUMNS[1:]}
            | {"glx_ratio": np.nan if bad else num.conc / den.conc}
            | {"crlb": np.nan if bad else float(np.hypot(num.crlb_pct, den.crlb_pct))}
            | {"file": tidy["file"].iat[0], "glx": num.conc, "tnaa": den.conc}
            | {"crlb_glx": num.crlb_pct, "crlb_tnaa": den.crlb_pct}
            | (naa if len(naa) else tidy).iloc[0][quality].to_dict()
            | ({"undetermined": bool(bad)} if undetermined == "flag" else {})
        )
    out = pd.DataFrame(records)
    if (dup := out.duplicated(["participant", "period", "block"], keep=False)).any():
        files = "; ".join(
            f"{r.participant}/{r.period}/{r.block}: {r.file}" for r in out[dup].itertuples()
        )
        raise DataError(f"several files for one participant/period/block: {files}")
    out = out.sort_values(["participant", "period", "block"], ignore_index=True)
    out.attrs.update(numerator=numerator, denominator=denominator)
    return out


def read_lcmodel(
    source: pd.DataFrame | str | Path | Iterable[str | Path],
    *,
    pattern: str | re.Pattern | None = None,
    times: Mapping[int | str, float] | None = None,
    numerator: str = "Glu+Gln",
    denominator: str = "NAA+NAAG",
    undetermined: Literal["raise", "flag"] = "raise",
) -> pd.DataFrame:
    r"""Read many LCModel files (one spectrum = one fMRS block each) into the ``mrs`` table.

    Parameters
    ----------
    source : DataFrame, str, Path or iterable of paths
        Without ``pattern``: a manifest, as a DataFrame or a CSV/TSV path, with columns
        ``file, participant, period, block, time_min`` (relative files are taken from the
        manifest's folder). With ``pattern``: a folder (every ``**/*.table`` in it), a file
        or a list of files (``.table``, ``.coord`` or ``.csv``).
    pattern : str or re.Pattern, optional
        Regex searched in each file's path (folders included) with named groups
        ``participant``, ``period``, ``block`` and optionally ``time_min``, e.g.
        ``r"sub-(?P<participant>\w+)_ses-(?P<period>\d+)_blk-(?P<block>\d+)"``. Digit-only
        periods and blocks become integers.
    times : mapping, optional
        Block -> minutes from infusion start, when the pattern has no ``time_min`` group.
    numerator, denominator : str, default "Glu+Gln", "NAA+NAAG"
        Metabolites or combinations of the ratio, matched whatever the order of a
        combination's parts; the Osprey names ``Glx``, ``tNAA``, ``tCr``, ``tCho`` work too.
    undetermined : {"raise", "flag"}, default "raise"
        When a ratio metabolite is not determined (CRLB 999 % or concentration 0): raise a
        DataError naming the file, or keep the row with ``undetermined=True`` and NaN
        ``glx_ratio`` and ``crlb`` (drop such rows before building a TrialData).

    Returns
    -------
    pandas.DataFrame
        One row per file, sorted: ``participant, period, block, time_min`` (minutes),
        ``glx_ratio`` (numerator / denominator concentration; kbayes's column name whatever
        the metabolites, which ``attrs`` records), ``crlb`` (%), and for provenance
        ``file``, ``glx``, ``tnaa`` (concentrations), ``crlb_glx``, ``crlb_tnaa`` (%),
        ``fwhm_ppm``, ``snr``, ``data_shift_ppm`` (ppm) and ``diagnostics``.

    Raises
    ------
    kbayes.DataError
        Naming the file (and the line, manifest row or pattern) of an unreadable or missing
        file, a missing metabolite, an undetermined ratio or a duplicated block.

    Notes
    -----
    The ratio's relative SD combines the two CRLBs in quadrature,
    :math:`\mathrm{crlb} = \sqrt{\mathrm{crlb}_{num}^2 + \mathrm{crlb}_{den}^2}`: first-order
    error propagation, exact only for independent errors. It ignores the covariance of two
    estimates from one fit of one spectrum, so it is an approximation.

    Examples
    --------
    >>> mrs = kb.read_lcmodel("manifest.csv")  # doctest: +SKIP
    >>> pattern = r"sub-(?P<participant>\d+)_ses-(?P<period>\d)_blk-(?P<block>\d)"
    >>> mrs = kb.read_lcmodel("out/", pattern=pattern, times={1: -10, 2: 10})  # doctest: +SKIP
    """
    return _read_many(source, "lcmodel", pattern, times, numerator, denominator, undetermined)


def read_fsl_mrs(
    source: pd.DataFrame | str | Path | Iterable[str | Path],
    *,
    pattern: str | re.Pattern | None = None,
    times: Mapping[int | str, float] | None = None,
    numerator: str = "Glu+Gln",
    denominator: str = "NAA+NAAG",
    undetermined: Literal["raise", "flag"] = "raise",
) -> pd.DataFrame:
    """Read many FSL-MRS results (one fit = one fMRS block each) into the ``mrs`` table.

    Parameters
    ----------
    source : DataFrame, str, Path or iterable of paths
        As in :func:`read_lcmodel`; files are ``summary.csv``, ``concentrations.csv`` or
        ``fsl_mrs --output`` folders. A folder given with ``pattern`` is searched for
        ``**/summary.csv``, so the pattern can use the fit folders' names.
    pattern, times, numerator, denominator, undetermined
        As in :func:`read_lcmodel`. Combinations exist only if the fit made them
        (``fsl_mrs --combine Glu Gln --combine NAA NAAG``).

    Returns
    -------
    pandas.DataFrame
        As :func:`read_lcmodel`, with ``unit`` (of ``glx``, ``tnaa``), ``snr`` and
        ``fwhm_hz`` (Hz) instead of the LCModel quality columns. FSL-MRS reports SNR and
        FWHM per metabolite: these are NAA's (the first row's without NAA; NaN from a
        concentrations.csv). ``crlb`` combines the files' ``%CRLB`` in quadrature.

    Notes
    -----
    Written from the FSL-MRS source (``FitRes.to_file``); not yet checked on real output.
    """
    return _read_many(source, "fsl", pattern, times, numerator, denominator, undetermined)


_FORMATS = {  # parser, folder glob, quality columns (taken from the NAA row, else the first)
    "lcmodel": (parse_lcmodel, "**/*.table", [*_MISC, "diagnostics"]),
    "fsl": (parse_fsl_mrs, "**/summary.csv", ["unit", "snr", "fwhm_hz"]),
}

"""LCModel and FSL-MRS readers: single-file parsers, the many-file mrs table, error paths."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kbayes.errors import DataError
from kbayes.readers import parse_fsl_mrs, parse_lcmodel, read_fsl_mrs, read_lcmodel, read_osprey

FIXTURES = Path(__file__).parent / "fixtures" / "mrs"
EXAMPLE = FIXTURES / "osprey_sub-02_PRESS_35.table"
FSL_SUMMARY = FIXTURES / "fsl_summary.csv"
MRS_COLUMNS = ["participant", "period", "block", "time_min", "glx_ratio", "crlb"]
PATTERN = r"sub-(?P<participant>\w+)_ses-(?P<period>\d+)_blk-(?P<block>\d+)"


def fmt(x: float) -> str:
    """LCModel's number field: 3 decimals, E-notation when small or large."""
    return f"{x:8.3f}" if x == 0 or 0.01 <= abs(x) < 1e5 else f"{x:8.2E}"


def write_table(path: Path, rows: dict[str, tuple[float, int]], denominator="Cr+PCr") -> Path:
    """Write a .table in LCModel's fixed-width layout from name -> (conc, %SD)."""
    ref = rows[denominator][0]
    lines = [
        " LCModel (Version 6.3-1N)",
        f" {path.stem}",
        "",
        f"$$CONC {len(rows) + 1:2d} lines in following concentration table = NCONC+1",
        f"    Conc.  %SD {'/' + denominator:<7s}  Metabolite",
        *(f" {fmt(conc)}{sd:4d}%{fmt(conc / ref)} {name}" for name, (conc, sd) in rows.items()),
        "",
        "$$MISC  2 lines in following misc. output table",
        "  FWHM = 0.050 ppm    S/N =  20",
        "  Data shift = 0.002 ppm",
        "",
        "$$DIAG  1 lines in following diagnostic table:",
        "   1 info      FINOUT  9",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def spectrum(glx: float, tnaa: float) -> dict[str, tuple[float, int]]:
    """Rows of a spectrum with Glu+Gln = glx (5 %) and NAA+NAAG = tnaa (2 %)."""
    return {
        "Cr": (4.0, 5),
        "Gln": (glx * 0.2, 20),
        "Glu": (glx * 0.8, 6),
        "NAA": (tnaa, 2),
        "Cr+PCr": (8.0, 2),
        "NAA+NAAG": (tnaa, 2),
        "Glu+Gln": (glx, 5),
    }


def one_row(file: Path | str, participant="02", period=1, block=1, time_min=0.0) -> pd.DataFrame:
    """A one-row manifest."""
    row = {"file": str(file), "participant": participant, "period": period, "block": block}
    return pd.DataFrame([row | {"time_min": time_min}])


@pytest.fixture
def trial_files(tmp_path: Path) -> dict[tuple[str, int, int], tuple[Path, float]]:
    """Twelve .table files (2 participants x 2 periods x 3 blocks) with known Glx/tNAA."""
    out = {}
    keys = [(p, s, b) for p in ("01", "02") for s in (1, 2) for b in (1, 2, 3)]
    for i, (p, s, b) in enumerate(keys):
        glx = 10.0 + 0.25 * i
        path = write_table(tmp_path / f"sub-{p}_ses-{s}_blk-{b}.table", spectrum(glx, 12.5))
        out[p, s, b] = path, glx / 12.5
    return out


def expected_ratios(mrs: pd.DataFrame, trial_files: dict) -> list[float]:
    keys = zip(mrs["participant"], mrs["period"], mrs["block"], strict=True)
    return [trial_files[k][1] for k in keys]


# --- single files ------------------------------------------------------------------------
def test_real_table_values():
    t = parse_lcmodel(EXAMPLE).set_index("metabolite")
    assert len(t) == 31
    assert t.loc["Glu+Gln", ["conc", "crlb_pct", "ratio"]].tolist() == [15.622, 5, 1.630]
    assert t.loc["NAA+NAAG", "conc"] == 15.204 and t.loc["Lac", "ratio"] == 0.049
    assert (t["denominator"] == "Cr+PCr").all()
    assert t.loc["PCh+GPC", "key"] == "GPC+PCh" and "-CrCH2" in t.index
    assert math.isnan(t.loc["Asc", "crlb_pct"]) and not t.loc["Asc", "determined"]
    assert t.loc["Lip20", "crlb_pct"] == 298 and t.loc["Glu", "determined"]
    first = t.iloc[0]
    assert (first.fwhm_ppm, first.snr, first.data_shift_ppm, first.diagnostics) == (
        0.034,
        49,
        0,
        "",
    )


def test_real_csv_matches_table():
    table = parse_lcmodel(EXAMPLE)
    csv = parse_lcmodel(FIXTURES / "osprey_sub-02_PRESS_35.csv")
    cols = ["metabolite", "key", "conc", "crlb_pct", "ratio", "denominator", "determined"]
    pd.testing.assert_frame_equal(csv[cols], table[cols])
    assert (csv["row"] == 1).all() and (csv["col"] == 1).all() and csv["snr"].isna().all()


def test_coord_head_matches_table():
    coord = parse_lcmodel(FIXTURES / "variant_head.coord")
    cols = ["metabolite", "conc", "crlb_pct", "ratio", "fwhm_ppm", "snr"]
    pd.testing.assert_frame_equal(coord[cols], parse_lcmodel(EXAMPLE)[cols])


def test_variant_layout():
    """Data-of/date header, non-UTF-8 byte, /Cr, E-notation, glued 3-digit %SD, shift =-."""
    t = parse_lcmodel(FIXTURES / "variant_cr.table").set_index("metabolite")
    assert len(t) == 12 and (t["denominator"] == "Cr").all()
    assert t.loc["Glu+Gln", "conc"] == 1.38e-6
    assert t.loc["Lac", ["conc", "crlb_pct", "ratio"]].tolist() == [1.234e-7, 607, 0.219]
    assert t.loc["GABA", "ratio"] == 0.04 and t.loc["GPC+PCh", "key"] == "GPC+PCh"
    assert t["data_shift_ppm"].iat[0] == -0.004 and t["snr"].iat[0] == 18
    assert t["diagnostics"].iat[0] == "1 warning MYBASI 8"


def test_glued_fixed_format_sd(tmp_path):
    path = tmp_path / "glued.table"
    path.write_text(EXAMPLE.read_text().replace("   12.943   4%", "12345.943999%"))
    glu = parse_lcmodel(path).set_index("metabolite").loc["Glu"]
    assert glu.conc == 12345.943 and math.isnan(glu.crlb_pct) and glu.ratio == 1.350


def test_error_diagnostics_warn_and_are_kept():
    with pytest.warns(UserWarning, match=r"variant_error\.table.*1 ERROR MYBASI 10"):
        t = parse_lcmodel(FIXTURES / "variant_error.table")
    assert t["diagnostics"].iat[0] == "2 warnings NNLS 3; 1 ERROR MYBASI 10"


def test_fsl_summary_uses_percent_crlb_not_absolute():
    t = parse_fsl_mrs(FSL_SUMMARY).set_index("metabolite")
    assert t.loc["Glu+Gln", "conc"] == 12.07602 and t.loc["Glu+Gln", "unit"] == "mM"
    assert t.loc["Glu+Gln", "crlb_pct"] == pytest.approx(3.993203058623619)
    assert t.loc["Cr+PCr", "ratio"] == 1.0 and t.loc["NAA", "denominator"] == "Cr+PCr"
    assert math.isnan(t.loc["sIns", "crlb_pct"]) and not t.loc["sIns", "determined"]
    assert math.isnan(t.loc["NAA+NAAG", "snr"]) and t.loc["NAA", "fwhm_hz"] == 7.945642


def test_fsl_concentrations_match_summary():
    summary = parse_fsl_mrs(FSL_SUMMARY).set_index("metabolite")
    conc = parse_fsl_mrs(FIXTURES / "fsl_concentrations.csv").set_index("metabolite")
    conc = conc.loc[summary.index]
    for col in ("conc", "crlb_pct", "ratio"):
        np.testing.assert_allclose(conc[col], summary[col])
    assert (conc["unit"] == "mM").all() and conc["denominator"].isna().all()


def test_fsl_raw_conc_summary_with_bom(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("\ufeffMetab,Raw conc,Raw CRLB,%CRLB,SNR,FWHM\nGlu,2.0,0.1,5.0,12.5,7.1\n")
    t = parse_fsl_mrs(path)
    assert t[["conc", "crlb_pct", "unit"]].iloc[0].tolist() == [2.0, 5.0, "raw"]
    assert math.isnan(t["ratio"].iat[0]) and t["denominator"].iat[0] is None


# --- round trip ---------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 1e-7, 1e6])
def test_round_trip(tmp_path, scale):
    rows = {
        "Cr": (3.5 * scale, 4),
        "Glu": (9.87 * scale, 3),
        "Gln": (0.123 * scale, 999),
        "Cr+PCr": (7.25 * scale, 1),
        "Glu+Gln": (12.345 * scale, 125),
    }
    t = parse_lcmodel(write_table(tmp_path / "x.table", rows)).set_index("metabolite")
    for name, (conc, sd) in rows.items():
        assert t.loc[name, "conc"] == float(fmt(conc)) == pytest.approx(conc, rel=0.005)
        assert t.loc[name, "crlb_pct"] == sd or (sd == 999 and math.isnan(t.loc[name, "crlb_pct"]))
    assert t.loc["Cr+PCr", "ratio"] == 1.0


# --- many files ---------------------------------------------------------------------------
def test_real_example_ratio_and_crlb():
    mrs = read_lcmodel(one_row(EXAMPLE, time_min=5.0))
    row = mrs.iloc[0]
    assert list(mrs.columns[:6]) == MRS_COLUMNS
    assert row.glx_ratio == pytest.approx(15.622 / 15.204) == pytest.approx(1.02749, abs=1e-5)
    assert row.crlb == pytest.approx(math.sqrt(5**2 + 1**2)) == pytest.approx(5.099, abs=1e-3)
    assert (row.glx, row.tnaa, row.crlb_glx, row.crlb_tnaa) == (15.622, 15.204, 5, 1)
    assert (row.fwhm_ppm, row.snr, row.file, row.time_min) == (0.034, 49, str(EXAMPLE), 5.0)
    assert mrs.attrs == {"numerator": "Glu+Gln", "denominator": "NAA+NAAG"}
    alias = read_lcmodel(one_row(EXAMPLE), numerator="Glx", denominator="tCr").iloc[0]
    assert alias.glx_ratio == pytest.approx(15.622 / 9.586) and alias.crlb == math.sqrt(26)


def test_manifest_csv_with_relative_paths(trial_files, tmp_path):
    rows = [(path.name, p, s, b, 10.0 * b - 20) for (p, s, b), (path, _) in trial_files.items()]
    frame = pd.DataFrame(rows, columns=["file", "participant", "period", "block", "time_min"])
    frame.sample(frac=1, random_state=1).to_csv(tmp_path / "manifest.csv", index=False)
    mrs = read_lcmodel(tmp_path / "manifest.csv")
    assert len(mrs) == 12 and mrs["participant"].tolist() == ["01"] * 6 + ["02"] * 6
    np.testing.assert_allclose(mrs["glx_ratio"], expected_ratios(mrs, trial_files))
    np.testing.assert_allclose(mrs["crlb"], math.sqrt(29))
    assert mrs["time_min"].tolist()[:3] == [-10.0, 0.0, 10.0]


def test_pattern_with_times_and_with_time_group(trial_files, tmp_path):
    times = {1: -10.0, 2: 10.0, 3: 30.0}
    by_dict = read_lcmodel(tmp_path, pattern=PATTERN, times=times)
    assert by_dict[["period", "block"]].dtypes.tolist() == [np.int64, np.int64]
    assert by_dict["time_min"].tolist() == [-10.0, 10.0, 30.0] * 4
    np.testing.assert_allclose(by_dict["glx_ratio"], expected_ratios(by_dict, trial_files))
    timed = tmp_path / "timed"
    timed.mkdir()
    for (p, s, b), (path, _) in trial_files.items():
        shutil.copy(path, timed / f"sub-{p}_ses-{s}_blk-{b}_t-{times[b]:g}.table")
    files = sorted(timed.glob("*.table"))
    by_group = read_lcmodel(files, pattern=PATTERN + r"_t-(?P<time_min>-?\d+)")
    pd.testing.assert_frame_equal(by_group.drop(columns="file"), by_dict.drop(columns="file"))


def test_fsl_folders_by_pattern_and_manifest(tmp_path):
    for blk in (1, 2):
        (tmp_path / f"sub-07_ses-1_blk-{blk}").mkdir()
        shutil.copy(FSL_SUMMARY, tmp_path / f"sub-07_ses-1_blk-{blk}" / "summary.csv")
    mrs = read_fsl_mrs(tmp_path, pattern=PATTERN, times={1: 0, 2: 20})
    assert mrs["glx_ratio"].tolist() == pytest.approx([12.07602 / 11.799] * 2)
    assert mrs["crlb"].iat[0] == pytest.approx(math.hypot(3.993203058623619, 2.0))
    assert (mrs["unit"].iat[0], mrs["fwhm_hz"].iat[0], mrs["snr"].iat[0]) == (
        "mM",
        7.945642,
        31.347821,
    )
    by_folder = read_fsl_mrs(one_row(tmp_path / "sub-07_ses-1_blk-1", participant="07"))
    assert by_folder["glx_ratio"].iat[0] == mrs["glx_ratio"].iat[0]


def test_undetermined_raise_or_flag():
    manifest = one_row(FIXTURES / "variant_error.table", "03", 2, 4, 30.0)
    message = r"manifest row 1: Glu\+Gln \(conc 0, CRLB 999 %\) not determined in .*variant_error"
    with pytest.warns(UserWarning), pytest.raises(DataError, match=message):
        read_lcmodel(manifest)
    with pytest.warns(UserWarning):
        row = read_lcmodel(manifest, undetermined="flag").iloc[0]
    assert row.undetermined and math.isnan(row.glx_ratio) and math.isnan(row.crlb)
    assert row.diagnostics.endswith("1 ERROR MYBASI 10")


def test_csv_truncated_names_and_voxels(tmp_path):
    path = tmp_path / "csi.csv"
    path.write_text(
        "Row, Col, Cr+PCr, Cr+PCr %SD, Cr+PCr/Cr+PCr, MM14+Lip13a+L, MM14+Lip13a+L %SD, "
        "MM14+Lip13a+L/Cr+PCr\n  1,   6,    5.000,    2,    1.000,    8.000,   12,    1.600\n"
    )
    mrs = read_lcmodel(one_row(path), numerator="MM14+Lip13a+Lip13b+MM12", denominator="tCr")
    assert mrs["glx_ratio"].iat[0] == 1.6 and mrs["crlb"].iat[0] == pytest.approx(math.hypot(12, 2))
    path.write_text(
        path.read_text() + "  1,   5,    5.000,    2,    1.000,    8.000,   12,    1.6\n"
    )
    assert parse_lcmodel(path)["col"].tolist() == [6, 6, 5, 5]
    with pytest.raises(DataError, match=r"manifest row 1: .*csi\.csv' holds several voxels"):
        read_lcmodel(one_row(path), numerator="Cr+PCr", denominator="Cr+PCr")


# --- error paths --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "   12.943   4%",
            "   12.9xx   4%",
            r"\$\$CONC row on line 13 of '.*y\.table': cannot read '12\.9xx'",
        ),
        (
            "    7.321   4%",
            "    7.321   4 ",
            r"row on line 14 of '.*y\.table': cannot read '7\.321",
        ),
        (
            "    Conc.  %SD /Cr+PCr",
            "    Conc.",
            r"line 5 of '.*y\.table': expected the \$\$CONC column header",
        ),
        (
            "    5.343  27%   0.557 MM17",
            "",
            r"line 36 of '.*y\.table': the table ends after 30 of the 31",
        ),
    ],
)
def test_corrupt_table_names_file_and_line(tmp_path, old, new, message):
    path = tmp_path / "y.table"
    path.write_text(EXAMPLE.read_text().replace(old, new))
    with pytest.raises(DataError, match=message):
        parse_lcmodel(path)


def test_not_lcmodel_or_fsl_names_file(tmp_path):
    for name, text in [("notes.table", "participant,period\n01,1\n"), ("empty.table", "")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=rf"{name.replace('.', r'\.')}' is not LCModel output"):
            parse_lcmodel(tmp_path / name)
    (tmp_path / "summary.csv").write_text("metabolite,conc\nGlu,1\n")
    with pytest.raises(DataError, match=r"summary\.csv' is not an FSL-MRS summary"):
        parse_fsl_mrs(tmp_path / "summary.csv")


def test_corrupt_lcmodel_csv(tmp_path):
    text = (FIXTURES / "osprey_sub-02_PRESS_35.csv").read_text()
    cases = {
        "a.csv": (
            text.replace("   12.943,", "   12.9x3,"),
            r"line 2 of '.*a\.csv': cannot read '12\.9x3'",
        ),
        "b.csv": (
            text.rstrip("\n") + ", 1.0\n",
            r"line 2 of '.*b\.csv': 96 fields, the header has 95",
        ),
        "c.csv": (
            text.replace("Glu %SD", "Glu SD"),
            r"line 1\) of '.*c\.csv': columns 24-26 should be 'Glu'",
        ),
        "d.csv": (
            text.splitlines()[0] + "\n",
            r"d\.csv': an LCModel \.csv header without .* data rows",
        ),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match=message):
            parse_lcmodel(tmp_path / name)


def test_corrupt_fsl_names_column_and_line(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text(FSL_SUMMARY.read_text().replace("12.07602", "12.07.602"))
    message = r"column 'mM' on line 8 of '.*summary\.csv': cannot read '12\.07\.602'"
    with pytest.raises(DataError, match=message):
        parse_fsl_mrs(path)
    path.write_text("Metabs,mean,std\n,raw,raw\nGlu,1.0\n")
    with pytest.raises(DataError, match=r"line 3 of '.*summary\.csv': 2 fields, the header has 3"):
        parse_fsl_mrs(path)
    path.write_text("Metab,SNR\nGlu,1.0\n")
    with pytest.raises(DataError, match=r"header \(line 1\) of '.*summary\.csv': expected 'Metab'"):
        parse_fsl_mrs(path)


def test_missing_metabolite_lists_those_present():
    message = r"manifest row 1: no 'Glx2' in '.*osprey_sub-02_PRESS_35\.table'.*: Asc, Asp, Cr"
    with pytest.raises(DataError, match=message):
        read_lcmodel(one_row(EXAMPLE), numerator="Glx2")


def test_manifest_errors(trial_files, tmp_path):
    (path, _), *_ = trial_files.values()
    frame = pd.concat([one_row(path.name, "01"), one_row("gone.table", "09", 2, 3)])
    frame.to_csv(tmp_path / "m.csv", index=False)
    message = (
        r"manifest row 2 \(line 3 of m\.csv\): file '.*gone\.table' not found "
        r"\(participant '09', period 2, block 3\)"
    )
    with pytest.raises(DataError, match=message):
        read_lcmodel(tmp_path / "m.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['time_min'\]"):
        read_lcmodel(frame.drop(columns="time_min"))
    with pytest.raises(DataError, match=r"one participant/period/block: 01/1/1: .*; 01/1/1"):
        read_lcmodel(pd.concat([one_row(path, "01")] * 2))
    with pytest.raises(ValueError, match=r"a list of files needs pattern="):
        read_lcmodel([path])


def test_pattern_errors(trial_files, tmp_path):
    odd = write_table(tmp_path / "subject01_visit1.table", spectrum(10, 12))
    message = r"file '.*subject01_visit1\.table' does not match the pattern 'sub-\(\?P<participant>"
    with pytest.raises(DataError, match=message):
        read_lcmodel(tmp_path, pattern=PATTERN, times={1: 0, 2: 1, 3: 2})
    odd.unlink()
    message = r"sub-01_ses-1_blk-3\.table': block 3 is not in times \(keys: \[1, 2\]\)"
    with pytest.raises(DataError, match=message):
        read_lcmodel(tmp_path, pattern=PATTERN, times={1: 0, 2: 1})
    with pytest.raises(ValueError, match=r"lacks the named group\(s\) \['block'\]"):
        read_lcmodel(tmp_path, pattern=r"sub-(?P<participant>\w+)_ses-(?P<period>\d+)", times={})
    with pytest.raises(ValueError, match=r"give times="):
        read_lcmodel(tmp_path, pattern=PATTERN)
    with pytest.raises(DataError, match=r"none matches '\*\*/summary\.csv'"):
        read_fsl_mrs(tmp_path, pattern=PATTERN, times={1: 0})


def test_mrs_table_is_accepted_by_trialdata(trial_files, tmp_path):
    """The many-file result is a valid ``mrs`` table; provenance columns are kept."""
    from kbayes import TrialData

    mrs = read_lcmodel(tmp_path, pattern=PATTERN, times={1: -10, 2: 10, 3: 30})
    participants = pd.DataFrame({"participant": ["01", "02"], "sex": ["female", "male"]})
    sessions = pd.DataFrame(
        {
            "participant": ["01", "01", "02", "02"],
            "period": [1, 2, 1, 2],
            "condition": ["placebo", "naltrexone", "naltrexone", "placebo"],
            "madrs_baseline": [30, 31, 28, 29],
            "madrs_day1": [15, 20, 18, 12],
        }
    )
    data = TrialData(participants, sessions, mrs)
    assert len(data.mrs) == 12 and {"file", "snr", "crlb_glx"} <= set(data.mrs.columns)
    np.testing.assert_allclose(data.mrs["glx_ratio"], expected_ratios(data.mrs, trial_files))


# --- Osprey --------------------------------------------------------------------------------
OSPREY = FIXTURES / "off_tCr.csv"
OSPREY_QM = FIXTURES / "QM_processed_spectra.csv"
TWO_BLOCKS = pd.DataFrame({"participant": ["01", "01"], "period": [1, 1], "block": [1, 2],
                           "time_min": [-10.0, 10.0]})  # fmt: skip


def test_real_osprey_table_with_its_qc_table():
    """The rows are the manifest's blocks in order; Glx/tNAA from the real numbers; no CRLB
    unless given; the unit from the file name; SNR and FWHM from the QM table."""
    mrs = read_osprey(OSPREY, TWO_BLOCKS, qm=OSPREY_QM)
    np.testing.assert_allclose(mrs["glx_ratio"], [1.296700966 / 1.468326302,
                                                  1.234420836 / 1.723356565])  # fmt: skip
    assert mrs["crlb"].isna().all() and (mrs["unit"] == "ratio to tCr").all()
    assert mrs["line"].tolist() == [2, 3] and mrs.attrs["denominator"] == "tNAA"
    np.testing.assert_allclose(mrs["snr"], [435.433927242574, 390.367930246453])
    np.testing.assert_allclose(mrs["fwhm_hz"], [7.24420337539502, 6.01257201755727])
    given = read_osprey(OSPREY, TWO_BLOCKS.assign(sd=[4.0, 6.0]), crlb="sd", numerator="Glu+Gln")
    assert given["crlb"].tolist() == [4.0, 6.0]
    over_cr = read_osprey(OSPREY, TWO_BLOCKS, crlb=5.0, denominator="tCr")  # no tCr column: 1
    np.testing.assert_allclose(over_cr["glx_ratio"], [1.296700966, 1.234420836])


def test_osprey_errors_name_file_line_and_field(tmp_path):
    with pytest.raises(DataError, match=r"2 spectra \(rows\) but the manifest 1 blocks"):
        read_osprey(OSPREY, TWO_BLOCKS.iloc[:1])
    with pytest.raises(DataError, match=r"no column 'GABA\+'"):
        read_osprey(OSPREY, TWO_BLOCKS, numerator="GABA+")
    text = OSPREY.read_text().splitlines()
    broken = tmp_path / "off_tCr.csv"
    broken.write_text("\n".join([text[0], text[1].replace("1.296700966", "n/a"), text[2]]))
    with pytest.raises(DataError, match=r"column 'Glu' on line 2 of .*off_tCr.csv.*'n/a'"):
        read_osprey(broken, TWO_BLOCKS)
    head = text[0].split(",")
    zero = ",".join("0" if h == "Glx" else v for h, v in zip(head, text[2].split(","), strict=True))
    broken.write_text("\n".join([text[0], text[1], zero]))
    with pytest.raises(DataError, match=r"Glx/tNAA is undetermined .* on line 3"):
        read_osprey(broken, TWO_BLOCKS)
    assert read_osprey(broken, TWO_BLOCKS, undetermined="flag")["undetermined"].tolist() == [
        False,
        True,
    ]


def test_an_osprey_table_loads_into_a_fit(tmp_path):
    """A trial's blocks written as an Osprey table (one row per block, no ID, no CRLB) and
    read back: the data keep the blocks with 'CRLB not reported'; a spec that uses the CRLB
    refuses them, one with measurement_error = false fits them."""
    import kbayes as kb
    from kbayes.spec import parse_spec

    trial = kb.simulate(kb.Design(n=6), kb.Truth(), seed=4)
    blocks = trial.mrs[["participant", "period", "block", "time_min"]].sample(
        frac=1, random_state=1
    )
    glx = trial.mrs.loc[blocks.index, "glx_ratio"].to_numpy()
    table = pd.DataFrame({"NAA": 1.2, "Glu": 0.8 * glx, "tNAA": 1.5, "Glx": 1.5 * glx})
    table.to_csv(tmp_path / "A_tCr_Voxel_1_Basis_1.tsv", sep="\t", index=False)
    mrs = read_osprey(tmp_path / "A_tCr_Voxel_1_Basis_1.tsv", blocks)
    data = kb.TrialData(trial.participants, trial.sessions, mrs[MRS_COLUMNS])
    np.testing.assert_allclose(data.mrs["glx_ratio"], trial.mrs["glx_ratio"])
    assert (data.exclusions["reason"] == "CRLB not reported").sum() == len(trial.mrs)
    with pytest.raises(DataError, match=r"blocks have no CRLB.*measurement_error = false"):
        kb.fit(data, "glutamate", progress=False)
    spec = parse_spec({"extends": "glutamate", "measurement_error": False}, "glutamate_no_se")
    dt = kb.fit(data, spec, seed=1, draws=100, tune=100, chains=1, progress=False,
                posterior_predictive=False, log_prior=False, log_likelihood=False)  # fmt: skip
    assert "ntx_glu" in dt.posterior and (dt.constant_data["glx_se"] == 0).all()

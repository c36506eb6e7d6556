"""Command line end to end: simulate -> fit -> check, and one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

import kbayes as kb
from kbayes.cli import app
from kbayes.results import load, save

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    design = out / "design.toml"
    design.write_text("[design]\nn = 12\ndropout = 0.0\n\n[truth]\nbeta_N = -0.03\n")
    result = invoke("simulate", "--design", design, "--out", out / "tables", "--seed", 3)
    assert result.exit_code == 0, result.output
    return out / "tables"


def test_simulate_writes_three_tables(sim_dir):
    assert sorted(p.name for p in sim_dir.iterdir()) == [
        "mrs.csv",
        "participants.csv",
        "sessions.csv",
    ]
    assert len((sim_dir / "participants.csv").read_text().splitlines()) == 13  # header + 12


def test_fit_then_check_round_trip(sim_dir, tmp_path):
    out = tmp_path / "res"
    args = ("--draws", 200, "--tune", 200, "--chains", 2, "--seed", 1)
    result = invoke("fit", sim_dir, "--model", "improvement", "--out", out, *args)
    assert result.exit_code == 0, result.output
    saved = out / "fit_improvement.nc"
    assert saved.is_file() and "Result saved" in result.output
    idata = load(saved)
    assert idata.attrs["spec_name"] == "improvement"
    assert idata.posterior.sizes["draw"] == 200
    check = invoke("check", saved)
    status = kb.check(idata).status
    assert check.exit_code == int(status == "fail"), check.output
    assert invoke("check", saved, "--strict").exit_code == int(status != "ok")
    assert "slope_placebo" in check.output
    assert (out / "fit_improvement.html").is_file()  # fit writes the report next to the result
    again = invoke("report", saved, "--out", tmp_path / "again.md")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.md").read_text().count("## ") >= 5
    wrong = invoke("report", saved, "--pdf", "--out", tmp_path / "again.html")
    assert wrong.exit_code != 0 and "--pdf writes a .pdf" in wrong.output
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        assert invoke("report", saved, "--pdf").exit_code == 0
        assert saved.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_check_exit_code_follows_the_verdict(sim_dir, tmp_path):
    """Chains stuck apart (R-hat far above 1.1) fail: exit 1, for scripts and CI."""
    out = tmp_path / "res"
    args = ("--draws", 100, "--tune", 100, "--chains", 2, "--seed", 2)
    assert invoke("fit", sim_dir, "--model", "improvement", "--out", out, *args).exit_code == 0
    idata = load(out / "fit_improvement.nc")
    post = idata["posterior"].to_dataset()
    post["gamma_N"] = post["gamma_N"] + 10.0 * post["chain"]  # the chains disagree
    idata["posterior"] = xr.DataTree(post)
    bad = save(idata, tmp_path / "stuck.nc")
    check = invoke("check", bad)
    assert check.exit_code == 1 and "FAIL" in check.output.upper(), check.output


def test_advice_speaks_cli(sim_dir, tmp_path):
    """Too few draws: the verdict's advice names the option, not the Python call."""
    out = tmp_path / "res"
    args = ("--draws", 30, "--tune", 100, "--chains", 2, "--seed", 3)
    fitted = invoke("fit", sim_dir, "--model", "improvement", "--out", out, *args)
    assert fitted.exit_code == 0, fitted.output
    assert "--draws" in fitted.output and "kb.fit(" not in fitted.output
    python = kb.check(load(out / "fit_improvement.nc"))
    assert any("kb.fit(..., draws=" in p.advice for p in python.problems)
    cli = python.for_cli()
    assert any("kbayes fit ... --draws " in p.advice for p in cli.problems)
    assert [p.kind for p in cli.problems] == [p.kind for p in python.problems]


def test_columns_and_config_read_a_trial_in_its_own_names(sim_dir, tmp_path):
    """The user's names (subject, visit; codes PBO/NTX, F/M) fit without rewriting files."""
    folder = tmp_path / "own"
    folder.mkdir()
    codes = {"placebo": "PBO", "naltrexone": "NTX", "female": "F", "male": "M"}
    for name in ("participants", "sessions", "mrs"):
        df = pd.read_csv(sim_dir / f"{name}.csv").replace(codes)
        df.rename(columns={"participant": "subject", "period": "visit"}).to_csv(
            folder / f"{name}.csv", index=False
        )
    config = tmp_path / "trial.toml"
    config.write_text('conditions = ["PBO", "NTX"]\nsexes = ["F", "M"]\n')
    opts = ("--columns", "subject=participant,visit=period", "--config", config)
    short = ("--draws", 100, "--tune", 100, "--chains", 2)
    result = invoke("fit", folder, "--model", "improvement", "--out", tmp_path / "r", *opts,
                    *short)  # fmt: skip
    assert result.exit_code == 0, result.output
    idata = load(tmp_path / "r" / "fit_improvement.nc")
    assert '"PBO"' in idata.attrs["trial_config"]
    report = invoke("report", tmp_path / "r" / "fit_improvement.nc", "--out",
                    tmp_path / "r.md", "--data", folder, *opts)  # fmt: skip
    assert report.exit_code == 0, report.output
    assert "participants have a session in each" in (tmp_path / "r.md").read_text()
    unmapped = invoke("fit", folder, "--model", "improvement", "--config", config)
    assert unmapped.exit_code == 1 and "participant" in unmapped.output
    bad = invoke("fit", folder, "--columns", "subject:participant")
    assert bad.exit_code == 1 and "are not yours=kbayes pairs" in bad.output
    typo = tmp_path / "typo.toml"
    typo.write_text('condition = ["PBO", "NTX"]\n')
    wrong = invoke("fit", folder, "--config", typo, "--columns", "subject=participant")
    assert wrong.exit_code == 1 and "unknown key(s) ['condition']" in wrong.output


def test_demo_fits_the_example_and_writes_the_report(tmp_path):
    short = ("--draws", 200, "--tune", 200, "--chains", 2)
    result = invoke("demo", "--out", tmp_path, *short)
    assert result.exit_code == 0, result.output
    assert "26 participants" in result.output and "attenuation_pct" in result.output
    report = tmp_path / "example_joint.html"
    assert report.is_file() and str(report) in result.output.replace("\n", "")
    assert load(tmp_path / "example_joint.nc").attrs["spec_name"] == "joint"


def test_reanalyse_prints_table_sentences_and_source(tmp_path):
    """The text holds the table, sentences, approximation and DOI; no study lists keys."""
    result = invoke("reanalyse", "jelen2025", "madrs_day1", "--delta", 20, "--figure",
                    tmp_path / "r.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "sceptical" in out and "doi:10.1038/s41591-025-03800-w" in out
    assert "P(effect > 20 %)" in out
    assert (tmp_path / "r.png").stat().st_size > 0
    assert "madrs_day1" in invoke("reanalyse").output


def test_power_writes_table_and_figure(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(
        'model = "improvement"\nreplicates = 20\nseed = 1\nengine = "laplace"\n'
        "[grid]\nn = [12, 24]\n"
        '[rule]\nexpr = "P(ntx_imp_direct < 0) > 0.9"\n'
    )
    result = invoke("power", study, "--out", tmp_path / "out", "--serial")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "power.csv")
    assert table["n"].tolist() == [12, 24] and (table["replicates"] == 20).all()
    assert (tmp_path / "out" / "power.png").stat().st_size > 1000


def test_sample_size_prints_n_and_writes_table_curve_and_figure(tmp_path):
    """The power study file plus a [sample_size] table (Laplace, glutamate, first round
    only): the chosen n with its interval, sample_size.csv with the 4 starting points."""
    study = tmp_path / "study.toml"
    study.write_text(
        'model = "glutamate"\nreplicates = 20\nseed = 1\n'
        "[truth]\nbeta_N = -0.04\nbeta_NM = -0.04\n"
        '[rule]\nexpr = "P(ntx_glu < 0) > 0.95"\n'
        "[sample_size]\ntarget = 0.8\nn_range = [4, 40]\nrounds = 0\n"
    )
    result = invoke("sample-size", study, "--out", tmp_path / "out", "--serial")
    assert result.exit_code == 0, result.output
    assert re.search(
        r"Sample size: n = \d+ \(95 % interval \d+ to", " ".join(result.output.split())
    )
    table = pd.read_csv(tmp_path / "out" / "sample_size.csv")
    assert table["n"].tolist() == [4, 9, 19, 40] and (table["round"] == 0).all()
    curve = pd.read_csv(tmp_path / "out" / "sample_size_curve.csv")
    assert curve["n"].tolist() == list(range(4, 41))
    assert (tmp_path / "out" / "sample_size.png").stat().st_size > 1000
    study.write_text(study.read_text() + "[grid]\nfemale_fraction = [0.3, 0.5]\n")
    result = invoke("sample-size", study, "--out", tmp_path / "out", "--serial")
    assert result.exit_code == 1 and "varies n only" in result.output


def test_power_warns_when_few_replicates_are_usable_and_takes_a_config(tmp_path):
    """NUTS chains of 20 draws fail the ESS rule: the command says the rates rest on 0 of 2;
    --config names the design's conditions."""
    study = tmp_path / "study.toml"
    study.write_text(
        'model = "improvement"\nreplicates = 2\nseed = 1\ndraws = 20\ntune = 20\n'
        "[grid]\nn = [12]\n"
        '[rule]\nexpr = "P(ntx_imp_direct < 0) > 0.9"\n'
    )
    config = tmp_path / "trial.toml"
    config.write_text('conditions = ["placebo", "nalmefene"]\n')
    result = invoke("power", study, "--out", tmp_path / "out", "--serial", "--config", config)
    assert result.exit_code == 0, result.output
    assert "rates rest on 0 of 2 replicates" in " ".join(result.output.split())
    point = json.loads(next((tmp_path / "out" / "replicates").glob("*/point.json")).read_text())
    assert point["design"]["config"]["conditions"] == ["placebo", "nalmefene"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("fit", "/no/such/folder"), "data folder '/no/such/folder' does not exist"),
        (("fit", "{sim}", "--model", "nonsense"), "unknown model 'nonsense'"),
        (("check", "/no/such/result.nc"), "does not exist"),
        (("check", "{corrupt}"), "not a kbayes result"),
        (("reanalyse", "nostudy"), "nostudy"),
        (("simulate", "--design", "{baddesign}"), "unknown tables"),
        (("simulate", "--design", "{typo}"), "[design]: unknown key(s) ['nn']"),
    ],
)
def test_bad_input_is_one_line_error(args, needle, sim_dir, tmp_path):
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"this is not netCDF")
    baddesign = tmp_path / "bad.toml"
    baddesign.write_text("[desgin]\nn = 10\n")
    typo = tmp_path / "typo.toml"
    typo.write_text("[design]\nnn = 10\n")
    paths = {"sim": sim_dir, "corrupt": corrupt, "baddesign": baddesign, "typo": typo}
    filled = [a.format(**paths) for a in args]
    result = invoke(*filled)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert needle in result.output
    assert result.output.strip().startswith("error:")


def test_ratings_option_reads_the_ratings_table_with_the_trial(sim_dir, tmp_path):
    """--ratings PATH (fit, report --data, calibrate --data) reads the optional ratings
    table, validated with the trial: a bad one is a one-line error naming table 'ratings';
    a folder's ratings file is read without the option; --ratings without --data is refused."""
    from kbayes.cli import _read_trial

    sessions = pd.read_csv(sim_dir / "sessions.csv").dropna(subset=["madrs_day1"])
    ratings = pd.concat(
        [
            sessions[["participant", "period"]].assign(time_h=24.0, score=sessions["madrs_day1"]),
            sessions[["participant", "period"]].assign(time_h=4.0, score=30),
        ]
    )
    good, bad = tmp_path / "ratings.csv", tmp_path / "bad.csv"
    ratings.to_csv(good, index=False)
    ratings.assign(time_h=ratings["time_h"].replace(4.0, -1.0)).to_csv(bad, index=False)
    config = tmp_path / "trial.toml"
    config.write_text("rating_times_h = [4, 24]\n")
    trial = _read_trial([sim_dir], None, config, good)
    assert len(trial.ratings) == len(ratings) and trial.config.rating_times_h == (4.0, 24.0)
    files = [sim_dir / f"{name}.csv" for name in ("participants", "sessions", "mrs")]
    assert len(_read_trial(files, None, config, good).ratings) == len(ratings)
    assert _read_trial([sim_dir], None, None).ratings is None
    folder = tmp_path / "with_ratings"
    shutil.copytree(sim_dir, folder)
    shutil.copy(good, folder / "ratings.csv")
    assert len(_read_trial([folder], None, config).ratings) == len(ratings)
    for args in [
        ("fit", sim_dir, "--ratings", bad, "--config", config),
        ("report", tmp_path / "result.nc", "--data", sim_dir, "--ratings", bad, "--config", config),
        ("calibrate", "--data", sim_dir, "--ratings", bad, "--config", config, "--sims", 1),
    ]:
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        out = " ".join(result.output.split())
        assert out.startswith("error: table 'ratings', column 'time_h'") and "infusion start" in out
    alone = invoke("report", tmp_path / "result.nc", "--ratings", good)
    assert alone.exit_code == 1 and "give --data too" in alone.output

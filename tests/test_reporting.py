"""Report round trip: HTML and Markdown of a small joint fit; rendering in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import kbayes as kb
from kbayes.reporting import SECTIONS, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
#: Plots of the joint model with the prior drawn (every plot applies).
JOINT_PLOTS = (
    "estimands",
    "timecourse",
    "improvement",
    "ppc",
    "prior-predictive",
    "prior-sensitivity",
    "trace",
)


@pytest.fixture(scope="module")
def reports(joint_example_fit, example, tmp_path_factory) -> dict[str, Path]:
    """The joint fit's report as HTML (with the data summary) and as Markdown."""
    folder = tmp_path_factory.mktemp("report")
    return {
        "html": report(joint_example_fit, folder / "report.html", data=example),
        "md": report(joint_example_fit, folder / "report.md"),
    }


def test_html_has_every_section_and_embedded_pngs(reports):
    """Every section id is there; every image is a base64 PNG that decodes; nothing external."""
    text = reports["html"].read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text, f"section {sid!r} missing"
    for name in JOINT_PLOTS:
        assert f'<figure id="plot-{name}">' in text, f"plot {name!r} missing"
    images = IMG.findall(text)
    assert len(images) == len(JOINT_PLOTS)
    for data in images:
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    assert "<script" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text), "external asset referenced"


def test_html_content(reports):
    """Data summary, spec hash and TOML, verdict, estimand sentences and versions."""
    text = html.unescape(reports["html"].read_text())
    assert "26 participants" in text
    assert "fewer fMRS blocks than the most complete session" in text  # exclusion notes
    assert "Spec file joint.toml" in text and "[priors.beta_N]" in text
    assert "Sampling check:" in text
    assert "Naltrexone effect on the Glx/tNAA change, averaged over sexes:" in text
    assert "power-scaling" in text.lower()
    assert "report: arviz-stats" in text and "fit: seed" in text


def test_markdown_sections_and_image_files(reports):
    """Markdown: every section anchor; images are PNG files in <stem>_files, linked relatively."""
    path = reports["md"]
    text = path.read_text()
    for sid in SECTIONS:
        assert f'<a id="{sid}"></a>' in text, f"section {sid!r} missing"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(links) == len(JOINT_PLOTS)
    for link in links:
        assert link.startswith("report_files/")
        assert (path.parent / link).read_bytes().startswith(PNG_MAGIC)


def test_missing_groups_are_reported_not_fatal(joint_example_fit, tmp_path):
    """Without prior, predictive and log-density groups the report says what to fit."""
    tree = joint_example_fit.copy()
    for group in ("prior", "prior_predictive", "posterior_predictive", "log_prior"):
        del tree[group]
    text = report(tree, tmp_path / "r.md").read_text()
    assert "Not computed: the result has no log_prior group" in text
    assert "posterior_predictive=True" in text and "prior=True" in text


def test_unknown_suffix(joint_example_fit, tmp_path):
    with pytest.raises(ValueError, match=r"\.html, \.htm, \.md or \.pdf"):
        report(joint_example_fit, tmp_path / "report.docx")


# --- rendering in a browser ---------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Appended to a copy of the report: records, after load, each section's height and each
#: image's decoded size into the DOM, for --dump-dom to show.
PROBE = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "kb-probe";
  out.textContent = JSON.stringify({
    sections: [...document.querySelectorAll("section")].map(
      s => [s.id, s.getBoundingClientRect().height]),
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  });
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed: run `make chromium` (as root, with apt-get) or "
    "`apt-get install chromium`",
)
def test_html_renders_in_headless_chromium(reports, tmp_path):
    """Chromium loads the report: every section has height, every image decodes, not blank."""
    page = tmp_path / "probe.html"
    page.write_text(reports["html"].read_text().replace("</body>", PROBE + "\n</body>"))
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    found = re.search(r'<pre id="kb-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe script did not run"
    probe = json.loads(html.unescape(found.group(1)))
    assert [sid for sid, _ in probe["sections"]] == list(SECTIONS)
    assert all(height > 0 for _, height in probe["sections"])
    assert len(probe["images"]) == len(JOINT_PLOTS)
    assert all(ok and w > 0 and h > 0 for ok, w, h in probe["images"]), probe["images"]

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", reports["html"].as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 5, "the screenshot is blank"


# --- what a reader sees first; CSV and PDF ------------------------------------------------------
def test_the_summary_comes_first_in_words(reports, joint_example_fit):
    """Title with trial, spec and date; the headline estimands' sentences; the verdict in
    one line; what was excluded."""
    text = html.unescape(reports["html"].read_text())
    assert re.search(
        r"<h1>Naltrexone vs placebo before ketamine: joint model, \d{4}-\d\d-\d\d</h1>", text
    )
    summary = text[text.index('<section id="summary">') : text.index('<section id="data">')]
    assert "Naltrexone effect on the Glx/tNAA change, averaged over sexes: " in summary
    assert "95 % HDI" in summary and "Sampling check:" in summary
    worst = kb.estimands(joint_example_fit)["rhat"].max()
    assert f"The estimands themselves: R-hat at most {worst:.3f}, bulk effective" in summary
    assert "kept with a note: " in summary and "(one period only)" in summary
    # the spec's questions first, answered in words (kb.answers), each once
    for row in kb.answers(joint_example_fit).itertuples():
        assert summary.count(row.text) == 1
    assert "Did naltrexone reduce the Glx/tNAA rise during ketamine? " in summary


def test_the_prior_predictive_caption_measures_the_impossible_values(reports, joint_example_fit):
    """The caption quotes the share of prior-predictive ratios below 0 and day-1 scores
    outside 0..60, recomputed here."""
    text = html.unescape(reports["html"].read_text())
    pp, cd = joint_example_fit.prior_predictive, joint_example_fit.constant_data
    below = 100 * float((pp["glx"] < 0).mean())
    day1 = cd["baseline_c"].to_numpy()[cd["rating_session"].to_numpy()] + 30 - pp["improvement"]
    outside = 100 * float(((day1 < 0) | (day1 > 60)).mean())
    assert below > 1  # the wide default priors do put mass there
    assert (
        f"Here {below:.1f} % of the fMRS ratios are below 0 and {outside:.1f} % of the day-1 "
        "scores are outside 0 to 60" in text
    )


def test_tables_have_readable_headers_a_glossary_and_their_csv(reports):
    text = html.unescape(reports["html"].read_text())
    estimands = text[
        text.index('<section id="estimands">') : text.index('<section id="sensitivity">')
    ]
    assert "<th>P(sign)</th>" in estimands and "<th>Interval from</th>" in estimands
    assert "p_direction" not in estimands.split("<a download")[0]
    assert re.search(r"<td>P\(< 0\) = 0\.\d\d</td>", estimands)  # which sign, said
    assert "P(sign): the posterior probability" in estimands  # the glossary
    assert not re.search(r"<td>-0(\.0*)?</td>", text)  # a rounded zero has no sign
    link = re.search(r'<a download="estimands.csv" href="data:text/csv;base64,([^"]+)"', text)
    table = pd.read_csv(io.StringIO(base64.b64decode(link.group(1)).decode()), index_col=0)
    assert "ntx_glu" in table.index and {"p_direction", "ess_bulk"} <= set(table.columns)
    md = reports["md"]
    assert (md.parent / "report_files" / "estimands.csv").is_file()


def test_a_pdf_needs_a_renderer_and_says_so(joint_example_fit, tmp_path, monkeypatch):
    import kbayes.reporting as reporting

    monkeypatch.setattr(reporting.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"headless Chromium.*apt-get install chromium"):
        report(joint_example_fit, tmp_path / "report.pdf")
    assert not (tmp_path / "report.pdf").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_pdf_report(joint_example_fit, tmp_path):
    path = report(joint_example_fit, tmp_path / "report.pdf")
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 100_000  # text and the embedded figures
    assert data.count(b"/Type /Page") - data.count(b"/Type /Pages") >= 3


def test_prior_sensitivity_is_reported_for_the_estimands_with_what_a_flag_means(
    reports, joint_example_fit
):
    text = html.unescape(reports["html"].read_text())
    section = text[text.index('<section id="sensitivity">') : text.index('<section id="plots">')]
    estimands = set(
        joint_example_fit.attrs and json.loads(joint_example_fit.attrs["spec"])["estimands"]
    )
    listed = re.findall(r"<li>(\w+) \(prior [\d.]+, data [\d.]+\): ", section)
    assert set(listed) <= estimands  # parameters are not in the list a reader quotes
    if listed:
        assert "Fit again with a wider prior" in section or "prior-driven" in section
    total = joint_example_fit.posterior.sizes["chain"] * joint_example_fit.posterior.sizes["draw"]
    assert (f"Computed from {total} draws" in section) == (total < 4000)


def test_a_parallel_trial_report_says_what_its_design_left_out(tmp_path):
    """The spec section of a parallel trial's report names the effects and terms that one
    session per participant cannot separate."""
    design = kb.Design(n=16, config=kb.TrialConfig(design="parallel"))
    sim = kb.simulate(design, kb.Truth(), seed=4)
    dt = kb.fit(sim, "glutamate", seed=1, draws=100, tune=100, chains=2, progress=False)
    text = html.unescape(report(dt, tmp_path / "parallel.html").read_text())
    assert "Fitted for a parallel trial: one session per participant cannot separate" in text
    assert "left out: beta_P, a_session, e." in text


def test_a_three_condition_report_answers_each_pretreatment(tmp_path):
    """A trial of two pretreatments against placebo: the title names both, each question is
    answered per pretreatment (with its name), the contrast between them is in the table,
    and the per-condition plots draw a line per condition."""
    three = kb.TrialConfig(conditions=("placebo", "naltrexone", "nalmefene"))
    sim = kb.simulate(kb.Design(n=18, config=three), kb.Truth(), seed=4)
    dt = kb.fit(sim, "joint", seed=1, draws=100, tune=100, chains=2, progress=False,
                posterior_predictive=False, log_prior=False)  # fmt: skip
    text = html.unescape(report(dt, tmp_path / "three.html").read_text())
    assert "Naltrexone and nalmefene vs placebo before ketamine" in text
    for active in ("naltrexone", "nalmefene"):
        assert f"Did {active} reduce the day-1 improvement after ketamine?" in text
    assert "ntx_imp_total[nalmefene vs naltrexone]" in text
    asked = kb.answers(dt)
    assert list(asked["estimand"][:2]) == ["ntx_glu[naltrexone]", "ntx_glu[nalmefene]"]
    lines = kb.plots.plot_improvement(dt).axes[0].get_lines()
    assert len([ln for ln in lines if ln.get_label().endswith(": model")]) == 3

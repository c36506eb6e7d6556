"""One-file report of a fitted result: HTML (self-contained) or Markdown, chosen by suffix.

Sections (each with a fixed id, the anchor of its heading):

============  ==========================================================================
id            content
============  ==========================================================================
summary       what a PI reads first: the headline estimands in words with their intervals
              and probabilities, the convergence verdict in one line, what was excluded
data          trial configuration, exclusions (and the data summary, given the data)
spec          spec name, hash and description; the spec itself (JSON, and the TOML file
              when it is a built-in spec with the same hash)
verdict       convergence verdict (:func:`kbayes.check`)
estimands     estimand table and one sentence per estimand (:func:`kbayes.estimands`)
covariates    (only with covariate terms) :func:`kbayes.covariate_effects`, table and plot
sensitivity   power-scaling prior sensitivity (:func:`arviz.psense_summary`)
plots         the plots of :mod:`kbayes.plots` that apply to the spec
versions      seed, sampler, package versions
============  ==========================================================================

Tables have readable headers (a glossary follows them) and rounded numbers; each comes
with its machine-readable CSV (full precision, the library's column names). HTML embeds
every image as a base64 PNG and every CSV as a ``data:`` download link, and styles inline:
no external assets, no JavaScript. Markdown writes images and CSVs to a folder
``<stem>_files`` next to the file.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import math
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from kbayes import plots
from kbayes.config import FIELD_WORDS, TrialConfig
from kbayes.data import TrialData
from kbayes.diagnostics import Verdict, check
from kbayes.index_dims import CONTRAST_SUFFIX
from kbayes.results import (
    estimand_rows,
    estimand_variables,
    rated_sessions,
    result_spec,
    row_variable,
    trial_config,
)
from kbayes.spec import MODELS_DIR, builtin_specs, load_spec
from kbayes.summaries import answers, covariate_effects, estimands

#: Section ids, in report order.
SECTIONS = ("summary", "data", "spec", "verdict", "estimands", "sensitivity", "plots", "versions")
#: Readable headers of the library's column names, with what each means (the glossary).
HEADERS: dict[str, tuple[str, str]] = {
    "label": ("Quantity", ""),
    "unit": ("Unit", ""),
    "median": ("Median", "the posterior median"),
    "hdi_low": ("Interval from", "the highest-density interval (HDI): the narrowest interval "
                "holding the spec's probability mass (95 % unless it says otherwise)"),
    "hdi_high": ("Interval to", ""),
    "p_direction": ("P(sign)", "the posterior probability that the quantity has the sign of "
                    "its median: P(< 0) for a negative median, P(> 0) for a positive one"),
    "in_rope_pct": ("% in ROPE", "the percent of the posterior inside the region of practical "
                    "equivalence, the spec's range of effects too small to matter"),
    "rhat": ("R-hat", "agreement of the chains: 1.00 is agreement, above 1.01 a warning"),
    "ess_bulk": ("Effective draws", "the bulk effective sample size; below 400 the numbers "
                 "carry noticeable Monte-Carlo error"),
    "status": ("Status", ""),
    "message": ("Problem", ""),
    "advice": ("What to do", ""),
}  # fmt: skip
#: Power-scaling sensitivity above this flags a quantity (arviz-stats' default).
PSENSE_THRESHOLD = 0.05

#: What a row of each table is, in the summary's words.
_ROWS = {"participants": "participants", "sessions": "sessions", "mrs": "fMRS blocks"}
#: How many parameters the report's trace plot shows (those with the lowest bulk ESS).
_TRACED = 8
_PLOTS: tuple[tuple[str, str, Callable[[xr.DataTree], Figure]], ...] = (
    (
        "estimands",
        "Estimands: posterior median (dot) and HDI (line); grey: the ROPE",
        plots.plot_estimands,
    ),
    (
        "timecourse",
        "fMRS time course: the observed mean ratio per block and condition, with "
        "the model's population course",
        plots.plot_timecourse,
    ),
    (
        "improvement",
        "Improvement against each session's glutamate change (posterior mean and "
        "SD), with the fitted line per condition",
        plots.plot_improvement,
    ),
    (
        "trajectory",
        "Improvement at each rating time by condition: observed means (± SE) and the "
        "modelled improvement",
        plots.plot_trajectory,
    ),
    (
        "ppc",
        "Posterior predictive check: data replicated from the posterior should surround "
        "the observed data; a systematic miss is a part of the data the model does not capture",
        plots.plot_ppc,
    ),
    (
        "prior-predictive",
        "Prior predictive check: data drawn from the priors alone should cover every "
        "plausible trial; they need not all be realistic (wide priors also give impossible "
        "values, such as negative ratios)",
        lambda dt: plots.plot_ppc(dt, group="prior_predictive"),
    ),
    ("prior-sensitivity", "Prior sensitivity (power-scaling)", plots.plot_prior_sensitivity),
    (
        "trace",
        f"Trace plots of the {_TRACED} scalar parameters with the lowest bulk ESS",
        lambda dt: plots.plot_trace(dt, _lowest_ess(dt, _TRACED)),
    ),
)
_VERSIONED = ("kbayes", "pymc", "nutpie", "arviz", "arviz-base", "arviz-stats", "arviz-plots")


@dataclass
class Section:
    """A report section: id, title and parts ``(kind, *content)``, rendered per format.

    Kinds: ``p`` (text), ``ul`` (list of str), ``pre`` (text), ``table`` (DataFrame),
    ``details`` (summary, language, text), ``csv`` (name, DataFrame), ``img`` (name,
    caption, PNG bytes).
    """

    id: str
    title: str
    parts: list[tuple] = field(default_factory=list)


def report(
    idata: xr.DataTree,
    path: str | Path,
    data: TrialData | None = None,
    *,
    verdict: Verdict | None = None,
    dpi: int = 90,
) -> Path:
    """Write a report of a fitted result to ``path`` (``.html``/``.htm``, ``.md`` or ``.pdf``).

    Parameters
    ----------
    idata : xarray.DataTree or a result with ``write_report(path, dpi=)``
        Fitted result (:func:`kbayes.fit`), or e.g. a trial plan (:func:`kbayes.plan`),
        which writes its own report. Sections whose groups are missing say what to
        fit to get them (e.g. ``kb.fit(..., prior=True)`` for the prior predictive check).
    path : str or pathlib.Path
        Output file; the suffix chooses the format. Markdown images go to the folder
        ``<stem>_files`` next to it. A PDF is the HTML page printed by headless Chromium
        (``chromium`` or ``chromium-browser`` on the PATH; without one, a FileNotFoundError
        says how to get it).
    data : TrialData, optional
        The data that were fitted, for the data summary (sizes, per-condition table).
    verdict : Verdict, optional
        ``kb.check(idata)`` if you already have it (it takes seconds on a large posterior).
    dpi : int, default 90
        Resolution of the images.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> kb.report(kb.fit(kb.load_example(), "joint", seed=1), "report.html")  # doctest: +SKIP
    """
    if hasattr(idata, "write_report"):  # another kind of result, e.g. a trial plan
        return idata.write_report(path, dpi=dpi)
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in {".html", ".htm", ".md", ".pdf"}:
        raise ValueError(f"report path must end in .html, .htm, .md or .pdf, not {path.name!r}")
    renderer = _pdf_renderer() if kind == ".pdf" else None
    plots.require(idata, "posterior")
    verdict = verdict or check(idata)
    sensitivity = _sensitivity(idata)
    sections = [
        _summary_section(idata, verdict, sensitivity),
        _data_section(idata, data),
        _spec_section(idata),
        _verdict_section(verdict),
        _estimand_section(idata),
        *_covariate_section(idata, dpi),
        _sensitivity_section(idata, sensitivity),
        _plot_section(idata, dpi, sensitivity),
        _version_section(idata),
    ]
    title = _title(idata)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".md":
        path.write_text(_markdown(sections, title, path.parent / f"{path.stem}_files"), "utf-8")
    elif kind == ".pdf":
        _print_pdf(renderer, html_page(sections, title), path)
    else:
        path.write_text(html_page(sections, title), encoding="utf-8")
    return path


#: Executables that can print the HTML report to PDF (headless Chromium).
PDF_RENDERERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _pdf_renderer() -> str:
    found = next((shutil.which(name) for name in PDF_RENDERERS if shutil.which(name)), None)
    if found is None:
        raise FileNotFoundError(
            f"a PDF report needs headless Chromium ({', '.join(PDF_RENDERERS)} on the PATH), "
            "and none was found: install it (apt-get install chromium, or `make chromium`), "
            "or write the .html report and print it from a browser"
        )
    return found


def _print_pdf(renderer: str, page: str, path: Path) -> None:
    """Print the HTML ``page`` to ``path`` with headless Chromium (no network, own profile)."""
    with tempfile.TemporaryDirectory(prefix="kbayes_pdf_") as tmp:
        source = Path(tmp) / "report.html"
        source.write_text(page, encoding="utf-8")
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={Path(tmp) / 'profile'}",
                 "--no-pdf-header-footer", f"--print-to-pdf={path.resolve()}"]  # fmt: skip
        done = subprocess.run(
            [renderer, *flags, source.as_uri()], capture_output=True, text=True, timeout=300
        )
    if done.returncode or not path.is_file():
        raise RuntimeError(f"{renderer} did not print the PDF (exit {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")  # fmt: skip


# --- sections -------------------------------------------------------------------------------
def _title(idata: xr.DataTree) -> str:
    """Trial, spec and date: "Naltrexone vs placebo before ketamine: joint model, 2026-12-03"."""
    config = trial_config(idata)
    trial = "Trial"
    if config.get("drug") and config.get("conditions"):
        reference, *actives = config["conditions"]
        active = ", ".join(actives[:-1]) + " and " * (len(actives) > 1) + actives[-1]
        trial = f"{active.capitalize()} vs {reference} before {config['drug']}"
    day = datetime.now(UTC).date().isoformat()
    return f"{trial}: {idata.attrs.get('spec_name', 'model')} model, {day}"


def _summary_section(
    idata: xr.DataTree, verdict: Verdict, sensitivity: pd.DataFrame | None
) -> Section:
    s = Section("summary", "Summary")
    post = idata.posterior
    sizes = {d: post.sizes[d] for d in ("participant", "session") if d in post.sizes}
    if sizes:
        said = ", ".join(f"{n} {d}s" for d, n in sizes.items())
        s.parts.append(("p", f"Fitted to {said} with the {idata.attrs.get('spec_name')} model."))
    try:
        table = estimands(idata)
    except ValueError:
        table = None
    if table is not None:
        asked = answers(idata) if "spec" in idata.attrs else pd.DataFrame(columns=["estimand"])
        headline = [n for n in table.index  # each condition's and the contrasts
                    if n.partition("[")[0] in plots.headline_estimands(idata)
                    and n not in set(asked["estimand"])]  # fmt: skip
        if len(asked):
            s.parts += [("p", "The trial's questions, answered by the posterior:"),
                        ("ul", list(asked["text"]))]  # fmt: skip
        if headline:
            s.parts += [("p", "Headline estimands:" if len(asked) else "The headline estimands:"),
                        ("ul", [table.loc[n, "text"] for n in headline])]  # fmt: skip
        shown = len(headline) + asked["estimand"].nunique()
        if shown < len(table):
            s.parts.append(("p", f"{len(table) - shown} more estimands below."))
        s.parts.append(("p", (
            f"How to read them: the {100 * table.attrs['ci_prob']:g} % HDI is the narrowest "
            f"range holding {100 * table.attrs['ci_prob']:g} % of the posterior probability; "
            "P(< 0) is the probability that the effect is negative (P(< -3): below -3); the "
            "ROPE is the spec's range of effects too small to matter."
        )))  # fmt: skip
        if sensitivity is not None:
            quoted = [*dict.fromkeys(asked["estimand"]), *headline]
            hit = [n for n in quoted if sensitivity.loc[n, "diagnosis"] != "✓"]
            s.parts.append(("p", (
                f"Prior sensitivity: {', '.join(hit)} still depend{'s' * (len(hit) == 1)} on "
                "the prior (see Prior sensitivity)." if hit else "Prior sensitivity: none of "
                "these depends on the prior beyond the diagnostic's threshold."
            )))  # fmt: skip
    ok = {"ok": "the numbers can be used", "warn": "read the warnings under Convergence",
          "fail": "the numbers are not yet trustworthy"}[verdict.status]  # fmt: skip
    own = ""  # the warnings may be about nuisance quantities: say how the estimands fare
    if table is not None:
        own = (f" The estimands themselves: R-hat at most {table['rhat'].max():.3f}, bulk "
               f"effective draws at least {table['ess_bulk'].min():.0f}.")  # fmt: skip
    s.parts.append(("p", f"Convergence: {verdict.status} ({ok}). {verdict.headline()}.{own}"))
    records = pd.DataFrame(json.loads(idata.attrs.get("exclusions", "[]")))
    said = {"excluded": "nothing excluded", "kept": ""}
    for action in said:
        rows = records[records["action"] == action] if len(records) else records
        counts = rows.groupby(["table", "reason"], sort=False).size() if len(rows) else {}
        if len(counts):
            said[action] = ("excluded " if action == "excluded" else "kept with a note: ") + (
                ", ".join(f"{n} {_ROWS.get(t, t + ' rows')} ({r})" for (t, r), n in counts.items())
            )
    text = "; ".join(x for x in said.values() if x)
    s.parts.append(("p", f"Data: {text} (details under Data and exclusions)."))
    return s


def _data_section(idata: xr.DataTree, data: TrialData | None) -> Section:
    s = Section("data", "Data and exclusions")
    if data is not None:
        described = data.describe().reset_index()
        described.columns = [_described(c) for c in described.columns]
        s.parts += [("pre", data.summary()), ("table", described)]
    config = trial_config(idata)
    if config:
        rows = [
            {"setting": FIELD_WORDS.get(k, k),
             "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
            for k, v in config.items()
        ]  # fmt: skip
        s.parts += [("p", "Trial configuration:"), ("table", pd.DataFrame(rows))]
    records = json.loads(idata.attrs.get("exclusions", "[]"))
    if records:
        s.parts += [
            ("p", f"{len(records)} exclusion or completeness notes from validation:"),
            ("table", pd.DataFrame(records).fillna("")),
        ]
    else:
        s.parts.append(("p", "No exclusions recorded."))
    return s


def _described(column: str) -> str:
    """A header of :meth:`TrialData.describe` in words ("improvement_std": "improvement SD")."""
    words = {"dglx": "glutamate change", "day1": "day-1 score", "baseline": "baseline score"}
    name, _, stat = column.rpartition("_")
    if not name:
        return column
    return f"{words.get(name, name)} {'SD' if stat == 'std' else stat}"


def _spec_section(idata: xr.DataTree) -> Section:
    s = Section("spec", "Model spec")
    name, digest = idata.attrs.get("spec_name", "?"), idata.attrs.get("spec_hash", "?")
    source = json.loads(idata.attrs.get("spec", "{}"))
    s.parts.append(("p", f"Spec {name!r}, hash {digest}."))
    if source.get("description"):
        s.parts.append(("p", source["description"]))
    if source.get("design", "crossover") != "crossover":
        left_out = ", ".join(result_spec(idata).dropped)
        s.parts.append(("p", f"Fitted for a {source['design']} trial: one session per "
                        "participant cannot separate these from other terms, so they are "
                        f"left out: {left_out}."))  # fmt: skip
    if constants := source.get("constants"):
        units = ", ".join(f"{k} {v}" for k, v in source.get("units", {}).items())
        rows = [{"constant": k, "value": v} for k, v in constants.items()]
        s.parts += [("p", f"Constants (in the units of {units or 'the data'}):"),
                    ("table", pd.DataFrame(rows))]  # fmt: skip
    if name in builtin_specs() and load_spec(name).hash == digest:
        text = (MODELS_DIR / f"{name}.toml").read_text()
        s.parts.append(("details", f"Spec file {name}.toml (built-in, same hash)", "toml", text))
    elif source:
        text = json.dumps(source, indent=2)
        s.parts.append(("details", "Spec as stored in the result (JSON)", "json", text))
    return s


def _verdict_section(verdict: Verdict) -> Section:
    s = Section("verdict", "Convergence")
    s.parts.append(("p", verdict.headline()))
    frame = verdict.to_frame()
    if len(frame):
        s.parts.append(("table", _renamed(frame[["status", "message", "advice"]])))
    else:
        s.parts.append(("p", "No problems found."))
    return s


def _estimand_section(idata: xr.DataTree) -> Section:
    s = Section("estimands", "Estimands")
    try:
        table = estimands(idata)
    except ValueError as exc:
        s.parts.append(("p", f"No estimand table: {exc}."))
        return s
    cols = ["label", "unit", "median", "hdi_low", "hdi_high", "p_direction", "in_rope_pct"]
    s.parts += [
        ("ul", list(table["text"])),
        *_readable(table[cols], "estimands", table.attrs["ci_prob"]),
        ("csv", "estimands", table.drop(columns="text")),
    ]
    return s


def _covariate_section(idata: xr.DataTree, dpi: int) -> list[Section]:
    """The covariate terms' coefficients (none without covariate terms)."""
    try:
        table = covariate_effects(idata)
    except ValueError:
        return []
    s = Section("covariates", "Covariate effects")
    cols = ["label", "unit", "median", "hdi_low", "hdi_high", "p_direction", "rhat", "ess_bulk"]
    fig = plots.plot_covariate_effects(idata)
    s.parts += [
        ("ul", list(table["text"])),
        *_readable(table[cols], "covariate effects", table.attrs["ci_prob"]),
        ("csv", "covariate_effects", table.drop(columns="text")),
        ("img", "covariates", "Covariate effects with HDIs", png_bytes(fig, dpi)),
        ("p", "How each covariate was coded is listed under Versions and seed."),
    ]
    return [s]


#: What a power-scaling diagnosis means for a reader, and what to do about it.
SENSITIVITY_ADVICE = {
    "potential prior-data conflict": (
        "both the prior and the data move this quantity: the data inform it, but at this "
        "sample size the prior still shapes it too (or the two disagree). Fit again with a "
        "wider prior on the parameters behind it (kb.fit(..., priors={...})) and report "
        "both results"
    ),
    "potential strong prior / weak likelihood": (
        "the data say little about this quantity and the prior decides it: report it as "
        "prior-driven, or collect the data that inform it"
    ),
}
#: Total draws below which the power-scaling values are noisy near the threshold (a
#: 14-participant joint fit flagged 12 of 35 quantities at 2 x 500 draws, 7 at 4 x 1000
#: and the same 7 at 4 x 2500: docs/models.md, "How sensitive the results are").
SENSITIVITY_DRAWS = 4000


def _sensitivity(idata: xr.DataTree) -> pd.DataFrame | None:
    """Power-scaling sensitivity of the estimands and scalar parameters (None without the
    log_prior or log_likelihood group): the top-level priors are scaled jointly, the
    random-effect distributions are not (:func:`kbayes.plots.top_level_priors`)."""
    if any(g not in idata.children for g in ("log_prior", "log_likelihood")):
        return None
    with _quiet("arviz_stats"):
        table = az.psense_summary(
            idata,
            var_names=estimand_variables(idata) + plots.scalar_parameters(idata),
            threshold=PSENSE_THRESHOLD,
            prior_var_names=plots.top_level_priors(idata),
        )
    # rows named as the estimand table's: ntx_glu_contrast[b vs a] -> ntx_glu[b vs a]
    return table.rename(index=lambda n: n.replace(f"{CONTRAST_SUFFIX}[", "[", 1))


def _sensitivity_section(idata: xr.DataTree, table: pd.DataFrame | None) -> Section:
    """Power-scaling sensitivity of the estimands (what a reader quotes); the parameters'
    in one line and in a detail."""
    s = Section("sensitivity", "Prior sensitivity")
    if table is None:
        missing = [g for g in ("log_prior", "log_likelihood") if g not in idata.children]
        text = (
            f"Not computed: the result has no {' or '.join(missing)} group "
            "(fit with kb.fit(..., log_prior=True, log_likelihood=True))."
        )
        s.parts.append(("p", text))
        return s
    quoted = estimand_rows(idata)
    flagged = table[table["diagnosis"] != "✓"]
    estimands_flagged = flagged[flagged.index.isin(quoted)]
    if len(estimands_flagged):
        s.parts.append(("p", f"{len(estimands_flagged)} of {len(quoted)} estimands are "
                             "sensitive to the prior:"))  # fmt: skip
        s.parts.append(("ul", [
            f"{name} (prior {row['prior']:.2f}, data {row['likelihood']:.2f}): "
            f"{row['diagnosis'].removeprefix('potential ')}"
            for name, row in estimands_flagged.iterrows()
        ]))  # fmt: skip
        for diagnosis in dict.fromkeys(estimands_flagged["diagnosis"]):
            meaning = SENSITIVITY_ADVICE.get(diagnosis, "")
            s.parts.append(("p", f"{diagnosis.removeprefix('potential ').capitalize()}: "
                                 f"{meaning}."))  # fmt: skip
    else:
        s.parts.append(("p", f"None of the {len(quoted)} estimands is sensitive to the prior."))
    others = flagged[~flagged.index.isin(quoted)]
    if len(others):
        s.parts.append(("p", "Model parameters that are sensitive too (they feed the estimands): "
                             + ", ".join(f"{n} ({r['prior']:.2f})" for n, r in others.iterrows())
                             + "."))  # fmt: skip
    total = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    if total < SENSITIVITY_DRAWS:
        s.parts.append(("p", (
            f"Computed from {total} draws: below {SENSITIVITY_DRAWS} the values near the "
            f"threshold are noisy and some flags are noise (refit with more draws, e.g. "
            "kb.fit(..., chains=4, draws=1000), before acting on a flag near "
            f"{PSENSE_THRESHOLD:g})."
        )))  # fmt: skip
    note = (
        "Power-scaling sensitivity (Kallioinen et al. 2024, doi:10.1007/s11222-023-10366-5): "
        "how far each posterior moves (cumulative Jensen-Shannon distance) when the top-level "
        "priors together, or the likelihood, are raised to a power near 1; the random-effect "
        f"distributions are structure and are not scaled. Above {PSENSE_THRESHOLD:g} (the "
        "paper's threshold) flags a quantity: prior and data both above is reported as "
        "prior-data conflict, prior above and data below as a prior that dominates weak data."
    )
    s.parts += [("p", note), ("details", "All quantities", "", table.to_string())]
    return s


def _plot_section(idata: xr.DataTree, dpi: int, sensitivity: pd.DataFrame | None) -> Section:
    s = Section("plots", "Plots")
    skipped = []
    quoted = estimand_rows(idata)
    flagged = [] if sensitivity is None else list(dict.fromkeys(
        row_variable(n) for n in quoted if sensitivity.loc[n, "diagnosis"] != "✓"
    ))[:4]  # fmt: skip
    for name, caption, plot in _PLOTS:
        try:
            if name == "prior-sensitivity" and flagged:  # the quantities the section flags
                fig, caption = plots.plot_prior_sensitivity(idata, flagged), f"{caption}: flagged"
            else:
                fig = plot(idata)
            if name == "prior-predictive":
                caption += _impossible_share(idata)
        except ValueError as exc:
            skipped.append(f"{caption}: {exc}")
            continue
        s.parts.append(("img", name, caption, png_bytes(fig, dpi)))
    if skipped:
        s.parts += [("p", "Not shown:"), ("ul", skipped)]
    return s


def _impossible_share(idata: xr.DataTree) -> str:
    """How much of the prior predictive is impossible: fMRS ratios below 0, day-1 scores
    outside 0..score_max; e.g. ". Here 18.0 % of the ratios are below 0"."""
    pp, said = idata.prior_predictive, []
    if "glx" in pp:
        said.append(f"{100 * float((pp['glx'] < 0).mean()):.1f} % of the fMRS ratios are below 0")
    center = result_spec(idata).constants.get("baseline_center")
    if "improvement" in pp and "baseline_c" in idata.constant_data and center is not None:
        top = trial_config(idata).get("score_max", TrialConfig().score_max)
        cd = idata.constant_data
        baseline = cd["baseline_c"].to_numpy()[rated_sessions(idata)] + center
        day1 = baseline - pp["improvement"].to_numpy()  # per rating
        share = 100 * float(((day1 < 0) | (day1 > top)).mean())
        said.append(f"{share:.1f} % of the day-1 scores are outside 0 to {top}")
    return f". Here {' and '.join(said)}" if said else ""


def _version_section(idata: xr.DataTree) -> Section:
    s = Section("versions", "Versions and seed")
    fitted = {k: idata.attrs[k] for k in ("seed", "sampler", "spec_hash") if k in idata.attrs}
    fitted |= {k: v for k, v in idata.attrs.items() if k.endswith("_version")}
    rows = [{"item": f"fit: {k}", "value": str(v)} for k, v in fitted.items()]
    coding = json.loads(idata.attrs.get("covariate_coding", "{}"))
    rows += [{"item": f"covariate {name}", "value": _covariate_text(how)}
             for name, how in coding.items()]  # fmt: skip
    if defaulted := json.loads(idata.attrs.get("defaulted_priors", "[]")):
        rows.append({"item": "priors from [priors.default.LEVEL]", "value": ", ".join(defaulted)})
    now = {"python": platform.python_version()} | {p: _version(p) for p in _VERSIONED}
    rows += [{"item": f"report: {k}", "value": v} for k, v in now.items()]
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    s.parts += [("table", pd.DataFrame(rows)), ("p", f"Report written {stamp}.")]
    return s


# --- helpers --------------------------------------------------------------------------------
def _covariate_text(how: dict) -> str:
    """How a covariate was coded (an entry of a result's ``covariate_coding``), in words."""
    if "levels" not in how:
        return f"(value - {how['center']:.4g}) / {how['scale']:.4g}"
    counts = ", ".join(f"{level} ({k})" for level, k in how["counts"].items())
    return f"{how['coding']} coding, reference {how['reference']}; levels {counts}"


def _lowest_ess(idata: xr.DataTree, n: int) -> list[str]:
    """The ``n`` scalar parameters with the lowest bulk ESS, lowest first."""
    names = plots.scalar_parameters(idata)
    ess = az.ess(idata.posterior.to_dataset()[names], method="bulk")
    return sorted(names, key=lambda v: float(ess[v].fillna(float("inf"))))[:n]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def _quiet(logger: str):
    """Silence a library's warnings (they repeat what the report says)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def png_bytes(fig: Figure, dpi: int) -> bytes:
    """``fig`` as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _renamed(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={k: h for k, (h, _) in HEADERS.items()})


def _readable(table: pd.DataFrame, what: str, ci_prob: float) -> list[tuple]:
    """A table's parts for a reader: rounded numbers under readable headers (the index as
    its first column), then the glossary of those headers."""
    shown = table.copy()
    if "p_direction" in shown and "median" in shown:
        sign = np.where(table["median"] < 0, "< 0", "> 0")
        shown["p_direction"] = [
            "" if math.isnan(p) else f"P({s}) = {p:.2f}"
            for s, p in zip(sign, table["p_direction"], strict=True)
        ]
    for column in shown.columns:
        if column == "p_direction":
            continue
        if column == "rhat":
            shown[column] = shown[column].map(lambda x: f"{x:.2f}")
        elif column in ("ess_bulk", "in_rope_pct"):
            shown[column] = shown[column].map(lambda x: "" if math.isnan(x) else f"{x:.0f}")
        elif shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(_rounded)
    shown = _renamed(shown.rename_axis("name").reset_index())
    words = [
        f"{HEADERS[c][0]}: {HEADERS[c][1]}" for c in table.columns if HEADERS.get(c, ("", ""))[1]
    ]
    words = [
        w.replace("(95 % unless it says otherwise)", f"({100 * ci_prob:g} % here)") for w in words
    ]
    return [("table", shown), ("p", f"In the {what} table:"), ("ul", words)]


def _rounded(x: float) -> str:
    """Three significant digits, never "-0" (a small negative shown as 0 loses its sign)."""
    if math.isnan(x):
        return ""
    text = f"{x:.3g}" if abs(x) < 1e4 else f"{x:.0f}"
    return text.removeprefix("-") if float(text) == 0 else text


def _cell(x) -> str:
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.4g}"
    return str(x)


# --- HTML -----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:70rem;margin:2rem auto;
padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
nav a{margin-right:1rem}table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;font-size:.8rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9rem;color:#555}details{margin:.5rem 0}summary{cursor:pointer}
"""


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(x))}</td>" for x in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_part(part: tuple) -> str:
    kind, *content = part
    if kind == "p":
        return f"<p>{html.escape(content[0])}</p>"
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in content[0]) + "</ul>"
    if kind == "pre":
        return f"<pre>{html.escape(content[0])}</pre>"
    if kind == "table":
        return _html_table(content[0])
    if kind == "details":
        summary, _, text = content
        return (
            f"<details><summary>{html.escape(summary)}</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
    if kind == "csv":
        name, table = content
        data = base64.b64encode(table.to_csv().encode()).decode("ascii")
        return (
            f'<p><a download="{name}.csv" href="data:text/csv;base64,{data}">'
            f"Download the {name.replace('_', ' ')} table (CSV, full precision)</a></p>"
        )
    name, caption, png = content
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="plot-{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def html_page(sections: list[Section], title: str) -> str:
    """A self-contained HTML page of ``sections`` (images and CSVs inline)."""
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.id}">\n<h2>{html.escape(s.title)}</h2>\n'
        + "\n".join(_html_part(p) for p in s.parts)
        + "\n</section>"
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


# --- Markdown -------------------------------------------------------------------------------
def _md_table(df: pd.DataFrame) -> str:
    def esc(x) -> str:
        return _cell(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |"]
    lines.append("|" + "---|" * len(df.columns))
    lines += ["| " + " | ".join(esc(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _md_part(part: tuple, folder: Path) -> str:
    kind, *content = part
    if kind == "p":
        return content[0]
    if kind == "ul":
        return "\n".join(f"- {x}" for x in content[0])
    if kind == "pre":
        return f"```\n{content[0]}\n```"
    if kind == "table":
        return _md_table(content[0])
    if kind == "details":
        summary, lang, text = content
        return f"<details><summary>{summary}</summary>\n\n```{lang}\n{text}\n```\n\n</details>"
    if kind == "csv":
        name, table = content
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / f"{name}.csv")
        what = name.replace("_", " ")
        return f"[The {what} table as CSV (full precision)]({folder.name}/{name}.csv)"
    name, caption, png = content
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.png").write_bytes(png)
    return f'<a id="plot-{name}"></a>\n\n![{caption}]({folder.name}/{name}.png)\n\n*{caption}*'


def _markdown(sections: list[Section], title: str, folder: Path) -> str:
    out = [f"# {title}", " · ".join(f"[{s.title}](#{s.id})" for s in sections)]
    for s in sections:
        out += [f'<a id="{s.id}"></a>', f"## {s.title}"]
        out += [_md_part(p, folder) for p in s.parts]
    return "\n\n".join(out) + "\n"


__all__ = ["SECTIONS", "Section", "html_page", "png_bytes", "report"]

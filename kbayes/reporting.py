"""One-file report of a fitted result: HTML (self-contained) or Markdown, chosen by suffix.

Sections (each with a fixed id, the anchor of its heading):

============  ==========================================================================
id            content
============  ==========================================================================
data          trial configuration, exclusions (and the data summary, given the data)
spec          spec name, hash and description; the spec itself (JSON, and the TOML file
              when it is a built-in spec with the same hash)
verdict       convergence verdict (:func:`kbayes.check`)
estimands     estimand table and one sentence per estimand (:func:`kbayes.estimands`)
sensitivity   power-scaling prior sensitivity (:func:`arviz.psense_summary`)
plots         the plots of :mod:`kbayes.plots` that apply to the spec
versions      seed, sampler, package versions
============  ==========================================================================

HTML embeds every image as a base64 PNG and styles inline: no external assets, no
JavaScript. Markdown writes the images to a folder ``<stem>_files`` next to the file.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from kbayes import plots
from kbayes.data import TrialData
from kbayes.diagnostics import Verdict, check
from kbayes.results import estimand_names, trial_config
from kbayes.spec import MODELS_DIR, builtin_specs, load_spec
from kbayes.summaries import covariate_effects, estimands

#: Section ids, in report order.
SECTIONS = ("data", "spec", "verdict", "estimands", "sensitivity", "plots", "versions")
#: Power-scaling sensitivity above this flags a quantity (arviz-stats' default).
PSENSE_THRESHOLD = 0.05

#: How many parameters the report's trace plot shows (those with the lowest bulk ESS).
_TRACED = 8
_PLOTS: tuple[tuple[str, str, Callable[[xr.DataTree], Figure]], ...] = (
    ("estimands", "Estimands with HDIs", plots.plot_estimands),
    ("timecourse", "fMRS time course by condition", plots.plot_timecourse),
    ("improvement", "Improvement against the glutamate change", plots.plot_improvement),
    ("ppc", "Posterior predictive check", plots.plot_ppc),
    (
        "prior-predictive",
        "Prior predictive check",
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
class _Section:
    """A report section: id, title and parts ``(kind, *content)``, rendered per format.

    Kinds: ``p`` (text), ``ul`` (list of str), ``pre`` (text), ``table`` (DataFrame),
    ``details`` (summary, language, text), ``img`` (name, caption, PNG bytes).
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
    """Write a report of a fitted result to ``path`` (``.html``/``.htm`` or ``.md``).

    Parameters
    ----------
    idata : xarray.DataTree
        Fitted result (:func:`kbayes.fit`). Sections whose groups are missing say what to
        fit to get them (e.g. ``kb.fit(..., prior=True)`` for the prior predictive check).
    path : str or pathlib.Path
        Output file; the suffix chooses the format. Markdown images go to the folder
        ``<stem>_files`` next to it.
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
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in {".html", ".htm", ".md"}:
        raise ValueError(f"report path must end in .html, .htm or .md, not {path.name!r}")
    plots.require(idata, "posterior")
    sections = [
        _data_section(idata, data),
        _spec_section(idata),
        _verdict_section(verdict or check(idata)),
        _estimand_section(idata),
        *_covariate_section(idata, dpi),
        _sensitivity_section(idata),
        _plot_section(idata, dpi),
        _version_section(idata),
    ]
    title = f"kbayes report: {idata.attrs.get('spec_name', 'model')} model"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".md":
        text = _markdown(sections, title, path.parent / f"{path.stem}_files")
    else:
        text = _html(sections, title)
    path.write_text(text, encoding="utf-8")
    return path


# --- sections -------------------------------------------------------------------------------
def _data_section(idata: xr.DataTree, data: TrialData | None) -> _Section:
    s = _Section("data", "Data and exclusions")
    if data is not None:
        s.parts += [("pre", data.summary()), ("table", data.describe().reset_index())]
    config = trial_config(idata)
    if config:
        rows = [
            {"setting": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
            for k, v in config.items()
        ]
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


def _spec_section(idata: xr.DataTree) -> _Section:
    s = _Section("spec", "Model spec")
    name, digest = idata.attrs.get("spec_name", "?"), idata.attrs.get("spec_hash", "?")
    source = json.loads(idata.attrs.get("spec", "{}"))
    s.parts.append(("p", f"Spec {name!r}, hash {digest}."))
    if source.get("description"):
        s.parts.append(("p", source["description"]))
    if constants := source.get("constants"):
        units = ", ".join(f"{k} {v}" for k, v in source.get("units", {}).items())
        rows = [{"constant": k, "value": v} for k, v in constants.items()]
        s.parts += [("p", f"Constants (in the units of {units or 'the data'}):"),
                    ("table", pd.DataFrame(rows))]  # fmt: skip
    if name in builtin_specs() and load_spec(name).hash == digest:
        text = (MODELS_DIR / f"{name}.toml").read_text()
        s.parts.append(("details", f"Spec file {name}.toml (built-in, same hash)", "toml", text))
    if source:
        text = json.dumps(source, indent=2)
        s.parts.append(("details", "Spec as stored in the result (JSON)", "json", text))
    return s


def _verdict_section(verdict: Verdict) -> _Section:
    s = _Section("verdict", "Convergence")
    s.parts.append(("p", verdict.headline()))
    frame = verdict.to_frame()
    if len(frame):
        s.parts.append(("table", frame[["status", "message", "advice"]]))
    else:
        s.parts.append(("p", "No problems found."))
    return s


def _estimand_section(idata: xr.DataTree) -> _Section:
    s = _Section("estimands", "Estimands")
    try:
        table = estimands(idata)
    except ValueError as exc:
        s.parts.append(("p", f"No estimand table: {exc}."))
        return s
    cols = ["label", "unit", "median", "hdi_low", "hdi_high", "p_direction", "in_rope_pct"]
    note = (
        f"HDI mass {table.attrs['ci_prob']:g} (from the spec); p_direction is the posterior "
        "probability of the more probable sign; in_rope_pct the percent of the posterior "
        "inside the spec's ROPE."
    )
    s.parts += [
        ("ul", list(table["text"])),
        ("table", table[[*cols, "rhat", "ess_bulk"]].reset_index()),
        ("p", note),
    ]
    return s


def _covariate_section(idata: xr.DataTree, dpi: int) -> list[_Section]:
    """The covariate terms' coefficients (none without covariate terms)."""
    try:
        table = covariate_effects(idata)
    except ValueError:
        return []
    s = _Section("covariates", "Covariate effects")
    cols = ["label", "unit", "median", "hdi_low", "hdi_high", "p_direction", "rhat", "ess_bulk"]
    fig = plots.plot_covariate_effects(idata)
    s.parts += [
        ("ul", list(table["text"])),
        ("table", table[cols].reset_index().rename(columns={"estimand": "coefficient"})),
        ("img", "covariates", "Covariate effects with HDIs", _png(fig, dpi)),
        ("p", "How each covariate was coded is listed under Versions and seed."),
    ]
    return [s]


def _sensitivity_section(idata: xr.DataTree) -> _Section:
    s = _Section("sensitivity", "Prior sensitivity")
    missing = [g for g in ("log_prior", "log_likelihood") if g not in idata.children]
    if missing:
        text = (
            f"Not computed: the result has no {' or '.join(missing)} group "
            "(fit with kb.fit(..., log_prior=True, log_likelihood=True))."
        )
        s.parts.append(("p", text))
        return s
    names = estimand_names(idata) + plots.scalar_parameters(idata)
    with _quiet("arviz_stats"):
        table = az.psense_summary(
            idata,
            var_names=names,
            threshold=PSENSE_THRESHOLD,
            prior_var_names=plots.top_level_priors(idata),
        )
    flagged = table[table["diagnosis"] != "✓"]
    if len(flagged):
        lines = [
            f"{name}: {row['diagnosis']} (prior {row['prior']:.3f}, "
            f"likelihood {row['likelihood']:.3f})"
            for name, row in flagged.iterrows()
        ]
        head = f"{len(flagged)} of {len(table)} quantities are sensitive to power-scaling:"
        s.parts += [("p", head), ("ul", lines)]
    else:
        s.parts.append(("p", f"None of the {len(table)} quantities is sensitive to the prior."))
    note = (
        "Power-scaling sensitivity (Kallioinen et al. 2024, doi:10.1007/s11222-023-10366-5): "
        "how much each posterior moves when the top-level priors (not the random-effect "
        "distributions) or the likelihood are raised to a power near 1; above "
        f"{PSENSE_THRESHOLD:g} flags a quantity. Both high suggests prior-data "
        "conflict; prior high and likelihood low, a prior that dominates weak data. Short "
        "runs give noisy values."
    )
    s.parts += [("p", note), ("details", "All quantities", "", table.to_string())]
    return s


def _plot_section(idata: xr.DataTree, dpi: int) -> _Section:
    s = _Section("plots", "Plots")
    skipped = []
    for name, caption, plot in _PLOTS:
        try:
            fig = plot(idata)
        except ValueError as exc:
            skipped.append(f"{caption}: {exc}")
            continue
        s.parts.append(("img", name, caption, _png(fig, dpi)))
    if skipped:
        s.parts += [("p", "Not shown:"), ("ul", skipped)]
    return s


def _version_section(idata: xr.DataTree) -> _Section:
    s = _Section("versions", "Versions and seed")
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


def _png(fig: Figure, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


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
    name, caption, png = content
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="plot-{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _html(sections: list[_Section], title: str) -> str:
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
    name, caption, png = content
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.png").write_bytes(png)
    return f'<a id="plot-{name}"></a>\n\n![{caption}]({folder.name}/{name}.png)\n\n*{caption}*'


def _markdown(sections: list[_Section], title: str, folder: Path) -> str:
    out = [f"# {title}", " · ".join(f"[{s.title}](#{s.id})" for s in sections)]
    for s in sections:
        out += [f'<a id="{s.id}"></a>', f"## {s.title}"]
        out += [_md_part(p, folder) for p in s.parts]
    return "\n\n".join(out) + "\n"


__all__ = ["SECTIONS", "report"]

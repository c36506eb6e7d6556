"""Command line: ``kbayes demo | fit | check | report | simulate | power | sample-size |
plan | calibrate | reanalyse``."""

from __future__ import annotations

import functools
import logging
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

if TYPE_CHECKING:
    import kbayes as kb

app = typer.Typer(
    help="Bayesian analysis of crossover pharmaco-imaging trials.", no_args_is_help=True
)
console = Console()
_state = {"debug": False}


@app.callback()
def main(debug: Annotated[bool, typer.Option(help="Show full tracebacks.")] = False) -> None:
    _state["debug"] = debug
    log = logging.getLogger("kbayes")  # warnings (few usable replicates, resuming) on stderr
    if not any(isinstance(h, RichHandler) for h in log.handlers):
        handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False)
        log.addHandler(handler)


def _friendly(func):
    """Turn expected errors into one line on stderr and exit code 1 (tracebacks with --debug)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, KeyError, FileNotFoundError, OSError) as exc:
            if _state["debug"]:
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            Console(stderr=True).print(
                f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None

    return wrapper


#: Options of every command that reads trial data (``kb.TrialData``'s ``columns`` and ``config``).
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="Column mapping from your names to kbayes's, e.g. subject=participant,visit=period.",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of TrialConfig fields (conditions, sexes, scale, periods, ...).",
    ),
]
RatingsOption = Annotated[
    Path | None,
    typer.Option(
        "--ratings",
        help="The optional ratings table (ratings over time; default: a ratings file in the "
        "data folder, if any).",
    ),
]
SchedulerOption = Annotated[str | None, typer.Option(help="Dask scheduler, tcp://HOST:PORT.")]
WorkersOption = Annotated[int, typer.Option(help="Processes of the local Dask cluster.")]
StoreOption = Annotated[Path | None, typer.Option(help="Replicate store; a rerun resumes.")]
SerialOption = Annotated[bool, typer.Option(help="Run in this process, without Dask.")]
DataArgument = Annotated[
    list[Path],
    typer.Argument(
        help="A folder with participants/sessions/mrs tables, or the three files in that order."
    ),
]


def _columns(text: str | None) -> dict[str, str] | None:
    """``"a=b,c=d"`` as ``{"a": "b", "c": "d"}`` (your name = kbayes's name)."""
    import kbayes as kb

    if not text:
        return None
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if p.count("=") != 1 or not all(x.strip() for x in p.split("="))]
    if bad:
        raise kb.ConfigError(
            f"--columns: {bad} are not yours=kbayes pairs (e.g. subject=participant,visit=period)"
        )
    return {a.strip(): b.strip() for a, b in (p.split("=") for p in pairs)}


def _config(path: Path | None) -> kb.TrialConfig | None:
    """The TrialConfig of a TOML file (its top-level keys are the fields)."""
    import kbayes as kb
    from kbayes.design import from_table

    if path is None:
        return None
    if not path.is_file():
        raise kb.ConfigError(f"--config: file {str(path)!r} does not exist")
    return from_table(kb.TrialConfig, tomllib.loads(path.read_text()), f"--config {path}")


def _read_trial(
    data: list[Path], columns: str | None, config: Path | None, ratings: Path | None = None
) -> kb.TrialData:
    import kbayes as kb

    kwargs = {"columns": _columns(columns), "config": _config(config)}
    kwargs |= {"ratings": ratings} if ratings is not None else {}
    if len(data) == 1:
        return kb.TrialData.from_folder(data[0], **kwargs)
    if len(data) == 3:
        return kb.TrialData.from_files(*data, **kwargs)
    raise ValueError("give one folder or three files (participants, sessions, mrs)")


def _fit_and_save(data, model: str, out: Path, name: str, **kwargs) -> Path:
    import kbayes as kb
    from kbayes.results import save

    idata = kb.fit(data, model, **kwargs)
    path = save(idata, out / f"{name}_{kb.load_spec(model).name}.nc")
    verdict = _print_result(idata)
    html = kb.report(idata, path.with_suffix(".html"), data=data, verdict=verdict)
    console.print(f"Result saved to [bold]{path}[/]\nReport: [bold]{html}[/]")
    return path


def _print_result(idata) -> kb.Verdict:
    """Print the verdict and the estimand table; returns the verdict."""
    from kbayes.diagnostics import check
    from kbayes.summaries import estimands

    verdict = check(idata)
    console.print(verdict.for_cli())
    table = estimands(idata)
    columns = ["unit", "mean", "hdi_low", "hdi_high"]
    text = table[columns].to_string(float_format="{:.3g}".format)
    console.print(text, soft_wrap=True, markup=False)  # rows are named ntx_glu[nalmefene]
    return verdict


@app.command()
@_friendly
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the result.")] = Path("kbayes-demo"),
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 1,
) -> None:
    """Fit the joint model to the bundled (simulated) example trial and write its report."""
    import kbayes as kb

    data = kb.load_example()
    console.rule("Bundled example (simulated, shaped like Jelen et al. 2025)")
    console.print(data.summary())
    console.print(data.describe().round(3).to_string(), soft_wrap=True)
    console.rule("Joint model")
    _fit_and_save(data, "joint", out, "example", draws=draws, tune=tune, chains=chains, seed=seed)


@app.command()
@_friendly
def fit(
    data: DataArgument,
    model: Annotated[
        str, typer.Option(help="Built-in spec name or path to a TOML spec.")
    ] = "joint",
    out: Annotated[Path, typer.Option(help="Folder for the result.")] = Path("kbayes-results"),
    columns: ColumnsOption = None,
    config: ConfigOption = None,
    ratings: RatingsOption = None,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 4,
    target_accept: Annotated[
        float | None, typer.Option(help="NUTS target acceptance (default: the spec's).")
    ] = None,
    seed: int = 1,
) -> None:
    """Fit a model to trial data and save the result (netCDF)."""
    import kbayes as kb

    kb.load_spec(model)  # a wrong model name fails before any data are read
    trial = _read_trial(data, columns, config, ratings)
    console.print(trial.summary())
    _fit_and_save(trial, model, out, "fit", draws=draws, tune=tune, chains=chains,
                  target_accept=target_accept, seed=seed)  # fmt: skip


@app.command()
@_friendly
def check(
    result: Annotated[Path, typer.Argument(help="A saved result (.nc).")],
    strict: Annotated[bool, typer.Option(help="Exit with 1 on a warning too.")] = False,
) -> None:
    """Convergence verdict and estimands of a saved result; exit code 1 if the verdict is
    "fail" (or, with --strict, "warn"), for scripts and CI."""
    from kbayes.results import load

    verdict = _print_result(load(result))
    if verdict.status == "fail" or (strict and verdict.status == "warn"):
        raise typer.Exit(1)


@app.command()
@_friendly
def report(
    result: Annotated[Path, typer.Argument(help="A saved result (.nc).")],
    out: Annotated[Path | None, typer.Option(help="Report file (.html, .md or .pdf).")] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(help="The trial's data (a folder, or the three files), for the data section."),
    ] = None,
    pdf: Annotated[
        bool, typer.Option(help="Write a PDF (default name <result>.pdf; needs Chromium).")
    ] = False,
    columns: ColumnsOption = None,
    config: ConfigOption = None,
    ratings: RatingsOption = None,
) -> None:
    """Write the HTML (or Markdown, or PDF) report of a saved result."""
    import kbayes as kb
    from kbayes.results import load

    if ratings is not None and not data:
        raise kb.ConfigError("--ratings is read with the trial's tables: give --data too")
    trial = _read_trial(data, columns, config, ratings) if data else None
    if pdf and out is not None and out.suffix.lower() != ".pdf":
        raise typer.BadParameter(f"--pdf writes a .pdf, not {out.name}", param_hint="--out")
    default = result.with_suffix(".pdf" if pdf else ".html")
    path = kb.report(load(result), out or default, data=trial)
    console.print(f"Report: [bold]{path}[/]")


@app.command()
@_friendly
def simulate(
    design: Annotated[
        Path | None, typer.Option(help=escape("TOML with [design] and [truth] tables."))
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the CSV tables.")] = Path("kbayes-sim"),
    seed: int = 1,
    config: ConfigOption = None,
) -> None:
    """Simulate a trial (defaults shaped like Jelen et al. 2025) and write its tables (and a
    ratings table when the trial is rated at several times)."""
    import dataclasses

    import kbayes as kb
    from kbayes.design import from_table

    spec = tomllib.loads(design.read_text()) if design else {}
    unknown = set(spec) - {"design", "truth"}
    if unknown:
        raise kb.ConfigError(
            f"{design}: unknown tables {sorted(unknown)}; expected [design] and [truth]"
        )
    trial = from_table(kb.Design, spec.get("design", {}), f"{design} [design]")
    if config is not None:
        trial = dataclasses.replace(trial, config=_config(config))
    data = kb.simulate(trial, from_table(kb.Truth, spec.get("truth", {}), f"{design} [truth]"),
                       seed=seed)  # fmt: skip
    data.to_files(out)
    console.print(data.summary())
    console.print(f"Tables written to [bold]{out}[/]")


@app.command()
@_friendly
def power(
    design: Annotated[Path, typer.Argument(help="Power study TOML file (see docs/power.md).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <file>_power).")] = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = 2,
    store: StoreOption = None,
    serial: SerialOption = False,
    config: ConfigOption = None,
) -> None:
    """Power or assurance over a design grid: table (power.csv) and curves (power.png)."""
    from kbayes.planning import run_file

    table, csv, png = run_file(design, out=out, scheduler=scheduler, workers=workers,
                               store=store, serial=serial, config=_config(config))  # fmt: skip
    text = table.drop(columns="rmse").to_string(index=False, float_format="{:.3g}".format)
    console.print(text, soft_wrap=True, markup=False)
    console.print(f"Table: [bold]{csv}[/]  Figure: [bold]{png}[/]")


@app.command()
@_friendly
def sample_size(
    design: Annotated[
        Path, typer.Argument(help="Power study TOML file with a sample_size table (docs/power.md).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: <file>_sample_size).")
    ] = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = 2,
    store: StoreOption = None,
    serial: SerialOption = False,
    config: ConfigOption = None,
) -> None:
    """Smallest n reaching a target power: search, curve (sample_size.png), table (CSV)."""
    from kbayes.sizing import run_file

    result, csv, png = run_file(design, out=out, scheduler=scheduler, workers=workers,
                                store=store, serial=serial, config=_config(config))  # fmt: skip
    points = result.points.rename(columns={"n_ok": "usable"})
    _print_table(points.set_index("n"), "n")
    lo, hi = (f"{v:.0f}" if v != float("inf") else f">{result.n_range[1]}" for v in result.ci)
    if result.n is None:
        console.print(f"[bold red]Target power {result.target:g} not reached[/] for n <= "
                      f"{result.n_range[1]} (fitted curve).")  # fmt: skip
    else:
        console.print(f"Sample size: [bold]n = {result.n}[/] (95 % interval {lo} to {hi}) "
                      f"for power {result.target:g}")  # fmt: skip
    console.print(str(result), highlight=False, soft_wrap=True)
    console.print(f"Table: [bold]{csv}[/]  Figure: [bold]{png}[/]")


@app.command()
@_friendly
def plan(
    study: Annotated[str, typer.Option(help="Published study to start from.")] = "jelen2025",
    rule: Annotated[str, typer.Option(help="Decision rule, one condition.")] = (
        "P(ntx_glu < 0) > 0.95"
    ),
    target: Annotated[float, typer.Option(help="Power the chosen n must reach.")] = 0.8,
    n_min: Annotated[int, typer.Option(help="Smallest n searched.")] = 10,
    n_max: Annotated[int, typer.Option(help="Largest n searched.")] = 80,
    alpha: Annotated[float, typer.Option(help="False-positive rate to hold.")] = 0.05,
    looks: Annotated[
        list[float] | None, typer.Option(help="Fractions of n at each look (repeat).")
    ] = None,
    futility: Annotated[str | None, typer.Option(help="Futility rule at interim looks.")] = None,
    replicates: Annotated[int, typer.Option(help="Trials per design point.")] = 200,
    null_replicates: Annotated[int, typer.Option(help="Trials under the null.")] = 1000,
    rounds: Annotated[int, typer.Option(help="Rounds of the sample-size search.")] = 3,
    seed: Annotated[int, typer.Option(help="Root seed.")] = 0,
    model: Annotated[str, typer.Option(help="Spec name or path.")] = "joint",
    engine: Annotated[str, typer.Option(help="laplace (screen) or nutpie.")] = "laplace",
    out: Annotated[Path, typer.Option(help="The planning report (HTML).")] = Path("plan.html"),
    store: StoreOption = None,
    workers: WorkersOption = 2,
    serial: SerialOption = False,
) -> None:
    """Plan the next trial after a published one: calibrated design, error control, sample
    size, assurance and interim looks, in one HTML report."""
    import kbayes as kb

    result = kb.plan(
        study, rule, target=target, n_range=(n_min, n_max), alpha=alpha, looks=looks,
        futility=futility, replicates=replicates, null_replicates=null_replicates,
        rounds=rounds, seed=seed,
        model=model, engine=engine, store=store, client="serial" if serial else None,
        workers=workers,
    )  # fmt: skip
    console.print(str(result), soft_wrap=True)
    console.print(f"Report: [bold]{kb.report(result, out)}[/]")


@app.command()
@_friendly
def calibrate(
    model: Annotated[
        str, typer.Option(help="Built-in spec name or path to a TOML spec.")
    ] = "joint",
    sims: Annotated[int, typer.Option(help="Simulations (prior draw, data, fit each).")] = 100,
    out: Annotated[
        Path, typer.Option(help="Folder for the tables (CSV) and figures (PNG).")
    ] = Path("kbayes-sbc"),
    n: Annotated[
        int | None,
        typer.Option(help="Participants of a simulated design (default: the bundled example's)."),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(help="A trial (folder, or three files) whose design every simulation uses."),
    ] = None,
    columns: ColumnsOption = None,
    config: ConfigOption = None,
    ratings: RatingsOption = None,
    seed: int = 0,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    thin: Annotated[
        int, typer.Option(help="Posterior draws each prior draw is ranked among.")
    ] = 100,
    store: Annotated[
        Path | None, typer.Option(help="Simulation store; a rerun resumes (default: OUT/sims).")
    ] = None,
    workers: WorkersOption = 2,
    scheduler: SchedulerOption = None,
    serial: SerialOption = False,
) -> None:
    """Simulation-based calibration of a model: rank uniformity, coverage, PIT-ECDF plots."""
    import kbayes as kb
    from kbayes.diagnostics import ESS_FAIL, RHAT_FAIL

    kb.load_spec(model)  # a wrong model name fails before any work
    if data and n:
        raise kb.ConfigError("give --data (a trial's design) or --n (a simulated one), not both")
    if ratings is not None and not data:
        raise kb.ConfigError("--ratings is read with the trial's tables: give --data too")
    trial_config = _config(config)
    if data:
        design = _read_trial(data, columns, config, ratings)
    elif n or trial_config:
        design = kb.Design(**({"n": n} if n else {}), config=trial_config or kb.TrialConfig())
    else:
        design = None
    result = kb.calibrate(
        model, sims, design=design, seed=seed, draws=draws, tune=tune,
        chains=chains, thin=thin, store=store or out / "sims",
        client="serial" if serial else scheduler, workers=workers,
    )  # fmt: skip
    paths = result.save(out)
    console.rule(f"Rank uniformity ({result.spec})")
    columns = ["n", "p_value", "chi2_p", "p_value_all", "flagged"]
    _print_table(result.uniformity[columns], "quantity")
    console.rule("Coverage of central intervals (+- Monte-Carlo SE)")
    _print_table(_coverage_text(result.coverage), "quantity")
    problems = result.sims[result.sims["problem"].astype(bool)]
    if len(problems):
        console.rule(f"{len(problems)} simulations with convergence problems (left out)")
        reasons = {
            "divergences": int((problems["divergences"] > 0).sum()),
            f"R-hat > {RHAT_FAIL}": int((problems["max_rhat"] > RHAT_FAIL).sum()),
            f"bulk ESS < {ESS_FAIL}": int((problems["min_ess"] < ESS_FAIL).sum()),
            "failed": int((problems["message"] != "").sum()),
        }
        console.print(", ".join(f"{k}: {v}" for k, v in reasons.items()), highlight=False)
        shown = problems.drop(columns="problem").set_index("sim").head(10)
        if (shown["message"] == "").all():
            shown = shown.drop(columns="message")
        _print_table(shown, "sim")
    console.print(result.text, highlight=False, soft_wrap=True)
    figures = "  ".join(str(p) for k, p in paths.items() if p.suffix == ".png")
    console.print(f"Tables and figures in [bold]{out}[/]  {figures}", soft_wrap=True)


def _coverage_text(table):
    """Coverage table with one 'c +- se' column per interval mass."""
    import pandas as pd

    cols = {c.removeprefix("cov"): c for c in table.columns if c.startswith("cov")}
    text = {f"{p} %": [f"{c:.2f}±{s:.2f}" for c, s in zip(table[c], table[f"se{p}"], strict=True)]
            for p, c in cols.items()}  # fmt: skip
    return pd.DataFrame(text, index=table.index)


def _print_table(frame, index_name: str) -> None:
    """A DataFrame as a rich table (floats to 3 significant digits)."""
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    table.add_column(index_name, no_wrap=True)
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for idx, row in frame.iterrows():
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
        style = "bold red" if bool(row.get("flagged", False)) else None
        table.add_row(str(idx), *cells, style=style)
    console.print(table)


@app.command()
@_friendly
def reanalyse(
    study: Annotated[str | None, typer.Argument(help="Registry study key, e.g. jelen2025.")] = None,
    outcome: Annotated[str | None, typer.Argument(help="Outcome key, e.g. madrs_day1.")] = None,
    delta: Annotated[float | None, typer.Option(help="Clinically meaningful difference.")] = None,
    ci_prob: float = 0.95,
    figure: Annotated[
        Path | None, typer.Option(help="Save the prior/likelihood/posterior figure.")
    ] = None,
) -> None:
    """Reanalyse a published result under sceptical, neutral and enthusiastic priors."""
    text = _reanalysis_text(study, outcome, delta=delta, ci_prob=ci_prob, figure=figure)
    console.print(text, highlight=False, soft_wrap=True)


def _reanalysis_text(
    study: str | None = None,
    outcome: str | None = None,
    *,
    delta: float | None = None,
    ci_prob: float = 0.95,
    figure: str | Path | None = None,
) -> str:
    """Text for ``kbayes reanalyse``: the table, one sentence per prior and the provenance.

    Without ``study`` it lists the registry's outcome keys. With ``figure`` the plot of
    :func:`kbayes.plot_reanalysis` is saved there (format from the suffix).
    """
    from kbayes import published
    from kbayes.reanalysis import plot_reanalysis, reanalyse

    if study is None:
        return published.outcomes().to_string(index=False)
    table = reanalyse(study, outcome, delta=delta, ci_prob=ci_prob)
    a = table.attrs
    if figure is not None:
        plot_reanalysis(table).savefig(figure)
    cols = ["prior_mean", "prior_sd", "post_mean", "post_sd", "ci_low", "ci_high"]
    cols += ["p_benefit", "p_harm", "p_beyond"]
    lines = [
        f"{study}: {a['effect']} ({a['scale']}); benefit: effect "
        f"{'>' if a['benefit'] == 'positive' else '<'} 0; meaningful difference {a['delta']:g}",
        table[cols].to_string(float_format=lambda v: f"{v:.3g}"),
        "",
        *table["text"],
        "",
        f"Likelihood: N({a['estimate']:.4g}, {a['se']:.4g}). Approximation: {a['approximation']}",
        f"Source: {a['citation']} doi:{a['doi']}" if a["doi"] else f"Source: {a['citation']}",
    ]
    if figure is not None:
        lines.append(f"Figure written to {figure}")
    return "\n".join(lines)

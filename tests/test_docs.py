"""The documentation is executed and checked against the code.

* Every ```python block of README.md, docs/*.md and kbayes/models/README.md runs, in
  order, in one namespace per file, with the repository root as working directory and
  every figure closed after each block. Other fences (```console, ```text, ```toml, ...)
  are shown, not run. A failure names the file and the line of the block's fence, and the
  traceback points at the Markdown line.
* docs/cli.md documents every command, argument and option of the ``kbayes`` command line
  (introspected from the typer app), and nothing that does not exist.
"""

from __future__ import annotations

import re
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pytest
import typer

matplotlib.use("Agg")

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "kbayes" / "models" / "README.md",
]
EXECUTED = {"python", "py"}
_OPEN = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    source: str  # dedented code, without the fences


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order (CommonMark fences)."""
    blocks, lines, k = [], text.splitlines(), 0
    while k < len(lines):
        opening = _OPEN.match(lines[k])
        if opening is None:
            k += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        language = (opening["info"].split() or [""])[0].lower()
        end = k + 1
        while end < len(lines) and not re.fullmatch(
            rf" *{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]
        ):
            end += 1
        body = [_dedent(ln, indent) for ln in lines[k + 1 : end]]
        blocks.append(Block(k + 1, language, "\n".join(body) + "\n"))
        k = end + 1
    return blocks


def _dedent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading spaces (the fence's indentation, CommonMark)."""
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", DOCS, ids=_id)
def test_python_blocks_run(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every ```python block of the file runs, in order, sharing one namespace."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' mkdtemp() go here
    name = _id(path)
    namespace: dict = {"__name__": "__main__"}
    for block in code_blocks(path.read_text()):
        if block.language not in EXECUTED:
            continue
        try:
            # blank lines first, so that tracebacks give the line in the Markdown file
            exec(compile("\n" * block.line + block.source, name, "exec"), namespace)
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc)[-6:])
            pytest.fail(f"{name}: the python block at line {block.line} failed:\n{detail}")
        finally:
            plt.close("all")


def test_every_fence_names_its_language() -> None:
    """A fence without a language would be neither run nor declared as not runnable."""
    unnamed = [
        f"{_id(path)}:{block.line}"
        for path in DOCS
        for block in code_blocks(path.read_text())
        if not block.language
    ]
    assert not unnamed, f"fenced blocks without a language: {unnamed}"


def test_code_blocks_parser() -> None:
    text = "a\n```python\nif x:\n    y()\n```\n\n  ```text\n   y\n z\n  ```\n````py\n```\n````\n"
    blocks = code_blocks(text)
    assert [(b.line, b.language, b.source) for b in blocks] == [
        (2, "python", "if x:\n    y()\n"),
        (7, "text", " y\nz\n"),
        (11, "py", "```\n"),
    ]


# --- docs/cli.md against the typer app ---------------------------------------------------
CLI_DOC = ROOT / "docs" / "cli.md"
GLOBAL = "Global options"


def cli_sections() -> tuple[dict[str, str], dict[str, str]]:
    """docs/cli.md split at its level-2 headings: (command sections by command name, other
    sections by heading). A command's heading is ``## `kbayes NAME` ``."""
    commands, others, current = {}, {}, None
    for line in CLI_DOC.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            command = re.fullmatch(r"`kbayes (\S+)`", heading)
            current = commands if command else others
            key = command[1] if command else heading
            current[key] = ""
        elif current is not None:
            current[key] += line + "\n"
    return commands, others


def _table_rows(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| --")]


def _documented(param) -> list[str]:
    """How a parameter appears in docs/cli.md: ``--opt`` (and ``--no-opt``), or ``ARG``."""
    if param.param_type_name == "argument":
        return [f"`{param.name.upper()}`"]
    return [f"`{opt}`" for opt in (*param.opts, *param.secondary_opts)]


def _check_params(where: str, params: list, text: str) -> list[str]:
    rows = _table_rows(text)
    problems = []
    for param in params:
        for token in _documented(param):
            row = next((r for r in rows if token in r.split("|")[1]), None)
            if row is None:
                problems.append(f"{where}: {token} is not in a table row of its section")
                continue
            default = param.default
            if default is not None and not isinstance(default, bool) and param.name != "help":
                shown = f"`{default}`"
                if shown not in row:
                    problems.append(f"{where}: {token} row does not give the default {shown}")
    known = {t for p in params for t in _documented(p)} | {"`--help`"}
    for row in rows:
        first = row.split("|")[1]
        problems += [
            f"{where}: {token} is documented but does not exist"
            for token in re.findall(r"`--?[\w-]+`", first)
            if token not in known
        ]
    return problems


def test_cli_reference_is_complete() -> None:
    """Every command, argument and option of ``kbayes`` is in docs/cli.md, and no other."""
    import kbayes.cli

    group = typer.main.get_command(kbayes.cli.app)  # typer's own click: duck-typed below
    sections, others = cli_sections()
    problems = []
    commands, documented = set(group.commands), set(sections)
    problems += [f"command `kbayes {c}` is not documented" for c in sorted(commands - documented)]
    problems += [f"`kbayes {c}` is documented but is not a command" for c in documented - commands]
    if GLOBAL not in others:
        problems.append(f"no '## {GLOBAL}' section")
    else:
        problems += _check_params(GLOBAL, group.params, others[GLOBAL])
    for name in sorted(commands & documented):
        params = [p for p in group.commands[name].params if p.name != "help"]
        problems += _check_params(f"kbayes {name}", params, sections[name])
    assert not problems, "docs/cli.md is out of date:\n" + "\n".join(problems)


# --- docs/models.md against the shipped specs ----------------------------------------------
def _sections(text: str, level: str) -> dict[str, str]:
    """Markdown text split at headings of ``level`` (e.g. "### "): heading -> text."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith(level):
            current = line[len(level) :].strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def test_models_doc_covers_every_spec() -> None:
    """Every prior of every shipped spec is in the priors section of docs/models.md, and
    every estimand in the estimands section of its spec (heading naming the spec)."""
    from kbayes.spec import builtin_specs, load_spec

    chapters = _sections((ROOT / "docs" / "models.md").read_text(), "## ")
    priors = chapters["Priors, and why"]
    estimand_sections = _sections(chapters["Estimands"], "### ")
    problems = []
    for name in builtin_specs():
        spec = load_spec(name)
        problems += [f"{name}: prior `{p}` missing" for p in spec.priors if f"`{p}`" not in priors]
        section = "".join(t for h, t in estimand_sections.items() if f"`{name}`" in h)
        if not section:
            problems.append(f"{name}: no '### ' estimands heading naming `{name}`")
        problems += [
            f"{name}: estimand `{e}` missing from its section"
            for e in spec.estimands
            if f"`{e}`" not in section
        ]
    assert not problems, "docs/models.md is incomplete:\n" + "\n".join(problems)

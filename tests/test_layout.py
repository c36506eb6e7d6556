"""The package's structure (issue 15): no import cycle, no private name taken from another
module, no module over 800 lines, no public name hiding a module, every module listed in
ARCHITECTURE.md, and imports that follow the flow's steps listed there."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import kbayes as kb

PACKAGE = Path(kb.__file__).parent
ROOT = PACKAGE.parent
MODULES = {
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
    for p in PACKAGE.rglob("*.py")
}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken) of every kbayes import in a file, lazy ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kbayes"):
            names = [a.name for a in node.names]
            subs = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in MODULES]
            out += [(s, []) for s in subs] or [(node.module, names)]
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("kbayes")]
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(p) if t != m and t in MODULES} for m, p in MODULES.items()}


def test_no_import_cycle():
    graph, state = _graph(), {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for t in sorted(graph[m]):
            assert state.get(t) != "open", f"import cycle: {' -> '.join([*path, m, t])}"
            if t not in state:
                visit(t, [*path, m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state and m != "kbayes":
            visit(m, [])


def test_no_private_name_is_imported_across_modules():
    taken = [
        f"{m} takes {name} from {source}"
        for m, p in MODULES.items()
        for source, names in _imports(p)
        for name in names
        if name.startswith("_") and source != m
    ]
    assert not taken


def test_no_module_over_800_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 800}
    assert not long


def test_no_public_name_hides_a_module():
    hidden = [
        name
        for name in kb.__all__
        if f"kbayes.{name}" in MODULES and not isinstance(getattr(kb, name), types.ModuleType)
    ]
    assert not hidden


def test_architecture_lists_every_module_and_imports_follow_its_steps():
    """Every module has a row under a step; a module imports only from its own step or
    earlier ones (the cli and the package's __init__ sit on top)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    step_of, step = {}, -1
    for line in text.splitlines():
        if line.startswith("**"):
            step += 1
        for path in re.findall(r"`(kbayes/[\w/]+?)(?:\.py)?/?`", line):
            step_of.setdefault(path.replace("/", "."), step)
    listed = {m: step_of.get(m, step_of.get(m.rsplit(".", 1)[0])) for m in MODULES}
    assert not [m for m, s in listed.items() if s is None and m != "kbayes"], "not listed"
    upward = [
        f"{m} ({listed[m]}) imports {t} ({listed[t]})"
        for m, targets in _graph().items()
        if m not in ("kbayes", "kbayes.cli")
        for t in targets
        if listed[t] > listed[m]
    ]
    assert not upward

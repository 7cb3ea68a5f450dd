"""The package's layout: its import graph (read from the source with `ast`) has no loop, modules
stay small, every subpackage says what flows through it, and project imports sit at the top of
modules (the CLI alone defers them, to answer --help without loading torch).

Run alone with `python -m pytest tests/test_layout.py -q`; `python tests/test_layout.py` prints
the import graph."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "impute_cli"
MAX_LINES = 400
# the commands import the library when they run (a fast --help); the package loads its Python
# API on first use (PEP 562 __getattr__), so that the command line does not import xarray
DEFERRED_IMPORTS_ALLOWED = {"impute_cli.cli", "impute_cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, at module top level?) for every import of impute_cli in `path`.
    `from impute_cli.x import y` counts as an import of impute_cli.x.y when that is a module."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("impute_cli"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in MODULES else node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names if a.name.startswith("impute_cli")]
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(p): p for p in FILES}


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (package __init__ imports of a parent excluded)."""
    return {m: {dep for dep, _ in project_imports(p) if dep in MODULES and dep != m} for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_import_graph_has_no_loop():
    graph = import_graph()
    assert "impute_cli.cli" in graph and graph["impute_cli.cli"], f"no import graph read from {PACKAGE}"
    assert find_cycle(graph) is None


def test_the_loop_finder_finds_a_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_stay_small():
    assert PACKAGE / "cli.py" in FILES, f"no module found under {PACKAGE}"
    long = {module_name(p): n for p in FILES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_subpackage_says_what_flows_through_it():
    inits = sorted(PACKAGE.glob("*/__init__.py"))
    assert inits, f"no subpackage found under {PACKAGE}"
    for init in inits:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 15, f"{init} needs a docstring saying what flows in and out"


def test_project_imports_are_at_the_top_of_modules():
    assert "impute_cli.cli" in MODULES, f"no module found under {PACKAGE}"
    deferred = {m: [d for d, top in project_imports(p) if not top] for m, p in MODULES.items()}
    deferred = {m: d for m, d in deferred.items() if d and m not in DEFERRED_IMPORTS_ALLOWED}
    assert not deferred, f"project imports inside functions: {deferred}"


def test_the_layout_is_by_stage():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"io", "masks", "model", "training", "inference", "uncertainty", "evaluation"} <= subpackages


if __name__ == "__main__":
    for m, deps in sorted(import_graph().items()):
        print(f"{m}: {', '.join(sorted(deps)) or '-'}", file=sys.stdout)

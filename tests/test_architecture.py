"""The shape of the code: a layout that shows the pipeline, no import cycles, short functions,
DuckDB behind engine/duck/, and each sub-package saying what it owns and may import.

``python tests/test_architecture.py`` prints the figures (function lengths, the package graph).
"""

from __future__ import annotations

import ast
import re
import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "engine").rglob("*.py"), *(REPO / "kernels").rglob("*.py"), REPO / "cli.py"])
MAX_LINES = 60
#: Libraries that may be imported inside a function to keep them off the start-up path (duckdb:
#: about 0.1 s, which a run from files does not need; engine/duck/connect.py imports it on use).
HEAVY = ("sklearn", "plotly", "streamlit", "starlette", "dask", "distributed", "scipy", "playwright", "duckdb")
#: engine sub-package -> the engine sub-packages it may import (as each one's docstring says).
LAYERS = {
    "errors": set(), "options": set(), "present": set(), "progress": set(),
    "outputs": set(),
    "synth": {"outputs"},
    "input": {"outputs"},
    "features": {"input", "options"},
    "fit": {"features", "outputs", "options", "input"},
    "duck": {"input", "features", "fit", "outputs", "options", "present"},
    "insight": {"input", "features", "fit", "outputs", "duck", "present", "options"},
    "dashboard": {"input", "features", "fit", "outputs", "duck", "present", "insight", "options", "api"},
    "streaming": {"input", "features", "fit", "outputs", "insight", "options", "progress"},
    "cluster": {"input", "features", "fit", "outputs", "insight", "options", "streaming", "progress"},
    "api": {"input", "features", "fit", "outputs", "duck", "insight", "options", "present", "progress", "streaming",
            "cluster"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, ast.AST, bool]]:
    """(imported module, node, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base]).strip(".")
                found.append((base, child, inner))
                found.extend((f"{base}.{alias.name}", child, inner) for alias in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def local_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, at the top or inside functions."""
    modules = {module_name(p): p for p in SOURCES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for m, _, _ in imports(path) if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def function_lengths() -> list[tuple[int, str]]:
    """(code lines, where) of every function: body lines that are neither blank nor comments,
    the docstring left out."""
    out = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                    body = body[1:]
                code = {i for b in body for i in range(b.lineno, (b.end_lineno or b.lineno) + 1)
                        if lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")}
                out.append((len(code), f"{path.relative_to(REPO)}:{node.lineno} {node.name}"))
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "engine" and len(parts) > 1 else None


def test_the_graph_sees_the_imports_inside_functions() -> None:
    """The cycle check would catch a cycle hidden in a function: a made-up module proves it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    here = {m for m, _, inner in imports(REPO / "cli.py") if inner}
    assert "engine.api" in here  # cli imports the engine inside its commands


def test_no_import_cycles() -> None:
    assert cycles(local_graph()) == []


def test_sub_packages_import_only_the_layers_below() -> None:
    wrong = []
    for module, deps in local_graph().items():
        own = layer(module)
        if own is None:
            continue
        for dep in deps:
            other = layer(dep)
            if other and other != own and other not in LAYERS[own] and other != "errors":
                wrong.append(f"{module} imports {dep}")
    assert wrong == []


def heavy_at_top(module: str) -> bool:
    """Whether a project module imports a heavy library at its top level."""
    path = {module_name(p): p for p in SOURCES}.get(module)
    return path is not None and any(m.split(".")[0] in HEAVY for m, _, inner in imports(path) if not inner)


def in_loading_block(lines: list[str], lineno: int) -> bool:
    """Whether line ``lineno`` (1-based) is in a ``with loading():`` block (``cli.loading``)."""
    indent = len(lines[lineno - 1]) - len(lines[lineno - 1].lstrip())
    for line in reversed(lines[:lineno - 1]):
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            return line.strip() == "with loading():"
    return False


def test_imports_inside_functions_keep_a_heavy_library_off_the_start_up_path() -> None:
    """Allowed only for a heavy library, a project module that imports one, or, in cli.py, the
    engine itself (Polars and numba stay off ``segment --help``), with a one-line comment saying
    so on the line or the line above; in cli.py the engine is imported in a ``with loading():``
    block, whose docstring says it."""
    bad = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        nodes: dict[int, list[str]] = {}
        for name, node, inner in imports(path):
            if inner:
                nodes.setdefault(node.lineno, []).append(name)
        for lineno, names in nodes.items():
            text = lines[lineno - 1] + " " + lines[lineno - 2]
            ok = any(n.split(".")[0] in HEAVY or heavy_at_top(n) or (path.name == "cli.py" and n.startswith("engine"))
                     for n in names)
            said = "#" in text or (path.name == "cli.py" and in_loading_block(lines, lineno))
            if not ok or not said:
                bad.append(f"{path.relative_to(REPO)}:{lineno} {names[0]}")
    assert bad == []


def test_only_engine_duck_imports_duckdb() -> None:
    importers = sorted({module_name(p) for p in SOURCES for m, _, _ in imports(p) if m.split(".")[0] == "duckdb"})
    assert importers and all(m.startswith("engine.duck.") for m in importers), importers


def test_kernels_import_no_polars_duckdb_or_io() -> None:
    for path in (REPO / "kernels").rglob("*.py"):
        roots = {m.split(".")[0] for m, _, _ in imports(path)}
        assert not roots & {"polars", "duckdb", "pyarrow", "engine", "pathlib", "io"}, path


def test_no_function_is_longer_than_sixty_code_lines() -> None:
    long = [f"{where} ({n} lines)" for n, where in function_lengths() if n > MAX_LINES]
    assert long == []


@pytest.mark.parametrize("package", sorted(p.parent.name for p in (REPO / "engine").glob("*/__init__.py")))
def test_each_sub_package_says_what_it_owns_and_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((REPO / "engine" / package / "__init__.py").read_text()))
    assert doc and "May import" in doc, package
    assert package in LAYERS, f"engine/{package} is missing from LAYERS"


def test_the_readme_draws_the_layout_it_has() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## How it works"):]
    for package in (p.parent.name for p in (REPO / "engine").glob("*/__init__.py")):
        assert re.search(rf"\b{package}/", section), f"README's How it works does not show engine/{package}/"


def report() -> None:
    lengths = sorted(n for n, _ in function_lengths())
    q = statistics.quantiles(lengths, n=10)
    print(f"functions: {len(lengths)}; code lines median {statistics.median(lengths):g}, p90 {q[-1]:g}, "
          f"max {lengths[-1]} ({max(function_lengths())[1]})")
    graph = local_graph()
    print(f"modules: {len(graph)}; import edges (top level and inside functions): "
          f"{sum(len(v) for v in graph.values())}; cycles: {cycles(graph) or 'none'}")


if __name__ == "__main__":
    report()

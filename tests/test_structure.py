"""The code's shape stays easy to enter: no import cycle among the project's modules (counting
imports inside functions, ``TYPE_CHECKING`` imports and the task registry's ``module:Class``
strings), what runs inside a trial (``trainables/``) never imports the driver
(``sweeps/``) or the search-space converter (``search_spaces/``), no module or function grows
past what a reader takes in, and the README stays a five-minute read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGES = ("sweeps", "trainables", "search_spaces", "analysis")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, wherever the import statement sits (with the
    packages above it, whose ``__init__`` an import runs), plus the ``'package.module:Class'``
    strings it names (registries)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # Importing a.b.c runs a/__init__ and a/b/__init__ too: each is an import of its own.
        while target:
            if target in modules and target != name:
                found.add(target)
            target = target.rpartition(".")[0]

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                add(f"{base}.{alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = re.fullmatch(r"([a-z_][\w.]*):[A-Za-z_]\w*", node.value)
            if m:
                add(m.group(1))
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_trial_code_does_not_import_the_driver():
    edges = graph()
    bad = {(a, b) for a, targets in edges.items() if a.startswith("trainables")
           for b in targets if b.startswith(("sweeps", "search_spaces", "analysis"))}
    assert bad == set()


MAX_MODULE_LINES = 520  # about 500
MAX_FUNCTION_LINES = 80
MAX_README_CHARS = 12_000


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_no_module_or_function_is_too_long_to_read():
    long_modules, long_functions = [], []
    for path in _sources():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append((str(path.relative_to(REPO)), text.count("\n")))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append((str(path.relative_to(REPO)), node.name, lines))
    assert long_modules == [] and long_functions == []


def test_the_readme_is_a_five_minute_read():
    assert len((REPO / "README.md").read_text()) < MAX_README_CHARS

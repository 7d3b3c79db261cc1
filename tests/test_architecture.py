"""The package's shape: the tree, its ``__init__.py`` maps and the docs' architecture page
agree; packages depend only on those below them; no module imports itself in a circle;
benchmarks and tests stay apart; no module grows past 400 lines."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import stream_forecaster

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "stream_forecaster"
ARCHITECTURE = REPO / "docs" / "concepts" / "architecture.md"
#: The packages in their layers: each may import only those before it.
LAYERS = (
    "settings",
    "wire",
    "kafka",
    "state",
    "scoring",
    "data",
    "model",
    "monitoring",
    "serving",
    "training",
    "retraining",
    "simulate",
    "cli",
)
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> Iterator[str]:
    """The modules ``path`` imports at run time (not under ``if TYPE_CHECKING``), wherever
    in the file; ``from package import module`` names the module."""
    known = modules()
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in known else node.module


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_packages_import_only_packages_below_them() -> None:
    wrong = []
    for module, path in modules().items():
        mine = package_of(module)
        if mine is None:
            continue
        for imported in imports(path):
            theirs = package_of(imported) if imported.startswith("stream_forecaster.") else None
            if theirs and theirs != mine and LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{module} imports {imported} ({theirs} is above {mine})")
    assert not wrong, "\n".join(wrong)
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(LAYERS)


def test_no_module_imports_itself_in_a_circle() -> None:
    known = modules()
    graph = {m: {i for i in imports(p) if i in known and i != m} for m, p in known.items()}
    done: set[str] = set()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circles.append(" -> ".join([*path[path.index(module) :], module]))
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize(("folder", "other"), [("benchmarks", "tests"), ("tests", "benchmarks")])
def test_benchmarks_and_tests_do_not_import_each_other(folder: str, other: str) -> None:
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for name in imports(path)
        if name == other or name.startswith(f"{other}.")
    ]
    assert not offenders, "\n".join(offenders)


def test_no_module_of_the_package_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_architecture_page_names_every_module_and_only_modules_that_exist() -> None:
    page = ARCHITECTURE.read_text()
    paths = re.findall(r"`([a-z_]+/[a-z_/]+\.py)`", page)
    named = {path for path in paths if path.split("/")[0] in LAYERS}
    actual = {
        str(path.relative_to(PACKAGE))
        for name, path in modules().items()
        if path.name != "__init__.py" and package_of(name)
    } | {"data/samples/__init__.py"}
    assert actual - named == set(), f"not on the architecture page: {sorted(actual - named)}"
    assert named - actual == set(), f"on the page, not in the tree: {sorted(named - actual)}"
    for package in LAYERS:
        assert f"| `{package}` |" in page, f"the page's package table lacks {package}"


def test_each_package_map_names_its_modules() -> None:
    for package in LAYERS:
        folder = PACKAGE / package
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        for path in folder.glob("*.py"):
            if path.name != "__init__.py":
                assert f"``{path.stem}``" in doc, f"{package}/__init__.py does not name {path.stem}"


def test_the_public_api_resolves_and_imports_nothing_heavy_up_front() -> None:
    for name in stream_forecaster.__all__:
        assert getattr(stream_forecaster, name) is not None, name
    code = (
        "import sys, stream_forecaster; "
        "heavy = [m for m in ('numpy', 'kafka', 'onnxruntime', 'tensorflow') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_every_public_name_comes_from_the_module_the_map_names() -> None:
    for name, module in stream_forecaster._PUBLIC.items():
        assert getattr(importlib.import_module(module), name) is getattr(stream_forecaster, name)

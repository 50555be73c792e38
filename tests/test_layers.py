"""The layering rules: precision_gym <- agents <- training <- benchmarks; no import runs
upwards, no two modules import each other (directly or round a longer circle, at module top or
inside a function), and no package, benchmark, example or script imports the tests."""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

FORBIDDEN = {"precision_gym": {"agents", "training"}, "agents": {"training"}}
#: the modules of these folders form the graph that must have no circle
GRAPH_PACKAGES = ("precision_gym", "agents", "training", "benchmarks")
#: code that must not import anything under tests/
NOT_TESTS = ("precision_gym", "agents", "training", "benchmarks", "examples", "scripts")


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    bad = [
        f"{path.relative_to(ROOT)} imports {mod}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for mod in _imports(path)
        if mod in FORBIDDEN[package]
    ]
    assert not bad, bad


def _module_name(path, root=ROOT):
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path, module):
    """Every module name ``path`` imports anywhere in it (functions included): ``import a.b``,
    ``from a import b`` (as ``a.b``: a submodule or a name of ``a``), relative imports resolved,
    and ``importlib.import_module("a.b")`` with a literal name."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def _import_graph(root=ROOT, packages=GRAPH_PACKAGES):
    """``{module: modules of the graph it imports}`` over ``packages``. ``from a import b``
    counts as an import of ``a.b`` when that is a module, else of ``a``; a submodule's
    implicit import of its parent package (already being imported) does not count."""
    paths = {
        _module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }

    def known(name):
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    return {
        module: sorted({known(n) for n in _imported_names(path, module)} - {"", module})
        for module, path in paths.items()
    }


def _find_circle(graph):
    """One import circle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(module, path):
        state[module] = "open"
        for other in graph.get(module, ()):
            if state.get(other) == "open":
                return [*path[path.index(other) :], other]
            if other not in state and (circle := visit(other, [*path, other])):
                return circle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module, [module])):
            return circle
    return None


def test_find_circle_reports_the_circle():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": []}
    assert _find_circle(graph) == ["a", "b", "c", "a"]
    assert _find_circle({"a": ["b"], "b": ["c"], "c": []}) is None


def test_import_graph_sees_circles_hidden_in_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("import importlib\n\nimportlib.import_module('pkg.a')\n")
    graph = _import_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == ["pkg.sub.b"] and graph["pkg.sub.b"] == ["pkg.c"]
    assert _find_circle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


def test_no_import_circle():
    circle = _find_circle(_import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_only_the_entry_points_import_the_cli_main():
    importers = [m for m, deps in _import_graph().items() if "training.cli.main" in deps]
    library = [m for m in importers if not m.startswith("benchmarks.")]
    assert library == ["training.cli.__main__"], importers


def test_package_and_benchmark_code_never_imports_the_tests():
    test_modules = {"tests", *(path.stem for path in (ROOT / "tests").rglob("*.py"))}
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in NOT_TESTS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in _imported_names(path, _module_name(path))
        if name.split(".")[0] in test_modules
    ]
    assert not bad, bad

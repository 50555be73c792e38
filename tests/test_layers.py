"""The layering rule: precision_gym <- agents <- training; no import runs upwards."""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

FORBIDDEN = {"precision_gym": {"agents", "training"}, "agents": {"training"}}


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

"""The layout rules of docs/architecture.md, checked on the source: modules a person reads in one
sitting, no private names reached across modules, and imports that run one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("landscape", "ensembles", "viz", "cli")
# What each package may import of ours (docs/architecture.md, "Layers").
ALLOWED = {
    "landscape": {"landscape"},
    "ensembles": {"ensembles", "landscape"},
    "viz": {"viz", "landscape"},
    "cli": {"cli", "ensembles", "viz", "landscape"},
}
# Inside landscape, the layers (docs/architecture.md, "Layers"): what each must not import.
BELOW = {
    "landscape.assets": ("landscape.engine", "landscape.grid", "landscape.surfaces"),
    "landscape.engine": ("landscape.assets", "landscape.grid", "landscape.surfaces"),
    "landscape.grid": ("landscape.surfaces",),
}
VIZ_MAY_IMPORT = ("landscape.results", "landscape.rounding")  # pure renderers: result types in, figures out
MAX_MODULE_LINES, MAX_CLASS_LINES = 300, 250


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in ``tree``, at any depth."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_reads_in_one_sitting(path):
    tree = ast.parse(path.read_text())
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES, f"{path.name} is over {MAX_MODULE_LINES} lines"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"class {node.name} has {lines} lines"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_crosses_a_module_and_imports_run_one_way(path):
    package = path.relative_to(ROOT).parts[0]
    for module, names in _imports(ast.parse(path.read_text())):
        top = module.split(".")[0]
        if top not in PACKAGES:
            continue
        assert top in ALLOWED[package], f"{package} must not import {module}"
        if package == "viz" and top == "landscape":
            assert module in VIZ_MAY_IMPORT, f"viz must not import {module}"
        here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for layer, forbidden in BELOW.items():
            if here.startswith(layer + "."):
                assert not module.startswith(forbidden), f"{layer} must not import {module}"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"imports private {private} from {module}"


def test_the_rules_catch_what_they_are_for(tmp_path):
    """The checks above fail on a module that breaks them."""
    bad = ast.parse("from landscape.engine.core import _hidden\nimport cli.main\n")
    imports = _imports(bad)
    assert ("landscape.engine.core", ["_hidden"]) in imports and ("cli.main", []) in imports
    assert "cli" not in ALLOWED["landscape"]

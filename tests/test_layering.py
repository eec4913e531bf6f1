"""The layering the store rewrite promised: stages meet only through aemg.store, no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

from aemg.datasets.formats import FORMATS
from aemg.harmonize.readers import READERS

PACKAGE = Path(__file__).resolve().parents[1] / "aemg"
STORAGE_LIBRARIES = {"zarr", "icechunk"}
STORE_CALLS = {"open_zarr", "open_datatree", "open_mfdataset"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py")) if folder else sorted(PACKAGE.rglob("*.py"))


def test_every_format_a_spec_may_name_has_one_reader() -> None:
    assert set(FORMATS) == set(READERS)


def test_specs_do_not_import_the_readers() -> None:
    """The spec checked its format against READERS by a late import: spec <-> readers was a circle."""
    assert not any(name.startswith("aemg.harmonize") for name in _imports(PACKAGE / "datasets" / "spec.py"))


def test_tokenize_never_imports_harmonize() -> None:
    offenders = {p.name: sorted(n for n in _imports(p) if n.startswith("aemg.harmonize")) for p in _modules("tokenize")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_store_package_touches_storage() -> None:
    """Every read or write of a store goes through aemg.store: no zarr/icechunk import, no xarray opener elsewhere."""
    offenders = []
    for path in _modules(""):
        if path.is_relative_to(PACKAGE / "store"):
            continue
        tree = ast.parse(path.read_text())
        offenders += [f"{path.name}: import {n}" for n in _imports(path) if n.split(".")[0] in STORAGE_LIBRARIES]
        offenders += [f"{path.name}:{node.lineno} {node.func.attr}" for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STORE_CALLS]
    assert offenders == []

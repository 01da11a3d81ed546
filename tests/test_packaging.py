"""The package declares what it imports: a dependency that only happens to be installed breaks a fresh machine."""
from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _guarded(node: ast.Try) -> bool:
    """A ``try`` whose handler catches ImportError: the import in it is optional by design."""
    names = set()
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names.update(getattr(k, "id", None) for k in kinds)
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _top_level_imports(folder: Path) -> set[str]:
    """Top-level module names imported anywhere under ``folder``, except optional (guarded) imports."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Try) and _guarded(node):
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    for path in folder.rglob("*.py"):
        visit(ast.parse(path.read_text()))
    return names


def _declared(extra: str | None = None) -> set[str]:
    """Normalised distribution names of ganforge's requirements (the base ones, plus one extra's)."""
    out = set()
    for req in metadata.requires("ganforge") or []:
        name, _, marker = req.partition(";")
        in_extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if in_extra is None or (extra is not None and in_extra.group(1) == extra):
            out.add(re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0].lower().replace("_", "-"))
    return out


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("ganforge", "__future__")}


@pytest.mark.parametrize("folder, extra", [("ganforge", None), ("scripts", None), ("tests", "test")])
def test_every_imported_package_is_declared(folder, extra):
    try:
        dists = metadata.packages_distributions()
        metadata.distribution("ganforge")
    except metadata.PackageNotFoundError:
        pytest.skip("ganforge is not installed (pip install -e .)")
    declared = _declared(extra)
    missing = {}
    local = {p.stem for p in (ROOT / folder).rglob("*.py")}  # the folder's own modules (tests import conftest)
    for name in _third_party(_top_level_imports(ROOT / folder)) - local:
        providers = {d.lower().replace("_", "-") for d in dists.get(name, [name])}
        if not providers & declared:
            missing[name] = sorted(providers)
    assert not missing, f"imported by {folder}/ but not declared in pyproject.toml: {missing}"

"""The tree stays ruff- and mypy-clean, and the consensus package stays free of hamgr imports."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_clean() -> None:
    out = _run("ruff", "check", "hamgr", "tests", "bench")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_clean() -> None:
    out = _run("mypy", "hamgr")
    assert out.returncode == 0, out.stdout + out.stderr


def test_raft_package_imports_nothing_else_from_hamgr() -> None:
    leaks = []
    for path in sorted((ROOT / "hamgr" / "raft").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            leaks += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.startswith("hamgr") and not n.startswith("hamgr.raft")
            ]
    assert leaks == []


# Which parts of hamgr/raft each part may import (besides itself and `hamgr.raft.errors`), as the
# subpackages' docstrings say. The core imports neither the WAL, the network nor the server; the
# KV imports neither the network nor the server; nothing but the simulators imports them.
RAFT_PARTS = {
    "errors": set(),
    "core": set(),
    "wal": {"core"},
    "kv": set(),
    "net": {"core", "kv"},
    "server": {"core", "wal", "net", "kv"},
    "client": {"net", "kv"},
    "sim": {"core", "wal", "net", "kv", "server", "client"},
}


def _raft_part(module: str) -> str | None:
    """The part of hamgr/raft a dotted module name falls in (None outside hamgr.raft)."""
    parts = module.split(".")
    if parts[:2] != ["hamgr", "raft"]:
        return None
    return parts[2] if len(parts) > 2 else ""


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module a file imports, `from hamgr.raft import kv` counting as hamgr.raft.kv."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                names.append("." * node.level + node.module)
            elif node.module == "hamgr.raft":
                names += [f"hamgr.raft.{a.name}" for a in node.names]
            else:
                names.append(node.module)
    return names


def test_raft_parts_import_only_the_parts_below_them() -> None:
    raft = ROOT / "hamgr" / "raft"
    found = {p.stem for p in raft.iterdir() if p.name not in ("__init__.py", "__pycache__")}
    assert found == set(RAFT_PARTS), "a new part of hamgr/raft: add it to RAFT_PARTS, say why"
    wrong = []
    for path in sorted(raft.rglob("*.py")):
        rel = path.relative_to(raft)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        allowed = RAFT_PARTS[own] | {own, "errors"}
        for name in _imported_modules(ast.parse(path.read_text())):
            part = _raft_part(name)
            if name.startswith("."):
                wrong.append(f"{rel}: relative import {name}")
            elif part is not None and part not in allowed:
                wrong.append(f"{rel}: imports {name} ({own} may import {sorted(allowed)})")
    assert wrong == []


def test_nothing_outside_the_simulators_imports_them() -> None:
    wrong = []
    for top in ("hamgr", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.is_relative_to(ROOT / "hamgr" / "raft" / "sim"):
                continue
            for name in _imported_modules(ast.parse(path.read_text())):
                if _raft_part(name) == "sim":
                    wrong.append(f"{path.relative_to(ROOT)}: imports {name}")
    assert wrong == []


def test_raft_subpackages_say_their_job_and_export_nothing() -> None:
    for init in sorted((ROOT / "hamgr" / "raft").glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree) or ""
        where = init.relative_to(ROOT)
        assert "May import:" in doc, f"{where}: the docstring must say what the part may import"
        assert len(tree.body) == 1, f"{where}: only a docstring (no re-exports)"

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


# Which parts of hamgr each part outside hamgr/raft must not import, as hamgr/__init__.py and the
# packages' docstrings say: nothing but `python -m hamgr` imports the CLI; nothing below the agent
# (and not the fencer) imports the agent; the fencer imports neither the HA loop nor the store.
# "top" is a shared module at the top of hamgr/ (clock, lsn, tls, apiview).
NOT_IMPORTED_BY = {
    "raft": set(),  # checked above: it imports nothing outside hamgr.raft
    "config": {"agent", "cli", "fencer", "ha", "dcs", "postgres"},
    "postgres": {"agent", "cli", "fencer", "ha", "dcs"},
    "dcs": {"agent", "cli", "fencer", "ha", "postgres"},
    "ha": {"agent", "cli"},
    "fencer": {"agent", "cli", "ha", "dcs", "postgres", "raft", "tls", "apiview", "lsn"},
    "agent": {"cli"},
    "cli": set(),
    "top": {"agent", "cli", "fencer"},
}
# The fencer process runs on the standard library and these only (it must not get stuck on
# anything, and it starts as a process of its own).
FENCER_PROCESS = {"process", "protocol", "guard", "postmasterproc", "__main__"}
FENCER_PROCESS_MAY_IMPORT = {
    "hamgr",
    "hamgr.clock",
    "hamgr.fencer.process",
    "hamgr.fencer.protocol",
    "hamgr.fencer.postmasterproc",
}
SHARED_TOP = {"clock", "lsn", "tls", "apiview"}


def _hamgr_part(module: str) -> str | None:
    """The part of hamgr a dotted module name falls in: a package's name, or a top module's."""
    parts = module.split(".")
    if parts[0] != "hamgr" or len(parts) == 1:
        return None
    return parts[1]


def _hamgr_imports(path: pathlib.Path) -> list[str]:
    """Every hamgr module a file imports, `from hamgr import clock` counting as hamgr.clock."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "hamgr":
            names += [f"hamgr.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return [n for n in names if n == "hamgr" or n.startswith("hamgr.")]


def test_only_shared_modules_sit_at_the_top_of_hamgr() -> None:
    top = {p.stem for p in (ROOT / "hamgr").glob("*.py")} - {"__init__", "__main__"}
    assert top == SHARED_TOP, (
        "a module at the top of hamgr/: move it into its part, or say in hamgr/__init__.py "
        "which parts share it and add it to SHARED_TOP"
    )


def test_parts_outside_raft_import_no_part_above_them() -> None:
    wrong = []
    for path in sorted((ROOT / "hamgr").rglob("*.py")):
        rel = path.relative_to(ROOT / "hamgr")
        if rel.parts[0] == "raft" or (rel.name == "__main__.py" and len(rel.parts) == 1):
            continue  # raft: checked above; `python -m hamgr` runs the CLI
        own = rel.parts[0] if len(rel.parts) > 1 else "top"
        for name in _hamgr_imports(path):
            part = _hamgr_part(name)
            if part in NOT_IMPORTED_BY[own]:
                wrong.append(f"hamgr/{rel}: imports {name} ({own} must not import {part})")
    assert wrong == []


def test_the_fencer_process_imports_only_the_stdlib_and_the_clock() -> None:
    wrong = []
    for stem in sorted(FENCER_PROCESS):
        path = ROOT / "hamgr" / "fencer" / f"{stem}.py"
        wrong += [
            f"{path.relative_to(ROOT)}: imports {n}"
            for n in _hamgr_imports(path)
            if n not in FENCER_PROCESS_MAY_IMPORT
        ]
    assert wrong == []


def test_part_packages_say_their_job_and_export_nothing() -> None:
    for part in ("agent", "fencer", "cli"):
        init = ROOT / "hamgr" / part / "__init__.py"
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree) or ""
        where = init.relative_to(ROOT)
        assert "May import:" in doc, f"{where}: the docstring must say what the part may import"
        assert len(tree.body) == 1, f"{where}: only a docstring (no re-exports)"

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
                f"{path.name}: {n}"
                for n in names
                if n.startswith("hamgr") and not n.startswith("hamgr.raft")
            ]
    assert leaks == []

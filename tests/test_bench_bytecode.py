"""Benches run by hand compile the project's stale bytecode first (bench/project_bytecode.py), as ``make bench``
does: where PYTHONDONTWRITEBYTECODE is set, every command a bench times would otherwise compile each modelarc
module edited since the last ``compileall`` again, and the bench would count that as modelarc's time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
HAND_RUN = ("run.py", "startup.py", "floors.py", "http_pull.py", "load.py", "sharded.py")


def _compiled_from_source(root: Path, module: str) -> bool:
    """Whether importing ``module`` from ``root`` without writing bytecode compiles its source (its .pyc stale)."""
    done = subprocess.run(
        [sys.executable, "-v", "-c", f"import {module}"],
        cwd=root,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    # ``python -v`` says "code object from <source path>" for a module compiled from source, and names the .pyc
    # (quoted) for one loaded from bytecode
    return f"code object from {root}" in done.stderr


def test_compile_project_refreshes_stale_bytecode(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from project_bytecode import compile_project
    finally:
        sys.path.remove(str(BENCH))
    package = tmp_path / "archive"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "thing.py").write_text("VALUE = 1\n")
    assert compile_project(tmp_path)
    assert not _compiled_from_source(tmp_path, "archive.thing")
    (package / "thing.py").write_text("VALUE = 22\n")  # edited since: its .pyc is stale
    later = (package / "thing.py").stat().st_mtime + 10  # compileall compares whole seconds only
    os.utime(package / "thing.py", (later, later))
    assert _compiled_from_source(tmp_path, "archive.thing")
    assert compile_project(tmp_path)
    assert not _compiled_from_source(tmp_path, "archive.thing")


@pytest.mark.parametrize("script", HAND_RUN)
def test_a_bench_run_by_hand_compiles_the_project_before_it_times_anything(script: str) -> None:
    tree = ast.parse((BENCH / script).read_text())
    main_block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test)
    )
    first_call = next(
        stmt.value for stmt in main_block.body if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
    )
    assert ast.unparse(first_call.func) == "compile_project", ast.unparse(main_block)

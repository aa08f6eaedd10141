"""Run import-linter against the real package layout.

pyproject.toml maps `modelarc.storage` to `storage/`, `modelarc.cli` to `cli/` and so on
(`[tool.setuptools.package-dir]`). import-linter (grimp) finds a package by walking the directory
of its root package, so it sees only `modelarc/` and reports every mapped layer as missing, or
worse, checks nothing. This script copies the sources into a temporary tree shaped like the
installed package and runs `lint-imports` there, with the contracts from pyproject.toml.

Usage: python scripts/ci/lint_imports.py [lint-imports options]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_tree(dest: Path) -> None:
    """Copy every mapped package directory to where the installed package would have it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    # Shortest names first, so a parent package exists before its children are copied in.
    for package, source in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        target = dest.joinpath(*package.split("."))
        shutil.copytree(
            ROOT / source,
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="modelarc-lint-imports-") as tmp:
        build_tree(Path(tmp))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")]))
        lint_imports = Path(sys.executable).with_name("lint-imports")
        # --no-cache: the tree is new every run, a cache keyed on it would only grow.
        command = [str(lint_imports), "--no-cache", "--config", str(ROOT / "pyproject.toml"), *sys.argv[1:]]
        return subprocess.run(command, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

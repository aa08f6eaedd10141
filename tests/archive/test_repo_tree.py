"""A snapshot's git ids (archive/catalog/repo_tree.py) are the ones git itself computes for the same files, each
stored as its Git LFS pointer: checked against the real `git` on names whose order git defines its own way."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from modelarc.archive.catalog.repo_tree import RepoTree, lfs_pointer

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

# git sorts a folder as if its name ended in "/": "a.b" and "a-c" come before the folder "a" ('-' and '.' sort
# before '/'), "a0" after it; names with spaces and non-ASCII characters are compared byte by byte (UTF-8).
FILES = [
    "a.b",
    "a-c",
    "a/x",
    "a/y/z.bin",
    "a0",
    "b c.txt",
    "é/ü.json",
    "z/a/b/c/d/e.txt",
    "model.safetensors",
]
NESTED = [
    f"n/{p}" for p in FILES
]  # the same order rules one level down, where the folder has an id of its own


def pointer(sha256: str, size: int) -> bytes:
    """A Git LFS pointer file, written out here from the spec (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md)
    rather than by the code under test."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_ids(root: Path, files: dict[str, tuple[int, str]]) -> dict[str, str]:
    """git's id of every file and folder of a work tree holding each file's LFS pointer."""
    for path, (size, sha) in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(pointer(sha, size))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    tree = subprocess.run(["git", "-C", str(root), "write-tree"], check=True, capture_output=True, text=True)
    listed = subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "core.quotePath=false",
            "ls-tree",
            "-r",
            "-t",
            "-z",
            tree.stdout.strip(),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {entry.split("\t")[1]: entry.split()[2] for entry in listed.split("\0") if entry}


def test_file_and_folder_ids_are_gits(tmp_path: Path) -> None:
    files = {p: (len(p) * 1000 + 7, hashlib.sha256(p.encode()).hexdigest()) for p in FILES + NESTED}
    tree = RepoTree((p, size, sha) for p, (size, sha) in files.items())
    ours = {e.path: e.oid for e in tree.listing("", recursive=True)}
    assert ours == git_ids(tmp_path, files)


def test_pointer_sizes_are_the_pointer_files() -> None:
    sha = "ab" * 32
    for size in (0, 7, 10**12):
        assert lfs_pointer(sha, size) == pointer(sha, size)


def test_a_folder_lists_its_folders_then_its_files() -> None:
    tree = RepoTree((p, 1, "0" * 64) for p in FILES)
    assert [e.path for e in tree.listing("")] == [
        "a", "z", "é", "a-c", "a.b", "a0", "b c.txt", "model.safetensors"
    ]  # fmt: skip
    assert [e.path for e in tree.listing("a")] == ["a/y", "a/x"]
    assert tree.is_folder("z/a/b") and not tree.is_folder("a/x") and tree.get("a/y/z.bin") is not None

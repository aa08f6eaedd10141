"""A snapshot's files as a git tree, the way Hub clients list repositories: folders, files and their git ids.

modelarc keeps every file by its sha256 and has no git blobs, so every file is presented as a Git LFS file: its
``lfs`` record carries the sha256 and size, and its git id (``oid``, ``blobId``) is the id of its LFS pointer file,
the blob git would store for it. A folder's ``oid`` is the git tree id over those ids. Both are computed from sizes
and sha256s only, never by reading file contents, and are what git would compute for the same tree. Clients check
LFS files by sha256 (``verify_repo_checksums``), so every file can be checked against what the archive recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

LFS_POINTER_VERSION = "https://git-lfs.github.com/spec/v1"


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file for content with this sha256 and size (git-lfs spec v1)."""
    return f"version {LFS_POINTER_VERSION}\noid sha256:{sha256}\nsize {size}\n".encode()


def git_object_id(kind: str, payload: bytes) -> str:
    """git's id of an object: sha1 over ``<kind> <length>\\0`` and the payload."""
    return hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class TreeEntry:
    """A file or folder of a snapshot; ``sha256`` and ``size`` are the file's (a folder has size 0, no sha256)."""

    path: str
    is_dir: bool
    oid: str  # git id: the LFS pointer blob of a file, the tree of a folder
    size: int = 0
    sha256: str | None = None

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256 or "", self.size))


def file_entry(path: str, size: int, sha256: str) -> TreeEntry:
    """A file as the tree lists it (its git id is its LFS pointer's), without building the whole tree."""
    return TreeEntry(path, False, git_object_id("blob", lfs_pointer(sha256, size)), size, sha256)


class RepoTree:
    """Every file and folder of one snapshot, with git ids; built once per request from the catalog's file rows."""

    def __init__(self, files: Iterable[tuple[str, int, str]]) -> None:
        """``files``: (path, size, sha256) of every file; paths are normalised relative posix paths."""
        self._entries: dict[str, TreeEntry] = {}
        self._children: dict[str, list[str]] = {"": []}
        for path, size, sha256 in sorted(files):
            parent = ""
            for part in path.split("/")[:-1]:
                folder = f"{parent}/{part}" if parent else part
                if folder not in self._children:
                    self._children[folder] = []
                    self._children[parent].append(folder)
                parent = folder
            self._children[parent].append(path)
            self._entries[path] = file_entry(path, size, sha256)
        # deepest folders first, so each folder's sub-folders have their ids (no recursion: paths can be deep)
        for folder in sorted(self._children, key=lambda f: -f.count("/") if f else 1):
            oid = self._tree_oid(folder)
            if folder:
                self._entries[folder] = TreeEntry(folder, True, oid)

    def _tree_oid(self, folder: str) -> str:
        """git's tree id of ``folder``: entries sorted as git sorts them (a folder compares as ``name/``)."""
        rows = []
        for child in self._children[folder]:
            name = child.rsplit("/", 1)[-1]
            if child in self._children:
                rows.append((name + "/", b"40000 " + name.encode(), self._entries[child].oid))
            else:
                rows.append((name, b"100644 " + name.encode(), self._entries[child].oid))
        payload = b"".join(mode_name + b"\0" + bytes.fromhex(oid) for _key, mode_name, oid in sorted(rows))
        return git_object_id("tree", payload)

    def get(self, path: str) -> TreeEntry | None:
        return self._entries.get(path.strip("/"))

    def is_folder(self, path: str) -> bool:
        return path.strip("/") in self._children

    def oid(self, path: str) -> str | None:
        """The git id of ``path`` in this tree (None: absent), for telling whether it changed between snapshots."""
        entry = self._entries.get(path)
        return entry.oid if entry else None

    def listing(self, folder: str, *, recursive: bool = False) -> list[TreeEntry]:
        """The folder's entries, its folders first and then its files, each sorted by path; ``recursive``: every
        file and folder below it, sorted by path. ``folder`` must be one (``is_folder``)."""
        folder = folder.strip("/")
        if recursive:
            prefix = f"{folder}/" if folder else ""
            return [entry for path, entry in sorted(self._entries.items()) if path.startswith(prefix)]
        children = self._children[folder]
        folders = sorted(c for c in children if c in self._children)
        files = sorted(c for c in children if c not in self._children)
        return [self._entries[c] for c in folders + files]

    def __len__(self) -> int:
        return len(self._entries)

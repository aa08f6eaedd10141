"""Snapshot manifests: the canonical description of every byte of a model folder (docs/FORMAT.md, "Manifest").

A file is an ordered list of parts that, concatenated, give the file. A part is the concatenation of its chunks,
each an object in the store. Safetensors files have a ``header`` part followed by one ``tensor`` part per tensor in
file order; every other file is one ``blob`` part. The snapshot id is ``sha256:`` + the hex sha256 of the
canonical JSON bytes, which are also stored as an object, so the store alone can rebuild every file.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelarc.errors import IntegrityError, UsageError
from modelarc.registry.refs import SnapshotId
from modelarc.storage.ids import ObjectId

MANIFEST_FORMAT = "modelarc.manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Chunk:
    id: ObjectId
    length: int


@dataclass(frozen=True)
class Part:
    kind: str  # "header" | "tensor" | "blob"
    offset: int
    length: int
    chunks: tuple[Chunk, ...]
    name: str | None = None  # tensor parts only
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    @property
    def digest(self) -> str:
        """Identity of the part's bytes without re-reading them: equal digests mean equal bytes."""
        return hashlib.sha256(",".join(c.id for c in self.chunks).encode()).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str  # posix, relative, normalised
    size: int
    sha256: str
    kind: str  # "safetensors" | "blob"
    parts: tuple[Part, ...]

    def tensors(self) -> Iterator[Part]:
        return (p for p in self.parts if p.kind == "tensor")

    @property
    def header_length(self) -> int:
        """Bytes of the file's own header part (its first part, in a safetensors or GGUF file); 0 without one."""
        return self.parts[0].length if self.parts and self.parts[0].kind == "header" else 0


@dataclass(frozen=True)
class SnapshotManifest:
    files: tuple[FileEntry, ...]
    _canonical: bytes = field(default=b"", compare=False, repr=False)

    def canonical_bytes(self) -> bytes:
        return self._canonical or canonical_json(self.to_json())

    @property
    def snapshot_id(self) -> SnapshotId:
        return SnapshotId.of(self.canonical_bytes())

    def object_ids(self) -> set[ObjectId]:
        return {c.id for f in self.files for p in f.parts for c in p.chunks}

    @property
    def logical_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def tensors(self) -> Iterator[tuple[FileEntry, Part]]:
        for f in self.files:
            for p in f.tensors():
                yield f, p

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "kind": f.kind,
                    "parts": [_part_json(p) for p in f.parts],
                }
                for f in self.files
            ],
        }

    @classmethod
    def from_bytes(cls, data: bytes, *, expected_id: str | None = None) -> SnapshotManifest:
        if expected_id is not None:
            actual = SnapshotId.of(data)
            if actual != expected_id:
                raise IntegrityError(f"manifest of {expected_id} hashes to {actual}")
        try:
            doc = json.loads(data)
            if doc.get("format") != MANIFEST_FORMAT or doc.get("version") != MANIFEST_VERSION:
                raise IntegrityError(
                    f"unsupported manifest format {doc.get('format')!r} v{doc.get('version')!r}"
                )
            files = tuple(
                FileEntry(
                    path=check_relative_path(f["path"]),
                    size=int(f["size"]),
                    sha256=str(f["sha256"]),
                    kind=str(f["kind"]),
                    parts=tuple(_part_from_json(p) for p in f["parts"]),
                )
                for f in doc["files"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed manifest: {exc}") from None
        except RecursionError:  # "[[[[..." nested deeper than the parser's stack (a hostile remote's manifest)
            raise IntegrityError("malformed manifest: JSON nested too deeply") from None
        _check_paths_do_not_clash([f.path for f in files])
        return cls(files=files, _canonical=bytes(data))


def _part_json(p: Part) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": p.kind,
        "offset": p.offset,
        "length": p.length,
        "chunks": [{"id": str(c.id), "length": c.length} for c in p.chunks],
    }
    if p.kind == "tensor":
        out.update(name=p.name, dtype=p.dtype, shape=list(p.shape or ()))
    return out


def _part_from_json(p: dict[str, Any]) -> Part:
    shape = tuple(int(d) for d in p["shape"]) if "shape" in p else None
    return Part(
        kind=str(p["kind"]),
        offset=int(p["offset"]),
        length=int(p["length"]),
        chunks=tuple(Chunk(ObjectId(c["id"]), int(c["length"])) for c in p["chunks"]),
        name=p.get("name"),
        dtype=p.get("dtype"),
        shape=shape,
    )


def canonical_json(doc: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same document always gives the same bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# The longest file or folder name (one path segment) Linux, macOS and Windows file systems can create, in bytes of
# UTF-8 (NAME_MAX on Linux and macOS). A writer refuses longer names so that every archived path can be restored.
MAX_NAME_BYTES = 255


def path_problem(path: object) -> str | None:
    """Why ``path`` cannot be archived and restored safely, or ``None`` when it can.

    Paths are UTF-8 because the manifest is JSON; a str holding lone surrogates (how Python presents undecodable
    bytes of a file name) is refused rather than smuggled into a name the restore would create as other bytes.
    """
    if not isinstance(path, str) or not path:
        return "empty or not a string"
    if "\\" in path or "\x00" in path:
        return "contains a backslash or NUL"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    if posixpath.normpath(path) != path or any(seg in ("", ".", "..") for seg in path.split("/")):
        return "is not a normalised relative path"
    try:
        segments = [seg.encode("utf-8") for seg in path.split("/")]
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    longest = max(segments, key=len)
    if len(longest) > MAX_NAME_BYTES:
        return f"has a name of {len(longest)} bytes (at most {MAX_NAME_BYTES} can be restored)"
    return None


def check_relative_path(path: str) -> str:
    """Refuse any path that could escape the destination folder on restore, or that no restore could create."""
    problem = path_problem(path)
    if problem is not None:
        raise UsageError(f"unsafe path in manifest: '{printable_path(path)}' ({problem})")
    return path


def printable_path(path: object) -> str:
    """``path`` for a one-line message: bytes that are not UTF-8 as ``\\xNN``, control characters escaped, at most
    300 characters (a hostile manifest must not make an error message unbounded or drive a terminal)."""
    if not isinstance(path, str):
        return repr(path)[:300]
    try:
        text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes, e.g. from a JSON "\\ud800"
        text = path.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 300 else text[:300] + "..."


def _check_paths_do_not_clash(paths: list[str]) -> None:
    """A path listed twice, or a file that is also another file's folder, cannot be restored faithfully."""
    seen = set(paths)
    if len(seen) != len(paths):
        raise IntegrityError("malformed manifest: a path is listed twice")
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise IntegrityError(
                    f"malformed manifest: {'/'.join(parts[:i])!r} is both a file and a folder"
                )

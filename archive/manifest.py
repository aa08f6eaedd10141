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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from modelarc.archive.limits import MAX_MANIFEST_BYTES
from modelarc.errors import IntegrityError, UsageError
from modelarc.registry.bounds import CATALOG_INT_MAX
from modelarc.registry.refs import SnapshotId
from modelarc.storage.ids import ObjectId

MANIFEST_FORMAT = "modelarc.manifest"
MANIFEST_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Chunk:
    id: ObjectId
    length: int


@dataclass(frozen=True)
class Part:
    kind: str  # "header" | "tensor" | "pad" (GGUF alignment bytes) | "blob"
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


def file_kind(path: str) -> str:
    """The kind a writer gives the file at manifest path ``path`` (docs/FORMAT.md "Parts"): from its suffix alone,
    compared case-sensitively (``x.GGUF`` is a blob), never from its content. It may not change: the kind sets the
    parts, and so the snapshot id of every folder holding such a file; a receiver holds manifests to it."""
    if path.endswith(".safetensors"):
        return "safetensors"
    if path.endswith(".gguf"):
        return "gguf"
    return "blob"


@dataclass(frozen=True)
class FileEntry:
    path: str  # posix, relative, normalised
    size: int
    sha256: str
    kind: str  # "safetensors" | "gguf" | "blob"
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
        """Parse a manifest from anywhere (a local store, a pusher, a remote): ``IntegrityError`` for anything that
        is not a version-1 document of the exact JSON types docs/FORMAT.md gives, ``UsageError`` for an unsafe path.

        Strict on types because a manifest is hostile input: ``true`` or ``5.9`` read as an integer, ``1e400`` as
        infinity or a list as the document were each a 500 on the server (or a traceback in ``pull --remote``).
        """
        if len(data) > MAX_MANIFEST_BYTES:  # what the limits allow: refused before it is parsed
            raise IntegrityError(
                f"malformed manifest: {len(data):,} bytes, more than the {MAX_MANIFEST_BYTES:,} a manifest may have "
                "(see docs/FORMAT.md, Limits)"
            )
        if expected_id is not None:
            actual = SnapshotId.of(data)
            if actual != expected_id:
                raise IntegrityError(f"manifest of {expected_id} hashes to {actual}")
        _refuse_dense_json(data)
        try:
            # the format has no floats and no NaN (docs/FORMAT.md "Canonical JSON"): refused where they stand
            doc = json.loads(data, parse_float=_refuse_number, parse_constant=_refuse_number)
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise IntegrityError(f"malformed manifest: {str(exc)[:200]}") from None
        except RecursionError:  # "[[[[..." nested deeper than the parser's stack (a hostile remote's)
            raise IntegrityError("malformed manifest: JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise IntegrityError(f"malformed manifest: the document is a {_json_type(doc)}, not an object")
        fmt, version = doc.get("format"), doc.get("version")
        if fmt != MANIFEST_FORMAT or type(version) is not int or version != MANIFEST_VERSION:
            raise IntegrityError(f"unsupported manifest format {str(fmt)[:80]!r} v{str(version)[:20]}")
        files = tuple(_file_from_json(f, i) for i, f in enumerate(_array(doc, "files", "manifest")))
        _check_paths_do_not_clash([f.path for f in files])
        return cls(files=files, _canonical=bytes(data))


# Parsing costs ~60 bytes of memory per JSON array or object whatever its size: "[]," three bytes apart made a
# 128 MiB manifest cost 3.5 GB. A manifest's smallest object (a chunk) is ~90 bytes of JSON and each object holds at
# most two arrays, so more than one "{" per 64 bytes or one "[" per 32 outside strings is no manifest, and is refused
# before it is parsed. Brackets inside strings are no containers: a Flax/JAX tensor name such as
# "['params']['decoder']['layers_0']['kernel']" holds several, so a document over the bound by a plain count is
# counted again with its strings emptied (a regex pass, paid only by such documents).
_BYTES_PER_OBJECT = 64
_BYTES_PER_ARRAY = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _refuse_dense_json(data: bytes | bytearray | memoryview) -> None:
    raw = bytes(data) if isinstance(data, memoryview) else data

    def dense(text: bytes | bytearray) -> bool:
        objects, arrays = len(raw) // _BYTES_PER_OBJECT + 16, len(raw) // _BYTES_PER_ARRAY + 16
        return text.count(b"{") > objects or text.count(b"[") > arrays

    if dense(raw) and dense(_JSON_STRING.sub(b'""', raw)):
        raise IntegrityError(
            "malformed manifest: more JSON objects or arrays than a manifest of its size can hold (refused unparsed)"
        )


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


# ---------------------------------------------------------------------------------------- reading, field by field
# Each reader takes the JSON value and where it was found, and raises IntegrityError naming that place. Integers
# must be JSON integers (``type(x) is int``: a bool is an int to Python) between 0 and the catalog's largest.


def _file_from_json(value: object, index: int) -> FileEntry:
    where = f"files[{index}]"
    f = _object(value, where)
    return FileEntry(
        path=check_relative_path(_string(f, "path", where)),
        size=_natural(f, "size", where),
        sha256=_string(f, "sha256", where),
        kind=_string(f, "kind", where),
        parts=tuple(
            _part_from_json(p, f"{where}.parts[{i}]") for i, p in enumerate(_array(f, "parts", where))
        ),
    )


def _part_from_json(value: object, where: str) -> Part:
    p = _object(value, where)
    shape = None
    if "shape" in p:
        dims = _array(p, "shape", where)
        if not all(type(d) is int and 0 <= d <= CATALOG_INT_MAX for d in dims):
            raise IntegrityError(f"malformed manifest: {where}.shape is not a list of non-negative integers")
        shape = tuple(dims)
    chunks = []
    for i, c in enumerate(_array(p, "chunks", where)):
        chunk = _object(c, f"{where}.chunks[{i}]")
        oid = _string(chunk, "id", f"{where}.chunks[{i}]")
        if not _HEX64.fullmatch(oid):
            raise IntegrityError(f"malformed manifest: {where}.chunks[{i}].id is not 64 lowercase hex digits")
        chunks.append(Chunk(ObjectId(oid), _natural(chunk, "length", f"{where}.chunks[{i}]")))
    return Part(
        kind=_string(p, "kind", where),
        offset=_natural(p, "offset", where),
        length=_natural(p, "length", where),
        chunks=tuple(chunks),
        name=_optional_string(p, "name", where),
        dtype=_optional_string(p, "dtype", where),
        shape=shape,
    )


def _refuse_number(text: str) -> NoReturn:
    raise ValueError(f"{text[:40]} is not an integer (a manifest holds no floats, NaN or Infinity)")


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _field(obj: dict[str, Any], name: str, kind: type, what: str, where: str) -> Any:
    if name not in obj:
        raise IntegrityError(f"malformed manifest: {where} has no {name!r}")
    value = obj[name]
    if type(value) is not kind:
        raise IntegrityError(f"malformed manifest: {where}.{name} is a JSON {_json_type(value)}, not {what}")
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise IntegrityError(f"malformed manifest: {where} is a JSON {_json_type(value)}, not an object")
    return value


def _array(obj: dict[str, Any], name: str, where: str) -> list[Any]:
    return _field(obj, name, list, "an array", where)  # type: ignore[no-any-return]


def _string(obj: dict[str, Any], name: str, where: str) -> str:
    return _field(obj, name, str, "a string", where)  # type: ignore[no-any-return]


def _optional_string(obj: dict[str, Any], name: str, where: str) -> str | None:
    return None if obj.get(name) is None else _string(obj, name, where)


def _natural(obj: dict[str, Any], name: str, where: str) -> int:
    value: int = _field(obj, name, int, "an integer", where)
    if not 0 <= value <= CATALOG_INT_MAX:
        raise IntegrityError(f"malformed manifest: {where}.{name} is not between 0 and {CATALOG_INT_MAX}")
    return value


def canonical_json(doc: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the same document always gives the same bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# The longest file or folder name (one path segment) Linux, macOS and Windows file systems can create, in bytes of
# UTF-8 (NAME_MAX on Linux and macOS). A writer refuses longer names so that every archived path can be restored.
MAX_NAME_BYTES = 255
# A whole path: Linux's PATH_MAX (4096 with its NUL) bounds what a restore can open, and folders are made one level
# at a time (pathlib recurses per missing level), so a path of thousands of levels is refused here, in one line, not
# met as a RecursionError half-way through a restore. Real model repositories nest a few levels.
MAX_PATH_BYTES = 4095
MAX_PATH_DEPTH = 255


def path_problem(path: object) -> str | None:
    """Why ``path`` cannot be archived and restored safely, or ``None`` when it can.

    Paths are UTF-8 because the manifest is JSON; a str holding lone surrogates (how Python presents undecodable
    bytes of a file name) is refused rather than smuggled into a name the restore would create as other bytes.
    """
    if not isinstance(path, str) or not path:
        return "empty or not a string"
    if "\\" in path or "\x00" in path:
        return "contains a backslash or NUL"
    if path.startswith("/"):
        return "is absolute"
    if len(path) > 1 and path[1] == ":":  # Windows reads "C:x" (any character, for Python's ntpath) as a drive
        return "starts like a Windows drive ('X:'), which Windows could not restore as a file name"
    if posixpath.normpath(path) != path or any(seg in ("", ".", "..") for seg in path.split("/")):
        return "is not a normalised relative path"
    try:
        segments = [seg.encode("utf-8") for seg in path.split("/")]
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    longest = max(segments, key=len)
    if len(longest) > MAX_NAME_BYTES:
        return f"has a name of {len(longest)} bytes (at most {MAX_NAME_BYTES} can be restored)"
    if len(segments) > MAX_PATH_DEPTH:
        return f"is {len(segments)} levels deep (at most {MAX_PATH_DEPTH})"
    if (total := sum(map(len, segments)) + len(segments) - 1) > MAX_PATH_BYTES:
        return f"is {total} bytes long (at most {MAX_PATH_BYTES} can be restored)"
    return None


def check_relative_path(path: str) -> str:
    """Refuse any path that could escape the destination folder on restore, or that no restore could create."""
    problem = path_problem(path)
    if problem is not None:
        raise UsageError(f"unsafe path in manifest: '{printable_path(path)}' ({problem})")
    return path


def is_git_path(path: str) -> bool:
    """Whether ``path`` (posix, relative) has a ``.git`` segment, in any case: git's own metadata, which no snapshot
    holds (a push skips it, a receiver and a restore refuse it; ``.gitattributes`` and the like are not this)."""
    return any(part.lower() == ".git" for part in path.split("/"))


# The temp file names a restore writes beside its targets (archive/restore.py): today's ``.modelarc-partial-<32
# hex>``, and ``.<name>.<12 hex>.modelarc-partial`` from older versions. A resumed pull removes files so named.
_PARTIAL_NAME = re.compile(r"\.modelarc-partial-[0-9a-f]{32}|\..+\.[0-9a-f]{12}\.modelarc-partial", re.DOTALL)


def is_partial_name(name: str) -> bool:
    """Whether a file name (one segment) is a restore's temp file name: what an interrupted pull leaves behind, which a
    resumed pull deletes (and, a file the snapshot lists, keeps), so push refuses to archive one."""
    return _PARTIAL_NAME.fullmatch(name) is not None


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


def path_clash(paths: list[str]) -> tuple[str, str | None] | None:
    """The first clash among ``paths`` that no folder could hold faithfully, or None: (a path, None) for one listed
    twice, (a path, its folder) for a file whose folder is also a listed file. For a manifest and a Hub listing."""
    seen = set(paths)
    if len(seen) != len(paths):
        return next(p for i, p in enumerate(paths) if p in paths[:i]), None
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if (folder := "/".join(parts[:i])) in seen:
                return path, folder
    return None


def _check_paths_do_not_clash(paths: list[str]) -> None:
    """A path listed twice, or a file that is also another file's folder, cannot be restored faithfully."""
    clash = path_clash(paths)
    if clash is not None and clash[1] is None:
        raise IntegrityError("malformed manifest: a path is listed twice")
    if clash is not None:
        raise IntegrityError(f"malformed manifest: {clash[1]!r} is both a file and a folder")

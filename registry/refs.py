"""REF strings: ``ns/name:tag``, ``ns/name@sha256:<hex or unique prefix>``, or ``ns/name`` (tag ``latest``); and
snapshot ids, ``sha256:<64 hex>``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from modelarc.errors import InvalidRefError

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
# Every pattern here is used with fullmatch: with match and a final "$", "v2\n" passed as the tag "v2\n" (the "$"
# matches before a final newline) and was recorded as a tag no REF can name.
_REF = re.compile(
    rf"(?P<ns>{_NAME})/(?P<name>{_NAME})(?::(?P<tag>{_TAG})|@(?P<digest>sha256:[0-9a-f]{{4,64}}))?"
)
_MODEL = re.compile(rf"(?P<ns>{_NAME})/(?P<name>{_NAME})")
_TAG_RE = re.compile(_TAG)
_NAME_RE = re.compile(_NAME)
_SNAPSHOT_ID = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_TAG = "latest"


class SnapshotId(str):
    """A snapshot id: ``sha256:`` and the 64 lowercase hex digits of the manifest's sha256, validated on construction.

    A ``str``, so it prints, compares and serialises as the text it always was; ``hex`` is the manifest's object id
    in the store (``ObjectId(snapshot_id.hex)`` on the archive side: registry/ does not import storage/).
    """

    __slots__ = ()

    def __new__(cls, value: str) -> SnapshotId:
        if not isinstance(value, str) or not _SNAPSHOT_ID.fullmatch(value):  # fullmatch: no trailing "\n"
            raise InvalidRefError(
                f"not a snapshot id (sha256: and 64 lowercase hex digits): {str(value)[:80]!r}"
            )
        return super().__new__(cls, value)

    @classmethod
    def of(cls, manifest_bytes: bytes | bytearray | memoryview) -> SnapshotId:
        """The id of the snapshot whose canonical manifest is ``manifest_bytes``."""
        return super().__new__(cls, "sha256:" + hashlib.sha256(manifest_bytes).hexdigest())

    @property
    def hex(self) -> str:
        return self[len("sha256:") :]


@dataclass(frozen=True)
class Ref:
    namespace: str
    name: str
    tag: str | None = None
    digest: str | None = None  # "sha256:" + 4..64 hex digits (a prefix is resolved by the catalog)

    @property
    def model(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        """``ns/name@sha256:...``, ``ns/name:tag``, or ``ns/name`` for a ref naming the model alone (no tag)."""
        if self.digest:
            return f"{self.model}@{self.digest}"
        return f"{self.model}:{self.tag}" if self.tag is not None else self.model


def parse_ref(text: str) -> Ref:
    m = _REF.fullmatch(text or "")
    if m is None:
        raise InvalidRefError(
            f"invalid REF {text!r}: expected ns/name:tag or ns/name@sha256:<hex> (names: letters, digits, . _ -, "
            "starting with a letter or digit; a tag starts with a letter, digit or _; a digest prefix is 4 to 64 "
            "lower-case hex digits)"
        )
    if m["ns"] in (".", "..") or m["name"] in (".", ".."):
        raise InvalidRefError(f"invalid REF {text!r}")
    digest = m["digest"]
    return Ref(m["ns"], m["name"], tag=None if digest else (m["tag"] or DEFAULT_TAG), digest=digest)


def revision_ref(namespace: str, name: str, revision: str) -> Ref:
    """The REF for a URL's ``{ns}/{name}/{rev}``: a ``sha256:`` revision names a digest, anything else a tag.

    Parsed like any REF text, so a bad revision is the same ``InvalidRefError``.
    """
    sep = "@" if revision.startswith("sha256:") else ":"
    return parse_ref(f"{namespace}/{name}{sep}{revision}")


def parse_model_name(text: str) -> tuple[str, str]:
    m = _MODEL.fullmatch(text or "")
    if m is None:
        raise InvalidRefError(f"invalid model name {text!r}: expected ns/name")
    return m["ns"], m["name"]


def check_namespace(text: str) -> str:
    """``text`` if it is a namespace as a REF spells one (the part before ``/``), else ``InvalidRefError``."""
    if not isinstance(text, str) or not _NAME_RE.fullmatch(text):
        raise InvalidRefError(
            f"invalid namespace {str(text)[:80]!r}: letters, digits, . _ - (up to 100, starting with a letter or digit)"
        )
    return text


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise InvalidRefError(
            f"invalid tag {tag!r}: letters, digits, . _ - (up to 128, starting with a letter, digit or _)"
        )
    return tag

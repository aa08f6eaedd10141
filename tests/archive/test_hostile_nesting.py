"""JSON nested deeper than Python's parser can follow ("[[[[..." 100,000 deep) in anything the archive parses from
outside: each is the parser's own format error (or, for a config.json, an unreadable config), never a
RecursionError traceback.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import httpx
import pytest
from modelfactory import write_model

from modelarc.archive.formats.safetensors import parse_layout
from modelarc.archive.manifest import Chunk, FileEntry, Part, SnapshotManifest
from modelarc.archive.provenance.data import parse_data_manifest
from modelarc.archive.records import read_record
from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.remote.config import Remote
from modelarc.archive.repository import Archive
from modelarc.archive.snapshot_figures import stored_architecture
from modelarc.errors import (
    DataManifestError,
    IntegrityError,
    RecordError,
    RemoteError,
    SafetensorsFormatError,
)
from modelarc.storage import ObjectStore
from modelarc.storage.local import LocalBackend

DEEP = b"[" * 100_000


def deep_safetensors(path: Path) -> Path:
    path.write_bytes(struct.pack("<Q", len(DEEP)) + DEEP)
    return path


def test_a_safetensors_header_nested_too_deeply_is_a_format_error(tmp_path: Path) -> None:
    header = struct.pack("<Q", len(DEEP)) + DEEP
    with pytest.raises(SafetensorsFormatError, match=r"x\.safetensors: header is not valid JSON \(nested too"):
        parse_layout("x.safetensors", header, len(header))


def test_pushing_a_safetensors_file_nested_too_deeply_is_refused(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "deephdr"
    folder.mkdir()
    deep_safetensors(folder / "model.safetensors")
    with pytest.raises(SafetensorsFormatError, match="model.safetensors"):
        archive.push(folder, "ns/x:v1")


def test_a_config_json_nested_too_deeply_is_an_unreadable_config(tmp_path: Path) -> None:
    store = ObjectStore.open_local(tmp_path / "store")
    put = store.put(DEEP)
    chunks = (Chunk(put.id, len(DEEP)),)
    sha = hashlib.sha256(DEEP).hexdigest()
    entry = FileEntry("config.json", len(DEEP), sha, "blob", (Part("blob", 0, len(DEEP), chunks),))
    assert stored_architecture(store, SnapshotManifest((entry,))) == {}


def test_a_model_whose_config_json_is_nested_too_deeply_is_archived_without_an_architecture(
    archive: Archive, tmp_path: Path
) -> None:
    source = write_model(tmp_path / "src")
    (source / "config.json").write_bytes(DEEP)
    archive.push(source, "ns/m:v1")
    assert archive.resolve("ns/m:v1")[1].digest


def test_a_manifest_nested_too_deeply_is_an_integrity_error() -> None:
    # refused unparsed by the density bound (a document of brackets) or, below it, by the parser's depth
    with pytest.raises(IntegrityError, match="malformed manifest: (JSON nested too deeply|more JSON objects or arrays)"):
        SnapshotManifest.from_bytes(DEEP)
    padded = DEEP + b" " * (len(DEEP) * 64)  # as sparse in brackets as a real manifest: the parser's depth refuses it
    with pytest.raises(IntegrityError, match="malformed manifest: JSON nested too deeply"):
        SnapshotManifest.from_bytes(padded)


def test_a_catalog_record_nested_too_deeply_is_a_record_error(tmp_path: Path) -> None:
    key = f"records/20260102T030405000000Z-{hashlib.sha256(DEEP).hexdigest()}.json"
    (tmp_path / "records").mkdir()
    (tmp_path / key).write_bytes(DEEP)
    with pytest.raises(RecordError, match="nested too deeply"):
        read_record(LocalBackend(tmp_path), key)


def remote_answering(body: bytes, status: int = 200) -> RemoteArchive:
    """A client whose JSON requests all get ``body`` back (an httpx mock transport in place of the network)."""
    remote = RemoteArchive(Remote("hostile", "http://127.0.0.1:9"))
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    remote.__dict__["http"] = httpx.Client(base_url=remote.remote.url, transport=transport)
    return remote


def test_a_remote_answer_nested_too_deeply_is_a_remote_error() -> None:
    with remote_answering(DEEP) as remote, pytest.raises(RemoteError, match="remote hostile: .* is not JSON"):
        remote.keys()


def test_a_remote_answer_that_is_not_json_is_a_remote_error() -> None:
    with remote_answering(b"<html>proxy</html>") as remote, pytest.raises(RemoteError, match="is not JSON"):
        remote.missing(["0" * 64])


def test_a_remote_refusal_nested_too_deeply_is_judged_by_its_status() -> None:
    with remote_answering(DEEP, status=500) as remote, pytest.raises(RemoteError, match="answered 500"):
        remote.keys()



@pytest.mark.parametrize("raw", [DEEP, b'{"a":' * 20_000])
def test_a_training_data_manifest_nested_too_deeply_is_a_data_manifest_error(raw: bytes) -> None:
    """Read from a file (push --data) and from objects a remote pushed (archive/remote/commit.py) alike."""
    with pytest.raises(DataManifestError, match=r"data\.yaml: not valid YAML or JSON \(nested "):
        parse_data_manifest(raw, "data.yaml")

"""An integer of more than 4300 digits in JSON (or YAML) from outside: Python's int conversion refuses it with a
plain ValueError, not the parser's JSONDecodeError, and it went past every handler that caught only that. Each
parser now gives its own format error (or, for a config.json, an unreadable config), never a traceback."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.formats.safetensors import parse_layout
from modelarc.archive.manifest import Chunk, FileEntry, Part, SnapshotManifest
from modelarc.archive.provenance.data import parse_data_manifest
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import open_snapshot
from modelarc.archive.snapshot_figures import stored_architecture
from modelarc.errors import DataManifestError, SafetensorsFormatError, UsageError
from modelarc.storage import ObjectStore

HUGE = b"9" * 5000  # past sys.get_int_max_str_digits() (4300)
CONFIG = b'{"model_type": "bert", "hidden_size": ' + HUGE + b"}"


def _safetensors_with_huge_int() -> bytes:
    header = b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"z":' + HUGE + b"}"
    return struct.pack("<Q", len(header)) + header + bytes(16)


def test_a_safetensors_header_with_a_huge_integer_is_a_format_error() -> None:
    data = _safetensors_with_huge_int()
    header = data[:-16]
    with pytest.raises(SafetensorsFormatError, match=r"x\.safetensors: header is not valid JSON"):
        parse_layout("x.safetensors", header, len(data))


def test_pushing_a_safetensors_file_with_a_huge_integer_is_refused(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(_safetensors_with_huge_int())
    with pytest.raises(SafetensorsFormatError, match="model.safetensors"):
        archive.push(folder, "ns/st:v1")


def test_a_model_whose_config_json_holds_a_huge_integer_is_archived_without_an_architecture(
    archive: Archive, tmp_path: Path
) -> None:
    source = write_model(tmp_path / "src")
    (source / "config.json").write_bytes(CONFIG)
    archive.push(source, "ns/m:v1")
    assert archive.show("ns/m:v1").architecture == {}


def test_a_stored_config_json_with_a_huge_integer_is_an_unreadable_config(tmp_path: Path) -> None:
    """What a received commit and `pull --remote` run on the config.json they received."""
    store = ObjectStore.open_local(tmp_path / "store")
    put = store.put(CONFIG)
    part = Part("blob", 0, len(CONFIG), (Chunk(put.id, len(CONFIG)),))
    entry = FileEntry("config.json", len(CONFIG), hashlib.sha256(CONFIG).hexdigest(), "blob", (part,))
    assert stored_architecture(store, SnapshotManifest((entry,))) == {}


def test_loading_the_config_of_a_snapshot_whose_config_json_holds_a_huge_integer_is_a_usage_error(
    archive: Archive, tmp_path: Path
) -> None:
    source = write_model(tmp_path / "src")
    (source / "config.json").write_bytes(CONFIG)
    archive.push(source, "ns/m:v1")
    with pytest.raises(UsageError, match=r"ns/m:v1: config.json is not valid JSON"):
        open_snapshot(archive, "ns/m:v1").config()


def test_a_config_json_that_is_not_an_object_is_a_usage_error_when_loaded(
    archive: Archive, tmp_path: Path
) -> None:
    source = write_model(tmp_path / "src")
    (source / "config.json").write_text(json.dumps(["not", "an", "object"]))
    archive.push(source, "ns/m:v1")
    with pytest.raises(UsageError, match="not a JSON object"):
        open_snapshot(archive, "ns/m:v1").config()


def test_a_data_manifest_with_a_huge_integer_is_a_data_manifest_error() -> None:
    for recorded in (False, True):
        with pytest.raises(DataManifestError, match="m.yaml: not valid YAML or JSON"):
            parse_data_manifest(b"version: 1\nsize: " + HUGE + b"\n", "m.yaml", recorded=recorded)

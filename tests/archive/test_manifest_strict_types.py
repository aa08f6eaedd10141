"""A manifest, an offer and the other JSON received from another archive are read with their exact JSON types.

Found by probing `modelarc serve` (finding 6): ``1e400`` and ``Infinity`` parsed to float infinity and ``int(inf)``
raised OverflowError, a document that was a list raised AttributeError, both a 500 on /v1/transfer/check and
/v1/transfer/commit (and a traceback in ``pull --remote``, which runs the same parser). ``"size": 5.9`` and
``true`` were read as 5 and 1. Every such manifest is now an ``IntegrityError`` naming the field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model

from modelarc.archive.manifest import SnapshotManifest, canonical_json
from modelarc.archive.remote.offers import SnapshotOffer
from modelarc.archive.repository import Archive
from modelarc.errors import IntegrityError, UsageError
from modelarc.registry.keys import PublishedKey
from modelarc.registry.snapshot_search import SnapshotSummary

Doc = dict[str, Any]
HEX = "ab" * 32


def _manifest() -> Doc:
    """A small manifest as the code writes it: one blob file and one safetensors file with a tensor part."""
    return {
        "format": "modelarc.manifest",
        "version": 1,
        "files": [
            {
                "path": "config.json",
                "size": 5,
                "sha256": HEX,
                "kind": "blob",
                "parts": [{"kind": "blob", "offset": 0, "length": 5, "chunks": [{"id": HEX, "length": 5}]}],
            },
            {
                "path": "model.safetensors",
                "size": 24,
                "sha256": HEX,
                "kind": "safetensors",
                "parts": [
                    {"kind": "header", "offset": 0, "length": 8, "chunks": [{"id": HEX, "length": 8}]},
                    {
                        "kind": "tensor",
                        "offset": 8,
                        "length": 16,
                        "chunks": [{"id": HEX, "length": 16}],
                        "name": "w",
                        "dtype": "F32",
                        "shape": [2, 2],
                    },
                ],
            },
        ],
    }


def _set(path: str, value: object) -> Callable[[Doc], None]:
    """Set a field by a dotted path of keys and indexes, e.g. ``files.1.parts.1.shape``."""

    def change(doc: Doc) -> None:
        *head, last = path.split(".")
        target: Any = doc
        for key in head:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return change


def _raw(text: str) -> Callable[[Doc], bytes]:
    return lambda _doc: text.encode()


INFINITY = float("inf")
HOSTILE: dict[str, Callable[[Doc], None]] = {
    "size true": _set("files.0.size", True),
    "size 5.9": _set("files.0.size", 5.9),
    "size infinite": _set("files.0.size", INFINITY),
    "size -5": _set("files.0.size", -5),
    "size past 2^63": _set("files.0.size", 2**63),
    "size a string": _set("files.0.size", "5"),
    "offset NaN": _set("files.0.parts.0.offset", float("nan")),
    "part length false": _set("files.0.parts.0.length", False),
    "chunk length 1.0": _set("files.0.parts.0.chunks.0.length", 1.0),
    "chunk id a number": _set("files.0.parts.0.chunks.0.id", 123),
    "chunk id null": _set("files.0.parts.0.chunks.0.id", None),
    "chunk id not hex": _set("files.0.parts.0.chunks.0.id", "zz" * 32),
    "chunk a list": _set("files.0.parts.0.chunks.0", [HEX, 5]),
    "chunks an object": _set("files.0.parts.0.chunks", {"id": HEX}),
    "part a string": _set("files.0.parts.0", "blob"),
    "parts null": _set("files.0.parts", None),
    "file a list": _set("files.0", ["config.json"]),
    "files an object": _set("files", {"config.json": 5}),
    "sha256 a number": _set("files.0.sha256", 12),
    "kind a list": _set("files.0.kind", ["blob"]),
    "tensor shape infinite": _set("files.1.parts.1.shape", [INFINITY]),
    "tensor shape of bools": _set("files.1.parts.1.shape", [True, True]),
    "tensor shape of floats": _set("files.1.parts.1.shape", [2.0, 2]),
    "tensor shape negative": _set("files.1.parts.1.shape", [-2, -2]),
    "tensor shape a number": _set("files.1.parts.1.shape", 4),
    "tensor name a number": _set("files.1.parts.1.name", 7),
    "tensor dtype an object": _set("files.1.parts.1.dtype", {"F32": 1}),
    "version true": _set("version", True),
    "version 1.0": _set("version", 1.0),
}
RAW = {
    "a list": b"[1,2,3]",
    "a string": b'"modelarc.manifest"',
    "null": b"null",
    "size 1e400": canonical_json(_manifest()).replace(b'"size":5', b'"size":1e400'),
    "offset Infinity": canonical_json(_manifest()).replace(b'"offset":8', b'"offset":Infinity'),
    "shape [1e999]": canonical_json(_manifest()).replace(b'"shape":[2,2]', b'"shape":[1e999]'),
    "size -Infinity": canonical_json(_manifest()).replace(b'"size":5', b'"size":-Infinity'),
    "not UTF-8": b'{"files":[],"format":"modelarc.manifest","version":1,"x":"\xff"}',
}


def test_a_manifest_as_the_code_writes_it_is_read_back_unchanged() -> None:
    data = canonical_json(_manifest())
    manifest = SnapshotManifest.from_bytes(data)
    assert manifest.canonical_bytes() == data
    assert canonical_json(manifest.to_json()) == data


def test_a_pushed_manifest_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELARC_DATABASE_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    archive, _ = Archive.init(tmp_path / "home")
    with archive:
        archive.push(write_model(tmp_path / "m"), "acme/m:v1")
        _ref, snap = archive.resolve("acme/m:v1")
        manifest = archive.manifest(snap)
        again = SnapshotManifest.from_bytes(manifest.canonical_bytes(), expected_id=snap.digest)
    assert again == manifest and any(True for _ in again.tensors())


@pytest.mark.parametrize("change", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_field_of_the_wrong_json_type_is_an_integrity_error(change: Callable[[Doc], None]) -> None:
    doc = copy.deepcopy(_manifest())
    change(doc)
    data = json.dumps(
        doc
    ).encode()  # json.dumps writes inf as Infinity and nan as NaN, as a hostile sender may
    with pytest.raises(IntegrityError, match="manifest"):
        SnapshotManifest.from_bytes(data)


@pytest.mark.parametrize("data", RAW.values(), ids=RAW.keys())
def test_a_document_that_is_not_a_manifest_object_is_an_integrity_error(data: bytes) -> None:
    with pytest.raises(IntegrityError, match="manifest"):
        SnapshotManifest.from_bytes(data)


def test_the_error_names_the_field() -> None:
    doc = copy.deepcopy(_manifest())
    doc["files"][1]["parts"][1]["chunks"][0]["length"] = True
    with pytest.raises(
        IntegrityError, match=r"files\[1\]\.parts\[1\]\.chunks\[0\]\.length is a JSON boolean"
    ):
        SnapshotManifest.from_bytes(json.dumps(doc).encode())


# ------------------------------------------------------------------------------------- offers and answers


def _offer() -> Doc:
    return {
        "format": 1,
        "ref": "acme/m:v1",
        "snapshot": "sha256:" + HEX,
        "signatures": [HEX],
        "provenance": {"license": "mit", "description": "a model"},
        "parents": [],
        "architecture": {"model_type": "llama", "rope_theta": 10000.0},
        "data": [],
    }


def test_an_honest_offer_parses() -> None:
    offer = SnapshotOffer.from_json(_offer())
    assert offer.provenance["license"] == "mit" and offer.architecture["rope_theta"] == 10000.0


OFFER_LIES: dict[str, Callable[[Doc], None]] = {
    "format true": _set("format", True),
    "format 1.0": _set("format", 1.0),
    "NUL in provenance.description": _set("provenance.description", "a\x00b"),
    "NUL in provenance.license": _set("provenance.license", "\x00"),
    "NUL in an architecture value": _set("architecture.model_type", "llama\x00"),
    "NUL in an architecture key": _set("architecture", {"a\x00": 1}),
    "NUL deep in the architecture": _set("architecture", {"a": [{"b": ["\x00"]}]}),
    "NaN in the architecture": _set("architecture.rope_theta", float("nan")),
    "Infinity in the architecture": _set("architecture.rope_theta", INFINITY),
    "NUL in access.reason": _set("access", {"level": "gated", "until": None, "reason": "x\x00"}),
    # ten characters, which date.fromisoformat reads as 2098-12-29: no offer states a date so
    "a week date in access.until": _set("access", {"level": "gated", "until": "2099-W01-1", "reason": "x"}),
    "lone surrogate in an architecture value": _set("architecture.model_type", "llama\ud800"),
    "lone surrogate in provenance.license": _set("provenance.license", "\udfff"),
}


@pytest.mark.parametrize("change", OFFER_LIES.values(), ids=OFFER_LIES.keys())
def test_an_offer_holding_what_no_catalog_stores_is_a_usage_error(change: Callable[[Doc], None]) -> None:
    doc = _offer()
    change(doc)
    with pytest.raises(UsageError, match="snapshot offer"):
        SnapshotOffer.from_json(json.loads(json.dumps(doc)))  # through JSON, as it arrives


def _summary() -> Doc:
    return {
        "model": "acme/m", "snapshot": "sha256:" + HEX, "tags": ["v1"], "created_at": "2024-01-01T00:00:00",
        "parameters": 10, "logical_bytes": 40, "model_type": None, "cutoff": None, "cutoff_precision": None,
        "release_date": None, "license": "mit", "withdrawn": False, "withdrawn_reason": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "field, value",
    [("parameters", True), ("parameters", "7B"), ("logical_bytes", 1.5), ("withdrawn", 0), ("license", 3),
     ("tags", [1]), ("model", None)],
)  # fmt: skip
def test_a_listed_snapshot_of_the_wrong_json_type_is_refused(field: str, value: object) -> None:
    assert SnapshotSummary.from_json(_summary()).parameters == 10
    doc = {**_summary(), field: value}
    with pytest.raises(UsageError, match="snapshot row"):
        SnapshotSummary.from_json(doc)


def _key() -> Doc:
    return {"fingerprint": "f" * 16, "label": "alice", "trusted": True, "local": False,
            "created_at": "2024-01-01T00:00:00", "public_pem": "-----BEGIN PUBLIC KEY-----"}  # fmt: skip


@pytest.mark.parametrize(
    "field, value",
    [("trusted", "false"), ("local", 1), ("fingerprint", ["f"]), ("public_pem", None), ("label", 5),
     ("created_at", 0)],
)  # fmt: skip
def test_a_published_key_of_the_wrong_json_type_is_refused(field: str, value: object) -> None:
    assert PublishedKey.from_json(_key()).trusted is True
    with pytest.raises(UsageError, match="published key"):
        PublishedKey.from_json({**_key(), field: value})


def test_a_published_key_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(UsageError, match="published key"):
        PublishedKey.from_json(["f", "pem"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the other received JSON


def test_an_object_id_that_is_not_text_is_a_usage_error() -> None:
    from modelarc.storage import ObjectId

    for value in (123, None, ["ab"]):
        with pytest.raises(UsageError, match="not an object id"):
            ObjectId(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_bundle_whose_modelarc_version_is_not_the_integer_1_is_refused(version: object) -> None:
    """The version sits inside the signed statement: re-signed here with the same key, so only it differs."""
    import base64

    from modelarc.archive.signing import dsse
    from modelarc.archive.signing.bundles import DSSE_PAYLOAD_TYPE, FileDigest, sign_snapshot, verify_bundle
    from modelarc.archive.signing.keys import generate_private_key, public_key_pem
    from modelarc.errors import SignatureError

    key = generate_private_key()
    bundle = json.loads(sign_snapshot([FileDigest("a", HEX)], "sha256:" + HEX, key))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert verify_bundle(json.dumps(bundle).encode(), [public_key_pem(key)]).snapshot_id == "sha256:" + HEX
    statement["predicate"]["modelarc"]["version"] = version
    payload = json.dumps(statement).encode()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    signature = dsse.sign(DSSE_PAYLOAD_TYPE, payload, key)
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    with pytest.raises(SignatureError, match="version"):
        verify_bundle(json.dumps(bundle).encode(), [public_key_pem(key)])


def test_a_cursor_whose_position_is_a_boolean_is_refused() -> None:
    import base64

    from modelarc.api.v1 import cursor_offset, encode_cursor

    assert cursor_offset(encode_cursor(1)) == 1
    with pytest.raises(UsageError, match="cursor"):
        cursor_offset(base64.urlsafe_b64encode(b'{"o": true}').decode().rstrip("="))


def test_a_config_json_name_holding_a_nul_is_left_out_of_the_architecture() -> None:
    """A pushed (or received) config.json becomes catalog text: a NUL in it would fail the commit on PostgreSQL."""
    from modelarc.archive.formats.describe import architecture_from_config

    arch = architecture_from_config(
        {"model_type": "lla\x00ma", "architectures": ["A\x00", "B"], "hidden_size": 8}
    )
    assert arch == {"architectures": ["B"], "hidden_size": 8}


def test_a_received_manifest_whose_tensor_name_holds_a_nul_is_refused() -> None:
    from modelarc.archive.manifest_checks import check_manifest_structure

    doc = _manifest()
    check_manifest_structure(SnapshotManifest.from_bytes(canonical_json(doc)), "snapshot x")
    doc["files"][1]["parts"][1]["name"] = "w\x00"
    with pytest.raises(IntegrityError, match="NUL"):
        check_manifest_structure(SnapshotManifest.from_bytes(canonical_json(doc)), "snapshot x")


def test_a_config_json_name_holding_a_lone_surrogate_is_left_out_of_the_architecture() -> None:
    """A JSON "\\ud800" escape parses to a lone surrogate, which has no UTF-8 form: no catalog column holds it."""
    from modelarc.archive.formats.describe import architecture_from_config

    arch = architecture_from_config(
        json.loads('{"model_type": "bert\\ud800", "architectures": ["A\\udc80", "B"]}')
    )
    assert arch == {"architectures": ["B"]}


def test_a_received_manifest_whose_tensor_name_holds_a_lone_surrogate_is_refused() -> None:
    from modelarc.archive.manifest_checks import check_manifest_structure

    doc = _manifest()
    doc["files"][1]["parts"][1]["name"] = "w-placeholder"
    data = canonical_json(doc).replace(b'"w-placeholder"', b'"w\\ud800"')  # as a sender's JSON escape arrives
    with pytest.raises(IntegrityError, match="lone surrogate"):
        check_manifest_structure(SnapshotManifest.from_bytes(data), "snapshot x")


@pytest.mark.parametrize("pad", [b"[]", b"{}", b'{"a":0}', b"[[]]"])
def test_a_manifest_denser_in_objects_or_arrays_than_any_real_one_is_refused_unparsed(pad: bytes) -> None:
    """Parsing costs ~60 bytes per JSON array or object: 128 MiB of "[]," took 3.5 GB (a remote's, unsigned)."""
    doc = b'{"files":[],"format":"modelarc.manifest","pad":[' + b",".join([pad] * 10_000) + b'],"version":1}'
    with pytest.raises(IntegrityError, match="more JSON objects or arrays than a manifest of its size"):
        SnapshotManifest.from_bytes(doc)


def test_the_densest_real_manifests_still_read() -> None:
    """Many empty files, and many tensors with 16 zero-sized dimensions and no chunk: the least bytes per JSON
    object and per array a written manifest has."""
    files = [{"path": f"f{i}", "size": 0, "sha256": HEX, "kind": "blob", "parts": []} for i in range(2000)]
    tensors = [
        {"kind": "tensor", "offset": 0, "length": 0, "chunks": [], "name": "t", "dtype": "I8", "shape": [0] * 16}
        for _ in range(2000)
    ]
    header = {"kind": "header", "offset": 0, "length": 0, "chunks": []}
    st = {"path": "m.safetensors", "size": 0, "sha256": HEX, "kind": "safetensors", "parts": [header, *tensors]}
    doc = {"format": "modelarc.manifest", "version": 1, "files": [*files, st]}
    assert len(SnapshotManifest.from_bytes(canonical_json(doc)).files) == 2001


def test_a_manifest_bigger_than_the_limit_is_refused_unparsed() -> None:
    from modelarc.archive.limits import MAX_MANIFEST_BYTES

    doc = b'{"files":[],"format":"modelarc.manifest","pad":"' + b" " * MAX_MANIFEST_BYTES + b'","version":1}'
    with pytest.raises(IntegrityError, match=f"more than the {MAX_MANIFEST_BYTES:,} a manifest may have"):
        SnapshotManifest.from_bytes(doc)


def test_brackets_inside_names_are_no_containers() -> None:
    """Flax/JAX pytree names ("['params']['decoder']...['kernel']") hold seven brackets per tensor: a manifest of
    them is no denser in JSON objects or arrays than any other, and reads."""
    name = "['params']['model']['decoder']['layers_0']['self_attn']['q_proj']['kernel']"
    tensors = [
        {"kind": "tensor", "offset": 0, "length": 0, "chunks": [], "name": f"{name}{i}", "dtype": "F32", "shape": [0]}
        for i in range(2000)
    ]
    header = {"kind": "header", "offset": 0, "length": 0, "chunks": []}
    st = {"path": "m.safetensors", "size": 0, "sha256": HEX, "kind": "safetensors", "parts": [header, *tensors]}
    data = canonical_json({"format": "modelarc.manifest", "version": 1, "files": [st]})
    assert data.count(b"[") > len(data) // 32 + 16  # a plain count would have refused it
    assert len(SnapshotManifest.from_bytes(data).files[0].parts) == 2001


def test_a_sha256_with_a_final_newline_is_refused_in_a_received_manifest_and_a_bundle() -> None:
    """``^[0-9a-f]{64}$`` under ``re.match`` passed ``<64 hex>\\n``."""
    from modelarc.archive.manifest_checks import check_manifest_structure
    from modelarc.archive.signing.bundles import FileDigest

    doc = _manifest()
    doc["files"][0]["sha256"] = HEX + "\n"
    with pytest.raises(IntegrityError, match="is not 64 lowercase hex digits"):
        check_manifest_structure(SnapshotManifest.from_bytes(canonical_json(doc)), "snapshot x")
    with pytest.raises(ValueError, match="not 64 lowercase hex digits"):
        FileDigest("a", HEX + "\n")


def test_a_bundle_resource_digest_with_a_final_newline_is_refused() -> None:
    """Re-signed here with the same key, so only the digest differs (``bytes.fromhex`` ignores the newline, so the
    statement's subject digest still matched)."""
    import base64

    from modelarc.archive.signing import dsse
    from modelarc.archive.signing.bundles import DSSE_PAYLOAD_TYPE, FileDigest, sign_snapshot, verify_bundle
    from modelarc.archive.signing.keys import generate_private_key, public_key_pem
    from modelarc.errors import SignatureError

    key = generate_private_key()
    bundle = json.loads(sign_snapshot([FileDigest("a", HEX)], "sha256:" + HEX, key))
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] += "\n"
    payload = json.dumps(statement).encode()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    signature = dsse.sign(DSSE_PAYLOAD_TYPE, payload, key)
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    with pytest.raises(SignatureError, match="digest is not 64 hex digits"):
        verify_bundle(json.dumps(bundle).encode(), [public_key_pem(key)])

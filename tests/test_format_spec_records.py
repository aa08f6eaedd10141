"""docs/FORMAT.md is enough to read what a store keeps besides snapshots: catalog records, the run documents and
training-data manifests they point at, and the DSSE signatures of runs, read by an independent reader.

The reader below is written from FORMAT.md ("Catalog records", "Run documents", "Training-data manifests",
"Signature bundle") alone: it uses hashlib, json, base64, yaml, jsonschema and cryptography, and the object reader
of tests/test_format_spec.py; nothing from modelarc is imported to read. modelarc only writes the stores under
test: one CLI session that makes a record of every kind, then pushes to a served archive, whose store then holds a
received commit's records. If a test here fails, either the records changed or docs/FORMAT.md is out of date.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from modelfactory import tiny_gpt2
from test_format_spec import (
    FormatError,
    canonical,
    find_manifests,
    object_path,
    read_manifest,
    read_object,
)

# ---------------------------------------------------------------------------------------------------------------
# The independent reader of records (docs/FORMAT.md "Catalog records" and the documents they point at).
# ---------------------------------------------------------------------------------------------------------------

RECORD_NAME = re.compile(r"([0-9]{8}T[0-9]{12}Z)-([0-9a-f]{64})\.json")
NAME_TIME, BODY_TIME = "%Y%m%dT%H%M%S%fZ", "%Y-%m-%dT%H:%M:%S.%fZ"
KINDS = ("key", "snapshot", "tag", "data", "withdraw", "run", "access", "grant")  # also the replay order
COMMON = {"format", "version", "kind", "at", "actor"}
# each kind's fields, exactly as FORMAT.md's table names them (besides the common ones); optional ones apart
FIELDS = {
    "key": {"fingerprint", "public_pem", "label", "trusted", "local"},
    "snapshot": {
        "model", "tag", "snapshot", "manifest", "action", "merge", "signatures", "keys", "parents", "provenance",
        "pushed_by", "logical_bytes", "stored_bytes_added", "file_count", "tensor_count", "parameter_count",
        "dtypes", "architecture",
    },  # fmt: skip
    "tag": {"model", "tag", "snapshot", "previous"},
    "data": {"model", "snapshot", "ref", "manifest"},
    "withdraw": {"model", "snapshot", "ref", "reason"},
    "run": {"snapshot", "ref", "object", "signature", "key"},
    "access": {"model", "snapshot", "level", "until", "reason"},
    "grant": {"model", "subject", "action", "reason", "request"},
}
OPTIONAL = {"access": {"files", "received"}, "snapshot": {"parents_unrecorded"}}
PROVENANCE = {"cutoff", "cutoff_precision", "license", "description", "source_url", "release_date"}
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
RUN_PAYLOAD_TYPE = "application/vnd.modelarc.run+json"
RUN_FIELDS = {
    "version", "snapshot", "ref", "prompt", "parameters", "output", "device", "dtype", "versions", "hardware"
}  # fmt: skip
RUN_PARAMETERS = {"max_new_tokens", "seed", "temperature", "top_p", "device", "dtype"}
CURVE_HASH = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}
SCHEMA = Path(__file__).parents[1] / "archive" / "schemas" / "training-data.schema.json"
HEX64 = re.compile(r"[0-9a-f]{64}")
SNAPSHOT_ID = re.compile(r"sha256:[0-9a-f]{64}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def read_records(store: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every record under ``records/`` as (name, body), checked as FORMAT.md says, in name order:
    ``(<T>, kind, key)``."""
    found = []
    for path in (store / "records").iterdir():
        m = RECORD_NAME.fullmatch(path.name)
        if m is None:
            raise FormatError(f"{path.name}: not a record name")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != m[2]:
            raise FormatError(f"{path.name}: the body does not hash to its name")
        body = json.loads(data)
        if canonical(body) != data:
            raise FormatError(f"{path.name}: not canonical JSON")
        if body.get("format") != "modelarc.record" or body.get("kind") not in KINDS:
            raise FormatError(f"{path.name}: format {body.get('format')!r}, kind {body.get('kind')!r}")
        received = body["kind"] == "access" and body.get("received") is True
        if body.get("version") not in ((1, 2) if received else (1,)):
            raise FormatError(f"{path.name}: version {body.get('version')!r}")
        allowed = COMMON | FIELDS[body["kind"]]
        if not allowed <= set(body) <= allowed | OPTIONAL.get(body["kind"], set()):
            raise FormatError(f"{path.name}: fields {sorted(set(body) ^ allowed)} against FORMAT.md's table")
        written, at = dt.datetime.strptime(m[1], NAME_TIME), dt.datetime.strptime(body["at"], BODY_TIME)
        if at > written or not isinstance(body["actor"], str):  # `at` is taken before the changes, <T> after
            raise FormatError(f"{path.name}: at {body['at']} after its name, or no actor")
        found.append((written, KINDS.index(body["kind"]), path.name, body))
    return [(name, body) for *_, name, body in sorted(found, key=lambda r: r[:3])]


def replay_order(records: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """FORMAT.md "Order and replay": name order, except that a record waits for the record creating what it names
    (the first record of a snapshot of its model; a snapshot's first record, for those of its parents; a `run`, for
    the first of any model's snapshot of its id; a `grant` or model-level `access`, for its model's first snapshot).
    What no record creates is not waited for; records that wait on each other go last, in name order."""

    def needs(r: dict[str, Any], first: bool) -> set[tuple[str | None, str | None]]:
        kind = r["kind"]
        if kind == "snapshot":
            return {(p["model"], p["snapshot"]) for p in r["parents"]} if first else {(r["model"], r["snapshot"])}
        if kind in ("tag", "data", "withdraw") or (kind == "access" and r["snapshot"] is not None):
            return {(r["model"], r["snapshot"])}
        if kind == "run":
            return {(None, r["snapshot"])}
        if kind in ("grant", "access"):
            return {(r["model"], None)}
        return set()

    def creates(r: dict[str, Any]) -> set[tuple[str | None, str | None]]:
        return {(r["model"], r["snapshot"]), (None, r["snapshot"]), (r["model"], None)}

    creatable = set().union(*(creates(r) for _n, r in records if r["kind"] == "snapshot"))
    firsts: dict[tuple[str, str], str] = {}  # (model, snapshot) -> the name of its first record, by name order
    for n, r in records:
        if r["kind"] == "snapshot":
            firsts.setdefault((r["model"], r["snapshot"]), n)
    created: set[tuple[str | None, str | None]] = set()
    pending, ordered = list(records), []
    while pending:
        ready = [
            (n, r)
            for n, r in pending
            if all(
                need in created or need not in creatable
                for need in needs(r, r["kind"] == "snapshot" and firsts[(r["model"], r["snapshot"])] == n)
            )
        ]
        name, record = (ready or pending)[0]
        pending.remove((name, record))
        ordered.append((name, record))
        if record["kind"] == "snapshot":
            created |= creates(record)
    return ordered


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in CURVE_HASH, key
    return key


def fingerprint(pem: str) -> str:
    """FORMAT.md "Signature bundle": the hex sha256 of the public key as PEM SubjectPublicKeyInfo."""
    spki = load_public_key(pem).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def dsse_verify(envelope: dict[str, Any], pem: str) -> bytes:
    """DSSE v1: an ECDSA signature (DER, the curve's hash) over PAE(payloadType, payload); the payload bytes."""
    payload, ptype = base64.b64decode(envelope["payload"], validate=True), envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    key = load_public_key(pem)
    [signature] = envelope["signatures"]
    key.verify(base64.b64decode(signature["sig"]), pae, ec.ECDSA(CURVE_HASH[key.curve.name]()))
    return payload


PUBLIC_SUFFIXES = (".json", ".md", ".txt", ".py", ".yaml", ".yml", ".jinja", ".tiktoken", ".cfg", ".toml", ".ini")
PUBLIC_NAMES = {
    "tokenizer.model", "tokenizer.model.v3", "spiece.model", "spm.model", "sentencepiece.model",
    "sentencepiece.bpe.model", "bpe.codes", "source.spm", "target.spm", "vocab.bpe", ".gitattributes", "license",
    "licence", "notice", "copying",
}  # fmt: skip


def is_public_metadata(entry: dict[str, Any]) -> bool:
    """FORMAT.md "Weights and public metadata": a blob file with no tensor part, named as one of the list."""
    path = entry["path"].lower()
    return (
        entry["kind"] == "blob"
        and all(p["kind"] != "tensor" for p in entry["parts"])
        and (path.endswith(PUBLIC_SUFFIXES) or path.rsplit("/", 1)[-1] in PUBLIC_NAMES)
    )


def read_data_manifest(store: Path, oid: str) -> dict[str, Any]:
    """FORMAT.md "Training-data manifests": YAML 1.1 as PyYAML's safe loader reads it, then the JSON Schema."""
    doc = yaml.safe_load(read_object(store, oid).decode("utf-8"))
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)
    return dict(doc)


def read_run(store: Path, record: dict[str, Any], trusted: dict[str, str]) -> dict[str, Any]:
    """FORMAT.md "Run documents": a `run` record checked as a reader checks it; the run document."""
    envelope = json.loads(record["signature"])  # a JSON string holding the envelope's text
    assert json.dumps(envelope) == record["signature"], "not the text Python's json.dumps writes by default"
    assert list(envelope) == ["payloadType", "payload", "signatures"]
    assert envelope["payloadType"] == RUN_PAYLOAD_TYPE and len(envelope["signatures"]) == 1
    assert list(envelope["signatures"][0]) == ["keyid", "sig"]
    assert envelope["signatures"][0]["keyid"] == record["key"]  # names the key; proves nothing
    verified = []
    for pem in trusted.values():  # tried against every trusted key
        try:
            verified.append(dsse_verify(envelope, pem))
        except InvalidSignature:  # not this key
            continue
    assert verified, "the run's signature verifies against no trusted key"
    payload = verified[0]
    assert base64.b64encode(payload).decode() == envelope["payload"]  # standard base64, padded
    assert payload == read_object(store, record["object"])  # the object holds exactly the payload
    doc = json.loads(payload)
    assert canonical(doc) == payload
    assert set(doc) == RUN_FIELDS and doc["version"] in (1, 2)  # FORMAT.md: the versions a reader knows
    assert (doc["snapshot"], doc["ref"]) == (record["snapshot"], record["ref"])
    p = doc["parameters"]
    assert set(p) == RUN_PARAMETERS and type(p["max_new_tokens"]) is int and p["max_new_tokens"] >= 1
    assert type(p["seed"]) is int and (p["temperature"] is None or isinstance(p["temperature"], float))
    assert p["top_p"] is None or 0 < p["top_p"] <= 1
    assert isinstance(p["device"], str) and (p["dtype"] is None or isinstance(p["dtype"], str))
    assert all(isinstance(doc[f], str) for f in ("prompt", "output", "device", "dtype"))
    assert not doc["dtype"].startswith("torch.")
    assert set(doc["versions"]) == {"modelarc", "torch", "transformers", "python"}
    assert all(isinstance(v, str) for v in doc["versions"].values())
    hw = doc["hardware"]
    assert set(hw) == {"machine", "processor", "cuda_available", "cuda_device"}
    assert isinstance(hw["cuda_available"], bool)
    assert hw["cuda_device"] is None or isinstance(hw["cuda_device"], str)
    return dict(doc)


def check_snapshot_record(store: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A `snapshot` record against the store: its manifest, its bundles under its keys, and every figure that
    follows from the manifest; the manifest."""
    assert record["snapshot"] == "sha256:" + record["manifest"] and HEX64.fullmatch(record["manifest"])
    manifest = read_manifest(store, record["snapshot"])
    assert record["action"] in ("push", "transfer.commit") and isinstance(record["merge"], bool)
    assert record["tag"] is None or isinstance(record["tag"], str)
    keys = {k["fingerprint"]: k["public_pem"] for k in record["keys"]}
    assert all(fingerprint(pem) == fp for fp, pem in keys.items())
    for sig in record["signatures"]:
        assert set(sig) <= {"object", "key", "at"} and sig["key"] in keys
        bundle = json.loads(read_object(store, sig["object"]))
        assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
        statement = json.loads(dsse_verify(bundle["dsseEnvelope"], keys[sig["key"]]))
        assert statement["predicate"]["modelarc"] == {"version": 1, "snapshot": record["snapshot"]}
    for parent in record["parents"]:
        assert set(parent) == {"model", "snapshot", "relation"} and SNAPSHOT_ID.fullmatch(parent["snapshot"])
    assert set(record["provenance"]) == PROVENANCE
    for date in ("cutoff", "release_date"):
        assert record["provenance"][date] is None or DATE.fullmatch(record["provenance"][date])
    tensors = [p for f in manifest["files"] for p in f["parts"] if p["kind"] == "tensor"]
    dtypes: dict[str, int] = {}
    for t in tensors:
        dtypes[t["dtype"]] = dtypes.get(t["dtype"], 0) + math.prod(t["shape"])
    assert record["file_count"] == len(manifest["files"]) and record["tensor_count"] == len(tensors)
    assert record["logical_bytes"] == sum(f["size"] for f in manifest["files"])
    assert record["parameter_count"] == sum(dtypes.values()) and record["dtypes"] == dtypes
    assert isinstance(record["pushed_by"], str) and type(record["stored_bytes_added"]) is int
    assert record["architecture"] == architecture(store, manifest)
    return manifest


ARCH_COUNTS = {  # FORMAT.md "A snapshot record's figures": each count from the first config key holding one
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "vocab_size": ("vocab_size",),
    "context_length": ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"),
}


def is_name(value: object, limit: int) -> bool:
    """A name: a string of 1 to ``limit`` characters without NUL or lone surrogate."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= limit
        and "\x00" not in value
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    )


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**63 - 1


def architecture(store: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's architecture from its stored config.json, as FORMAT.md derives it (this test has no GGUF)."""
    [entry] = [f for f in manifest["files"] if f["path"] == "config.json"]
    config = json.loads(b"".join(read_object(store, c["id"]) for p in entry["parts"] for c in p["chunks"]))
    arch: dict[str, Any] = {}
    if is_name(config.get("model_type"), 100):
        arch["model_type"] = config["model_type"]
    if isinstance(config.get("architectures"), list):
        arch["architectures"] = [a for a in config["architectures"][:16] if is_name(a, 128)]
    sources = [config] + ([config["text_config"]] if isinstance(config.get("text_config"), dict) else [])
    for count, keys in ARCH_COUNTS.items():
        for source in sources:
            value = next((source[k] for k in keys if is_count(source.get(k))), None)
            if value is not None:
                arch[count] = value
                break
    return arch


# ---------------------------------------------------------------------------------------------------------------
# The store under test: one CLI session that writes a record of every kind.
# ---------------------------------------------------------------------------------------------------------------

WORDS = ("<unk>", "<pad>", "the", "model", "was", "trained", "on", "news")
DATA_YAML = """\
version: 1
datasets:
  - name: news-2021
    role: pretrain
    records: 1000
    time_range: {start: "2021-01", end: "2021-12"}
    notes: "yes"
"""


class Session:
    """modelarc's CLI on one home (env passed to each command, never os.environ)."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home, self.runner = home, CliRunner()
        self.env = {"MODELARC_HOME": str(home), "MODELARC_DATABASE_URL": database_url, "MODELARC_ACTOR": "spec"}

    def __call__(self, *args: object) -> str:
        from modelarc.cli.main import cli

        result = self.runner.invoke(cli, [str(a) for a in args], env=self.env, catch_exceptions=False)
        assert result.exit_code == 0, f"modelarc {' '.join(map(str, args))}:\n{result.output}"
        return result.stdout


@pytest.fixture(scope="module")
def session(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("records")
    arc = Session(root / "home", module_database_url)
    arc("init")
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    (root / "other.pem").write_bytes(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    arc("keys", "import", root / "other.pem", "--label", "other signer")
    arc("keys", "distrust", fingerprint((root / "other.pem").read_text()))
    tiny_gpt2(root / "m", WORDS)
    (root / "data.yaml").write_text(DATA_YAML)
    arc("push", root / "m", "acme/gpt2:v1", "--cutoff", "2021-06", "--license", "mit", "--data", root / "data.yaml")
    arc("tag", "acme/gpt2:v1", "stable")
    (root / "m" / "extra.bin").write_bytes(b"\x00\x01" * 100)
    arc("push", root / "m", "acme/gpt2:v2", "--parent", "acme/gpt2:v1", "--relation", "finetune")
    arc("tag", "acme/gpt2:v2", "stable")
    arc("data", "attach", "acme/gpt2:v1", root / "data.yaml")
    arc("run", "acme/gpt2:v1", "--prompt", "the model was", "--max-new-tokens", "3", "--record", "--device", "cpu",
        "--temperature", "0.7", "--top-p", "0.9", "--seed", "5")  # fmt: skip
    arc("access", "set", "acme/gpt2", "gated", "--until", "2030-01-01", "--withhold", "*.md", "--reason", "embargo")
    arc("access", "set", "acme/gpt2", "restricted", "--snapshot", "v1", "--reason", "override")
    arc("token", "create", "--name", "alice", "--scope", "read")
    arc("access", "grant", "acme/gpt2", "alice", "--reason", "reviewer")
    arc("access", "revoke", "acme/gpt2", "alice", "--reason", "done")
    arc("rm", "acme/gpt2:v2", "--reason", "leaked test data")
    return arc


@dataclass
class Replayed:
    """What the records of a store say, replayed in FORMAT.md's order."""

    kinds: list[str] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)  # snapshot id -> its first record
    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    attachments: list[tuple[str, str]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    withdrawn: set[str] = field(default_factory=set)
    policies: list[dict[str, Any]] = field(default_factory=list)
    grants: list[tuple[str, str, int | None]] = field(default_factory=list)


def replay(store: Path) -> Replayed:
    """Every record of ``store``: its name, body and exact fields as FORMAT.md's table gives them, checked against
    the store (manifests, bundles, keys, data manifests, run documents and their DSSE signatures) in replay order."""
    out = Replayed()
    for name, r in replay_order(read_records(store)):
        kind = r["kind"]
        out.kinds.append(kind)
        if kind != "key" and r.get("snapshot") is not None:  # replays after the snapshot's first record
            assert r["snapshot"] in out.snapshots or kind == "snapshot", (name, r)
        if kind == "key":
            assert fingerprint(r["public_pem"]) == r["fingerprint"] and isinstance(r["trusted"], bool)
            assert isinstance(r["local"], bool) and (r["label"] is None or isinstance(r["label"], str))
            out.keys[r["fingerprint"]] = r
        elif kind == "snapshot":
            check_snapshot_record(store, r)
            for sig in r["signatures"]:  # signed by a key trusted at this point (or one of `keys` not yet known)
                assert out.keys.get(sig["key"], {"trusted": True})["trusted"]
            out.snapshots.setdefault(r["snapshot"], r)
            if r["tag"] is not None:
                out.tags[(r["model"], r["tag"])] = r["snapshot"]
        elif kind == "tag":
            assert r["previous"] == out.tags.get((r["model"], r["tag"]))
            out.tags[(r["model"], r["tag"])] = r["snapshot"]
        elif kind == "data":
            assert read_object(store, r["manifest"]) == DATA_YAML.encode()  # the document as given
            doc = read_data_manifest(store, r["manifest"])
            assert doc["datasets"][0]["records"] == 1000 and doc["datasets"][0]["notes"] == "yes"
            out.attachments.append((r["ref"], r["snapshot"]))
        elif kind == "withdraw":
            assert isinstance(r["ref"], str) and isinstance(r["reason"], str)
            out.withdrawn.add(r["snapshot"])
        elif kind == "run":
            trusted = {fp: k["public_pem"] for fp, k in out.keys.items() if k["trusted"]}
            out.runs.append(read_run(store, r, trusted))
        elif kind == "access":
            assert r["level"] in ("public", "gated", "restricted", "inherit") and isinstance(r["reason"], str)
            assert r["until"] is None or DATE.fullmatch(r["until"])
            assert r.get("files", ["*"]) and all(isinstance(p, str) for p in r.get("files", []))  # absent: none
            assert r.get("received", True) is True
            out.policies.append(r)
        elif kind == "grant":
            assert r["action"] in ("grant", "revoke") and isinstance(r["subject"], str)
            assert r["request"] is None or type(r["request"]) is int
            out.grants.append((r["subject"], r["action"], r["request"]))
    return out


def test_every_record_kind_reads_from_format_md_alone(session: Session) -> None:
    """A record of every kind, read and checked by the reader above, replays into the names, tags, attachments,
    runs, policies, grants and withdrawals the session made."""
    out = replay(session.home / "store")
    assert set(out.kinds) == set(KINDS), out.kinds
    keys, snapshots = out.keys, out.snapshots
    [local] = [k for k in keys.values() if k["local"]]
    [other] = [k for k in keys.values() if k["label"] == "other signer"]
    assert local["trusted"] and not other["trusted"] and not other["local"]
    pem = (session.home / "keys" / "signing-key.pem").read_bytes()
    home_key = serialization.load_pem_private_key(pem, None).public_key()
    assert local["public_pem"].encode() == home_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    v1, v2 = (s for s, r in snapshots.items() if r["model"] == "acme/gpt2")
    assert snapshots[v2]["parents"] == [{"model": "acme/gpt2", "snapshot": v1, "relation": "finetune"}]
    assert snapshots[v1]["merge"] is False and snapshots[v2]["merge"] is False  # a push: false, new or not
    assert snapshots[v1]["provenance"]["license"] == "mit"  # --cutoff 2021-06: the first day, and its precision
    assert (snapshots[v1]["provenance"]["cutoff"], snapshots[v1]["provenance"]["cutoff_precision"]) == (
        "2021-06-01",
        "month",
    )
    assert snapshots[v1]["architecture"]["model_type"] == "gpt2" and snapshots[v1]["architecture"]["num_layers"] == 1
    assert out.tags == {("acme/gpt2", "v1"): v1, ("acme/gpt2", "v2"): v2, ("acme/gpt2", "stable"): v2}
    assert out.attachments == [(f"acme/gpt2@{v1}", v1), ("acme/gpt2:v1", v1)]  # push --data, then data attach
    assert out.withdrawn == {v2}
    [run] = out.runs
    assert run["ref"] == "acme/gpt2:v1" and run["prompt"] == "the model was"
    assert run["parameters"] == {
        "max_new_tokens": 3, "seed": 5, "temperature": 0.7, "top_p": 0.9, "device": "cpu", "dtype": None
    }  # fmt: skip
    policies = [(p["snapshot"], p["level"], p["until"], p.get("files")) for p in out.policies]
    assert policies == [(None, "gated", "2030-01-01", ["*.md"]), (v1, "restricted", None, None)]
    assert out.grants == [("alice", "grant", None), ("alice", "revoke", None)]
    # scanning the objects (FORMAT.md "What the catalog adds") finds the two manifests, whatever else is JSON
    store = session.home / "store"
    assert set(find_manifests(store)) == {v1, v2}
    # the withdrawal freed v2's weights and kept its manifest, bundle, safetensors header and public metadata
    manifest = read_manifest(store, v2)
    kept = {c["id"] for f in manifest["files"] if is_public_metadata(f) for p in f["parts"] for c in p["chunks"]}
    kept |= {c["id"] for f in manifest["files"] for p in f["parts"] if p["kind"] == "header" for c in p["chunks"]}
    kept |= {sig["object"] for sig in snapshots[v2]["signatures"]}
    assert all(object_path(store, oid).is_file() for oid in kept)
    [extra] = [f for f in manifest["files"] if f["path"] == "extra.bin"]  # weights, and only v2's
    assert not is_public_metadata(extra) and not object_path(store, extra["parts"][0]["chunks"][0]["id"]).exists()
    assert {p for f in manifest["files"] if is_public_metadata(f) for p in [f["path"]]} == {
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"
    }  # fmt: skip



@pytest.fixture(scope="module")
def received(session: Session, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The store of a served archive (SQLite: only its store is read) that ``session`` pushed acme/gpt2:v1 to, with
    its training-data manifest and its restricted override: what a received commit records."""
    from liveserver import serve

    from modelarc.archive.repository import Archive
    from modelarc.archive.tokens import create_token

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _created = Archive.init(tmp_path_factory.mktemp("served") / "server")
    try:
        private = (session.home / "keys" / "signing-key.pem").read_bytes()
        pem = serialization.load_pem_private_key(private, None).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        archive.import_key(pem, label="pusher")
        token = create_token(archive, "push", "pusher").token
        with serve(archive) as url:
            session("remote", "add", "origin", url, "--token", token)
            session("push", "acme/gpt2:v1", "--remote", "origin")
        yield archive.settings.home / "store"
    finally:
        archive.close()


def test_records_of_a_received_commit_read_from_format_md_alone(session: Session, received: Path) -> None:
    """A received commit's records: the snapshot's (action `transfer.commit`), a `data` record per training-data
    manifest with the pushed snapshot's digest ref, and a `received` override as record version 2."""
    # written after its data and policy records (so a failed write leaves none a rebuild would replay without its
    # embargo), the snapshot's record replays first all the same: they wait for it
    assert [r["kind"] for _name, r in read_records(received)] == ["key", "key", "access", "data", "snapshot"]
    out = replay(received)
    assert out.kinds == ["key", "key", "snapshot", "access", "data"], out.kinds  # the server's key, the pusher's
    [snapshot] = out.snapshots
    record = out.snapshots[snapshot]
    assert (record["action"], record["model"], record["tag"]) == ("transfer.commit", "acme/gpt2", "v1")
    assert record["merge"] is True  # a received commit: true, though the snapshot is new there
    assert re.fullmatch(r"token:[0-9]+:pusher", record["actor"]) and record["pushed_by"] == record["actor"]
    assert out.attachments == [(f"acme/gpt2@{snapshot}", snapshot)]  # one manifest, attached twice there: once
    [server_key] = [k for k in out.keys.values() if k["local"]]
    remote_key = replay(session.home / "store").keys[server_key["fingerprint"]]
    assert remote_key["trusted"] and not remote_key["local"]  # `remote add` trusts the remote's key, and records it
    [policy] = out.policies
    assert (policy["version"], policy["received"], policy["snapshot"], policy["level"]) == (
        2,
        True,
        snapshot,
        "restricted",
    )

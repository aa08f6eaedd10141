"""A lost catalog rebuilt from the store alone (catalog records, docs/FORMAT.md), on SQLite and PostgreSQL: every
answer of ls, show, log, lineage, timeline --as-of, data ls and export is the same before and after; from a mirror
copy too; `upgrade` writes the records an older archive lacks; damaged or forged records are refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import finetune, tiny_tensors, write_model

ArchiveCli = Any  # tests/cli/conftest.py

DATA_YAML = """\
version: 1
datasets:
  - name: the-pile
    version: "1.0"
    source: https://example.org/pile
    license: mixed
    tokens: 300000000000
    time_range: {start: "2010", end: "2020-06"}
    sha256: %s
    role: pretrain
  - name: alpaca
    revision: abc123
    records: 52000
    role: instruction
""" % ("ab" * 32)
DATA_JSON = json.dumps(
    {"version": 1, "datasets": [{"name": "chat-logs", "version": "2", "records": 10, "role": "finetune"}]}
)

MODELS = ("acme/base", "acme/chat", "other/oops")
SHOW = ("acme/base:v1", "acme/base:v2", "acme/base:stable", "acme/chat:v1", "other/oops:v1")
EXPORT = ("acme/base:v1", "acme/chat:v1")


def _first_half(arc: ArchiveCli, tmp_path: Path) -> None:
    base = tiny_tensors()
    (tmp_path / "data.yaml").write_text(DATA_YAML)
    arc(
        "push", write_model(tmp_path / "b1", base), "acme/base:v1", "--cutoff", "2023-04", "--license",
        "apache-2.0", "--description", "the base", "--source", "https://example.org/base", "--released",
        "2023-05-01", "--data", tmp_path / "data.yaml",
    )  # fmt: skip
    arc("push", write_model(tmp_path / "b2", finetune(base, ["model.layers.0.mlp.weight"])), "acme/base:v2",
        "--cutoff", "2023-09-15")  # fmt: skip
    arc("tag", "acme/base:v1", "stable")
    arc("tag", "acme/base:v2", "stable")  # a move: the history keeps both


def _second_half(arc: ArchiveCli, tmp_path: Path) -> None:
    chat = finetune(tiny_tensors(), ["model.layers.1.attn.weight"], seed=3)
    arc("push", write_model(tmp_path / "c1", chat), "acme/chat:v1", "--parent", "acme/base:v1", "--relation",
        "finetune", "--cutoff", "2024")  # fmt: skip
    (tmp_path / "data.json").write_text(DATA_JSON)
    arc("data", "attach", "acme/chat:v1", tmp_path / "data.json")
    arc("push", tmp_path / "b1", "acme/base:again")  # known bytes: no new snapshot, a new tag
    arc("tag", "acme/base:v1", "latest")
    arc("push", write_model(tmp_path / "o", tiny_tensors(seed=9)), "other/oops:v1")
    arc("rm", "other/oops:v1", "--reason", "trained on leaked data")


def _build(arc: ArchiveCli, tmp_path: Path) -> None:
    _first_half(arc, tmp_path)
    _second_half(arc, tmp_path)


def _bom(arc: ArchiveCli, ref: str) -> dict[str, Any]:
    """The CycloneDX export less what differs on every export: its serial number and timestamp (and so the
    document's size and sha256)."""
    out = arc.json("export", ref, "--format", "cyclonedx")
    doc = out.pop("document")
    del out["bytes"], out["sha256"], doc["serialNumber"], doc["metadata"]["timestamp"]
    return {**out, "document": doc}


def _answers(arc: ArchiveCli) -> dict[str, Any]:
    # this year: everything pushed so far, answered through the as-of path (tags from their history)
    year = str(dt.datetime.now(dt.UTC).year)
    return {
        "ls": arc.json("ls"),
        "show": {ref: arc.json("show", ref) for ref in SHOW},
        "log": {model: arc.json("log", model) for model in MODELS},
        "lineage": {ref: arc.json("lineage", ref) for ref in ("acme/base:v1", "acme/chat:v1")},
        "timeline": arc.json("timeline", "--as-of", year),
        "data": arc.json("data", "ls"),
        "export": {ref: _bom(arc, ref) for ref in EXPORT},
    }


def _records(store: Path) -> list[Path]:
    return sorted((store / "records").glob("*.json"))


def test_a_rebuilt_catalog_answers_as_the_lost_one_did(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _build(arc, tmp_path)
    before, keys = _answers(arc), arc.json("keys", "list")
    # the manifest's "2010".."2020-06", at its precision: the rebuild must re-derive it, not a day
    assert [(d["time_range"]["start"], d["time_range"]["end"]) for d in before["data"] if d["name"] == "the-pile"] == [
        ("2010", "2020-06")
    ]
    garbage = arc.json("gc", "--dry-run")["objects_removed"]
    records = _records(arc.home / "store")
    kinds = sorted(json.loads(p.read_bytes())["kind"] for p in records)
    assert kinds.count("snapshot") == 5 and kinds.count("tag") == 3 and kinds.count("data") == 2
    assert kinds.count("withdraw") == 1 and kinds.count("key") == 1
    for p in records:  # named by the sha256 of the body, which is canonical JSON
        body = p.read_bytes()
        assert p.name.endswith(f"-{hashlib.sha256(body).hexdigest()}.json")
        assert (
            body
            == json.dumps(
                json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )

    drop_catalog(database_url)
    assert "rebuild-catalog" in arc.fail("gc").stderr  # an empty catalog must not collect the whole store
    assert len(list((arc.home / "store" / "objects").rglob("*"))) > 0
    report = arc.json("rebuild-catalog")
    assert report["ok"] and report["refused"] == {} and report["records"] == len(records)
    assert report["replayed"] == {"data": 2, "key": 1, "snapshot": 5, "tag": 3, "withdraw": 1}

    assert _answers(arc) == before
    assert arc.json("keys", "list") == keys
    assert arc.json("gc", "--dry-run")["objects_removed"] == garbage  # the same objects are referenced
    verified = arc.json("verify", "--all")
    assert verified["ok"] and len(verified["verified"]) == 4
    audit = arc.json("audit", "--limit", "100")
    assert audit[0]["action"] == "rebuild-catalog"
    assert {"push", "tag", "tombstone", "data.attach", "key.trust"} <= {e["action"] for e in audit}
    assert _records(arc.home / "store") == records  # a rebuild writes no records of its own

    assert "not empty" in arc.fail("rebuild-catalog").stderr


def test_a_mirror_alone_rebuilds_the_catalog(arc: ArchiveCli, tmp_path: Path, database_url: str) -> None:
    _build(arc, tmp_path)
    before = _answers(arc)
    arc("mirror", "add", "backup", tmp_path / "mirror")
    [synced] = arc.json("mirror", "sync")
    assert synced["ok"] and synced["records_copied"] == len(_records(arc.home / "store"))
    assert arc.json("mirror", "sync")[0]["records_copied"] == 0  # incremental
    arc("tag", "acme/chat:v1", "prod")
    assert arc.json("mirror", "sync")[0]["records_copied"] == 1
    before["show"]["acme/chat:v1"] = arc.json("show", "acme/chat:v1")
    before["log"]["acme/chat"] = arc.json("log", "acme/chat")
    before["ls"] = arc.json("ls")
    before["timeline"] = arc.json("timeline", "--as-of", str(dt.datetime.now(dt.UTC).year))

    shutil.rmtree(arc.home)  # the home, its store and its keys are gone; only the mirror is left
    drop_catalog(database_url)
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'new.db'}"
    fresh = type(arc)(tmp_path / "new-home", database_url)
    fresh("init", "--store", tmp_path / "mirror")
    report = fresh.json("rebuild-catalog")
    assert report["ok"], report
    assert _answers(fresh) == before
    assert fresh.json("verify", "--all")["ok"]
    # the lost home's key is trusted again as the records say, and this home has its own
    assert sorted((k["trusted"], k["local"]) for k in fresh.json("keys", "list")) == [
        (True, False),
        (True, True),
    ]


def test_upgrade_writes_the_records_an_older_archive_lacks(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _first_half(arc, tmp_path)
    old = _records(arc.home / "store")
    _second_half(arc, tmp_path)
    before = _answers(arc)
    total = len(_records(arc.home / "store"))
    for p in old:  # as if the first half had been made by a modelarc without records
        p.unlink()

    upgraded = arc.json("upgrade")
    # the first half: init's key, two snapshots, their two tag moves and two of `tag`, the pushed data manifest
    assert upgraded["written"] == {"data": 1, "key": 1, "snapshot": 2, "tag": 4}, upgraded
    assert upgraded["records_found"] == total - len(old) and upgraded["not_recordable"] == []
    assert arc.json("upgrade")["written"] == {}  # idempotent
    assert len(_records(arc.home / "store")) == total - len(old) + 8

    drop_catalog(database_url)
    report = arc.json("rebuild-catalog")
    assert report["ok"], report
    assert _answers(arc) == before


def test_a_tampered_record_is_refused_by_name_and_nothing_is_rebuilt(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    before = _answers_small(arc)
    victim = next(p for p in _records(arc.home / "store") if json.loads(p.read_bytes())["kind"] == "snapshot")
    good = victim.read_bytes()
    victim.write_bytes(good.replace(b'"license":null', b'"license":"mit"'))  # still valid JSON, another body
    assert victim.read_bytes() != good
    arc("mirror", "add", "backup", tmp_path / "mirror")
    synced = arc("mirror", "sync", "--json", ok=False)
    assert synced.exit_code == 5 and f"records/{victim.name}" in json.loads(synced.stdout)[0]["not_copied"]
    assert not (tmp_path / "mirror" / "records" / victim.name).exists()  # never propagated

    drop_catalog(database_url)
    err = arc.fail("rebuild-catalog").stderr
    assert victim.name in err and "damaged" in err
    assert arc.json("ls") == []  # refused before anything was written
    victim.write_bytes(good)
    assert arc.json("rebuild-catalog")["ok"]
    assert _answers_small(arc) == before


def _answers_small(arc: ArchiveCli) -> dict[str, Any]:
    return {"ls": arc.json("ls"), "show": arc.json("show", "acme/m:v1"), "log": arc.json("log", "acme/m")}


def _rewrite(path: Path, change: Any) -> Path:
    """Replace a record by an intact one (its name the sha256 of its new body) saying something else: a forgery
    only the checks behind the record can catch."""
    body = json.loads(path.read_bytes())
    change(body)
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    path.unlink()
    new = path.with_name(f"{path.name.split('-')[0]}-{hashlib.sha256(data).hexdigest()}.json")
    new.write_bytes(data)
    return new


def test_a_snapshot_that_fails_its_checks_is_reported_and_left_out(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/a:v1")
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/b:v1")
    arc("push", write_model(tmp_path / "c", tiny_tensors(seed=3)), "acme/c:v1")
    arc("tag", "acme/a:v1", "stable")
    kept = arc.json("show", "acme/c:v1")
    snaps = {
        json.loads(p.read_bytes())["model"]: p
        for p in _records(arc.home / "store")
        if json.loads(p.read_bytes())["kind"] == "snapshot"
    }
    b_bundle = json.loads(snaps["acme/b"].read_bytes())["signatures"][0]["object"]
    # a: its record now names b's signature bundle, which signs other files
    forged = _rewrite(snaps["acme/a"], lambda body: body["signatures"][0].update(object=b_bundle))
    # b: a weight object gone from the store
    digests = {
        m: arc.json("show", f"{m}:v1")["snapshot"].removeprefix("sha256:") for m in ("acme/a", "acme/b")
    }
    victim = _weight_object_of(
        arc, digests["acme/b"], exclude={digests["acme/a"], kept["snapshot"].removeprefix("sha256:")}
    )
    (arc.home / "store" / "objects" / victim[:2] / victim).unlink()
    drop_catalog(database_url)

    result = arc("rebuild-catalog", "--json", ok=False)
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert "signature" in report["refused"][f"records/{forged.name}"]
    assert victim in report["refused"][f"records/{snaps['acme/b'].name}"]
    tag_refused = [why for why in report["refused"].values() if why.startswith("tag:")]
    assert len(tag_refused) == 1 and "acme/a" in tag_refused[0]  # `tag acme/a:v1 stable` named a left-out one
    assert len(report["refused"]) == 3
    assert [r["model"] for r in arc.json("ls")] == ["acme/c"]
    assert arc.json("show", "acme/c:v1") == kept


def _weight_object_of(arc: ArchiveCli, digest: str, exclude: set[str]) -> str:
    """An object of snapshot ``digest``'s safetensors tensors that the other snapshots do not use."""
    from modelarc.archive.manifest import SnapshotManifest
    from modelarc.storage import ObjectId, ObjectStore

    store = ObjectStore.open_local(arc.home / "store")

    def ids(d: str) -> set[str]:
        m = SnapshotManifest.from_bytes(bytes(store.get(ObjectId(d))))
        return {c.id for f in m.files for p in f.parts if p.kind == "tensor" for c in p.chunks}

    others = set().union(*(ids(d) for d in exclude))
    return sorted(ids(digest) - others)[0]


@pytest.mark.parametrize("kind", ["key", "tag"])
def test_records_are_written_for_key_and_tag_changes(arc: ArchiveCli, tmp_path: Path, kind: str) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    count = len(_records(arc.home / "store"))
    if kind == "tag":
        arc("tag", "acme/m:v1", "prod")
    else:
        fingerprint = arc.json("keys", "list")[0]["fingerprint"]
        arc("keys", "distrust", fingerprint)
    new = [json.loads(p.read_bytes()) for p in _records(arc.home / "store")]
    assert len(new) == count + 1
    assert kind in {r["kind"] for r in new}


def test_a_catalog_whose_store_is_a_bucket_is_rebuilt_from_the_bucket(
    bare_arc: ArchiveCli, s3_bucket: str, tmp_path: Path, database_url: str
) -> None:
    arc = bare_arc
    arc("init", "--store", f"s3://{s3_bucket}/archive")
    _build(arc, tmp_path)
    before = _answers(arc)
    assert not (arc.home / "store").exists()  # the records are in the bucket with the objects

    drop_catalog(database_url)
    report = arc.json("rebuild-catalog")
    assert report["ok"] and report["replayed"]["snapshot"] == 5, report
    assert _answers(arc) == before

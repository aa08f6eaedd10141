"""The CLI on an archive whose objects live in an S3 bucket (a real S3 API: moto's server on 127.0.0.1), with the
catalog on SQLite and on PostgreSQL: init, push, pull, verify, fsck, gc, stats, and damage done in the bucket."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from modelfactory import big_model, finetune, tiny_tensors, write_model
from s3server import raw_client

PREFIX = "archive/main"


@pytest.fixture
def s3arc(bare_arc: Any, s3_bucket: str) -> Any:
    arc = bare_arc
    info = arc.json("init", "--store", f"s3://{s3_bucket}/{PREFIX}/")
    assert info["store"] == f"s3://{s3_bucket}/{PREFIX}"
    arc.bucket = s3_bucket
    return arc


def _keys(arc: Any, endpoint: str) -> list[str]:
    client = raw_client(endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=arc.bucket, Prefix=f"{PREFIX}/objects/")
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


def _sha(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_push_pull_verify_fsck_gc_on_an_s3_store(s3arc: Any, tmp_path: Path, s3_endpoint: str) -> None:
    src = big_model(tmp_path / "big", megabytes=20)
    pushed = s3arc.json("push", src, "acme/big:v1")
    assert pushed["new_snapshot"]
    assert not (s3arc.home / "store").exists()  # nothing local: every object is in the bucket
    keys = _keys(s3arc, s3_endpoint)
    assert len(keys) >= 4 and all(k.startswith(f"{PREFIX}/objects/") for k in keys)
    assert s3arc.json("push", src, "acme/big:v1")["stored_bytes_added"] == 0  # dedup against the bucket

    out = tmp_path / "out"
    s3arc("pull", "acme/big:v1", out)
    assert _sha(out) == _sha(src)
    s3arc("verify", "acme/big:v1")
    assert s3arc.json("fsck")["ok"]
    full = s3arc.json("fsck", "--read-data")
    assert full["ok"] and full["bytes_checked"] > 0
    stats = s3arc.json("stats")
    assert stats["objects"] == len(keys)

    # an object nothing references (a crashed pusher's leftover) is collected; everything else stays
    orphan = "ab" * 32
    raw_client(s3_endpoint).put_object(
        Bucket=s3arc.bucket,
        Key=f"{PREFIX}/objects/ab/{orphan}",
        Body=b"MARC" + b"\0" * 60,
    )
    report = s3arc.json("gc")
    assert report["objects_removed"] == 1
    assert sorted(_keys(s3arc, s3_endpoint)) == sorted(keys)
    s3arc("verify", "acme/big:v1")


def test_a_finetune_shares_objects_and_rm_then_gc_frees_only_its_own(
    s3arc: Any, tmp_path: Path, s3_endpoint: str
) -> None:
    base = tiny_tensors()
    s3arc("push", write_model(tmp_path / "a", base), "acme/m:v1")
    before = set(_keys(s3arc, s3_endpoint))
    tuned = finetune(base, ["model.layers.0.mlp.weight"], seed=3)
    s3arc("push", write_model(tmp_path / "b", tuned), "acme/m:v2")
    added = set(_keys(s3arc, s3_endpoint)) - before
    assert 0 < len(added) < len(before)
    s3arc("rm", "acme/m:v2", "--reason", "test")
    s3arc("gc")
    assert set(_keys(s3arc, s3_endpoint)) - before <= added
    s3arc("verify", "acme/m:v1")


def test_damage_in_the_bucket_is_found_and_named(s3arc: Any, tmp_path: Path, s3_endpoint: str) -> None:
    snap = s3arc.json("push", write_model(tmp_path / "m"), "acme/tiny:v1")["snapshot"]
    client = raw_client(s3_endpoint)
    bucket = s3arc.bucket
    keys = _keys(s3arc, s3_endpoint)
    sizes = {k: client.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in keys}
    victim = max(keys, key=sizes.__getitem__)
    body = bytearray(client.get_object(Bucket=bucket, Key=victim)["Body"].read())
    body[-5] ^= 0xFF
    client.put_object(Bucket=bucket, Key=victim, Body=bytes(body))

    assert "corrupt" in s3arc.fail("verify", "acme/tiny:v1").stderr
    result = s3arc("fsck", "--read-data", "--json", ok=False)
    assert result.exit_code != 0 and victim.rsplit("/", 1)[1] in json.loads(result.stdout)["corrupt"]
    assert "corrupt" in s3arc.fail("pull", "acme/tiny:v1", tmp_path / "out").stderr
    assert not (tmp_path / "out" / "model.safetensors").exists()

    client.delete_object(Bucket=bucket, Key=victim)
    result = s3arc("fsck", "--json", ok=False)  # found by listing alone
    report = json.loads(result.stdout)
    assert report["missing"][victim.rsplit("/", 1)[1]] == [f"acme/tiny@{snap}"]


def test_s3_store_errors_are_one_line(bare_arc: Any, s3_bucket: str) -> None:
    arc = bare_arc
    err = arc.fail("init", "--store", "s3://no-such-bucket-modelarc/x").stderr
    assert "no-such-bucket-modelarc" in err
    assert "invalid S3 bucket name" in arc.fail("init", "--store", "s3://A_B/x").stderr
    arc("init", "--store", f"s3://{s3_bucket}/one")
    arc("init", "--store", f"s3://{s3_bucket}/one/")  # the same store, spelled with a slash: fine
    assert "already keeps its objects" in arc.fail("init", "--store", f"s3://{s3_bucket}/two").stderr
    assert json.loads((arc.home / "config.json").read_text()) == {"format": 1, "store": f"s3://{s3_bucket}/one"}


def test_a_home_with_a_local_store_is_not_switched_to_a_bucket(arc: Any, s3_bucket: str) -> None:
    assert "already keeps its objects" in arc.fail("init", "--store", f"s3://{s3_bucket}/x").stderr
    assert not (arc.home / "config.json").exists()


def test_a_family_stored_as_deltas_in_a_bucket(s3arc: Any, tmp_path: Path) -> None:
    """Deltas whose bases are read back from the bucket, a withdrawn parent's weights kept there for its fine-tune."""
    from finetunes import LIGHT, write_family

    family = write_family(tmp_path / "family", strengths=(LIGHT,), dtypes=("BF16",))
    s3arc("push", family.folder("base", "BF16"), "acme/base:v1")
    pushed = s3arc.json(
        "push",
        family.folder("light", "BF16"),
        "acme/ft:v1",
        "--parent",
        "acme/base:v1",
        "--relation",
        "finetune",
    )
    assert pushed["delta_objects"] > 0
    s3arc("rm", "acme/base:v1", "--reason", "superseded")
    s3arc.json("gc")
    s3arc("pull", "acme/ft:v1", tmp_path / "out")
    assert _sha(tmp_path / "out") == _sha(family.folder("light", "BF16"))
    assert s3arc.json("fsck")["ok"]


def test_the_push_index_checks_the_bucket_before_it_vouches_for_a_file(
    s3arc: Any, tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unchanged re-push takes the files unread only while every object they name is in the bucket."""
    from modelarc.archive import push_index

    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 0.0)
    src = big_model(tmp_path / "big", megabytes=20)
    files = s3arc.json("push", src, "acme/big:v1")["files"]
    assert s3arc.json("push", src, "acme/big:v1")["unchanged_files"] == files
    keys = _keys(s3arc, s3_endpoint)
    sizes = {k: raw_client(s3_endpoint).head_object(Bucket=s3arc.bucket, Key=k)["ContentLength"] for k in keys}
    victim = max(keys, key=sizes.__getitem__)  # a weight chunk
    raw_client(s3_endpoint).delete_object(Bucket=s3arc.bucket, Key=victim)
    again = s3arc.json("push", src, "acme/big:v1")
    assert again["unchanged_files"] < files and again["stored_bytes_added"] > 0
    assert victim in _keys(s3arc, s3_endpoint)  # read again, and stored again
    out = tmp_path / "out"
    s3arc("pull", "acme/big:v1", out)
    assert _sha(out) == _sha(src)

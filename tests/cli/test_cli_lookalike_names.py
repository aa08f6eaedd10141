"""Model names that differ only in case (docs/SECURITY.md, "Lookalike model names"), on SQLite and PostgreSQL.

A new model equal to an archived one but for case (`Acme/tiny` beside `acme/tiny`), or in a new namespace spelled
like an archived one (`ACME/new` beside `acme/...`), is refused by `push` in one line naming the archived spelling,
before a byte is archived. A lookup that misses only by case says "did you mean". A pair that an archive already
holds (made before the rule) keeps working: each model answers to its exact spelling, and takes new snapshots.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import finetune, tiny_tensors, write_model
from sqlalchemy import create_engine, text

from modelarc.archive.records import canonical

ArchiveCli = Any  # tests/cli/conftest.py


def _stored(arc: ArchiveCli) -> set[str]:
    """Every file the store holds (objects and catalog records)."""
    root = arc.home / "store"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def tiny(arc: ArchiveCli, tmp_path: Path) -> str:
    """acme/tiny:v1 archived; its snapshot id."""
    arc("push", write_model(tmp_path / "tiny"), "acme/tiny:v1")
    return str(arc.json("show", "acme/tiny:v1")["snapshot"])


@pytest.mark.parametrize(
    ("ref", "named"),
    [
        ("Acme/tiny:v1", "this archive has acme/tiny"),
        ("acme/Tiny:v1", "this archive has acme/tiny"),
        ("ACME/TINY:latest", "this archive has acme/tiny"),
        ("ACME/new:v1", "this archive has namespace acme"),
    ],
)
def test_push_of_a_name_differing_only_in_case_is_refused_in_one_line(
    arc: ArchiveCli, tiny: str, tmp_path: Path, ref: str, named: str
) -> None:
    other = write_model(tmp_path / "other", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"]))
    before = _stored(arc)
    result = arc.fail("push", other, ref)
    assert result.exit_code == 2, result.output
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "differs only in case" in line and named in line, line
    assert ref.partition(":")[0] in line, line
    assert _stored(arc) == before  # refused before a byte was archived
    assert [r["model"] for r in arc.json("ls")] == ["acme/tiny"]


def test_the_archived_spelling_still_takes_new_models_and_snapshots(
    arc: ArchiveCli, tiny: str, tmp_path: Path
) -> None:
    other = write_model(tmp_path / "other", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"]))
    arc("push", other, "acme/tiny:v2")
    arc("push", other, "acme/small:v1")  # a new name in the namespace as archived
    arc("push", other, "zeta/tiny:v1")  # the same name in another namespace is no lookalike
    assert sorted({r["model"] for r in arc.json("ls")}) == ["acme/small", "acme/tiny", "zeta/tiny"]


@pytest.mark.parametrize("command", [("show",), ("pull",), ("log",)])
def test_a_lookup_missing_only_by_case_says_did_you_mean(
    arc: ArchiveCli, tiny: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    args = [*command, "ACME/tiny" if command == ("log",) else "ACME/tiny:v1"]
    if command == ("pull",):
        args.append(str(tmp_path / "out"))
    result = arc.fail(*args)
    assert result.exit_code == 3, result.output
    assert "did you mean acme/tiny?" in result.stderr, result.stderr
    assert "did you mean" not in arc.fail("show", "acme/nothing:v1").stderr  # nothing spelled so: no guess


def test_a_pair_already_archived_stays_resolvable_by_each_exact_spelling(
    arc: ArchiveCli, tiny: str, tmp_path: Path, database_url: str
) -> None:
    # an archive from before the rule: a second model whose name differs only in case, made in the catalog itself
    twin_src = write_model(tmp_path / "twin", finetune(tiny_tensors(), ["model.layers.1.mlp.weight"], seed=4))
    arc("push", twin_src, "other/tiny:v1")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE models SET namespace = 'Acme' WHERE namespace = 'other'"))
    finally:
        engine.dispose()
    twin = str(arc.json("show", "Acme/tiny:v1")["snapshot"])
    assert twin != tiny and arc.json("show", "acme/tiny:v1")["snapshot"] == tiny

    # each answers to its own spelling: pulls, new tags and new snapshots go to the one named
    arc("pull", "Acme/tiny:v1", tmp_path / "out-twin")
    assert (tmp_path / "out-twin" / "model.safetensors").read_bytes() == (
        twin_src / "model.safetensors"
    ).read_bytes()
    arc("tag", "Acme/tiny:v1", "stable")
    assert arc.json("show", "Acme/tiny:stable")["snapshot"] == twin
    assert "no tag 'stable'" in arc.fail("show", "acme/tiny:stable").stderr
    arc("push", tmp_path / "tiny", "Acme/tiny:v2")
    assert arc.json("show", "Acme/tiny:v2")["snapshot"] == tiny
    arc("push", twin_src, "Acme/new:v1")  # the namespace is spelled so already: not a lookalike of acme
    arc("push", twin_src, "acme/new2:v1")

    # a third spelling is refused, naming the oldest; a miss by case names both
    refused = arc.fail("push", twin_src, "ACME/tiny:v1")
    assert "this archive has acme/tiny" in refused.stderr, refused.stderr
    assert "did you mean acme/tiny or Acme/tiny?" in arc.fail("show", "ACME/tiny:v1").stderr
    assert arc("verify", "Acme/tiny:v1").exit_code == 0
    assert arc("verify", "acme/tiny:v1").exit_code == 0


def test_rebuild_catalog_brings_back_both_of_an_archived_pair(
    arc: ArchiveCli, tiny: str, tmp_path: Path, database_url: str
) -> None:
    # a store from before the rule: its records name acme/tiny and Acme/tiny (rewritten here as a push then wrote them)
    arc("push", write_model(tmp_path / "twin", tiny_tensors(seed=4)), "other/tiny:v1")
    twin = str(arc.json("show", "other/tiny:v1")["snapshot"])
    records = arc.home / "store" / "records"
    for path in sorted(records.glob("*.json")):
        body = json.loads(path.read_bytes())
        if body.get("model") == "other/tiny":
            body["model"] = "Acme/tiny"
            data = canonical(body)
            written = path.name.partition("-")[0]
            path.unlink()
            (records / f"{written}-{hashlib.sha256(data).hexdigest()}.json").write_bytes(data)
    drop_catalog(database_url)

    report = arc.json("rebuild-catalog")
    assert report["ok"] and report["refused"] == {}, report
    assert any("kept Acme/tiny beside acme/tiny" in note for note in report["notes"]), report["notes"]
    assert arc.json("show", "acme/tiny:v1")["snapshot"] == tiny
    assert arc.json("show", "Acme/tiny:v1")["snapshot"] == twin
    assert "this archive has acme/tiny" in arc.fail("push", tmp_path / "twin", "ACME/tiny:v1").stderr


def test_a_hub_import_under_a_lookalike_name_is_refused_before_a_download(
    arc: ArchiveCli, tiny: str, tmp_path: Path, hub: Any
) -> None:
    hub.add("Meta/tiny", write_model(tmp_path / "hub-model", tiny_tensors(seed=8)))
    refused = arc.fail("push", "hf://Meta/tiny", "ACME/tiny:v1")
    assert refused.exit_code == 2 and "this archive has acme/tiny" in refused.stderr, refused.output
    assert hub.requests == []  # not a byte asked of the Hub
    arc("push", "hf://Meta/tiny", "acme/tiny:hub")  # the archived spelling imports as ever
    assert hub.requests

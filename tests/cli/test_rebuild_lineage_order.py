"""rebuild-catalog replays a snapshot's record after its parents' records whatever their names' times say
(archive/record_order.py; docs/FORMAT.md "Catalog records", "Order and replay"): a record's time is only its name,
which whoever writes the store (or a mirror a rebuild starts from) chooses. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from modelfactory import finetune, tiny_tensors, write_model
from recordkit import rebuild as _rebuild

ArchiveCli = Any  # tests/cli/conftest.py
_NAME_TIME = "%Y%m%dT%H%M%S%fZ"
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _family(arc: ArchiveCli, tmp_path: Path) -> dict[str, Any]:
    """acme/base:v1, and acme/chat:v1 fine-tuned from it; what the catalog says of the child."""
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "b", base), "acme/base:v1", "--license", "apache-2.0")
    arc("push", write_model(tmp_path / "c", finetune(base, ["model.layers.0.mlp.weight"])), "acme/chat:v1",
        "--parent", "acme/base:v1", "--relation", "finetune", "--license", "mit")  # fmt: skip
    return _said(arc)


def _said(arc: ArchiveCli) -> dict[str, Any]:
    shown = arc.json("show", "acme/chat:v1")
    return {
        "lineage": arc.json("lineage", "acme/chat:v1"),
        "license": shown["license"],
        "at": shown["created_at"],
    }


def _paths(arc: ArchiveCli, kind: str) -> list[Path]:
    paths = sorted((arc.home / "store" / "records").glob("*.json"))
    return [p for p in paths if json.loads(p.read_bytes())["kind"] == kind]


def _written(path: Path) -> dt.datetime:
    return dt.datetime.strptime(path.name.split("-")[0], _NAME_TIME)


def test_a_child_record_named_before_its_parent_still_replays_after_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    before = _family(arc, tmp_path)
    parent, child = _paths(arc, "snapshot")
    # the child's own record, renamed a day before its parent's (the name's time is not under its sha256)
    earlier = _written(parent) - dt.timedelta(days=1)
    child.rename(child.with_name(f"{earlier.strftime(_NAME_TIME)}-{child.name.split('-', 1)[1]}"))

    report = _rebuild(arc, database_url)
    assert report["ok"] and not report["notes"], report  # no "parents not in the rebuilt catalog"
    assert _said(arc) == before


def test_a_planted_record_named_before_the_parents_leaves_the_lineage_to_the_catalogs_record(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """An archive from before records, with a planted record of the child named long before anything: `upgrade`
    names the catalog's record of the child to replay before the planted one, so before the parent's records
    too; the rebuild replays it after its parent, with its lineage, and refuses the planted one."""
    before = _family(arc, tmp_path)
    parent, child = _paths(arc, "snapshot")
    genuine = json.loads(child.read_bytes())
    shutil.rmtree(arc.home / "store" / "records")  # as a modelarc before records left it
    (arc.home / "store" / "records").mkdir()
    written = _written(parent) - dt.timedelta(days=30)
    planted = dict(genuine, actor="mallory", parents=[], at=written.strftime(_BODY_TIME),
                   provenance=dict(genuine["provenance"], license="proprietary"))  # fmt: skip
    data = json.dumps(planted, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    key = f"records/{written.strftime(_NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    (arc.home / "store" / key).write_bytes(data)

    upgraded = arc.json("upgrade")
    [said] = [c for c in upgraded["contradicted"] if c.startswith(key)]
    assert "provenance.license" in said

    report = _rebuild(arc, database_url)
    assert list(report["refused"]) == [key] and "contradict" in report["refused"][key], report
    assert not [n for n in report["notes"] if "parents not in the rebuilt catalog" in n], report
    assert _said(arc) == before


def test_a_repush_naming_only_some_parents_is_no_contradiction(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    base, other = tiny_tensors(), tiny_tensors(seed=4)
    arc("push", write_model(tmp_path / "b", base), "acme/base:v1")
    arc("push", write_model(tmp_path / "o", other), "acme/other:v1")
    child = write_model(tmp_path / "c", finetune(base, ["model.layers.0.mlp.weight"]))
    arc("push", child, "acme/chat:v1", "--parent", "acme/base:v1", "--relation", "merge", "--parent",
        "acme/other:v1", "--relation", "merge")  # fmt: skip
    # a re-push stating one of the two
    arc("push", child, "acme/chat:again", "--parent", "acme/other:v1", "--relation", "merge")
    before = _said(arc)

    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {} and upgraded["contradicted"] == [], upgraded
    report = _rebuild(arc, database_url)
    assert report["ok"], report
    assert _said(arc) == before

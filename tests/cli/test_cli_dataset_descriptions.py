"""A dataset row is one whole description: a stated sha256 is public, so it cannot choose another model's labels.

Before, the first description recorded for a content hash was shared by every later manifest entry naming it: a
push stating a well-known dataset's sha256 under a wrong name, licence or notes labelled every model pushed later
with that dataset (``show``, ``ls --trained-on``, ``data ls``/``show``, exports). Now the same description is one
row (shared, as before) and the same hash described otherwise is another; each snapshot shows what its own manifest
said. Local ``push --data`` and ``data attach`` here, on SQLite and PostgreSQL; the served and pulled cases are in
tests/transfer/test_dataset_descriptions_remote.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model

if TYPE_CHECKING:  # the fixture's type only: importing conftest by name clashes when tests/transfer runs too
    from conftest import ArchiveCli

SHA = "cd" * 32  # a public dataset's published digest: anyone may state it


def _manifest(tmp_path: Path, file: str, *entries: str) -> Path:
    path = tmp_path / f"{file}.yaml"
    path.write_text("version: 1\ndatasets:\n" + "".join(f"  - {e}\n" for e in entries))
    return path


def _pile(name: str = "the-pile", license: str = "mixed", notes: str = "the public release") -> str:
    return f"{{name: {name}, version: '1.0', license: {license}, sha256: {SHA}, role: pretrain, notes: '{notes}'}}"


def _push(arc: ArchiveCli, tmp_path: Path, ref: str, seed: int, data: Path) -> None:
    arc("push", write_model(tmp_path / f"model-{seed}", tiny_tensors(seed=seed)), ref, "--data", data)


def _shown(arc: ArchiveCli, ref: str) -> list[tuple[str, str | None, str | None]]:
    return [(d["name"], d["license"], d["notes"]) for d in arc.json("show", ref)["datasets"]]


def _trained_on(arc: ArchiveCli, name: str) -> list[str]:
    return sorted(r["model"] for r in arc.json("ls", "--trained-on", name))


def _listed(arc: ArchiveCli) -> list[tuple[str, str | None, int]]:
    return sorted((d["name"], d["license"], d["snapshots"]) for d in arc.json("data", "ls"))


def test_a_squatted_sha256_labels_only_the_squatters_snapshot(arc: ArchiveCli, tmp_path: Path) -> None:
    squat = _manifest(tmp_path, "squat", _pile("junk-data", "do-not-use", "contaminated, do not use"))
    _push(arc, tmp_path, "mallory/m:v1", 1, squat)
    honest = _manifest(tmp_path, "honest", _pile())
    _push(arc, tmp_path, "acme/base:v1", 2, honest)  # not refused: an honest push must go through

    assert _shown(arc, "acme/base:v1") == [("the-pile", "mixed", "the public release")]
    assert _shown(arc, "mallory/m:v1") == [("junk-data", "do-not-use", "contaminated, do not use")]
    assert _trained_on(arc, "the-pile") == ["acme/base"]
    assert _trained_on(arc, "junk-data") == ["mallory/m"]
    assert _listed(arc) == [("junk-data", "do-not-use", 1), ("the-pile", "mixed", 1)]
    # both state the same data hash: it stays the dataset's hash, and each export prints it for its own row
    [pile] = arc.json("data", "show", "the-pile")
    assert pile["content_hash"] == SHA and [u["model"] for u in pile["used_by"]] == ["acme/base"]
    # ...and `data show` says the hash is described otherwise too, so a relabelled copy is not hidden
    assert [(o["name"], o["license"], o["snapshots"]) for o in pile["described_otherwise"]] == [
        ("junk-data", "do-not-use", 1)
    ]
    assert "also described here as junk-data 1.0 (license do-not-use), used by 1 snapshot" in (
        arc("data", "show", "the-pile").stdout
    )
    bom = arc.json("export", "acme/base:v1", "--format", "cyclonedx")["document"]
    [component] = [c for c in bom["components"] if c["type"] == "data"]
    assert component["name"] == "the-pile" and component["hashes"] == [{"alg": "SHA-256", "content": SHA}]
    assert component["licenses"] == [{"license": {"name": "mixed"}}]


def test_the_same_description_is_one_row_for_every_model_and_every_attachment(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    honest = _manifest(tmp_path, "honest", _pile())
    _push(arc, tmp_path, "acme/a:v1", 1, honest)
    _push(
        arc, tmp_path, "lab/b:v1", 2, _manifest(tmp_path, "copy", _pile())
    )  # another file, same description
    again = arc.json("data", "attach", "acme/a:v1", honest)
    assert [d["new"] for d in again["datasets"]] == [False]
    assert _listed(arc) == [("the-pile", "mixed", 2)]
    [pile] = arc.json("data", "show", "the-pile")
    assert sorted(u["model"] for u in pile["used_by"]) == ["acme/a", "acme/a", "lab/b"]
    assert pile["described_otherwise"] == []
    assert "also described" not in arc("data", "show", "the-pile").stdout


def test_notes_are_part_of_the_description_of_a_dataset_without_a_sha256(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """No sha256: the content hash is of the description without role and notes, so two entries differing only
    in notes share it; their rows must not, or the first pusher would write every later user's notes."""
    entry = "{name: alpaca, revision: abc123, records: 52000, role: instruction, notes: '%s'}"
    _push(
        arc,
        tmp_path,
        "mallory/m:v1",
        1,
        _manifest(tmp_path, "poisoned", entry % "contaminated with the test set"),
    )
    _push(arc, tmp_path, "acme/chat:v1", 2, _manifest(tmp_path, "honest", entry % "the public release"))
    assert _shown(arc, "acme/chat:v1") == [("alpaca", None, "the public release")]
    assert _shown(arc, "mallory/m:v1") == [("alpaca", None, "contaminated with the test set")]
    versions = arc.json("data", "show", "alpaca")
    assert [(v["notes"], [u["model"] for u in v["used_by"]]) for v in versions] == [
        ("contaminated with the test set", ["mallory/m"]),
        ("the public release", ["acme/chat"]),
    ]
    assert versions[0]["content_hash"] == versions[1]["content_hash"]
    assert [o["description_hash"] for o in versions[0]["described_otherwise"]] == [
        versions[1]["description_hash"]
    ]
    # neither export presents the description's own hash as the data's
    bom = arc.json("export", "acme/chat:v1", "--format", "cyclonedx")["document"]
    [component] = [c for c in bom["components"] if c["type"] == "data"]
    assert component.get("hashes", []) == [] and component["description"] == "the public release"


def test_one_snapshot_with_two_descriptions_of_one_hash_exports_two_components(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """A later `data attach` correcting a licence: the snapshot keeps both attachments (append-only), each a row."""
    _push(arc, tmp_path, "acme/base:v1", 1, _manifest(tmp_path, "first", _pile(license="unknown")))
    arc("data", "attach", "acme/base:v1", _manifest(tmp_path, "corrected", _pile()))
    assert _shown(arc, "acme/base:v1") == [
        ("the-pile", "unknown", "the public release"),
        ("the-pile", "mixed", "the public release"),
    ]
    bom = arc.json("export", "acme/base:v1", "--format", "cyclonedx")["document"]  # validated on export
    refs = [c["bom-ref"] for c in bom["components"] if c["type"] == "data"]
    assert len(refs) == len(set(refs)) == 2 and all(r.startswith(f"data:{SHA}:") for r in refs)


def test_rebuild_catalog_reproduces_each_description_and_its_links(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _push(arc, tmp_path, "mallory/m:v1", 1, _manifest(tmp_path, "squat", _pile("junk-data", "do-not-use")))
    honest = _manifest(
        tmp_path, "honest", _pile(), "{name: books, version: '3', records: 10, role: finetune}"
    )
    _push(arc, tmp_path, "acme/base:v1", 2, honest)
    _push(arc, tmp_path, "acme/chat:v1", 3, honest)
    arc("data", "attach", "acme/base:v1", _manifest(tmp_path, "corrected", _pile(license="cc-by")))

    def answers() -> Any:
        shown = {
            ref: arc.json("show", ref)["datasets"] for ref in ("mallory/m:v1", "acme/base:v1", "acme/chat:v1")
        }
        detail = {name: arc.json("data", "show", name) for name in ("the-pile", "junk-data", "books")}
        trained = {name: _trained_on(arc, name) for name in ("the-pile", "junk-data", "books")}
        return arc.json("data", "ls"), detail, shown, trained

    before = answers()
    assert len(before[0]) == 4  # the-pile twice (mixed, cc-by), junk-data, books
    drop_catalog(database_url)
    assert arc.json("rebuild-catalog")["ok"]
    assert answers() == before

"""An object of a newer format version or codec id (docs/FORMAT.md "Versions") is not damage, on SQLite and
PostgreSQL: verify, fsck, scrub and pull say it needs a newer modelarc (exit 17, the object named once), scrub
remembers it ``unsupported``, and repair, heal and quarantine leave it as it is; gc refuses to guess its bases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model
from recordkit import catalog_session

from modelarc.errors import UnsupportedObjectError
from modelarc.registry import integrity as rows

ArchiveCli = Any  # tests/cli/conftest.py
NEWER = UnsupportedObjectError.exit_code


def _largest(store: Path) -> Path:
    return max((p for p in (store / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _as_newer(path: Path, offset: int, value: int) -> bytes:
    """The object at ``path`` as a later modelarc might write it: format version (offset 4) or codec id (5)."""
    blob = bytearray(path.read_bytes())
    blob[offset] = value
    path.write_bytes(bytes(blob))
    return bytes(blob)


def _pushed(arc: ArchiveCli, tmp_path: Path, offset: int = 5, value: int = 4) -> tuple[Path, Path, bytes]:
    src = write_model(tmp_path / "m", tiny_tensors())
    arc("push", src, "acme/m:v1")
    victim = _largest(arc.home / "store")
    return src, victim, _as_newer(victim, offset, value)


def test_verify_fsck_and_pull_say_an_object_of_a_newer_codec_needs_a_newer_modelarc(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    _src, victim, _blob = _pushed(arc, tmp_path)
    for command in (("verify", "acme/m:v1"), ("pull", "acme/m:v1", tmp_path / "out")):
        failed = arc.fail(*command)
        assert failed.exit_code == NEWER
        assert "codec id 4 needs a newer modelarc" in failed.stderr and "corrupt" not in failed.stderr
        assert failed.stderr.count(victim.name) == 1
    fsck = arc("fsck", "--read-data", ok=False)
    assert fsck.exit_code == NEWER and "CORRUPT" not in fsck.stdout and "BROKEN" not in fsck.stdout
    (line,) = [ln for ln in fsck.stdout.splitlines() if ln.startswith("UNSUPPORTED")]
    assert line.count(victim.name) == 1 and "codec id 4 needs a newer modelarc" in line
    report = json.loads(arc("fsck", "--read-data", "--json", ok=False).stdout)
    assert (report["corrupt"], list(report["unsupported"]), report["broken_snapshots"]) == ({}, [victim.name], [])


def test_an_object_of_a_newer_format_version_is_not_called_corrupt(arc: ArchiveCli, tmp_path: Path) -> None:
    _src, victim, _blob = _pushed(arc, tmp_path, offset=4, value=2)
    failed = arc.fail("verify", "acme/m:v1")
    assert failed.exit_code == NEWER and "object format version 2 needs a newer modelarc" in failed.stderr


def test_scrub_remembers_it_unsupported_and_repair_leaves_it_as_it_is(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    arc("mirror", "add", "usb", mirror)
    arc("mirror", "sync")  # the mirror holds the object as this modelarc wrote it
    _src, victim, blob = _pushed(arc, tmp_path)  # (the same bytes: a push of them again finds it stored)
    scrub = arc("scrub", "--json", ok=False)
    report = json.loads(scrub.stdout)
    assert scrub.exit_code == NEWER and list(report["unsupported"]) == [victim.name] and not report["corrupt"]
    repaired = arc.json("repair", "--read-data")
    assert repaired["repaired"] == {} and repaired["quarantined"] == {} and list(repaired["unsupported"]) == [
        victim.name
    ]
    assert victim.read_bytes() == blob and not (arc.home / "store" / "quarantine").exists()


@pytest.mark.parametrize("found", ["unsupported", "corrupt"])
def test_a_push_that_holds_the_bytes_replaces_an_unreadable_header_and_keeps_it(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: Any, found: str
) -> None:
    """A header this modelarc cannot read (a newer format, or one bit of rot in its version or codec byte) that a
    scrub found (``unsupported``; ``corrupt`` by a scrub before that state existed): a push holding the object's
    bytes, which hash to its id, puts a copy this modelarc verifies in its place and keeps the unreadable one in
    quarantine/, as docs/FORMAT.md "Versions" allows. Without a mirror nothing else could ever mend a flipped byte."""
    src, victim, blob = _pushed(arc, tmp_path)
    original = (tmp_path / "m").exists()
    with catalog_session(arc, monkeypatch) as s:
        rows.record_checks(s, {victim.name: found})
    pushed = arc("push", src, "acme/m:v2")
    assert "healed" in pushed.stdout, pushed.stdout
    (aside,) = (arc.home / "store" / "quarantine").iterdir()
    assert aside.read_bytes() == blob and aside.name.startswith(victim.name) and original
    assert victim.read_bytes() != blob and arc.json("verify", "acme/m:v1")["ok"]
    assert arc.json("scrub")["ok"]


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("offset", "value"), [(5, 4), (4, 2)], ids=["codec", "version"])
def test_a_push_of_the_same_bytes_replaces_an_unreadable_header_no_scrub_has_found(
    arc: ArchiveCli, tmp_path: Path, offset: int, value: int
) -> None:
    """No scrub ran: the push meets the unreadable copy as it deduplicates against it. It holds bytes that hash to
    the id, so it puts a copy this modelarc verifies in its place, as for one a scrub found (the unreadable one
    kept in quarantine/), rather than failing with exit 17 until someone runs a scrub."""
    src, victim, blob = _pushed(arc, tmp_path, offset, value)
    pushed = arc("push", src, "acme/m:v2")
    assert "healed 1 damaged object" in pushed.stdout, pushed.stdout
    (aside,) = (arc.home / "store" / "quarantine").iterdir()
    assert aside.read_bytes() == blob and aside.name.startswith(victim.name)
    arc("pull", "acme/m:v1", tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(src)
    heal = arc.json("audit", "--action", "heal")
    assert len(heal) == 1 and heal[0]["details"]["objects"] == [victim.name]
    assert arc.json("verify", "acme/m:v2")["ok"] and arc.json("fsck", "--read-data")["ok"]
    assert arc.json("scrub")["ok"]


def test_a_fine_tune_re_pushed_replaces_its_own_delta_whose_header_cannot_be_read(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """The unreadable copy is a chunk the push would store as a delta against its parent: it is met there too,
    and replaced by a copy stored on its own."""
    from modelfactory import finetune

    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    changed = "model.layers.1.mlp.weight"
    tuned = write_model(tmp_path / "ft", finetune(base, [changed], seed=9))
    arc("push", tuned, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    store = arc.home / "store" / "objects"
    chunk = hashlib.sha256(finetune(base, [changed], seed=9)[changed].tobytes()).hexdigest()
    delta = store / chunk[:2] / chunk
    assert delta.read_bytes()[5] == 3  # stored as a delta (codec 3) against the parent's chunk
    unreadable = _as_newer(delta, 5, 4)
    arc("push", tuned, "acme/ft:v2", "--parent", "acme/base:v1", "--relation", "finetune")
    (aside,) = (arc.home / "store" / "quarantine").iterdir()
    assert aside.read_bytes() == unreadable and delta.read_bytes()[5] not in (3, 4)
    arc("pull", "acme/ft:v1", tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(tuned)
    assert arc.json("fsck", "--read-data")["ok"]


def test_a_fine_tune_whose_delta_base_has_an_unreadable_header_is_stored_on_its_own(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """The parent chunk a fine-tune would be a delta against cannot be read here: the push stores that tensor on
    its own (as for a damaged base) instead of failing."""
    from modelfactory import finetune

    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    changed = "model.layers.1.mlp.weight"
    tuned = write_model(tmp_path / "ft", finetune(base, [changed], seed=9))
    store = arc.home / "store" / "objects"
    base_chunk = hashlib.sha256(base[changed].tobytes()).hexdigest()  # a small tensor is one chunk, named so
    _as_newer(store / base_chunk[:2] / base_chunk, 5, 4)
    pushed = arc("push", tuned, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    assert ": 0 chunks" in pushed.stdout  # its only changed tensor is stored on its own, not as a delta
    assert arc.json("verify", "acme/ft:v1")["ok"]


def test_gc_refuses_rather_than_guess_the_bases_of_an_object_of_a_newer_codec(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """A snapshot the records name and the catalog lacks keeps its objects and their bases through gc; the bases
    of an object of an unknown codec cannot be told, so gc deletes nothing."""
    (tmp_path / "other.bin").write_bytes(b"x")
    arc("push", tmp_path / "other.bin", "acme/other:v1")
    _src, victim, _blob = _pushed(arc, tmp_path)
    drop_catalog(database_url)
    arc("rebuild-catalog", ok=False)  # acme/m is refused: its object cannot be read here
    failed = arc.fail("gc")
    assert failed.exit_code == NEWER and "gc cannot tell which objects it needs" in failed.stderr
    assert victim.name in failed.stderr and "codec id 4" in failed.stderr


def test_repair_replaces_an_unreadable_header_from_a_mirror_copy_it_can_verify(arc: ArchiveCli, tmp_path: Path) -> None:
    """A header this modelarc cannot read is a newer format or damage to those bytes; a mirror copy this modelarc
    decodes and hashes to the id settles it either way. Repair (after a plain scrub, no --read-data) puts that copy
    back and keeps the unreadable one in quarantine/, so a flipped codec byte is not left unrepaired for good."""
    src = write_model(tmp_path / "m", tiny_tensors())
    arc("push", src, "acme/m:v1")
    arc("mirror", "add", "usb", tmp_path / "mirror")
    arc("mirror", "sync")  # a copy this modelarc wrote and can verify
    victim = _largest(arc.home / "store")
    original = victim.read_bytes()
    unreadable = _as_newer(victim, 5, 4)
    assert arc("scrub", ok=False).exit_code == NEWER
    repaired = arc.json("repair")
    assert list(repaired["repaired"]) == [victim.name] and not repaired["unsupported"], repaired
    assert victim.read_bytes() == original
    (aside,) = (arc.home / "store" / "quarantine").iterdir()
    assert aside.read_bytes() == unreadable and aside.name.startswith(victim.name)
    assert arc.json("verify", "acme/m:v1")["ok"]
    assert arc.json("scrub")["ok"]


def test_mirror_sync_copies_what_it_can_and_mends_a_mirror_copy_it_cannot_read(arc: ArchiveCli, tmp_path: Path) -> None:
    """One object of the primary this modelarc cannot read is not copied (named, exit 5) while every other object
    reaches every mirror; a mirror's copy it cannot read is replaced by `--read-data` from the primary's verified
    one, the unreadable copy kept in the mirror's quarantine/."""
    _src, victim, _blob = _pushed(arc, tmp_path)
    for name in ("a", "b"):
        arc("mirror", "add", name, tmp_path / name)
    failed = arc("mirror", "sync", ok=False)
    assert failed.exit_code == 5 and victim.name in failed.stdout and "NOT COPIED" in failed.stdout
    stored = sum(1 for p in (arc.home / "store" / "objects").rglob("*") if p.is_file())
    for name in ("a", "b"):
        assert sum(1 for p in (tmp_path / name / "objects").rglob("*") if p.is_file()) == stored - 1
    (tmp_path / "x").mkdir()
    arc("push", write_model(tmp_path / "x" / "m", tiny_tensors(seed=3)), "acme/x:v1")
    arc("mirror", "rm", "b")
    arc("mirror", "add", "c", tmp_path / "c")
    arc("mirror", "sync", "c", ok=False)  # (the primary's unreadable object still is not copied: exit 5)
    copy = next(p for p in (tmp_path / "c" / "objects").rglob("*") if p.is_file() and p.stat().st_size > 64)
    good = copy.read_bytes()
    unreadable = _as_newer(copy, 5, 4)
    mended = arc("mirror", "sync", "c", "--read-data", ok=False)
    assert "REPLACED" in mended.stdout and copy.read_bytes() == good
    (aside,) = (tmp_path / "c" / "quarantine").iterdir()
    assert aside.read_bytes() == unreadable

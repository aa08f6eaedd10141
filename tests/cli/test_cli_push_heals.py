"""A push that holds the good bytes of an object a scrub found corrupt or missing heals it, on SQLite and
PostgreSQL: the damaged copy is set aside in quarantine/, the good one written in its place, and the catalog no
longer lists the object as bad (archive/heal.py). A push of other content leaves the damaged object alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from modelfactory import big_model, tiny_tensors, write_model


def _objects(store: Path) -> list[Path]:
    return sorted(p for p in (store / "objects").rglob("*") if p.is_file())


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _pushed_with_a_damaged_chunk(arc: Any, tmp_path: Path, damage: str) -> tuple[Path, Path]:
    """acme/big:v1 pushed, then its largest object damaged (``corrupt``: a byte flipped; ``missing``: deleted)
    and found so by a scrub: (the source folder, the damaged object's path in the store)."""
    src = big_model(tmp_path / "big", megabytes=12)
    arc("push", src, "acme/big:v1")
    victim = max(_objects(arc.home / "store"), key=lambda p: p.stat().st_size)
    if damage == "corrupt":
        _flip(victim)
    else:
        victim.unlink()
    scrub = arc("scrub", "--json", ok=False)
    assert set(json.loads(scrub.stdout)[damage]) == {victim.name}
    arc.fail("verify", "acme/big:v1")
    return src, victim


def _still_known_bad(arc: Any) -> int:
    """How many objects the catalog still lists as corrupt or missing (what a repair without mirrors checks)."""
    return int(json.loads(arc("repair", "--json", ok=False).stdout)["checked"])


def test_a_re_push_after_scrub_found_a_corrupt_object_heals_it(arc: Any, tmp_path: Path) -> None:
    src, victim = _pushed_with_a_damaged_chunk(arc, tmp_path, "corrupt")
    damaged = victim.read_bytes()
    # a plain re-push: the push index vouches for the unchanged file, but not for its known-bad objects
    out = arc("push", src, "acme/big:v1").stdout
    assert "unchanged snapshot" in out and "healed 1 damaged object" in out
    assert arc.json("verify", "acme/big:v1")["ok"]
    kept = list((arc.home / "store" / "quarantine").iterdir())
    assert [p.name.split(".")[0] for p in kept] == [victim.name] and kept[0].read_bytes() == damaged
    assert _still_known_bad(arc) == 0
    heal = arc.json("audit", "--action", "heal")
    assert len(heal) == 1 and heal[0]["details"]["objects"] == [victim.name]
    arc("pull", "acme/big:v1", tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(src)
    assert arc.json("scrub")["ok"]


def test_a_push_of_the_same_bytes_under_a_new_name_heals_instead_of_recording_a_broken_snapshot(
    arc: Any, tmp_path: Path
) -> None:
    src, _victim = _pushed_with_a_damaged_chunk(arc, tmp_path, "corrupt")
    pushed = arc.json("push", src, "acme/copy:v1")
    assert pushed["new_snapshot"] and len(pushed["healed"]) == 1
    assert arc.json("verify", "--all")["ok"]
    arc("pull", "acme/copy:v1", tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(src)


def test_a_re_push_after_scrub_found_a_missing_object_heals_it(arc: Any, tmp_path: Path) -> None:
    src, victim = _pushed_with_a_damaged_chunk(arc, tmp_path, "missing")
    out = arc("push", src, "acme/big:v1").stdout
    assert "healed 1 damaged object" in out
    assert victim.is_file() and arc.json("verify", "acme/big:v1")["ok"]
    assert not (arc.home / "store" / "quarantine").exists() or not any(
        (arc.home / "store" / "quarantine").iterdir()
    )  # nothing was there to set aside
    assert _still_known_bad(arc) == 0
    arc("pull", "acme/big:v1", tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(src)


def test_a_re_push_heals_a_corrupt_manifest_object(arc: Any, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m", tiny_tensors())
    snapshot = arc.json("push", src, "acme/m:v1")["snapshot"]
    manifest = next(p for p in _objects(arc.home / "store") if p.name == snapshot.removeprefix("sha256:"))
    _flip(manifest)
    arc("scrub", ok=False)
    assert len(arc.json("push", src, "acme/m:v1")["healed"]) == 1
    assert arc.json("verify", "acme/m:v1")["ok"] and _still_known_bad(arc) == 0


def test_a_push_of_other_content_leaves_the_damaged_object_as_it_is(arc: Any, tmp_path: Path) -> None:
    _src, victim = _pushed_with_a_damaged_chunk(arc, tmp_path, "corrupt")
    damaged = victim.read_bytes()
    pushed = arc.json("push", big_model(tmp_path / "other", megabytes=12, seed=7), "acme/other:v1")
    assert pushed["healed"] == []
    assert victim.read_bytes() == damaged
    assert not (arc.home / "store" / "quarantine").exists()
    arc.fail("verify", "acme/big:v1")
    assert _still_known_bad(arc) == 1

"""An imported card's base_model becomes a declared parent only as a snapshot this archive still holds: its newest
one that is not withdrawn (the newest, withdrawn, was declared before)."""

from __future__ import annotations

from pathlib import Path

from modelfactory import tiny_tensors, write_model

CARD = b"---\nbase_model: acme/base\nbase_model_relation: finetune\n---\n# tiny\n"


def test_the_declared_parent_is_the_newest_base_snapshot_not_withdrawn(arc, hub, tmp_path: Path) -> None:
    v1 = arc.json("push", write_model(tmp_path / "b1", tiny_tensors(seed=1)), "acme/base:v1")["snapshot"]
    arc("push", write_model(tmp_path / "b2", tiny_tensors(seed=2)), "acme/base:v2")
    arc("rm", "acme/base:v2", "--reason", "leaked test data")
    hub.add(
        "org/tiny", write_model(tmp_path / "served", tiny_tensors(seed=3), extra_files={"README.md": CARD})
    )
    arc("push", "hf://org/tiny", "org/tiny:v1")
    parents = arc.json("show", "org/tiny:v1")["parents"]
    assert [(p["model"], p["snapshot"], p["relation"]) for p in parents] == [("acme/base", v1, "finetune")]


def test_a_base_model_spelled_in_another_case_is_the_archived_model(arc, hub, tmp_path: Path) -> None:
    """Hub ids ignore case, and this archive refuses names that differ only in case: a card's `ACME/Base` can only
    mean the archived acme/base."""
    v1 = arc.json("push", write_model(tmp_path / "b1", tiny_tensors(seed=1)), "acme/base:v1")["snapshot"]
    card = CARD.replace(b"acme/base", b"ACME/Base")
    hub.add("org/tiny", write_model(tmp_path / "served", tiny_tensors(seed=3), extra_files={"README.md": card}))
    arc("push", "hf://org/tiny", "org/tiny:v1")
    parents = arc.json("show", "org/tiny:v1")["parents"]
    assert [(p["model"], p["snapshot"], p["relation"]) for p in parents] == [("acme/base", v1, "finetune")]

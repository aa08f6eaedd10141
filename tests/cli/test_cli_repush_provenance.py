"""A re-push of bytes the model already holds: provenance the snapshot does not have is refused, never dropped."""

from pathlib import Path

import pytest
from modelfactory import finetune, tiny_tensors, write_model

PROVENANCE = ("--license", "mit", "--cutoff", "2020", "--description", "hello")
PARENT = ("--parent", "ns/m:v1", "--relation", "finetune")


@pytest.fixture
def folders(arc, tmp_path: Path) -> tuple[Path, Path]:
    """ns/m:v1 archived (a parent to name), and the folder of a fine-tune of it, not yet archived."""
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "ns/m:v1")
    return tmp_path / "base", write_model(tmp_path / "ft", finetune(base, ["model.layers.0.mlp.weight"]))


def _state(arc) -> tuple:
    """The catalog as the user sees it, and every file in the store (objects and catalog records)."""
    stored = sorted(str(p) for p in (arc.home / "store").rglob("*") if p.is_file() and "tmp" not in p.parts)
    return arc.json("ls"), arc.json("log", "ns/r"), len(arc.json("audit")), stored


def test_repush_with_provenance_the_snapshot_lacks_is_refused_and_changes_nothing(arc, folders) -> None:
    _base, ft = folders
    arc("push", ft, "ns/r:v1")
    before = _state(arc)
    result = arc.fail("push", ft, "ns/r:v2", *PROVENANCE, *PARENT)
    assert result.exit_code == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(
        "error: ns/r:v2: these files are already archived as ns/r@sha256:"
    )
    for given in (
        "license 'mit' (--license; recorded: none)",
        "cutoff 2020 (--cutoff; recorded: none)",
        "description 'hello' (--description; recorded: none)",
        "parent ns/m@sha256:",
        " finetune (--parent/--relation; not recorded)",
    ):
        assert given in line
    assert "no command changes it" in line
    assert "deltas against" not in result.output
    assert _state(arc) == before  # no tag v2, no audit entry, no new object
    assert "no tag 'v2'" in arc.fail("show", "ns/r:v2").stderr
    shown = arc.json("show", "ns/r:v1")
    assert (shown["license"], shown["cutoff"], shown["description"], shown["parents"]) == (
        None,
        None,
        None,
        [],
    )


def test_repush_with_another_license_names_both(arc, folders) -> None:
    _base, ft = folders
    arc("push", ft, "ns/r:v1", "--license", "apache-2.0")
    line = arc.fail("push", ft, "ns/r:v2", "--license", "mit").stderr
    assert "license 'mit' (--license; recorded: 'apache-2.0')" in line
    assert arc.json("show", "ns/r:v1")["license"] == "apache-2.0"


def test_refused_repush_with_json_prints_no_result(arc, folders) -> None:
    _base, ft = folders
    arc("push", ft, "ns/r:v1")
    result = arc.fail("push", ft, "ns/r:v2", "--license", "mit", "--json")
    assert result.stdout == ""  # nothing a script could read as success
    assert "already archived as ns/r@sha256:" in result.stderr and "license 'mit' (--license" in result.stderr


def test_repush_with_the_same_provenance_is_silent_and_says_no_delta(arc, folders) -> None:
    _base, ft = folders
    first = arc.json("push", ft, "ns/r:v1", *PROVENANCE, *PARENT)
    assert first["new_snapshot"] is True and first["delta_base"]
    again = arc("push", ft, "ns/r:v2", *PROVENANCE, *PARENT)
    assert again.stderr == ""
    assert "(unchanged snapshot)" in again.stdout and "deltas against" not in again.stdout
    shown = arc.json("show", "ns/r:v2")
    assert (shown["license"], shown["cutoff"], shown["description"]) == ("mit", "2020", "hello")
    assert [p["relation"] for p in shown["parents"]] == ["finetune"]
    out = arc.json("push", ft, "ns/r:v3", *PROVENANCE, *PARENT)
    assert out["new_snapshot"] is False and out["snapshot"] == first["snapshot"]
    assert out["delta_base"] is None and out["delta_objects"] == 0


@pytest.mark.parametrize("given", [(), ("--license", "mit"), ("--cutoff", "2020", *PARENT)])
def test_repush_stating_less_than_is_recorded_is_not_a_difference(arc, folders, given) -> None:
    _base, ft = folders
    arc("push", ft, "ns/r:v1", *PROVENANCE, *PARENT)
    result = arc("push", ft, "ns/r:v2", *given)
    assert result.stderr == "" and "(unchanged snapshot)" in result.stdout
    assert arc.json("show", "ns/r:v2")["snapshot"] == arc.json("show", "ns/r:v1")["snapshot"]

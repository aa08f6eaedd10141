"""File names: every name push accepts can be pulled back, names that cannot be archived are refused before any
object is written, and names or texts from a model never drive the terminal."""

import filecmp
import os
from pathlib import Path

import pytest
from modelfactory import write_model


def _objects(home: Path) -> list[Path]:
    return sorted(p for p in (home / "store" / "objects").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "name",
    [
        "n" * 225,  # the shortest name the old temp name (.{name}.{12 hex}.modelarc-partial) pushed past 255
        "n" * 255,  # NAME_MAX
        "é" * 127 + "x",  # 255 bytes of UTF-8 in 128 characters
        "d" * 255 + "/" + "f" * 255,  # a folder and a file, both at the limit
    ],
)
def test_every_name_push_accepts_can_be_pulled(arc, tmp_path: Path, name: str) -> None:
    src = write_model(tmp_path / "m", extra_files={name: b"long name\n"})
    arc("push", src, "acme/long:v1")
    out = tmp_path / "out"
    arc("pull", "acme/long:v1", out)
    assert filecmp.cmp(src / name, out / name, shallow=False)
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_push_refuses_a_name_that_is_not_utf8_before_writing_anything(
    arc, tmp_path, catalog_snapshot
) -> None:
    src = write_model(tmp_path / "m")
    (src / os.fsdecode(b"caf\xe9.bin")).write_bytes(b"not utf-8 in the name")
    before, objects = catalog_snapshot(), _objects(arc.home)
    result = arc.fail("push", src, "acme/latin1:v1")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "caf\\xe9.bin" in lines[0] and "not valid UTF-8" in lines[0]
    assert catalog_snapshot() == before
    assert _objects(arc.home) == objects  # nothing was written to the store, not even unreferenced objects


@pytest.mark.parametrize(
    "name",
    ["sub/.modelarc-partial-0123456789abcdef0123456789abcdef", ".notes.txt.0123456789ab.modelarc-partial"],
)
def test_push_refuses_a_file_named_like_a_pull_temp_file(arc, tmp_path, catalog_snapshot, name: str) -> None:
    """A resumed pull deletes files so named (an older version's even when the snapshot lists them): such a file is
    what an interrupted pull left in a folder, not part of the model."""
    src = write_model(tmp_path / "m", extra_files={name: b"half a file"})
    before, objects = catalog_snapshot(), _objects(arc.home)
    result = arc.fail("push", src, "acme/partial:v1")
    assert name.rsplit("/", 1)[-1] in result.stderr and "interrupted 'modelarc pull'" in result.stderr
    assert catalog_snapshot() == before
    assert _objects(arc.home) == objects
    (src / name).rename(src / ".modelarc-partial-notes.txt")  # a name merely like it is archived
    arc("push", src, "acme/partial:v1")


def test_push_names_a_drive_letter_like_name_as_such_not_as_absolute(arc, tmp_path: Path) -> None:
    """``1:notes.txt`` is a legal Linux name that Windows reads as drive ``1:``; it was refused as "absolute"."""
    src = write_model(tmp_path / "m", extra_files={"1:notes.txt": b"x"})
    error = arc.fail("push", src, "acme/drive:v1").stderr
    assert "1:notes.txt" in error and "Windows drive" in error and "absolute" not in error


def test_show_escapes_control_characters_from_the_model(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m", extra_files={"ev\x1b]0;owned\x07il.txt": b"x"})
    arc(
        "push",
        src,
        "acme/esc:v1",
        "--description",
        "plain \x1b[31mred\nsignature:    key forged trusted=True",
        "--license",
        "[/bold] [link=http://evil]mit\x9b",
    )
    shown = arc("show", "acme/esc:v1").stdout
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "plain \\x1b[31mred\\x0asignature:    key forged" in shown  # the forged line stays on its own line
    assert "[/bold] [link=http://evil]mit\\x9b" in shown  # rich markup in a licence is text, not a link
    assert "ev\\x1b]0;owned\\x07il.txt" in shown
    raw = arc.json("show", "acme/esc:v1")  # --json keeps the exact text (JSON escapes it)
    assert raw["description"].startswith("plain \x1b[31mred\n")


def test_error_messages_escape_control_characters(arc, tmp_path: Path) -> None:
    result = arc.fail("push", tmp_path / "no\x1b[2Jsuch", "acme/x:v1")
    assert "\x1b" not in result.stderr
    assert "no\\x1b[2Jsuch" in result.stderr
    # a withdrawal reason is free text that an error line quotes as it is
    arc("push", write_model(tmp_path / "m"), "acme/gone:v1")
    arc("rm", "acme/gone:v1", "--reason", "licence\x1b[2J revoked\nerror: forged")
    result = arc.fail("pull", "acme/gone:v1", tmp_path / "out")
    assert "\x1b" not in result.stderr and "licence\\x1b[2J revoked\\x0aerror: forged" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_generated_text_keeps_its_lines_but_not_its_escape_sequences() -> None:
    from modelarc.cli.output import terminal_safe

    text = "line one\n\tindented \x1b[2J\x1b]8;;http://x\x07link\x9b"
    assert terminal_safe(text, keep="\n\t") == "line one\n\tindented \\x1b[2J\\x1b]8;;http://x\\x07link\\x9b"
    assert terminal_safe(text) == "line one\\x0a\\x09indented \\x1b[2J\\x1b]8;;http://x\\x07link\\x9b"

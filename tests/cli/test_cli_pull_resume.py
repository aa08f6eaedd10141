"""A pull interrupted half-way resumes into the same folder without --force; a file that differs still needs it."""

import os
from pathlib import Path

from modelfactory import write_model


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_rerun_after_a_lost_file_resumes_without_force(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m", extra_files={"sub/notes.txt": b"notes\n"})
    arc("push", src, "acme/tiny:v1")
    out = tmp_path / "out"
    arc("pull", "acme/tiny:v1", out)
    (out / "model.safetensors").unlink()  # what an interrupted pull leaves: some files there, one not yet
    kept = {p: _stamp(out / p) for p in ("config.json", "tokenizer.json", "sub/notes.txt")}
    leftovers = [  # temp files an interrupted run left: today's name and the one older versions used
        out / ".modelarc-partial-0123456789abcdef0123456789abcdef",
        out / "sub" / ".notes.txt.0123456789ab.modelarc-partial",
    ]
    for p in leftovers:
        p.write_bytes(b"half a file")
    (out / ".modelarc-partial-notes").write_bytes(b"not ours: the name does not match")
    arc("pull", "acme/tiny:v1", out)
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert {p: _stamp(out / p) for p in kept} == kept  # matching files were kept, not rewritten
    assert not any(p.exists() for p in leftovers)
    assert (out / ".modelarc-partial-notes").exists()


def test_a_differing_file_is_still_refused_without_force(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    out = tmp_path / "out"
    arc("pull", "acme/tiny:v1", out)
    (out / "model.safetensors").unlink()
    (out / "config.json").write_text('{"edited": true}')
    result = arc.fail("pull", "acme/tiny:v1", out)
    assert result.exit_code == 7
    assert "config.json already exists and differs" in result.stderr and "--force" in result.stderr
    assert not (out / "model.safetensors").exists()  # refused before anything was written
    arc("pull", "acme/tiny:v1", out, "--force")
    assert (out / "config.json").read_bytes() == (tmp_path / "m" / "config.json").read_bytes()


def test_same_size_but_different_content_is_a_difference(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    out = tmp_path / "out"
    arc("pull", "acme/tiny:v1", out)
    blob = bytearray((out / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(blob))
    assert "differs" in arc.fail("pull", "acme/tiny:v1", out).stderr


def test_resume_keeps_the_signature_file_when_it_is_the_same(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    out = tmp_path / "out"
    arc("pull", "acme/tiny:v1", out, "--signature", out / "model.sig")
    os.remove(out / "tokenizer.json")
    arc("pull", "acme/tiny:v1", out, "--signature", out / "model.sig")
    (out / "model.sig").write_text("something else")
    os.remove(out / "tokenizer.json")
    assert (
        "model.sig already exists"
        in arc.fail("pull", "acme/tiny:v1", out, "--signature", out / "model.sig").stderr
    )

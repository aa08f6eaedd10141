"""The commands meant for a damaged store on one damaged by hostile files: a link to ``/dev/zero``, a FIFO or a sparse
2 GiB file in place of an object (in the store or a mirror's copy) or a catalog record. Each command reports the
damage (one line per object, or one ``error:`` line) and exits non-zero within a deadline, never hangs, never runs
out of memory; ``repair`` replaces the damaged object from a good mirror.

The commands run as subprocesses with a deadline and an address-space limit well below what reading a hostile file
whole would take: a hang fails the test, as does a read that grows until memory runs out (what a link to
``/dev/zero`` did before reads were bounded).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from modelfactory import big_model

DEADLINE = 120.0  # seconds per command: only a deadline for one that must end
ADDRESS_SPACE = 3 << 30  # reading a hostile file whole needs 2 GiB more than a command's few hundred MB
SPARSE = 2 << 30
KINDS = ["symlink-to-dev-zero", "fifo", "sparse-2GiB"]
REF = "acme/big:v1"


def plant(path: Path, kind: str) -> None:
    """Replace the file at ``path`` by a hostile one of ``kind``."""
    head = path.read_bytes()[:16]
    path.unlink()
    if kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as fh:
            fh.write(head)  # a valid object header: only the size gives it away
            fh.truncate(SPARSE)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run(arc: Any, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``modelarc ARGS`` in a subprocess that must end within the deadline, in bounded memory, with no traceback."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modelarc.cli.main", *map(str, args)],
            env={**os.environ, **arc.env},
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"modelarc {' '.join(map(str, args))} hung on a hostile store file")
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, done.stderr
    return done


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture
def mirrored(arc: Any, tmp_path: Path) -> Any:
    """An archive holding one model, mirrored whole to the folder ``tmp_path/mirror``."""
    arc("push", big_model(tmp_path / "src", megabytes=12), REF)
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc("mirror", "sync")
    arc.mirror = tmp_path / "mirror"
    return arc


def _largest_object(root: Path) -> Path:
    return max((p for p in (root / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_object_in_the_store_is_reported_and_repaired_from_a_mirror(
    mirrored: Any, tmp_path: Path, kind: str
) -> None:
    arc = mirrored
    victim = _largest_object(arc.home / "store")
    oid = victim.name
    plant(victim, kind)

    verify = run(arc, "verify", "--all")
    failed = [ln for ln in verify.stdout.splitlines() if ln.startswith("FAILED")]
    assert verify.returncode == 5 and len(failed) == 1 and f"object {oid} is corrupt" in failed[0], (
        verify.stdout
    )
    assert oid in one_error_line(run(arc, "verify", REF))
    pulled = run(arc, "pull", REF, tmp_path / "out")
    assert oid in one_error_line(pulled)
    scrub = run(arc, "scrub")
    assert scrub.returncode == 5
    found = [ln for ln in scrub.stdout.splitlines() if oid in ln]
    assert len(found) == 1 and found[0].startswith(f"CORRUPT  object {oid} needed by acme/big"), scrub.stdout

    repair = run(arc, "repair", "--json")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    report = json.loads(repair.stdout)
    assert report["repaired"] == {oid: "backup"}
    note = (arc.home / "store" / report["quarantined"][oid]).read_text()
    assert note.startswith("not kept: ")  # what was there, since it could not be kept
    assert victim.is_file() and not victim.is_symlink()
    assert run(arc, "verify", "--all").returncode == 0
    assert run(arc, "scrub").returncode == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_copy_in_a_mirror_is_reported_by_scrub(mirrored: Any, kind: str) -> None:
    arc = mirrored
    victim = _largest_object(arc.mirror)
    plant(victim, kind)
    scrub = run(arc, "scrub", "--mirrors", "--json")
    assert scrub.returncode == 5
    report = json.loads(scrub.stdout)
    assert report["mirrors"]["backup"] == {"missing": [], "corrupt": [victim.name]}
    assert not report["corrupt"] and not report["missing"]  # the store itself is whole
    text = run(arc, "scrub", "--mirrors")
    assert [ln for ln in text.stdout.splitlines() if victim.name in ln] == [
        f"MIRROR backup: corrupt object {victim.name}"
    ]


@pytest.mark.parametrize("kind", [*KINDS, "truncated-header"])
def test_mirror_sync_read_data_replaces_a_hostile_copy_in_a_mirror(mirrored: Any, kind: str) -> None:
    """What ``scrub --mirrors`` calls corrupt, ``mirror sync --read-data`` replaces (one rule,
    ``ObjectStore.reads_back``, decides it for a push's heal, a sync and a repair), keeping what stood there."""
    arc = mirrored
    victim = _largest_object(arc.mirror)
    good = (arc.home / "store" / victim.relative_to(arc.mirror)).read_bytes()
    if kind == "truncated-header":
        victim.write_bytes(good[:5])
    else:
        plant(victim, kind)
    synced = run(arc, "mirror", "sync", "--read-data", "--json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    (report,) = json.loads(synced.stdout)
    assert list(report["replaced"]) == [victim.name] and report["objects_copied"] == 1
    assert not victim.is_symlink() and victim.read_bytes() == good
    assert (arc.mirror / report["replaced"][victim.name]).is_file()  # what stood there is kept, or a note of it
    assert run(arc, "scrub", "--mirrors").returncode == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_object_in_the_store_and_a_mirror_is_left_unrepaired(mirrored: Any, kind: str) -> None:
    arc = mirrored
    victim = _largest_object(arc.home / "store")
    plant(victim, kind)
    plant(arc.mirror / victim.relative_to(arc.home / "store"), kind)
    repair = run(arc, "repair", "--read-data")
    assert repair.returncode == 5
    assert f"NOT REPAIRED  {victim.name}: no mirror has a good copy; breaks acme/big" in repair.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_catalog_record_is_reported_not_copied(mirrored: Any, tmp_path: Path, kind: str) -> None:
    arc = mirrored
    records = sorted((arc.home / "store" / "records").iterdir())
    victim = records[-1]  # the snapshot's record
    plant(victim, kind)
    # commands that read objects only are not held up by it
    assert run(arc, "verify", "--all").returncode == 0
    assert run(arc, "scrub", "--mirrors").returncode == 0
    assert run(arc, "pull", REF, tmp_path / "out").returncode == 0
    # a new mirror gets every record but this one, which is named as damaged
    arc("mirror", "add", "fresh", tmp_path / "fresh")
    synced = run(arc, "mirror", "sync", "fresh")
    assert synced.returncode == 5
    key = f"records/{victim.name}"
    assert [ln for ln in synced.stdout.splitlines() if key in ln] == [
        f"NOT COPIED  {key}: record {key} is damaged: {arc.home / 'store' / key} is "
        + {"symlink-to-dev-zero": "a symbolic link", "fifo": "a FIFO", "sparse-2GiB": f"{SPARSE} bytes"}[kind]
        + (
            ", more than the 67108864 a reader of it takes"
            if kind == "sparse-2GiB"
            else ", not a regular file"
        )
        + " (modelarc repair)"
    ]
    assert not (tmp_path / "fresh" / key).exists()


@pytest.mark.parametrize("kind", KINDS)
def test_repair_mends_a_hostile_catalog_record_from_the_mirror(mirrored: Any, kind: str) -> None:
    arc = mirrored
    victim = sorted((arc.home / "store" / "records").iterdir())[-1]
    good = (arc.mirror / "records" / victim.name).read_bytes()
    plant(victim, kind)
    repair = run(arc, "repair", "--read-data")
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert not victim.is_symlink() and victim.read_bytes() == good
    (aside,) = (arc.home / "store" / "quarantine" / "records").iterdir()
    assert aside.is_file() and not aside.is_symlink()  # what stood there is kept (or, unreadable, a note of it)
    assert run(arc, "repair", "--read-data").returncode == 0

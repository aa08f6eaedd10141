"""What other local users can read: a new home is private, withheld weights are cached private, and a stricter
policy removes the decoded copies a load cache holds (docs/SECURITY.md "Local users").

Under umask 022 `modelarc init` made the home and `store/` world-readable (only `keys/` was 0700), so every local
user read restricted weights from the store; `load_model(..., cache=True)` into a shared MODELARC_CACHE_DIR wrote
restricted weights decoded as 0444 files in 0755 folders; and `access set` of a stricter level left the copies a
cache held. Modes are checked on the files themselves: the tests run as root, whom no mode stops.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_llama

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.models import load_model

ArchiveCli = Any  # tests/cli/conftest.py


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give a user: what made every new folder world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _open_to_others(folder: Path) -> list[Path]:
    """Every path under ``folder`` (and itself) that a group or other user may read, write or enter."""
    return [p for p in [folder, *folder.rglob("*")] if not p.is_symlink() and _mode(p) & 0o077]


# ---- the home ---------------------------------------------------------------------------------------------------


def test_init_makes_a_new_home_private_to_its_owner(bare_arc: ArchiveCli) -> None:
    bare_arc("init")
    assert _mode(bare_arc.home) == 0o700
    assert _mode(bare_arc.home / "keys") == 0o700
    # the store and the catalog are inside it: no other user reaches them, whatever their own modes
    assert (bare_arc.home / "store").is_dir()


def test_init_makes_a_new_store_folder_elsewhere_private_too(bare_arc: ArchiveCli, tmp_path: Path) -> None:
    store = tmp_path / "disks" / "objects"
    bare_arc("init", "--store", str(store))
    assert _mode(bare_arc.home) == 0o700 and _mode(store) == 0o700
    assert _mode(store.parent) == 0o755  # only what is the archive's own is made private


def test_init_never_changes_the_mode_of_a_home_or_store_that_exists(
    bare_arc: ArchiveCli, tmp_path: Path
) -> None:
    """Opening a home up (a group that shares it) is its owner's choice: a second init, or an init into a folder
    made beforehand, keeps it."""
    store = tmp_path / "shared-store"
    for folder in (bare_arc.home, store):
        folder.mkdir()
        folder.chmod(0o750)
    bare_arc("init", "--store", str(store))
    assert _mode(bare_arc.home) == 0o750 and _mode(store) == 0o750
    bare_arc("init")
    assert _mode(bare_arc.home) == 0o750


# ---- the load cache ---------------------------------------------------------------------------------------------


@pytest.fixture
def models(arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    refs = []
    for seed in (0, 1):
        arc("push", tiny_llama(tmp_path / f"m{seed}", seed=seed), f"acme/m{seed}:v1", "--no-progress")
        refs.append(f"acme/m{seed}:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    return refs


def _load(arc: ArchiveCli, ref: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``ref`` loaded with cache=True into ``cache_dir``; its entry folder."""
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(cache_dir))
    with Archive.open(arc.home) as archive:
        load_model(archive, ref, device="cpu", cache=True)
        digest = archive.resolve(ref)[1].digest
    monkeypatch.delenv("MODELARC_CACHE_DIR")
    return cache_dir / "entries" / digest.hex


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A cache folder every user may add to, as a shared MODELARC_CACHE_DIR is."""
    folder = tmp_path / "shared-cache"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


@pytest.mark.parametrize("level", ["gated", "restricted", "embargo"])
def test_withheld_weights_are_cached_where_no_other_user_can_read_them(
    arc: ArchiveCli, models: list[str], shared: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    args = ["gated", "--until", "2099-01-01"] if level == "embargo" else [level]
    arc("access", "set", "acme/m0", *args, "--reason", "not for everyone")
    withheld = _load(arc, models[0], shared, monkeypatch)
    assert any(withheld.rglob("*.safetensors"))
    assert _mode(withheld) == 0o700 and _open_to_others(withheld) == []
    assert {_mode(p) for p in withheld.rglob("*.safetensors")} == {0o400}
    assert list((shared / "tmp").iterdir()) == []  # no fill folder left behind
    public = _load(arc, models[1], shared, monkeypatch)  # a public model's copy is shared as before
    assert {_mode(p) for p in public.rglob("*.safetensors")} == {0o444}
    # and the private entry serves later loads
    before = sorted((p, p.stat().st_ino) for p in withheld.rglob("*.safetensors"))
    assert _load(arc, models[0], shared, monkeypatch) == withheld
    assert sorted((p, p.stat().st_ino) for p in withheld.rglob("*.safetensors")) == before


def test_a_load_closes_an_entry_it_filled_while_the_weights_were_public(
    arc: ArchiveCli, models: list[str], shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc("access", "set", "acme/m0", "restricted", "--reason", "research only")
    entry = _load(arc, models[0], shared, monkeypatch)
    entry.chmod(0o755)  # as a fill while it was public (or by an older modelarc) left it
    assert _load(arc, models[0], shared, monkeypatch) == entry
    assert _mode(entry) == 0o700


def test_a_policy_tightened_while_a_load_fills_the_cache_leaves_the_new_entry_closed(
    arc: ArchiveCli, models: list[str], shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load read the policy (public) before its fill; `access set` committed, and its purge ran, before the
    fill renamed the entry into place (so it found nothing to remove). The load checks again once the entry is
    in, and closes it rather than leave it open to every user until the next load."""
    import modelarc.archive.access as access_module
    from modelarc.archive.runtime.cache import CachePurge, LoadCache

    fill = LoadCache.fill
    fills: list[int] = []

    def fill_then_tighten(self: LoadCache, *args: object, **kwargs: object) -> bool:
        done = fill(self, *args, **kwargs)  # type: ignore[arg-type]
        fills.append(1)
        with monkeypatch.context() as m:  # the purge that ran before the rename: it found no entry
            m.setattr(access_module, "purge_tightened", lambda *_a: CachePurge((), 0, ()))
            arc("access", "set", "acme/m0", "restricted", "--reason", "withheld meanwhile")
        return done

    monkeypatch.setattr(LoadCache, "fill", fill_then_tighten)
    entry = _load(arc, models[0], shared, monkeypatch)
    assert fills == [1]
    assert _mode(entry) == 0o700  # closed as make_private closes one (its files cannot be reached through it)


# ---- access set of a stricter level -----------------------------------------------------------------------------


def test_a_stricter_policy_removes_the_models_decoded_copies_as_rm_does(
    arc: ArchiveCli, models: list[str], shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_home = _load(arc, models[0], arc.home / "cache", monkeypatch)
    in_shared = _load(arc, models[0], shared, monkeypatch)
    other = _load(arc, models[1], shared, monkeypatch)
    arc.env["MODELARC_CACHE_DIR"] = str(shared)
    out = arc.json("access", "set", "acme/m0", "gated", "--reason", "accept the licence first")
    assert out["level"] == "gated"
    assert sorted(out["cache_removed"]) == sorted([str(in_home), str(in_shared)])
    assert out["cache_bytes_freed"] > 0 and out["cache_left"] == []
    assert not in_home.exists() and not in_shared.exists() and other.is_dir()  # another model's copy stays

    # gated to restricted is stricter too; the text says what it removed
    again = _load(arc, models[0], shared, monkeypatch)
    text = arc("access", "set", "acme/m0", "restricted", "--reason", "research only").stdout
    assert "removed decoded copies of its weights from the load cache" in text and str(again) in text
    assert not again.exists()

    # a policy no stricter (the same level, or public) keeps what the cache holds
    kept = _load(arc, models[0], shared, monkeypatch)
    for args in (["restricted", "--reason", "still"], ["public", "--reason", "released"]):
        out = arc.json("access", "set", "acme/m0", *args)
        assert out["cache_removed"] == [] and out["cache_left"] == [] and kept.is_dir()


def test_the_same_policy_set_again_finishes_a_run_killed_before_its_purge(
    arc: ArchiveCli, models: list[str], shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between its commit and its purge, `access set` left the copy filled while the weights were public
    (0444 in an open folder); run again it changes no level, and used to remove nothing."""
    from modelarc.archive import access as access_module
    from modelarc.archive.runtime.cache import CachePurge

    opened = _load(arc, models[0], shared, monkeypatch)
    arc.env["MODELARC_CACHE_DIR"] = str(shared)
    with monkeypatch.context() as m:  # as if killed right after the commit
        m.setattr(access_module, "purge_tightened", lambda archive, snapshots: CachePurge((), 0, ()))
        assert arc.json("access", "set", "acme/m0", "gated", "--reason", "licence")["cache_removed"] == []
    assert opened.is_dir() and opened.stat().st_mode & 0o077
    out = arc.json("access", "set", "acme/m0", "gated", "--reason", "licence")
    assert out["cache_removed"] == [str(opened)] and not opened.exists()
    private = _load(arc, models[0], shared, monkeypatch)  # filled under the policy: closed to others, kept
    assert not private.stat().st_mode & 0o077
    assert arc.json("access", "set", "acme/m0", "gated", "--reason", "licence")["cache_removed"] == []
    assert private.is_dir()


def test_a_snapshot_override_removes_that_snapshots_copy_only(
    arc: ArchiveCli, models: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = _load(arc, models[0], arc.home / "cache", monkeypatch)
    arc("push", tiny_llama(tmp_path / "m0v2", seed=5), "acme/m0:v2", "--no-progress")
    v2 = _load(arc, "acme/m0:v2", arc.home / "cache", monkeypatch)
    out = arc.json("access", "set", "acme/m0", "restricted", "--snapshot", "v2", "--reason", "v2 not yet")
    assert out["cache_removed"] == [str(v2)] and v1.is_dir() and not v2.exists()


def test_a_stricter_policy_reports_a_linked_entry_as_left(
    arc: ArchiveCli, models: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _load(arc, models[0], arc.home / "cache", monkeypatch)
    elsewhere = tmp_path / "other-disk" / entry.name
    elsewhere.parent.mkdir()
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    result = arc("access", "set", "acme/m0", "gated", "--reason", "accept the licence first")
    (warning,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert warning.startswith("warning: the load cache still holds decoded weights at ")
    assert f"a link; its target {elsewhere} was not removed" in warning
    assert "removed decoded copies" not in result.stdout
    assert not os.path.lexists(entry) and any(elsewhere.rglob("*.safetensors"))

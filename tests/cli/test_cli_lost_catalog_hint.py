"""An empty catalog over a store that holds objects (registry.db deleted, MODELARC_DATABASE_URL pointed at a new
database) says so and names `rebuild-catalog`, instead of calling the archive empty."""

from pathlib import Path

from modelfactory import write_model


def test_ls_over_a_full_store_with_a_new_catalog_names_rebuild_catalog(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    lost = type(arc)(arc.home, f"sqlite:///{tmp_path / 'new-catalog.db'}")  # the same home, a new catalog
    assert "rebuild-catalog" in lost("ls").stdout
    lost("rebuild-catalog")
    assert "acme/tiny" in lost("ls").stdout


def test_a_new_archive_is_just_empty(arc) -> None:
    assert arc("ls").stdout.strip() == "the archive is empty"


def test_objects_without_snapshot_records_are_no_sign_of_a_lost_catalog(arc, tmp_path: Path) -> None:
    """A pull refused before its commit (an untrusted signer) leaves its verified manifest and bundle in the store,
    and no snapshot record: `ls` must not send the user to rebuild a catalog that lost nothing."""
    from modelarc.storage import ObjectStore

    ObjectStore.open_local(arc.home / "store").put(b'{"a manifest": "of a refused pull"}')
    assert arc("ls").stdout.strip() == "the archive is empty"

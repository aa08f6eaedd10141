"""A store's identity, so a catalog is never paired with another store's objects.

``modelarc init`` writes ``store-id`` at the root of the store (docs/FORMAT.md, "Store identity") and records the
same id in the catalog. Opening an archive compares them: a MODELARC_STORE_URL or config.json pointing at a
different store (another home's, a copy made by hand) would otherwise take a push's objects while its snapshot
went into this catalog, and `verify` would find them "missing from the store" later. An archive made before
identities existed has none on either side: its first opening that may write adopts one (``adopt_store_identity``),
so the check protects it from then on; an opening that may not (a read-only store or catalog) opens it as before.
A mirror is never given the id (sync copies objects and records only): it is a copy, not the store.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from modelarc.errors import DiskFullError, StoreAccessError, StoredValueError
from modelarc.storage.backend import Backend

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.storage import ObjectStore

STORE_ID_KEY = "store-id"
STORE_ID_FORMAT = 1
STORE_ID_MAX_BYTES = 4096  # one line of JSON, about 60 bytes


def read_store_id(backend: Backend) -> str | None:
    """The id written at the store's root, or None for a store made before identities (or not by init)."""
    if not backend.has(STORE_ID_KEY):
        return None
    try:
        doc = json.loads(backend.get(STORE_ID_KEY, max_bytes=STORE_ID_MAX_BYTES))
        store_id = doc["store_id"] if doc.get("format") == STORE_ID_FORMAT else None
    # RecursionError: damaged into "[[[[..." nested deeper than the parser's stack
    # StoredValueError: not a regular file, or longer than any store-id file (read no further)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, StoredValueError):
        store_id = None
    if not isinstance(store_id, str) or not store_id:
        raise StoreAccessError(
            f"the store's {STORE_ID_KEY} file is unreadable (expected format {STORE_ID_FORMAT}): remove it and "
            "run `modelarc init`, which writes the catalog's store id back"
        )
    return store_id


def _catalog_store_id(archive: Archive) -> str | None:
    from modelarc.registry.catalog_settings import STORE_ID, get_setting

    with archive.catalog.session() as s:
        return get_setting(s, STORE_ID)


def check_store_identity(archive: Archive) -> None:
    """Refuse, in one line, a store that is not the one this catalog was built on; a pair from before identities
    (neither side has one) adopts one first."""
    expected = _catalog_store_id(archive)
    if expected is None and not archive.store.backend.has(STORE_ID_KEY):
        adopt_store_identity(archive)
        # ours, or another opening's that got there first, or still none (this opening may not write)
        expected = _catalog_store_id(archive)
    if expected is None:
        return  # a catalog from before identities, with a store that has one (or read-only): nothing to compare
    found = read_store_id(archive.store.backend)
    if found == expected:
        return
    settings = archive.settings
    what = "has no store identity" if found is None else f"is store {found[:12]}"
    raise StoreAccessError(
        f"the store at {settings.store_location} ({settings.store_origin_text}) {what}, but this catalog "
        f"({archive.catalog.display_url}) belongs to store {expected[:12]}: point MODELARC_STORE_URL or "
        f"{settings.config_path} at the catalog's own store"
    )


def record_store_identity(archive: Archive) -> str:
    """``modelarc init``: give the store an id if it has none, and record the store's id in the catalog if the
    catalog has none; a catalog that already names a different store is refused, and so is a new, empty store
    for a catalog that records snapshots (``_refuse_new_store``)."""
    expected = _catalog_store_id(archive)
    found = read_store_id(archive.store.backend)
    if found is None:
        if expected is not None:
            _refuse_new_store(archive, expected)
        # an existing catalog with a store that lost its id (copied back from a mirror) takes the catalog's
        found = _give_store_id(archive.store, expected or secrets.token_hex(16))
    if expected is None:
        from modelarc.registry.catalog_settings import STORE_ID, record_setting

        # two first inits at once both find no row: the second reads what the first recorded (the same id: both
        # read it back from the store) for the comparison below
        expected = record_setting(archive.catalog, STORE_ID, found)
    if found != expected:
        check_store_identity(archive)  # raises, naming both
    return found


def _refuse_new_store(archive: Archive, expected: str) -> None:
    """A store without an id takes the catalog's only when it is that store's copy (it holds objects or records:
    copied back from a mirror or a backup) or the catalog records no snapshot whose objects it would lack. A new,
    empty store for a catalog with snapshots is a host that shares the catalog but forgot MODELARC_STORE_URL: given
    the id, its pushes would be recorded in the shared catalog with objects no other host can read."""
    from modelarc.archive.records import record_keys
    from modelarc.registry.history import content_counts

    store = archive.store
    holds_objects = next(iter(store.iter_ids()), None) is not None
    if holds_objects or next(iter(record_keys(store.backend)), None) is not None:
        return
    with archive.catalog.session() as s:
        snapshots = content_counts(s)["snapshots"]
    if not snapshots:
        return
    settings = archive.settings
    raise StoreAccessError(
        f"this catalog ({archive.catalog.display_url}) belongs to store {expected[:12]} holding {snapshots} "
        f"snapshot{'s' if snapshots != 1 else ''}; the store at {settings.store_location} "
        f"({settings.store_origin_text}) is new and empty: set MODELARC_STORE_URL, or `modelarc init --store`, "
        "to the catalog's own store (nothing was changed)"
    )


def adopt_store_identity(archive: Archive) -> None:
    """An archive from before identities (no ``store-id``, no catalog row), opened: give the store an id and record
    it in the catalog, as ``modelarc init`` would, so the check protects this pair from now on.

    The catalog's row is written first and committed last (``claim_setting``): a catalog that may not be written
    refuses before the store is touched, and a second opening at the same moment waits on that row and then finds
    it, so only one id is ever written. A store that may not be written (a read-only mount, read-only credentials)
    rolls the row back. Either way the archive opens as before, without an identity. The store lock is not taken:
    it serialises objects against gc, which never touches ``store-id``, and is itself a catalog write.
    """
    from modelarc.registry.catalog_settings import STORE_ID, claim_setting

    new_id = secrets.token_hex(16)
    try:
        claim_setting(archive.catalog, STORE_ID, new_id, lambda: _give_store_id(archive.store, new_id))
    except (OSError, StoreAccessError, DiskFullError):
        return  # the store may not be written here: the next opening that may, adopts


def _give_store_id(store: ObjectStore, store_id: str) -> str:
    """Write ``store_id`` as the store's id unless it has one, and return the id it has now. The backend's put is
    atomic (local: temp file, fsync, rename; S3: one PUT) and skips a key that exists: of two writers at once, one
    id lands and both read it back."""
    body = json.dumps({"format": STORE_ID_FORMAT, "store_id": store_id}) + "\n"
    store.backend.put(STORE_ID_KEY, body.encode())
    store.backend.sync()
    found = read_store_id(store.backend)
    assert found is not None
    return found

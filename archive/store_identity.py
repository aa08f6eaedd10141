"""A store's identity, so a catalog is never paired with another store's objects.

``modelarc init`` writes ``store-id`` at the root of the store (docs/FORMAT.md, "Store identity") and records the
same id in the catalog. Opening an archive compares them: a MODELARC_STORE_URL or config.json pointing at a
different store (another home's, a copy made by hand) would otherwise take a push's objects while its snapshot
went into this catalog, and `verify` would find them "missing from the store" later. An archive made before
identities existed has none on either side and keeps opening; running `modelarc init` again records one.
A mirror is never given the id (sync copies objects and records only): it is a copy, not the store.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from modelarc.errors import StoreAccessError
from modelarc.storage.backend import Backend

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

STORE_ID_KEY = "store-id"
STORE_ID_FORMAT = 1


def read_store_id(backend: Backend) -> str | None:
    """The id written at the store's root, or None for a store made before identities (or not by init)."""
    if not backend.has(STORE_ID_KEY):
        return None
    try:
        doc = json.loads(backend.get(STORE_ID_KEY))
        store_id = doc["store_id"] if doc.get("format") == STORE_ID_FORMAT else None
    # RecursionError: damaged into "[[[[..." nested deeper than the parser's stack
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
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
    """Refuse, in one line, a store that is not the one this catalog was built on."""
    expected = _catalog_store_id(archive)
    if expected is None:
        return  # a catalog from before identities: nothing to compare with
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
    catalog has none; a catalog that already names a different store is refused."""
    from modelarc.registry.catalog_settings import STORE_ID, set_setting

    expected = _catalog_store_id(archive)
    found = read_store_id(archive.store.backend)
    if found is None:
        # an existing catalog with a store that lost its id (restored from a mirror) takes the catalog's
        body = json.dumps({"format": STORE_ID_FORMAT, "store_id": expected or secrets.token_hex(16)}) + "\n"
        archive.store.backend.put(STORE_ID_KEY, body.encode())
        archive.store.backend.sync()
        found = read_store_id(archive.store.backend)  # two inits at once: whichever id landed is the store's
        assert found is not None
    if expected is None:
        with archive.catalog.session() as s:
            set_setting(s, STORE_ID, found)
    elif found != expected:
        check_store_identity(archive)  # raises, naming both
    return found

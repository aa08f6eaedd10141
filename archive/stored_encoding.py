"""Does the catalog's row for an object describe the copy stored? And, when it does not, making it so.

gc, withdrawal and transfers decide which bases a snapshot keeps from the catalog (``objects.delta_base``, the
``as_base`` references a push derives from it), not from every object's header. Stores repaired by older modelarc
versions may hold a delta (codec 3) whose row records it stored on its own, or against another base: gc may then
delete the base the stored delta decodes against, breaking every snapshot that needs it, while a plain ``fsck``
(which trusts the rows) says ok. ``fsck --read-data`` compares each object's header with its row
(``mismatch``); ``repair --read-data`` mends each difference (``rewrite_alone`` for a delta, else the row only).

A delta is rewritten on its own rather than its row (and its snapshots' ``as_base`` references) made to name its
base: the rewritten copy needs nothing, so no reference set can be short of its base, whatever else the catalog got
wrong; it costs the space the delta saved, on objects an old repair left behind (few).
"""

from __future__ import annotations

import contextlib

from modelarc.errors import ModelarcError
from modelarc.registry.records import ObjectRecord
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.store import ObjectInfo, delta_base_of, object_key


def describe(codec: str, base: str | None) -> str:
    """How an object is stored, in words: ``as a delta against B`` or ``on its own (codec zstd)``."""
    if base is not None:
        return f"as a delta against {base}"
    if codec == "delta":
        return "as a delta with no base recorded"
    return f"on its own (codec {codec})"


def mismatch(info: ObjectInfo, row: ObjectRecord, *, past: bool = False) -> str | None:
    """What differs between the stored copy's header (``info``, from ``ObjectStore.stat``) and the catalog's row,
    in one sentence naming the object (``past``: as it was, for a report of what was mended), or None when the row
    describes the copy (codec and delta base)."""
    if (info.codec, info.delta_base) == (row.codec, row.delta_base):
        return None
    is_, records = ("was", "recorded") if past else ("is", "records")
    return (
        f"object {info.id} {is_} stored {describe(info.codec, info.delta_base)}, but the catalog {records} it "
        f"{describe(row.codec, row.delta_base)}"
    )


def rewrite_alone(store: ObjectStore, oid: ObjectId, stamp: str) -> str | None:
    """Replace the stored delta ``oid`` with its decoded bytes encoded on their own; the key its delta copy was
    set aside to (``quarantine/``), or None when it was not a delta (nothing done).

    Nothing is touched until the new blob is known good: the delta is decoded against its base and hashed to its
    id, and the blob encoded from those bytes is decoded again, without any base, and hashed to its id. Only then is
    the delta copy set aside and the new blob written by the backend's atomic put (a store never overwrites a key).
    Should that write fail, the delta copy is put back. No base is deleted: an object other deltas decode against
    keeps its content, only its encoding changes. Raises ``IntegrityError`` when the delta does not decode (the
    caller only rewrites objects it has just read back intact), and what the backend's put raised (``OSError``,
    ``DiskFullError``, ...); then the delta copy is under the key again or, should that fail too (or the process
    die between), only in ``quarantine/``, and the object is missing: the next ``repair`` puts it back from there
    (archive/repair.py ``_SetAside``) if no mirror has it. The caller reads the new copy back and records it.
    """
    old = store.get_stored(oid)
    if delta_base_of(oid, old) is None:
        return None
    # the delta decoded against its base and verified, encoded on its own; then decoded again without a base
    blob = ObjectStore.standalone_of(oid, old, fetch_base=store.get_stored)
    ObjectStore.decode_stored(oid, blob)  # a delta would raise here: the new copy needs nothing
    aside = store.quarantine(oid, stamp)
    key = object_key(oid)
    try:
        store.backend.put(key, blob)
        store.sync()
    except (ModelarcError, OSError):  # a full disk (DiskFullError), a lost temp file, a folder under the key
        with contextlib.suppress(ModelarcError, OSError):  # the first error is the one to report
            store.backend.put(key, old)  # the delta copy (decoded and verified above) back under its key
            store.sync()
        raise
    return aside

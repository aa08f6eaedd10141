"""``ObjectStore.put``/``put_stored`` with ``Replacing``: an object the caller names damaged is written in place of
what is stored under its id, the damaged copy set aside in quarantine/ first, once however often it is put; any
other object still deduplicates."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelarc.errors import ObjectCorruptError
from modelarc.storage import ObjectId, ObjectStore, Replacing
from modelarc.storage.store import object_key


def _damage(store: ObjectStore, oid: ObjectId, root: Path) -> bytes:
    path = root / object_key(oid)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ObjectCorruptError):
        store.get(oid)
    return bytes(data)


def test_a_put_replaces_a_damaged_copy_once_and_keeps_it_in_quarantine(tmp_path: Path) -> None:
    store = ObjectStore.open_local(tmp_path)
    data = os.urandom(5000)
    oid = store.put(data).id
    damaged = _damage(store, oid, tmp_path)
    assert not store.put(data).added  # without Replacing: deduplicated against the damaged copy, as ever
    replacing = Replacing([oid], "20260101T000000Z")
    with ThreadPoolExecutor(4) as pool:  # the same chunk put at once by several ingest workers
        results = list(pool.map(lambda _i: store.put(data, replacing=replacing), range(8)))
    assert [r.replaced for r in results].count(True) == 1
    assert not any(r.added for r in results)
    assert bytes(store.get(oid)) == data
    assert store.quarantined() == [f"quarantine/{oid}.20260101T000000Z"]
    assert (tmp_path / store.quarantined()[0]).read_bytes() == damaged


def test_a_put_of_another_object_leaves_the_damaged_one_alone(tmp_path: Path) -> None:
    store = ObjectStore.open_local(tmp_path)
    oid = store.put(os.urandom(3000)).id
    damaged = _damage(store, oid, tmp_path)
    other = store.put(os.urandom(3000), replacing=Replacing([oid], "20260101T000000Z"))
    assert other.added and not other.replaced
    assert (tmp_path / object_key(oid)).read_bytes() == damaged and store.quarantined() == []


def test_put_stored_replaces_a_damaged_copy_with_the_verified_blob(tmp_path: Path) -> None:
    good = ObjectStore.open_local(tmp_path / "sender")
    data = os.urandom(4000)
    oid = good.put(data).id
    store = ObjectStore.open_local(tmp_path / "receiver")
    store.put(data)
    _damage(store, oid, tmp_path / "receiver")
    store.put_stored(oid, good.get_stored(oid), replacing=Replacing([oid], "20260101T000000Z"))
    assert bytes(store.get(oid)) == data and len(store.quarantined()) == 1

"""The puller's read-ahead (archive/remote/prefetch.py) against a real `modelarc serve`, seen through a proxy.

It asks for objects in batches, and only as far ahead of what the pull has taken as its window allows: memory is
bounded by the window, not by the model.
"""

from __future__ import annotations

import time
from pathlib import Path

from hostilekit import RewritingProxy, serve_proxy
from modelfactory import tiny_tensors, write_model
from transferkit import Server

from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.remote.config import Remote
from modelarc.archive.remote.prefetch import ObjectPrefetch


def _batches(proxy: RewritingProxy) -> int:
    return sum(r.startswith("POST") and r.endswith("/v1/objects/batch") for r in proxy.requests)


def _settle(proxy: RewritingProxy, want: int) -> int:
    """The number of batch requests once it has reached ``want`` (or a second has passed), and a moment after."""
    deadline = time.monotonic() + 1.0
    while _batches(proxy) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a request the window does not allow would have been sent by now
    return _batches(proxy)


def test_the_read_ahead_asks_only_as_far_as_its_window_past_what_was_taken(server: Server, tmp_path: Path) -> None:
    server.archive.push(write_model(tmp_path / "m", tiny_tensors(layers=12)), "acme/m:v1")
    _ref, snap = server.archive.resolve("acme/m:v1")
    ids = list(dict.fromkeys(c.id for f in server.archive.manifest(snap).files for p in f.parts for c in p.chunks))
    assert len(ids) > 12  # three batches of 4 and more
    proxy = RewritingProxy(server.url)
    with serve_proxy(proxy) as url, RemoteArchive(Remote("origin", url), jobs=2) as client:
        prefetch = ObjectPrefetch(client, {}, batch=4, window=4)
        try:
            prefetch.plan(ids)
            assert _settle(proxy, 1) == 1  # nothing taken yet: one batch, however many objects are planned
            expected = {0: 2, 1: 2, 2: 2, 3: 2, 4: 3}  # a batch starts once it begins within 4 of the furthest taken
            for n, oid in enumerate(ids[:5]):
                got = prefetch.take(oid)
                assert got is not None and bytes(got) == server.archive.store.get_stored(oid)
                assert _settle(proxy, expected[n]) == expected[n], n
            assert prefetch.take(ids[0]) is None  # each object is handed out once
        finally:
            prefetch.close()

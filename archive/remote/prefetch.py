"""A pull's objects downloaded ahead, several per request, in the order the pull will ask for them.

Why: one ``GET /v1/objects/{id}`` per chunk cost the server 3.5-3.8 ms of CPU per 1.8 MB object (routing,
middleware, access queries, then the bytes), on the same two cores as the puller in bench/http_pull.py; in batches
of ``BATCH`` (``POST /v1/objects/batch``) 1.8-2.0 ms. The puller still judges, decodes and hashes every object
itself (this module only moves bytes); an object the remote refuses or lacks fails the pull exactly where a single
download would.

The pull announces the objects it will fetch, in order (``plan``); ``jobs`` threads then download them in batches,
each at most ``WINDOW`` objects past the furthest one asked for so far, so memory is bounded by the window, not by
the model. Asking for an object (``take``) waits for its batch. A remote without the batch route answers 404/405 to
the first batch, and from then on every object is fetched one by one, as before (``take`` returns None).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import TypeAlias

from modelarc.archive.remote.batch import MAX_BATCH_IDS
from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.restore import ChunkBytes
from modelarc.errors import ModelarcError
from modelarc.storage import ObjectId

BATCH = 8  # objects per request: the server's CPU per object about halves (16 saved little more, for more memory)
WINDOW = 8  # a batch starts only within this many objects past the furthest one the pull has asked for
assert BATCH <= MAX_BATCH_IDS

# what a slot holds: the object as stored, in fresh bytes of its own; None: the caller fetches it alone
Fetched: TypeAlias = "ChunkBytes | None"


class ObjectPrefetch:
    """Downloads the planned objects ahead in batches on ``client.jobs`` threads; ``take`` hands each one out once.

    Thread-safe; ``close`` stops it (after the batches in flight) and must be called.
    """

    def __init__(
        self,
        client: RemoteArchive,
        sizes: dict[ObjectId, int],
        *,
        batch: int = BATCH,
        window: int = WINDOW,
    ) -> None:
        self._client = client
        self._sizes = sizes
        self._batch = max(1, min(batch, MAX_BATCH_IDS))
        self._window = max(window, self._batch)
        self._order: list[ObjectId] = []
        self._index: dict[ObjectId, int] = {}  # planned and not yet taken
        self._slots: dict[int, Future[Fetched]] = {}
        self._asked = 0  # 1 + the furthest position taken so far
        self._next = 0  # the first position no batch has asked for yet
        self._stopped = False
        self._failure: BaseException | None = None  # what a batch raised after delivering every object it held
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    def plan(self, ids: Iterable[ObjectId]) -> None:
        """The objects the pull will ``take``, in the order it will take them (repeats are fetched once)."""
        order = list(dict.fromkeys(ids))
        with self._cond:
            self._order = order
            self._index = {oid: i for i, oid in enumerate(order)}
        for n in range(min(self._client.jobs, -(-len(order) // self._batch))):
            thread = threading.Thread(target=self._run, name=f"modelarc-prefetch_{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def take(self, oid: ObjectId) -> Fetched:
        """The planned object ``oid``, once it has arrived (raising what its download raised); None when it was not
        planned, was taken already, or the remote cannot send batches: the caller downloads it alone."""
        with self._cond:
            index = self._index.pop(oid, None)
            if index is None:
                return None
            self._asked = max(self._asked, index + 1)
            slot = self._slots.get(index)
            if slot is None:
                if self._stopped:
                    return None
                slot = self._slots[index] = Future()  # its batch will fill it: the window now reaches it
            self._cond.notify_all()
        try:
            return slot.result()
        finally:
            with self._cond:
                self._slots.pop(index, None)

    @property
    def failure(self) -> BaseException | None:
        """What a batch raised once every object in it was delivered (a stream that went on after its last frame):
        the pull must still fail, since docs/FORMAT.md says such a stream stops it. Read after ``close``."""
        return self._failure

    def close(self) -> None:
        """Stop asking for batches; wait for those in flight (what nobody took is dropped)."""
        self._stop()
        for thread in self._threads:
            thread.join()
        with self._cond:
            self._slots = {}

    def _stop(self) -> None:
        """No more batches: a slot no batch has asked for is answered None (its object is fetched alone)."""
        with self._cond:
            self._stopped = True
            for index, slot in self._slots.items():
                if index >= self._next and not slot.done():
                    slot.set_result(None)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and self._asked + self._window <= self._next < len(self._order):
                    self._cond.wait()
                if self._stopped or self._next >= len(self._order):
                    return
                start = self._next
                ids = self._order[start : start + self._batch]
                self._next = start + len(ids)
                slots = [self._slots.setdefault(start + i, Future()) for i in range(len(ids))]
            try:
                self._fetch(ids, slots)
            except BaseException:
                self._stop()
                return

    def _fetch(self, ids: list[ObjectId], slots: list[Future[Fetched]]) -> None:
        """One batch into its slots; raises (after failing the slots not yet filled) when it fails.

        Each object is read into fresh bytes of its own length, not into one of the pull's recycled 8 MiB buffers:
        the objects read ahead would each pin a whole buffer (measured: peak RSS 293-333 MB where it was 230-246
        MB one object per request, and 216 MB with fresh bytes, on the BF16 model of bench/http_pull.py)."""
        filled = 0

        def deliver(i: int, got: bytearray | memoryview | ModelarcError) -> None:
            nonlocal filled
            filled = i + 1
            if isinstance(got, ModelarcError):
                slots[i].set_exception(got)
            else:
                slots[i].set_result(got)

        try:
            if self._client.download_batch(ids, self._sizes, deliver):
                return
            for slot in slots:  # the remote has no batch route: every object alone, from now on
                slot.set_result(None)
            raise _NoBatches()
        except BaseException as exc:
            if not isinstance(exc, _NoBatches):
                for slot in slots[filled:]:
                    slot.set_exception(exc)
                if filled == len(slots):  # e.g. bytes after the last frame: no slot is left to carry it
                    with self._cond:
                        self._failure = self._failure or exc
            raise


class _NoBatches(Exception):
    """The remote answered the batch route with 404/405."""

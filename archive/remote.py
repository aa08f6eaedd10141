"""Push snapshots to, and pull them from, another archive over HTTP (the server side is ``modelarc serve``).

The protocol (docs/FORMAT.md "Transfer") moves objects as they are stored - header plus encoded payload - so
nothing is re-compressed on either side, and every receiver decodes and hashes each object before keeping it:

1. the sender asks which of the snapshot's object ids the receiver lacks (``POST /v1/objects/missing``);
2. only those move, ``--jobs`` at a time (``PUT``/``GET /v1/objects/{id}``), each durable on arrival, so a
   broken transfer resumes by sending only what is still missing;
3. a commit (``POST /v1/transfer/commit`` with a ``SnapshotOffer``) records the snapshot and moves the tag; it is
   refused unless every object is present and a signature verifies against a key the receiver trusts.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import httpx

from modelarc import __version__
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.remote_config import Remote
from modelarc.archive.repository import Archive
from modelarc.archive.restore import restore
from modelarc.archive.transfer import (
    MAX_CODEC_OVERHEAD,
    MAX_OBJECT_BYTES,
    CommitResult,
    MissingObjectsError,
    SnapshotOffer,
    check_offer,
    commit_offer,
    objects_of,
    offer_for,
    receive_object,
)
from modelarc.errors import (
    IntegrityError,
    NotFoundError,
    ObjectFormatError,
    PayloadTooLargeError,
    RemoteAuthError,
    RemoteError,
    SignatureError,
    WithdrawnError,
)
from modelarc.registry.refs import Ref, parse_ref
from modelarc.storage import ObjectId
from modelarc.storage.objectformat import HEADER_FIXED_SIZE, unpack_fixed_header

Progress = Callable[[int], None]
T = TypeVar("T")
MISSING_BATCH = 5000


@dataclass(frozen=True)
class TransferResult:
    ref: str
    snapshot: str
    remote: str
    objects: int  # objects the snapshot needs
    objects_sent: int  # objects that actually moved (the rest were already there)
    bytes_sent: int  # stored (encoded) bytes that moved
    new_snapshot: bool
    previous: str | None
    key_fingerprint: str
    parents_missing: tuple[str, ...]
    seconds: float


class RemoteArchive:
    """An HTTP client for one remote; thread-safe, so ``jobs`` transfers share one connection pool."""

    def __init__(self, remote: Remote, *, jobs: int = 4, timeout: float = 300.0) -> None:
        self.remote = remote
        self.jobs = max(1, jobs)
        headers = {"User-Agent": f"modelarc/{__version__}"}
        if remote.token:
            headers["Authorization"] = f"Bearer {remote.token}"
        self._headers = headers
        self._timeout = timeout
        self._prefix = urlsplit(remote.url).path.rstrip("/")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self.http = httpx.Client(
            base_url=remote.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=self.jobs + 2, max_keepalive_connections=self.jobs + 2),
        )

    def close(self) -> None:
        self.http.close()
        for conn in self._connections:
            conn.close()

    def __enter__(self) -> RemoteArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ wire
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"remote {self.remote.name} ({self.remote.url}) is unreachable: {exc}"
            ) from None
        if response.status_code >= 400:
            self._refuse(response.status_code, response.content, method, path)
        return response

    def _refuse(self, status: int, content: bytes, method: str, path: str) -> NoReturn:
        """Turn an error answer into the ModelarcError the CLI reports in one line."""
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        detail = (
            str(body.get("detail") or body.get("error") or body)
            if isinstance(body, dict)
            else content[:200].decode("utf-8", "replace") or f"HTTP {status}"
        )
        where = f"remote {self.remote.name}"
        if status in (401, 403):
            raise RemoteAuthError(f"{where} refused {method} {path}: {detail}")
        if status == 404:
            raise NotFoundError(f"{where}: {detail}")
        if status in (410, 451):
            raise WithdrawnError(f"{where}: {detail}")
        if status == 409 and isinstance(body, dict):
            raise MissingObjectsError(body.get("snapshot", "?"), list(body.get("missing") or ["?"]))
        if status == 422 and "signature" in detail.lower():
            raise SignatureError(f"{where}: {detail}")
        raise RemoteError(f"{where} answered {status} to {method} {path}: {detail}")

    def missing(self, ids: Iterable[str]) -> list[ObjectId]:
        wanted = list(ids)
        out: list[ObjectId] = []
        for i in range(0, len(wanted), MISSING_BATCH):
            body = self._request(
                "POST", "/v1/objects/missing", json={"ids": wanted[i : i + MISSING_BATCH]}
            ).json()
            out += [ObjectId(o) for o in body["missing"]]
        return out

    def upload(self, oid: ObjectId, blob: bytes) -> None:
        self._request(
            "PUT", f"/v1/objects/{oid}", content=blob, headers={"Content-Type": "application/octet-stream"}
        )

    def download(self, oid: ObjectId, expected_raw: int | None = None) -> bytes | bytearray:
        """One object as stored, over a kept-alive stdlib connection per thread, read with bounded memory.

        The object header is read and checked first: its declared decoded size must be within the receiver's
        limit (and equal ``expected_raw`` when the manifest says how long the chunk is), and the body may be at
        most that plus the codec's overhead, so a hostile remote cannot make the puller buffer a gigabyte.
        Objects are the bulk of every pull; http.client reads a body of known length in one ``readinto`` where
        httpx reads it 64 KiB at a time (measured: bench/http_pull.py). Small requests stay on httpx.
        """
        path = f"{self._prefix}/v1/objects/{oid}"
        for attempt in (1, 2):  # a kept-alive connection the server has closed is reopened once
            conn = self._connection()
            try:
                conn.request("GET", path, headers=self._headers)
                response = conn.getresponse()
                if response.status >= 400:
                    self._refuse(response.status, response.read(64 << 10), "GET", path)
                return self._read_object(oid, response, expected_raw)
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise RemoteError(
                        f"remote {self.remote.name} ({self.remote.url}) is unreachable: {exc}"
                    ) from None
                continue
            except BaseException:
                conn.close()  # a refused or half-read body leaves the connection unusable
                self._local.conn = None
                raise
        raise AssertionError("unreachable")

    def _read_object(
        self, oid: ObjectId, response: http.client.HTTPResponse, expected_raw: int | None
    ) -> bytearray:
        where = f"remote {self.remote.name} sent object {oid}"
        head = response.read(HEADER_FIXED_SIZE)
        try:
            _codec, params_length, raw_length = unpack_fixed_header(head, where)
        except ObjectFormatError as exc:
            raise IntegrityError(str(exc)) from None
        if raw_length > MAX_OBJECT_BYTES or (expected_raw is not None and raw_length != expected_raw):
            want = f"the {expected_raw} bytes the manifest says" if expected_raw is not None else "the limit"
            raise IntegrityError(f"{where}: it declares {raw_length} decoded bytes, not {want}")
        cap = HEADER_FIXED_SIZE + params_length + raw_length + MAX_CODEC_OVERHEAD
        declared = response.getheader("Content-Length")
        if declared is not None:
            if not declared.isdigit() or not HEADER_FIXED_SIZE <= int(declared) <= cap:
                raise IntegrityError(f"{where}: a body of {declared[:40]} bytes; at most {cap} can be valid")
            body = bytearray(int(declared))
            body[:HEADER_FIXED_SIZE] = head
            view = memoryview(body)[HEADER_FIXED_SIZE:]
            while view:
                n = response.readinto(view)
                if not n:
                    raise RemoteError(f"{where}: the body ended early")
                view = view[n:]
            return body
        body = bytearray(head)  # no length given: read in blocks, never past the cap
        while block := response.read(1 << 20):
            body += block
            if len(body) > cap:
                raise IntegrityError(f"{where}: the body runs past the {cap} bytes that can be valid")
        return body

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            parts = urlsplit(self.remote.url)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = kind(parts.hostname or "localhost", parts.port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def offer(self, ref: Ref) -> SnapshotOffer:
        rev = ref.digest or ref.tag or "latest"
        body = self._request("GET", f"/v1/transfer/snapshots/{ref.model}/{rev}").json()
        return SnapshotOffer.from_json(body)

    def check(self, offer: SnapshotOffer) -> list[ObjectId]:
        """Ask the remote to vet the signer and manifest before weights move; the objects it still lacks."""
        body = self._request("POST", "/v1/transfer/check", json=offer.to_json()).json()
        missing = body.get("missing") if isinstance(body, dict) else None
        if not isinstance(missing, list):
            raise RemoteError(f"remote {self.remote.name}: malformed answer to the push check")
        return [ObjectId(o) for o in missing]

    def commit(self, offer: SnapshotOffer) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/v1/transfer/commit", json=offer.to_json()).json()
        return result

    def search(self, filters: dict[str, Any], limit: int, *, page_size: int = 1000) -> list[dict[str, Any]]:
        """The remote's ``GET /v1/snapshots`` with the ``ls`` filters, following ``Link: rel="next"`` pages."""
        params: dict[str, Any] | None = {k: v for k, v in filters.items() if v is not None}
        params = {**(params or {}), "limit": min(page_size, limit)}
        url: str | None = "/v1/snapshots"
        rows: list[dict[str, Any]] = []
        while url and len(rows) < limit:
            response = self._request("GET", url, params=params)
            rows += response.json()
            nxt = response.links.get("next", {}).get("url")
            # the next link carries the filters, the page size and the cursor: follow it as it is
            url, params = (httpx.URL(nxt).raw_path.decode(), None) if nxt else (None, None)
        return rows[:limit]

    def keys(self) -> list[dict[str, Any]]:
        keys: list[dict[str, Any]] = self._request("GET", "/v1/transfer/keys").json()
        return keys


def push_to_remote(
    archive: Archive,
    ref_text: str,
    client: RemoteArchive,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> TransferResult:
    """Send a local snapshot and move its tag on the remote; sends only the objects the remote lacks.

    The manifest and signature bundles go first and the remote vets them (``POST /v1/transfer/check``): a
    snapshot signed by a key the remote does not trust is refused before a single weight object moves.
    """
    started = time.perf_counter()
    offer, manifest = offer_for(archive, ref_text)
    needed = objects_of(offer, manifest)
    head = needed[: 1 + len(offer.signatures)]  # the manifest, then the bundles (objects_of's order)
    sent = 0
    moved: list[ObjectId] = []

    def send(oid: ObjectId) -> int:
        blob = archive.store.get_stored(oid)
        client.upload(oid, blob)
        return len(blob)

    def send_all(ids: list[ObjectId], report: bool) -> None:
        nonlocal sent
        for oid, size in _parallel(send, ids, client.jobs):
            sent += size
            moved.append(oid)
            if progress and report:
                progress(sizes.get(oid, 0))

    sizes = _raw_sizes(manifest)
    send_all(client.missing(head), report=False)
    todo = _retry_missing(lambda: client.check(offer), lambda ids: send_all(ids, report=False))
    if on_total:
        on_total(sum(sizes.get(oid, 0) for oid in todo))
    send_all(todo, report=True)
    # the remote lost objects between upload and commit (its leases expired): send them again and retry
    result = _retry_missing(lambda: client.commit(offer), lambda ids: send_all(ids, report=False))
    return TransferResult(
        ref=result["ref"],
        snapshot=offer.snapshot,
        remote=client.remote.name,
        objects=len(needed),
        objects_sent=len(moved),
        bytes_sent=sent,
        new_snapshot=result["new_snapshot"],
        previous=result["previous"],
        key_fingerprint=result["key_fingerprint"],
        parents_missing=tuple(result["parents_missing"]),
        seconds=time.perf_counter() - started,
    )


def _retry_missing(call: Callable[[], T], resend: Callable[[list[ObjectId]], None], attempts: int = 3) -> T:
    """``call``; when it answers that objects are missing, ``resend`` them and try again (``attempts`` in all)."""
    for attempt in range(attempts):
        try:
            return call()
        except MissingObjectsError as exc:
            if attempt == attempts - 1:
                raise
            resend([ObjectId(o) for o in exc.missing])
    raise AssertionError("unreachable")


def fetch_from_remote(
    archive: Archive,
    ref_text: str,
    client: RemoteArchive,
    *,
    dest: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> TransferResult:
    """Copy a remote snapshot into this archive (objects, catalog rows, signature, tag), and optionally into ``dest``.

    The remote's answer is a claim, checked here before it is recorded: pulling by digest yields exactly that
    digest; pulling by tag records the answer under the name and tag asked for (the only tag that moves; a
    digest pull moves none), whatever ref the offer names. The manifest and signature bundles come first and
    must verify against keys *this* archive trusts before any weights move. Every object is decoded and hashed
    on arrival and kept in the local store; with ``dest``, the same decoded bytes are written straight into the
    files (one decode per object), each file checked against its sha256 before it is renamed in. The store's
    shared lock is held throughout, so a local gc cannot free what the pull has fetched but not yet recorded.
    """
    started = time.perf_counter()
    wanted = parse_ref(ref_text)
    offer = client.offer(wanted)
    if wanted.digest and not offer.snapshot.startswith(wanted.digest):
        raise IntegrityError(
            f"remote {client.remote.name} answered {ref_text} with snapshot {offer.snapshot}, not the one asked for"
        )
    lock = threading.Lock()
    moved = {"objects": 0, "bytes": 0}
    sizes: dict[ObjectId, int] = {}

    def fetch(oid: ObjectId) -> bytes | bytearray:
        if archive.store.has(oid):
            return archive.store.get(oid, verify=dest is None)
        blob = client.download(oid, sizes.get(oid))
        try:
            raw = receive_object(archive, oid, blob, write=later)
        except (IntegrityError, PayloadTooLargeError) as exc:
            raise IntegrityError(f"remote {client.remote.name} sent a bad object: {exc}") from None
        with lock:
            moved["objects"] += 1
            moved["bytes"] += len(blob)
        return raw

    # verified objects are written by one thread while the next ones download and decode; all writes are waited
    # for (and their errors raised) before the commit, and on the way out of a failed pull
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelarc-store-writer")
    writes: list[Future[None]] = []

    def later(store: Callable[[], None]) -> None:
        with lock:
            writes.append(writer.submit(store))

    def written() -> None:
        writer.shutdown(wait=True)
        for fut in writes:
            fut.result()

    with archive.store.lock(exclusive=False):
        try:
            for oid in [ObjectId(offer.snapshot), *map(ObjectId, offer.signatures)]:
                fetch(oid)
            for fut in list(writes):  # the manifest and bundles are read back from the store right away
                fut.result()
            manifest, _fingerprint, _bundles = check_offer(archive, offer)
            sizes.update(_raw_sizes(manifest))
            needed = objects_of(offer, manifest)
            if dest is not None:
                if on_total:
                    on_total(manifest.logical_bytes)
                restore(
                    archive.store,
                    manifest,
                    dest,
                    force=force,
                    progress=progress,
                    jobs=client.jobs,
                    source=fetch,
                )
            else:
                todo = [oid for oid in needed if not archive.store.has(oid)]
                if on_total:
                    on_total(sum(sizes.get(oid, 0) for oid in todo))
                for oid, _size in _parallel(lambda oid: len(fetch(oid)), todo, client.jobs):
                    if progress:
                        progress(sizes.get(oid, 0))
        except BaseException:
            writer.shutdown(wait=True)  # let verified objects land: a re-run resumes from them
            raise
        written()
        committed: CommitResult = commit_offer(
            archive,
            offer,
            actor=archive.settings.actor,
            record_as=Ref(wanted.namespace, wanted.name, tag=wanted.tag),
            content_checked=dest is not None,  # restore has just rebuilt and hashed every file
        )
    return TransferResult(
        ref=committed.ref,
        snapshot=offer.snapshot,
        remote=client.remote.name,
        objects=len(needed),
        objects_sent=moved["objects"],
        bytes_sent=moved["bytes"],
        new_snapshot=committed.new_snapshot,
        previous=committed.previous,
        key_fingerprint=committed.key_fingerprint,
        parents_missing=committed.parents_missing,
        seconds=time.perf_counter() - started,
    )


def trust_remote_keys(archive: Archive, client: RemoteArchive) -> list[str]:
    """Import the remote's own signing keys as trusted (trust on first use, at ``remote add``); their fingerprints."""
    imported = []
    for key in client.keys():
        if key.get("local"):
            imported.append(
                archive.import_key(key["public_pem"].encode(), label=f"remote {client.remote.name}")
            )
    return imported


def _raw_sizes(manifest: SnapshotManifest) -> dict[ObjectId, int]:
    return {c.id: c.length for f in manifest.files for p in f.parts for c in p.chunks}


def _parallel(
    work: Callable[[ObjectId], int], ids: list[ObjectId], jobs: int
) -> Iterator[tuple[ObjectId, int]]:
    """Run ``work`` over ``ids`` with at most ``jobs`` in flight (bounded memory), yielding as each finishes in order.

    The first failure stops new work and propagates once the in-flight transfers have ended; everything that
    finished before it is durable on the receiver, which is what makes a re-run resume.
    """
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="modelarc-transfer") as pool:
        pending: list[tuple[ObjectId, Future[int]]] = []
        it = iter(ids)
        try:
            for oid in it:
                pending.append((oid, pool.submit(work, oid)))
                if len(pending) >= jobs * 2:
                    done_oid, fut = pending.pop(0)
                    yield done_oid, fut.result()
            while pending:
                done_oid, fut = pending.pop(0)
                yield done_oid, fut.result()
        except BaseException:
            for _oid, fut in pending:
                fut.cancel()
            raise

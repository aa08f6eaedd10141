"""Hostile parties built on the real transfer protocol: a pusher that signs lies, and a remote that rewrites answers.

Neither mocks modelarc's own code: the pusher speaks HTTP to a real `modelarc serve`, the remote is a real HTTP
proxy in front of one. Each lets a test change exactly one claim and see what the honest side records.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from modelarc.archive.manifest import canonical_json
from modelarc.archive.remote import batch
from modelarc.archive.remote.offers import offer_for
from modelarc.archive.repository import Archive
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot
from modelarc.storage import ObjectId


@dataclass
class HostilePusher:
    """A pusher with a push token and a signing key the server trusts, free to sign any manifest it likes."""

    archive: Archive  # its own archive: source of honest objects and of the signing key
    url: str
    token: str

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def upload(self, oid: str) -> httpx.Response:
        blob = self.archive.store.get_stored(ObjectId(oid))
        return self.http.put(f"/v1/objects/{oid}", content=blob)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` in the pusher's own store and upload it; its object id."""
        oid = self.archive.store.put(data).id
        assert self.upload(oid).status_code in (200, 201)
        return str(oid)

    def offer(self, ref: str, manifest_doc: dict[str, Any], *, sign: bool = True) -> dict[str, Any]:
        """An offer for ``manifest_doc`` (uploaded), signed over the files it declares, under ``ref``'s metadata."""
        honest, _manifest = offer_for(self.archive, ref)
        manifest_id = self.put_bytes(canonical_json(manifest_doc))
        digests = [FileDigest(f["path"], f["sha256"]) for f in manifest_doc["files"]]
        key = keyring.load_private_key(self.archive.settings.keys_path / "signing-key.pem")
        bundle = sign_snapshot(digests, f"sha256:{manifest_id}", key, model_name=honest.ref)
        doc = honest.to_json()
        doc.update(snapshot=f"sha256:{manifest_id}", signatures=[self.put_bytes(bundle)] if sign else [])
        return doc

    def upload_all(self, manifest_doc: dict[str, Any]) -> None:
        for f in manifest_doc["files"]:
            for p in f["parts"]:
                for c in p["chunks"]:
                    if self.archive.store.has(ObjectId(c["id"])):
                        assert self.upload(c["id"]).status_code in (200, 201)

    def commit(self, offer: dict[str, Any]) -> httpx.Response:
        return self.http.post("/v1/transfer/commit", json=offer)

    def commit_restated(self, ref: str, change: Callable[[dict[str, Any]], None]) -> httpx.Response:
        """Push ``ref`` as it is in the pusher's archive (objects, manifest, signed bundle) with ``change`` made to
        the offer alone: what a pusher states beside the files (provenance, architecture) is not signed."""
        _ref, snap = self.archive.resolve(ref)
        doc = self.archive.manifest(snap).to_json()
        self.upload_all(doc)
        offer = self.offer(ref, doc)
        change(offer)
        return self.commit(offer)


Rewrite = Callable[[str, str, int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


def rewriting_offer(change: Callable[[dict[str, Any]], None]) -> Rewrite:
    """A remote's rewrite that applies ``change`` to every snapshot offer it serves, and passes the rest."""

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            change(doc)
            return status, headers, json.dumps(doc).encode()
        return status, headers, body

    return rewrite


@dataclass
class RewritingProxy:
    """A real HTTP server that forwards to ``upstream`` and lets a test rewrite request paths and responses."""

    upstream: str
    route: Callable[[str], str] = lambda path: path
    rewrite: Rewrite = lambda method, path, status, headers, body: (status, headers, body)
    requests: list[str] = field(default_factory=list)


@contextmanager
def serve_proxy(proxy: RewritingProxy) -> Iterator[str]:
    """Yield the proxy's base URL while it runs on 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            return

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            proxy.requests.append(f"{self.command} {self.path}")
            forwarded = {
                k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")
            }
            r = httpx.request(
                self.command,
                proxy.upstream + proxy.route(self.path),
                content=body,
                headers=forwarded,
                timeout=60,
            )
            headers = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "etag", "link")}
            status, headers, content = proxy.rewrite(
                self.command, self.path, r.status_code, headers, r.content
            )
            self.send_response(status)
            declared = headers.pop("Content-Length", None)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", declared or str(len(content)))
            if declared is not None and declared != str(len(content)):  # a lie, or not even a number
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                self.wfile.write(content)
            except OSError:
                pass

        do_GET = do_POST = do_PUT = _forward

    class QuietServer(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return  # a client hanging up on a refused body is the expected ending, not news

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def object_files(store_root: Path) -> set[str]:
    """Object ids present in a store folder, read from the disk (not through the store's own code)."""
    return {p.name for p in (store_root / "objects").rglob("*") if p.is_file()}


def batch_frames(body: bytes) -> list[tuple[str, int, bytes]]:
    """The frames of a ``POST /v1/objects/batch`` answer (docs/FORMAT.md "Transfer"): (object id, status, payload)."""
    assert body[: len(batch.MAGIC)] == batch.MAGIC
    frames, at = [], len(batch.MAGIC)
    while at < len(body):
        frame = batch.unpack_frame_header(body[at : at + batch.FRAME_HEADER_SIZE])
        at += batch.FRAME_HEADER_SIZE
        frames.append((str(frame.oid), frame.status, body[at : at + frame.length]))
        at += frame.length
    return frames


def pack_batch(frames: list[tuple[str, int, bytes, int]]) -> bytes:
    """A batch answer from (object id, status, payload, the length its frame declares) - free to lie."""
    out = [batch.MAGIC]
    for oid, status, payload, declared in frames:
        out += [batch.pack_frame_header(ObjectId(oid), status, declared), payload]
    return b"".join(out)


ROUTES = ["batch", "one by one"]  # how a puller may fetch objects: ``POST /v1/objects/batch``, or a GET each
ObjectLie = Callable[[bytes], tuple[bytes, int]]  # an object's bytes -> the bytes sent and the length declared


def lie_about(oid: str, lie: ObjectLie, route: str) -> Rewrite:
    """A rewrite that sends object ``oid`` as ``lie`` makes it, whichever way the puller asks for it: in its batch
    frame, or alone (``route="one by one"``: the batch route answers 405 then, as a server older than it does)."""

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if path.endswith("/v1/objects/batch"):
            if route == "one by one":
                return 405, {}, b""
            frames = []
            for fid, kind, payload in batch_frames(body):
                sent, declared = lie(payload) if fid == oid and kind == batch.OBJECT else (payload, len(payload))
                frames.append((fid, kind, sent, declared))
            return status, headers, pack_batch(frames)
        if path.endswith(f"/v1/objects/{oid}"):
            sent, declared = lie(body)
            return status, {**headers, "Content-Length": str(declared)}, sent
        return status, headers, body

    return rewrite

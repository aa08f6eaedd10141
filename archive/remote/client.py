"""The HTTP client for one remote archive (``modelarc serve``): every request, and every answer judged on arrival.

Errors the remote answers become the same ``ModelarcError`` classes the local archive raises; object bodies are
bounded by their header before they are read (docs/FORMAT.md "Transfer between archives").
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.client import HTTPConnection, HTTPException, HTTPResponse, HTTPSConnection
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

from modelarc import __version__
from modelarc.archive.remote import batch
from modelarc.archive.remote.config import Remote
from modelarc.archive.remote.offers import MAX_OFFER_BYTES, CommitResult, SnapshotOffer
from modelarc.archive.remote.receive import MAX_CODEC_OVERHEAD, MAX_OBJECT_BYTES
from modelarc.errors import (
    AccessDeniedError,
    IntegrityError,
    MissingObjectsError,
    ModelarcError,
    NamespaceRefusedError,
    NotFoundError,
    ObjectFormatError,
    PolicyLooseningError,
    RemoteAuthError,
    RemoteError,
    ServerBusyError,
    UsageError,
    WithdrawnError,
    error_class,
)
from modelarc.registry.keys import PublishedKey
from modelarc.registry.refs import Ref
from modelarc.registry.snapshot_search import SnapshotSummary
from modelarc.storage import ObjectId
from modelarc.storage.objectformat import HEADER_FIXED_SIZE, unpack_fixed_header

if TYPE_CHECKING:  # httpx (and httpcore, h11, anyio) costs ~0.08 s to import: a pull never needs it
    import httpx

T = TypeVar("T")
MISSING_BATCH = 5000
# the most decoded bytes of each JSON answer the client reads (a hostile remote may send gigabytes, or a gzip bomb):
# each well above what an honest server sends for the request
ERROR_BODY_BYTES = 64 << 10  # an error's detail: what is past this is dropped, not refused
SMALL_ANSWER_BYTES = 1 << 20  # keys, an upload's receipt, a commit's result
MISSING_ANSWER_BYTES = MISSING_BATCH * 80 + (64 << 10)  # at most the ids asked for, each 64 hex and quotes
CHECK_ANSWER_BYTES = 2 * MAX_OFFER_BYTES  # the offer's objects, at most, which the offer's own size bounds
PAGE_ANSWER_BYTES = 32 << 20  # one page of ``GET /v1/snapshots`` (page_size rows)
MAX_LISTING_PAGES = 10_000  # of one listing: ten million snapshots in pages of 1000; a remote paging on is stopped
# answers without an X-Error-Code (older servers, proxies): what their status alone can mean
_CLASS_BY_STATUS: dict[int, type[ModelarcError]] = {
    404: NotFoundError,
    409: MissingObjectsError,
    410: WithdrawnError,
    451: WithdrawnError,
}


# the shortest and longest pause before a "busy" remote (503 ServerBusy) is asked again, whatever its Retry-After
# says: an honest server asks for a few seconds; a hostile one cannot make the client spin or sleep for a day
BUSY_PAUSE_BOUNDS = (0.2, 30.0)

# bytes per second a server is assumed to rebuild and hash a pushed snapshot at before it answers the commit (measured
# ~394 MB/s on a 2-core VM): a 140 GB model may take up to ~47 minutes beyond MODELARC_REMOTE_TIMEOUT
COMMIT_CHECK_RATE = 50_000_000


class RemoteArchive:
    """An HTTP client for one remote; thread-safe, so ``jobs`` transfers share one connection pool."""

    def __init__(
        self, remote: Remote, *, jobs: int = 4, timeout: float | None = None, min_rate: float | None = None
    ) -> None:
        from modelarc.config import remote_busy_wait, remote_timeouts

        self.remote = remote
        self.jobs = max(1, jobs)
        default_timeout, default_rate = remote_timeouts()
        # ``timeout``: the longest wait for any one read; a request's deadline is that plus its size at ``min_rate``
        self._timeout = timeout if timeout is not None else default_timeout
        self._min_rate = min_rate if min_rate is not None else default_rate
        # identity: a compressed answer would be inflated by the client beyond what its size on the wire says
        headers = {"User-Agent": f"modelarc/{__version__}", "Accept-Encoding": "identity"}
        if remote.token:
            headers["Authorization"] = f"Bearer {remote.token}"
        self._headers = headers
        self._prefix = urlsplit(remote.url).path.rstrip("/")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        # at most ``jobs`` object bodies on the wire at once, however many threads decode what has arrived
        self._transfers = threading.BoundedSemaphore(self.jobs)
        # how long busy answers may go on before the command ends with one (MODELARC_REMOTE_BUSY_WAIT), and since
        # when they have: the monotonic time of the first busy answer with none served after it, else None
        self._busy_wait = remote_busy_wait()
        self._busy_since: float | None = None

    @functools.cached_property
    def http(self) -> httpx.Client:
        """The httpx client for the small JSON requests, made on first use: a pull sends none of them (its offer
        and objects go over http.client), so it never imports httpx.

        Its connections read and write through ``_DeadlineBackend``: httpx's timeouts are per read, so a remote that
        trickles its headers a byte at a time would hold a request for as long as it liked; every read and write is
        bounded by the calling thread's request deadline too. The transport is given, so HTTP_PROXY is not followed,
        as a pull's http.client connections never did."""
        import httpx

        transport = httpx.HTTPTransport(
            # a plain-http remote has no certificate to check, and loading the CA bundle costs ~0.08 s per command;
            # the client only ever asks its base URL (redirects are not followed), so no https request is made
            verify=urlsplit(self.remote.url).scheme == "https",
            limits=httpx.Limits(max_connections=self.jobs + 2, max_keepalive_connections=self.jobs + 2),
        )
        pool = transport._pool  # httpcore's ConnectionPool: the one place its network backend can be given
        pool._network_backend = cast(Any, _DeadlineBackend(pool._network_backend))  # duck-typed: no httpcore import at load
        return httpx.Client(
            base_url=self.remote.url,
            headers=self._headers,
            timeout=httpx.Timeout(self._timeout, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        if "http" in self.__dict__:  # made (cached_property keeps it in the instance's __dict__)
            self.http.close()
        for conn in self._connections:
            conn.close()

    def __enter__(self) -> RemoteArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ wire
    def _request(self, method: str, path: str, *, cap: int, grace: float = 0.0, **kwargs: Any) -> _Answer:
        """``_request_once``, asked again while the remote answers "busy" (``_while_busy``)."""
        return self._while_busy(lambda: self._request_once(method, path, cap=cap, grace=grace, **kwargs))

    def _request_once(self, method: str, path: str, *, cap: int, grace: float = 0.0, **kwargs: Any) -> _Answer:
        """One small JSON request over httpx, its answer read whole but never past ``cap`` decoded bytes (a gzip
        bomb is counted as it inflates, not by what it weighs on the wire), nor past the request's deadline.
        ``grace``: seconds the remote may work before it answers at all, beyond the timeout (a commit)."""
        import httpx

        where = f"remote {self.remote.name}"
        if grace:
            kwargs["timeout"] = httpx.Timeout(self._timeout + grace, connect=10.0)
        sent = len(kwargs.get("content") or b"")
        started = time.monotonic()
        # the whole request, headers included, within the timeout plus its bytes each way at the minimum rate
        _DEADLINE.at = started + grace + self._allowance(sent)

        def slow(seconds: float, received: int) -> bool:
            # the next block (at most 64 KiB) may take its share of time too
            _DEADLINE.at = started + grace + self._allowance(sent + received + (64 << 10))
            return time.monotonic() - started > grace + self._allowance(sent + received)

        try:
            with self.http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    content = _read_capped(response, ERROR_BODY_BYTES, slow, where, truncate=True)
                    self._refuse(
                        response.status_code,
                        content,
                        method,
                        path,
                        response.headers.get("X-Error-Code"),
                        response.headers.get("Retry-After"),
                    )
                content = _read_capped(response, cap, slow, where, what=f"{method} {path}")
                return _Answer(content, response.links, method, response.request.url.path)
        except httpx.TimeoutException:
            if time.monotonic() >= _DEADLINE.at:
                raise self._too_slow(method, path) from None
            raise RemoteError(
                f"{where} did not answer {method} {path} within {self._timeout + grace:g} s "
                "(MODELARC_REMOTE_TIMEOUT): it is stalled or overloaded"
            ) from None
        except httpx.HTTPError as exc:
            raise RemoteError(f"{where} ({self.remote.url}) is unreachable: {exc}") from None
        finally:
            _DEADLINE.at = None

    def _while_busy(self, once: Callable[[], T], may_retry: Callable[[], bool] = lambda: True) -> T:
        """``once()``, called again while the remote answers "busy" and ``_ask_again`` allows."""
        while True:
            try:
                result = once()
            except ServerBusyError as exc:
                if not self._ask_again(exc, may_retry):
                    raise
                continue
            self._busy_since = None
            return result

    def _ask_again(self, busy: ServerBusyError, may_retry: Callable[[], bool] = lambda: True) -> bool:
        """Wait the pause a busy remote asked for and say True, so the request is sent again; False when busy
        answers have gone on for ``MODELARC_REMOTE_BUSY_WAIT`` (or would, by the end of the pause) with none served
        in between, or ``may_retry`` refuses. A busy server wrote nothing of the request (docs/API.md, 503), so asking
        again cannot record anything twice; the pause is bounded (``BUSY_PAUSE_BOUNDS``) whatever the remote asks."""
        low, high = BUSY_PAUSE_BOUNDS
        pause = min(max(float(busy.retry_after), low), high)
        now = time.monotonic()
        with self._lock:
            since = self._busy_since = self._busy_since if self._busy_since is not None else now
        if now + pause - since > self._busy_wait or not may_retry():
            return False
        time.sleep(pause)
        return True

    def _allowance(self, size: int) -> float:
        """Seconds a request whose answer is ``size`` bytes may take, from its start to its last byte."""
        return self._timeout + size / self._min_rate

    def _too_slow(self, method: str, path: str) -> RemoteError:
        return RemoteError(
            f"remote {self.remote.name}: {method} {path} ran past its deadline ({self._timeout:g} s plus "
            f"{self._min_rate:g} bytes/s; MODELARC_REMOTE_TIMEOUT, MODELARC_REMOTE_MIN_RATE): it is stalled or too slow"
        )

    def _json(self, answer: _Answer) -> Any:
        """A successful answer's JSON; one that is not JSON (a proxy's page, "[[[[..." nested too deeply) is a
        ``RemoteError`` naming the remote, not a traceback."""
        try:
            return json.loads(answer.content)
        except (ValueError, RecursionError):
            raise RemoteError(
                f"remote {self.remote.name}: its answer to {answer.method} {answer.path} is not JSON"
            ) from None

    def _refuse(
        self, status: int, content: bytes, method: str, path: str, code: str | None, retry_after: str | None = None
    ) -> NoReturn:
        """Raise what the remote raised: the class its ``X-Error-Code`` names (modelarc/errors.py HTTP_ERRORS).

        Auth refusals are ``RemoteAuthError``; an answer without a known code (an older server, a proxy) is
        judged by its status alone. A "busy" answer keeps the pause its ``Retry-After`` asks for (``_ask_again``).
        """
        try:
            body = json.loads(content)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser's stack
            body = None
        detail = (
            str(body.get("detail") or body.get("error") or body)
            if isinstance(body, dict)
            else content[:200].decode("utf-8", "replace") or f"HTTP {status}"
        )
        where = f"remote {self.remote.name}"
        if code == "GatedRepo":  # the weights are gated there, whatever this token may otherwise do
            raise AccessDeniedError(f"{where}: {detail}")
        if code == "NamespaceForbidden":  # this one ref is outside the token's namespaces; others may be fine
            raise NamespaceRefusedError(f"{where} refused {method} {path}: {detail}")
        if code == "PolicyLoosening":  # this one policy needs an admin token there; the others may be fine
            raise PolicyLooseningError(f"{where}: {detail}")
        if status in (401, 403):
            raise RemoteAuthError(f"{where} refused {method} {path}: {detail}")
        if status == 405 and method == "PUT" and path.startswith("/v1/access/"):
            # a server older than policy sync: what it withholds stays what each snapshot brought it, so the sync
            # fails for every model whose policies differ until it is upgraded; say so, not "Method Not Allowed"
            raise RemoteError(
                f"{where} runs a modelarc too old to take access policies (no PUT /v1/access): upgrade it; until "
                "then it keeps the policies each snapshot brought it, and mirror sync fails for every model whose "
                "policies differ"
            )
        cls = error_class(code) or _CLASS_BY_STATUS.get(status)
        if cls is MissingObjectsError:
            if not isinstance(body, dict):
                raise RemoteError(f"{where} answered {status} to {method} {path} without the missing objects")
            missing = body.get("missing")
            if not isinstance(missing, list) or not missing or not all(isinstance(o, str) for o in missing):
                raise RemoteError(f"{where} answered {status} to {method} {path} with a malformed list of missing objects")
            raise MissingObjectsError(str(body.get("snapshot", "?"))[:80], missing)
        if cls is ServerBusyError:
            raise ServerBusyError(f"{where}: {detail}", retry_after=_pause_asked(retry_after))
        if cls is not None and cls is not ModelarcError:
            raise cls(f"{where}: {detail}")
        raise RemoteError(f"{where} answered {status} to {method} {path}: {detail}")

    def _refuse_answer(self, response: HTTPResponse, method: str, path: str) -> NoReturn:
        """``_refuse`` for a refusal read over http.client: its body (bounded), its code and its Retry-After."""
        self._refuse(
            response.status,
            response.read(ERROR_BODY_BYTES),
            method,
            path,
            response.getheader("X-Error-Code"),
            response.getheader("Retry-After"),
        )

    def missing(self, ids: Iterable[str]) -> list[ObjectId]:
        wanted = list(ids)
        out: list[ObjectId] = []
        for i in range(0, len(wanted), MISSING_BATCH):
            asked = wanted[i : i + MISSING_BATCH]
            body = self._json(
                self._request("POST", "/v1/objects/missing", cap=MISSING_ANSWER_BYTES, json={"ids": asked})
            )
            missing = body.get("missing") if isinstance(body, dict) else None
            if not isinstance(missing, list) or not all(isinstance(o, str) for o in missing):
                raise RemoteError(f"remote {self.remote.name}: malformed answer to which objects it lacks")
            if stray := set(missing) - set(asked):
                raise RemoteError(
                    f"remote {self.remote.name} says it lacks object {min(stray)}, which it was not asked about"
                )
            out += [ObjectId(o) for o in missing]
        return out

    def upload(self, oid: ObjectId, blob: bytes) -> None:
        self._request(
            "PUT",
            f"/v1/objects/{oid}",
            cap=SMALL_ANSWER_BYTES,
            content=blob,
            headers={"Content-Type": "application/octet-stream"},
        )

    def download(
        self,
        oid: ObjectId,
        expected_raw: int | None = None,
        *,
        into: bytearray | None = None,
        limit: int = MAX_OBJECT_BYTES,
    ) -> bytearray | memoryview:
        """One object as stored, over a kept-alive stdlib connection per thread, read with bounded memory.

        The object header is read and checked first: its declared decoded size must be within the receiver's
        limit (and equal ``expected_raw`` when the manifest says how long the chunk is), and the body may be at
        most that plus the codec's overhead, so a hostile remote cannot make the puller buffer a gigabyte.
        Objects are the bulk of every pull; http.client reads a body of known length in one ``readinto`` where
        httpx reads it 64 KiB at a time (measured: bench/http_pull.py). Small requests stay on httpx.

        At most ``jobs`` downloads run at once: a puller may call this from more threads than that, so that the
        objects already here are decoded while the next ones arrive, without asking more of the remote.

        With ``into``, a body of known length that fits is read into it and a view of it is returned (a puller
        recycles a few buffers: no fresh, zero-filled pages per object); the view is valid until ``into`` is reused.
        ``limit``: the most decoded bytes the object may declare (a signature bundle or a manifest is held to less
        than a weight chunk), judged on its header before the body is read.
        """
        with self._transfers:
            return self._get(
                f"/v1/objects/{oid}",
                lambda response: self._read_object(oid, response, expected_raw, into, limit=limit),
            )

    def download_batch(
        self,
        oids: list[ObjectId],
        expected_raw: dict[ObjectId, int],
        deliver: Callable[[int, bytearray | memoryview | ModelarcError], None],
    ) -> bool:
        """Several objects in one request (``POST /v1/objects/batch``), each handed to ``deliver`` with its index in
        ``oids`` as soon as it has arrived, while the next ones are read; False (nothing delivered) when the remote
        has no such route (a server older than it), so the caller fetches them one by one instead.

        Every object is judged as ``download`` judges it (its header bounds the body before it is read), and every
        frame must name the id asked for at its place. An object the remote refuses or lacks is delivered as the
        error ``download`` would raise for it (``AccessDeniedError``, ``NotFoundError``); the others still come.
        Each object is read into fresh bytes of its own length. Counts as one of the ``jobs`` transfers while it runs.
        """
        path = f"{self._prefix}/v1/objects/batch"
        body = json.dumps({"ids": oids}).encode()
        headers = {**self._headers, "Content-Type": "application/json"}
        where = f"remote {self.remote.name}"
        delivered = 0

        def read(response: HTTPResponse) -> bool:
            nonlocal delivered
            if response.status in (404, 405):  # no batch route there: nothing to judge, ask one by one
                self._drop_connection()  # its body unread: the connection is not reused
                return False
            if response.status >= 400:
                self._refuse_answer(response, "POST", path)
            if _read_exactly(response, len(batch.MAGIC), where) != batch.MAGIC:
                raise RemoteError(f"{where}: its answer to {path} is not a batch of objects (version 1)")
            for index, oid in enumerate(oids):
                deliver(index, self._read_frame(oid, response, expected_raw.get(oid)))
                delivered += 1
            if response.read(1):
                raise IntegrityError(f"{where} sent more than the {len(oids)} objects asked for")
            return True

        with self._transfers:  # objects already delivered cannot be taken back: no second attempt after one
            return self._while_busy(
                lambda: self._exchange("POST", path, read, body=body, headers=headers, may_retry=lambda: not delivered),
                may_retry=lambda: not delivered,
            )

    def _read_frame(
        self,
        oid: ObjectId,
        response: HTTPResponse,
        expected_raw: int | None,
    ) -> bytearray | memoryview | ModelarcError:
        where = f"remote {self.remote.name}"
        try:
            frame = batch.unpack_frame_header(_read_exactly(response, batch.FRAME_HEADER_SIZE, where))
        except ValueError as exc:
            raise IntegrityError(f"{where} sent a malformed batch frame where object {oid} was due: {exc}") from None
        if frame.oid != oid:
            raise IntegrityError(f"{where} sent object {frame.oid} where {oid} was due")
        if frame.status != batch.OBJECT:
            if frame.length > batch.MAX_REASON_BYTES:
                raise IntegrityError(f"{where}: a reason of {frame.length} bytes for object {oid}")
            reason = _read_exactly(response, frame.length, where).decode("utf-8", "replace")
            if frame.status == batch.REFUSED:  # as a GatedRepo answer to GET /v1/objects/{id}
                return AccessDeniedError(f"{where}: {reason}")
            return NotFoundError(f"{where}: {reason}")
        return self._read_object(oid, response, expected_raw, length=frame.length)

    def _get(self, path: str, read: Callable[[HTTPResponse], T]) -> T:
        """``GET path`` over this thread's kept-alive stdlib connection; ``read`` judges and reads the body of a
        successful answer, and a refusal raises what the remote raised (``_refuse``)."""
        path = f"{self._prefix}{path}"

        def judged(response: HTTPResponse) -> T:
            if response.status >= 400:
                self._refuse_answer(response, "GET", path)
            return read(response)

        return self._while_busy(lambda: self._exchange("GET", path, judged))

    def _exchange(
        self,
        method: str,
        path: str,
        read: Callable[[HTTPResponse], T],
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        may_retry: Callable[[], bool] = lambda: True,
    ) -> T:
        """One request over this thread's kept-alive stdlib connection, its answer handed to ``read``; a connection
        the server has closed meanwhile is reopened and the request sent once more (if ``may_retry`` says so)."""
        for attempt in (1, 2):
            conn = self._connection()
            watchdog = _Watchdog(conn, self._allowance(0))
            self._local.watchdog = watchdog
            try:
                conn.request(method, path, body=body, headers=headers or self._headers)
                result = read(conn.getresponse())
                if watchdog.expired:  # a read cut short by the shutdown may have ended "cleanly"
                    self._drop_connection()
                    raise self._too_slow(method, path)
                return result
            except (HTTPException, OSError) as exc:
                self._drop_connection()
                if watchdog.expired:
                    raise self._too_slow(method, path) from None
                if attempt == 2 or not may_retry():
                    raise RemoteError(
                        f"remote {self.remote.name} ({self.remote.url}) is unreachable: {exc}"
                    ) from None
            except BaseException:
                self._drop_connection()  # a refused or half-read body leaves the connection unusable
                if watchdog.expired:
                    raise self._too_slow(method, path) from None
                raise
            finally:
                watchdog.cancel()
                self._local.watchdog = None
        raise AssertionError("unreachable")

    def _expect(self, size: int) -> None:
        """This thread's request is about to read ``size`` more bytes: its deadline moves to allow for them."""
        watchdog: _Watchdog | None = getattr(self._local, "watchdog", None)
        if watchdog is not None:
            watchdog.extend(self._allowance(size))

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _read_object(
        self,
        oid: ObjectId,
        response: HTTPResponse,
        expected_raw: int | None,
        into: bytearray | None = None,
        *,
        length: int | None = None,
        limit: int = MAX_OBJECT_BYTES,
    ) -> bytearray | memoryview:
        """The body of one object, judged by its header before the rest is read; ``length`` is the body's length
        when a batch frame gives it (else the answer's ``Content-Length``, if any); ``limit`` as in ``download``."""
        where = f"remote {self.remote.name} sent object {oid}"
        head = response.read(HEADER_FIXED_SIZE)
        try:
            _codec, params_length, raw_length = unpack_fixed_header(head, where)
        except ObjectFormatError as exc:
            raise IntegrityError(str(exc)) from None
        if raw_length > limit or (expected_raw is not None and raw_length != expected_raw):
            want = f"the {expected_raw} bytes the manifest says" if expected_raw is not None else f"at most {limit:,}"
            raise IntegrityError(f"{where}: it declares {raw_length} decoded bytes, not {want}")
        cap = HEADER_FIXED_SIZE + params_length + raw_length + MAX_CODEC_OVERHEAD
        declared = str(length) if length is not None else response.getheader("Content-Length")
        if declared is not None:
            # isdigit alone takes '²', which int() refuses
            if not (declared.isascii() and declared.isdigit()) or not HEADER_FIXED_SIZE <= int(declared) <= cap:
                raise IntegrityError(f"{where}: a body of {declared[:40]} bytes; at most {cap} can be valid")
            length = int(declared)
            self._expect(length)
            target = into if into is not None and length <= len(into) else bytearray(length)
            body = memoryview(target)[:length]
            body[:HEADER_FIXED_SIZE] = head
            view = body[HEADER_FIXED_SIZE:]
            while view:
                n = response.readinto(view)
                if not n:
                    raise RemoteError(f"{where}: the body ended early")
                view = view[n:]
            return body if target is into else target
        self._expect(cap)
        grown = bytearray(head)  # no length given: read in blocks, never past the cap
        while block := response.read(1 << 20):
            grown += block
            if len(grown) > cap:
                raise IntegrityError(f"{where}: the body runs past the {cap} bytes that can be valid")
        return grown

    def _connection(self) -> HTTPConnection:
        conn: HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            parts = urlsplit(self.remote.url)
            kind = HTTPSConnection if parts.scheme == "https" else HTTPConnection
            conn = kind(parts.hostname or "localhost", parts.port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def offer(self, ref: Ref) -> SnapshotOffer:
        rev = ref.digest or ref.tag or "latest"
        where = f"remote {self.remote.name}"

        def read(response: HTTPResponse) -> bytes:
            self._expect(MAX_OFFER_BYTES)
            text = response.read(MAX_OFFER_BYTES + 1)
            if len(text) > MAX_OFFER_BYTES:
                raise RemoteError(f"{where}: its snapshot offer is larger than {MAX_OFFER_BYTES} bytes; refused")
            return text

        text = self._get(f"/v1/transfer/snapshots/{ref.model}/{rev}", read)
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            raise RemoteError(f"remote {self.remote.name}: its snapshot offer is not JSON") from None
        return SnapshotOffer.from_json(body)

    def check(self, offer: SnapshotOffer) -> list[ObjectId]:
        """Ask the remote to vet the signer and manifest before weights move; the objects it still lacks."""
        body = self._json(
            self._request("POST", "/v1/transfer/check", cap=CHECK_ANSWER_BYTES, json=offer.to_json())
        )
        missing = body.get("missing") if isinstance(body, dict) else None
        if not isinstance(missing, list) or not all(isinstance(o, str) for o in missing):
            raise RemoteError(f"remote {self.remote.name}: malformed answer to the push check")
        try:
            return [ObjectId(o) for o in missing]
        except UsageError as exc:
            raise RemoteError(f"remote {self.remote.name}: malformed answer to the push check ({exc})") from None

    def commit(self, offer: SnapshotOffer, logical_bytes: int = 0) -> CommitResult:
        """Ask the remote to record the snapshot. It answers only once it has rebuilt and hashed every file of a
        snapshot new to it (``logical_bytes`` in all), so the wait for its answer grows with them: at
        ``COMMIT_CHECK_RATE``, slower than any server measured, on top of the timeout."""
        body = self._json(
            self._request(
                "POST",
                "/v1/transfer/commit",
                cap=SMALL_ANSWER_BYTES,
                grace=logical_bytes / COMMIT_CHECK_RATE,
                json=offer.to_json(),
            )
        )
        try:
            return CommitResult.from_json(body)
        except UsageError as exc:
            raise RemoteError(f"remote {self.remote.name}: malformed answer to the commit ({exc})") from None

    def search(self, filters: dict[str, Any], limit: int, *, page_size: int = 1000) -> list[SnapshotSummary]:
        """The remote's ``GET /v1/snapshots`` with the ``ls`` filters, following ``Link: rel="next"`` pages."""
        return list(self.iter_search(filters, limit, page_size=page_size))

    def iter_search(
        self, filters: dict[str, Any], limit: int, *, page_size: int = 1000
    ) -> Iterator[SnapshotSummary]:
        """``search``, a page at a time: each page is judged and converted as it arrives (a page holding more rows
        than were asked for is refused), so a caller that keeps only some rows holds at most one page of the rest."""
        asked = min(page_size, limit)
        params: dict[str, Any] | None = {k: v for k, v in filters.items() if v is not None}
        params = {**(params or {}), "limit": asked}
        url: str | None = "/v1/snapshots"
        given = 0
        seen: set[str] = set()
        where = f"remote {self.remote.name}"
        while url and given < limit:
            answer = self._request("GET", url, cap=PAGE_ANSWER_BYTES, params=params)
            page = _listing_page(answer, asked, where)
            try:
                rows = [SnapshotSummary.from_json(row) for row in page]
            except (UsageError, TypeError, AttributeError, KeyError, ValueError) as exc:
                raise RemoteError(f"{where}: malformed snapshot listing ({exc})") from None
            del page
            for row in rows[: limit - given]:
                given += 1
                yield row
            nxt = answer.links.get("next", {}).get("url")
            if not nxt:
                break
            # an endless listing: a next link after an empty page, or back to a page already read
            if not rows:
                raise RemoteError(f"{where}: its snapshot listing links an empty page to a next one; stopped")
            if nxt in seen:
                raise RemoteError(f"{where}: its snapshot listing links back to a page already read; stopped")
            seen.add(nxt)
            if len(seen) >= MAX_LISTING_PAGES:
                raise RemoteError(f"{where}: its snapshot listing runs past {MAX_LISTING_PAGES} pages; stopped")
            # the next link carries the filters, the page size and the cursor: follow it as it is
            try:
                url, params = _raw_path(nxt), None
            except ValueError:  # httpx.InvalidURL
                raise RemoteError(f"{where}: its snapshot listing links to a malformed next page") from None

    def access(self, model: str) -> dict[str, Any]:
        """The remote's ``GET /v1/access/{ns}/{name}``: the model's policy and its snapshots' overrides
        (``NotFoundError`` if it has no such model)."""
        body = self._json(self._request("GET", f"/v1/access/{model}", cap=PAGE_ANSWER_BYTES))
        if not isinstance(body, dict) or not isinstance(body.get("snapshots"), list):
            raise RemoteError(f"remote {self.remote.name}: malformed access policy of {model}")
        return body

    def set_access(self, model: str, policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``PUT /v1/access/{ns}/{name}``: make those of the model's policies the remote's (one transaction there);
        what it changed. A push token may only tighten (``PolicyLooseningError`` otherwise)."""
        body = self._json(
            self._request("PUT", f"/v1/access/{model}", cap=PAGE_ANSWER_BYTES, json={"policies": policies})
        )
        changed = body.get("changed") if isinstance(body, dict) else None
        if not isinstance(changed, list) or not all(isinstance(c, dict) for c in changed):
            raise RemoteError(
                f"remote {self.remote.name}: malformed answer to setting the policies of {model}"
            )
        return changed

    def keys(self) -> list[PublishedKey]:
        """The keys the remote trusts, with their public halves."""
        body = self._json(self._request("GET", "/v1/transfer/keys", cap=SMALL_ANSWER_BYTES))
        try:
            if not isinstance(body, list):
                raise UsageError("expected a list")
            return [PublishedKey.from_json(k) for k in body]
        except UsageError as exc:
            raise RemoteError(f"remote {self.remote.name}: malformed list of keys ({exc})") from None


class _TooManyRows(Exception):
    """Raised from the JSON parser's object hook: the page holds more rows than were asked for."""


def _listing_page(answer: _Answer, asked: int, where: str) -> list[Any]:
    """One page of ``GET /v1/snapshots``, parsed no further than a page of ``asked`` rows goes: a row is one JSON
    object holding one array (its tags), so the parse stops at object ``asked + 1`` and a page with more arrays than
    its rows and strings could hold is refused unparsed (30 MB of "{}" once cost 900 MB to parse). The next link
    carries the page size too: no page may hold more rows than the first asked for."""
    content = answer.content
    if content.count(b"[") > 2 * asked + len(content) // 64 + 16:  # "[" in strings counted too: generous
        raise RemoteError(f"{where}: malformed snapshot listing (more arrays than {asked:,} rows hold)")
    rows = 0

    def counted(obj: dict[str, Any]) -> dict[str, Any]:
        nonlocal rows
        rows += 1
        if rows > asked:
            raise _TooManyRows
        return obj

    try:
        page = json.loads(content, object_hook=counted)
    except _TooManyRows:
        raise RemoteError(
            f"{where}: a page of its snapshot listing holds more than the {asked:,} rows asked for; stopped"
        ) from None
    except (ValueError, RecursionError):
        raise RemoteError(f"{where}: its answer to {answer.method} {answer.path} is not JSON") from None
    if not isinstance(page, list):
        raise RemoteError(f"{where}: malformed snapshot listing (a page is not a list)")
    return page


class _Answer(NamedTuple):
    """A successful JSON answer, read whole (and bounded): its bytes, its ``Link`` header, what it answered."""

    content: bytes
    links: dict[str | None, dict[str, str]]
    method: str
    path: str


def _read_capped(
    response: httpx.Response,
    cap: int,
    slow: Callable[[float, int], bool],
    where: str,
    *,
    what: str = "",
    truncate: bool = False,
) -> bytes:
    """The answer's decoded bytes, at most ``cap`` of them (more is an error, or dropped with ``truncate``), while
    ``slow(seconds so far, bytes so far)`` says the remote keeps up."""
    out = bytearray()
    started = time.monotonic()
    slow(0.0, 0)
    for block in response.iter_bytes():
        out += block
        if slow(time.monotonic() - started, len(out)):
            raise RemoteError(f"{where}: its answer to {what or 'a request'} is stalled or too slow; stopped")
        if len(out) > cap:
            if truncate:
                return bytes(out[:cap])
            raise RemoteError(f"{where}: its answer to {what} is larger than {cap} bytes; refused")
    return bytes(out)


class _Watchdog:
    """Ends a request over a stdlib connection at its deadline, however slowly the remote trickles: the socket is
    shut down, so the blocked read fails at once and ``expired`` says why."""

    def __init__(self, conn: HTTPConnection, seconds: float) -> None:
        self._conn = conn
        self._timer: threading.Timer | None = None
        self.expired = False
        self.extend(seconds)

    def extend(self, seconds: float) -> None:
        """The deadline is now ``seconds`` from now."""
        self.cancel()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _pause_asked(retry_after: str | None) -> int:
    """The seconds a ``Retry-After`` asks for (RFC 9110: delay-seconds; an HTTP date or nothing reads as 1)."""
    text = (retry_after or "").strip()
    if text.isascii() and text.isdigit() and len(text) <= 6:
        return int(text)
    return 1


def _read_exactly(response: HTTPResponse, n: int, where: str) -> bytes:
    data = response.read(n)
    if len(data) != n:
        raise RemoteError(f"{where}: its answer ended early")
    return data


def _raw_path(url: str) -> str:
    import httpx

    return httpx.URL(url).raw_path.decode()


class _RequestDeadline(threading.local):
    """When this thread's httpx request must be over (``time.monotonic()``), or None outside one."""

    at: float | None = None


_DEADLINE = _RequestDeadline()


def _bounded(timeout: float | None, late: Callable[[str], Exception]) -> float | None:
    """A read's or write's timeout, cut to what is left of this thread's request deadline; none left: ``late``."""
    at = _DEADLINE.at
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise late("the request ran past its deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """An httpcore network stream whose every read and write ends by the request's deadline (``_bounded``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        data: bytes = self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        import httpcore

        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's network backend, its streams wrapped in ``_DeadlineStream`` (connecting bounded too)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        import httpcore

        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, bounded, *args, **kwargs))

    def connect_unix_socket(self, path: str, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        import httpcore

        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, *args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

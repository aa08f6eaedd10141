"""S3-compatible backend (AWS S3, MinIO, Ceph RGW, Cloudflare R2): one S3 object per key, under ``PREFIX/``.

The keys are the local backend's relative paths (``objects/ab/ab12...``), so a store copies between a folder and a
bucket file by file (docs/FORMAT.md, "S3-compatible stores"). This module is imported only when an ``s3://``
location is opened (``storage/location.py``): boto3 costs start-up time that local stores should not pay.

**Atomic create.** S3 never shows a partial object: a PUT or a completed multipart upload appears whole or not at
all, and is durable once acknowledged, so there is no temp file, no rename and ``sync`` has nothing to do.
"Create only if absent" is ``If-None-Match: *`` on the PUT and on CompleteMultipartUpload; the server answers 412
when the key exists, which is success here: keys are the sha256 of the raw content, so the existing object decodes
to the very bytes we meant to write (perhaps through another codec, which is allowed). A server without conditional
writes (501 NotImplemented) gets a HEAD and a plain PUT instead, remembered per backend; two such writers racing
store two valid encodings of one id in turn, and a reader sees one whole object either way, so the race is
harmless for the same reason.

**Debris.** The one thing a killed writer leaves on S3 is an incomplete multipart upload (its parts are billed but
invisible). ``temp_count`` counts them under the prefix and ``clean_tmp`` aborts the old ones: they are this
backend's ``tmp/``. A failed upload in this process aborts itself.

**Errors.** A missing key is ``FileNotFoundError``, as in the local backend. Everything else the client raises
after its retries (bad credentials, no bucket, an unreachable endpoint, 5xx answers) becomes one
``StoreAccessError`` line naming the bucket and endpoint, never a credential.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.handlers import add_expect_header

from modelarc.errors import StoreAccessError, StoredValueError, StoreWriteLostError, UsageError
from modelarc.storage.backend import key_parts
from modelarc.storage.location import S3Location, check_bucket_name, check_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_SINGLE_PUT = 5 * 1024 * MiB
# ingest writes objects of at most 8 MiB raw (archive/ingest.py CHUNK_SIZE): those go up in one PUT each, and the
# rare larger object (up to 256 MiB) in parallel 8 MiB parts
DEFAULT_MULTIPART_THRESHOLD = 16 * MiB
DEFAULT_PART_SIZE = 8 * MiB
DEFAULT_MAX_WORKERS = 8
# total attempts per request (the first and the retries) unless AWS_MAX_ATTEMPTS or the profile says otherwise;
# botocore's standard mode would make 3, which a busy MinIO or a throttling S3 (503 SlowDown) can exhaust
DEFAULT_TOTAL_ATTEMPTS = 5
# enough connections for the part uploads of one put plus a push's writer threads, so none waits for a socket
POOL_CONNECTIONS = 32
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 60.0  # seconds without a byte; a stalled server then counts as a failed attempt and is retried
CONDITIONAL_CONFLICT_TRIES = 3

# Error codes that mean "who you are or what you may do", whatever the HTTP status says.
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
_AUTH_HINTS = {
    "ExpiredToken": "the session token has expired: renew it (aws sso login, or new temporary credentials)",
    "TokenRefreshRequired": "the session token has expired: renew it (aws sso login, or new temporary credentials)",
    "RequestTimeTooSkewed": "this machine's clock is too far off: set it right (NTP)",
}
_AUTH_HINT = (
    "check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ~/.aws/credentials) and the bucket's policy"
)
_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
# no answer at all, or an answer cut short: botocore has retried these already
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError)


@functools.cache
def _service_models(data_path: str | None) -> botocore.loaders.Loader:
    """botocore's reader of its own JSON service models, one per data path for the whole process.

    Each new botocore session reads and parses them again (the S3 model, the endpoint rules, the partitions):
    0.15 s of the 0.17 s a client took, for every store and mirror a process opens. What the loader holds
    depends only on botocore's files and ``AWS_DATA_PATH``, never on credentials, profile or endpoint, which every
    client still takes from its own session; with the loader shared a second client takes ~0.02 s."""
    return botocore.loaders.create_loader(data_path)


def default_client(max_pool_connections: int = POOL_CONNECTIONS) -> S3Client:
    """An S3 client configured from the standard AWS sources only, so the same store URL works on AWS S3, MinIO,
    Ceph RGW or R2 depending on the environment: ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (or ``endpoint_url``
    in the profile), ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, the credential chain, and
    ``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE``.

    Path-style addressing (``http://host/bucket/key``), which MinIO and moto need, is botocore's own default
    whenever an endpoint URL is configured (``addressing_style`` "auto" means path style with a custom endpoint,
    virtual-hosted style on AWS), so nothing is forced here and ``s3 = addressing_style = virtual`` in the profile
    still wins. Retries use botocore's "standard" mode (5xx, throttling, connection errors and timeouts, with
    exponential backoff and jitter).

    botocore 1.36 and later send CRC32 checksums with every upload by default (over HTTPS in an aws-chunked
    trailer); a server too old for that rejects uploads, and ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``
    is the standard switch back. The backend then also leaves checksums off its multipart parts.

    Uploads go without ``Expect: 100-continue``. botocore adds it to every PUT and UploadPart and sends the body
    only once the server has answered "100 Continue" (or after waiting a whole second for one that never comes):
    one more round trip per object, with the link idle meanwhile. Through a proxy adding 10 ms each way (2026-12-01,
    moto on 127.0.0.1, 8 puts each, two rounds): a 3 KB put took 47.7-52.8 ms with it and 28.6-28.9 ms without,
    a 1 MB put 56-67 ms and 35-44 ms. What it would save, a body sent to a server that refuses it, hardly happens
    here: the store HEADs a key before it puts it (an existing key is skipped, bad credentials fail on the HEAD),
    and a multipart upload is refused at its create, before any part.
    """
    try:
        core = botocore.session.get_session()
        core.register_component("data_loader", _service_models(core.get_config_variable("data_path")))
        retries: dict[str, Any] = {"mode": core.get_config_variable("retry_mode") or "standard"}
        if retries["mode"] == "legacy":  # legacy does not retry every transient error S3 documents
            retries["mode"] = "standard"
        if core.get_config_variable("max_attempts") is None:
            retries["total_max_attempts"] = DEFAULT_TOTAL_ATTEMPTS
        config = Config(
            retries=retries,  # type: ignore[arg-type]
            max_pool_connections=max_pool_connections,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            tcp_keepalive=True,
        )
        client = boto3.session.Session(botocore_session=core).client("s3", config=config)
        client.meta.events.unregister("before-call.s3", add_expect_header)  # this client's handlers only
        return client
    except ProfileNotFound as exc:
        raise StoreAccessError(f"cannot configure the S3 client: {exc}") from exc
    except ValueError as exc:  # botocore's "Invalid endpoint: ..." for a malformed AWS_ENDPOINT_URL
        raise UsageError(f"cannot configure the S3 client: {exc}") from exc


class S3Backend:
    """Keys map to S3 objects named ``PREFIX/key`` in ``bucket``.

    ``client`` is any boto3 S3 client (tests pass one with other timeouts); by default one is built from the
    environment (``default_client``). Values larger than ``multipart_threshold`` go up as a multipart upload of
    ``part_size`` parts, ``max_workers`` of them at a time.
    """

    # requests in flight that keep a push or pull busy on a link with ~10-50 ms per request (objects are up to
    # 8 MiB): callers above size their pools by it
    concurrency = 16

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB, not {part_size}")
        if not 0 < multipart_threshold <= MAX_SINGLE_PUT:
            raise ValueError(
                f"multipart_threshold must be between 1 byte and 5 GiB, not {multipart_threshold}"
            )
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        self.location = S3Location(check_bucket_name(bucket), check_prefix(prefix))
        self.bucket = self.location.bucket
        self.prefix = self.location.prefix
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.max_workers = max_workers
        self._client: S3Client = (
            client if client is not None else default_client(max(POOL_CONNECTIONS, 2 * max_workers))
        )
        self.endpoint = self._client.meta.endpoint_url
        # mirror boto3's transfer manager: with default checksums on, multipart parts carry CRC32 and the
        # completion lists them, which AWS requires once the upload was created with an algorithm
        self._part_checksums = (
            getattr(self._client.meta.config, "request_checksum_calculation", None) == "when_supported"
        )
        self._conditional_writes = True  # until the server answers 501 to If-None-Match
        self._bucket_seen = False  # a bare 404 to a HEAD may mean "no bucket": checked once per backend

    def __repr__(self) -> str:
        return f"S3Backend({self.location.url()!r})"

    def close(self) -> None:
        """Close the client's connections (the backend is unusable afterwards)."""
        self._client.close()

    # -- names ------------------------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        key_parts(key)
        return self._root + key

    def _missing(self, key: str) -> FileNotFoundError:
        return FileNotFoundError(
            errno.ENOENT, os.strerror(errno.ENOENT), f"s3://{self.bucket}/{self._root}{key}"
        )

    # -- writing ----------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Create ``key`` with ``data`` unless it exists; an existing key is left as it is (see the module doc)."""
        name = self._name(key)
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if view.nbytes > self.multipart_threshold:
            self._put_multipart(key, name, view)
            return
        if not self._conditional_writes and self.has(key):
            return

        def body() -> bytes | BinaryIO:
            # a new reader for every request: one that a failed request has read to its end would be sent as
            # an empty body by the next (botocore rewinds only for its own retries)
            return data if isinstance(data, bytes) else cast(BinaryIO, _ViewReader(view))

        with self._calls(key):
            self._create(
                lambda conditional: self._client.put_object(
                    Bucket=self.bucket, Key=name, Body=body(), **_if_none_match(conditional)
                )
            )

    def _create(self, request: Callable[[bool], object]) -> bool:
        """Run a create-if-absent ``request(conditional)``; False when the key already existed (412).

        409 ConditionalRequestConflict is AWS saying another create of this key is in flight: trying again ends
        in 412 (it won) or in our write (it failed). 501 is a server without conditional writes: from then on
        this backend writes plainly (the callers HEAD first).
        """
        for attempt in range(CONDITIONAL_CONFLICT_TRIES):
            try:
                request(self._conditional_writes)
                return True
            except ClientError as exc:
                status, code = _status(exc), _code(exc)
                if status == 412 or code == "PreconditionFailed":
                    return False
                if self._conditional_writes and (status == 501 or code == "NotImplemented"):
                    self._conditional_writes = False
                    request(False)
                    return True
                if (status == 409 or code == "ConditionalRequestConflict") and (
                    attempt + 1 < CONDITIONAL_CONFLICT_TRIES
                ):
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _put_multipart(self, key: str, name: str, view: memoryview) -> None:
        if not self._conditional_writes and self.has(key):
            return
        size = view.nbytes
        part_size = max(self.part_size, -(-size // MAX_PARTS))  # 10,000 parts at most
        checksum: dict[str, Any] = {"ChecksumAlgorithm": "CRC32"} if self._part_checksums else {}
        with self._calls(key):
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=name, **checksum)[
                "UploadId"
            ]
        try:
            parts = self._upload_parts(key, name, upload_id, view, part_size, checksum)
            with self._calls(key):
                created = self._create(
                    lambda conditional: self._client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                        **_if_none_match(conditional),
                    )
                )
        except BaseException as exc:
            self._abort(name, upload_id)
            if not _upload_gone(exc):
                raise
            if self.has(key):  # a completion retried after it had succeeded: S3 no longer knows the upload
                return
            # this backend's tmp/: aborted by clean_tmp, as a local writer's temp file removed before its rename
            raise StoreWriteLostError(
                f"the multipart upload of {key} to bucket {self.bucket!r} at {self.endpoint} was aborted before "
                "it completed: something cleared the store's incomplete uploads meanwhile (gc does, once no "
                "writer holds the store lock); nothing was stored there; run the command again"
            ) from None
        if not created:  # the key existed (equal bytes): S3 keeps a refused upload's parts until aborted
            self._abort(name, upload_id)

    def _upload_parts(
        self, key: str, name: str, upload_id: str, view: memoryview, part_size: int, checksum: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Upload every part, ``max_workers`` at a time; on the first failure the parts not yet started are
        cancelled and the ones under way are waited for, so the caller's abort comes after the last part."""

        def upload(number: int, start: int) -> dict[str, Any]:
            with self._calls(key):
                response = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=cast(BinaryIO, _ViewReader(view[start : start + part_size])),
                    **checksum,
                )
            part = {"ETag": response["ETag"], "PartNumber": number}
            if "ChecksumCRC32" in response:
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part

        starts = range(0, view.nbytes, part_size)
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_workers, len(starts)), thread_name_prefix="s3-part"
        )
        try:
            futures: list[Future[dict[str, Any]]] = [
                pool.submit(upload, number, start) for number, start in enumerate(starts, 1)
            ]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    future.result()  # raises the first failure
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _abort(self, name: str, upload_id: str) -> bool:
        """Abort an upload; False if it was gone already. Best effort: the caller is already failing, and an
        upload left behind is what ``clean_tmp`` is for."""
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            return True
        except Exception:  # the original failure matters more than the abort's (NoSuchUpload: gone already)
            return False

    def delete(self, key: str) -> None:
        name = self._name(key)
        with self._calls(key):
            self._client.delete_object(Bucket=self.bucket, Key=name)  # S3 answers 204 for a missing key too

    def sync(self) -> None:
        """Nothing to do: an acknowledged PUT or CompleteMultipartUpload is already durable on S3."""

    # -- reading ----------------------------------------------------------------------------------------------

    def _get_object(self, key: str) -> Any:
        """The GetObject response for ``key``, its body not read yet."""
        with self._calls(key):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=self._name(key))
            except ClientError as exc:
                raise self._not_found(exc, key) from None
        self._bucket_seen = True
        return response

    def open(self, key: str) -> BinaryIO:
        return cast(BinaryIO, _BodyReader(self._get_object(key)["Body"], self, key))

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        response = self._get_object(key)
        with _BodyReader(response["Body"], self, key) as reader:
            if max_bytes is None:
                return reader.read()
            # the length the response declares is checked before its body is read, and the read stops one byte
            # past the bound whatever was declared (closing the reader drops the rest of a longer response)
            declared = response.get("ContentLength")
            if declared is not None and int(declared) > max_bytes:
                raise StoredValueError(self._too_long(key, int(declared), max_bytes))
            pieces: list[bytes] = []
            got = 0
            while got <= max_bytes:
                piece = reader.read(max_bytes + 1 - got)
                if not piece:
                    break  # the end: botocore has checked the length (and any checksum) on this empty read
                pieces.append(piece)
                got += len(piece)
            if got > max_bytes:
                raise StoredValueError(self._too_long(key, None, max_bytes))
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _too_long(self, key: str, size: int | None, max_bytes: int) -> str:
        what = f"{size} bytes" if size is not None else "longer"
        return (
            f"{key} in bucket {self.bucket!r} at {self.endpoint} is {what}, more than the {max_bytes} a reader "
            "of it takes"
        )

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"read_range needs a non-negative offset and length, not {offset}, {length}")
        if length == 0:
            self._head(key)  # a missing key still raises, as os.pread on a missing file would
            return b""
        name = self._name(key)
        with self._calls(key):
            try:
                response = self._client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes={offset}-{offset + length - 1}"
                )
            except ClientError as exc:
                if _status(exc) == 416 or _code(exc) == "InvalidRange":
                    # starts at or past the end (or the object is empty): nothing there, as with pread
                    return b""
                raise self._not_found(exc, key) from None
        self._bucket_seen = True
        with _BodyReader(response["Body"], self, key) as body:
            data = body.read()
        if "ContentRange" not in response:  # a server that ignores Range sends the whole object
            data = data[offset : offset + length]
        return data

    def has(self, key: str) -> bool:
        try:
            self._head(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def mtime(self, key: str) -> float:
        """LastModified; for a multipart object AWS gives the time its upload was initiated, not completed."""
        return self._head(key)["LastModified"].timestamp()

    def _head(self, key: str) -> Any:
        name = self._name(key)
        with self._calls(key):
            try:
                response = self._client.head_object(Bucket=self.bucket, Key=name)
            except ClientError as exc:
                raise self._not_found(exc, key) from None
        self._bucket_seen = True
        return response

    def _not_found(self, exc: ClientError, key: str) -> Exception:
        """``FileNotFoundError`` if ``exc`` says the key is missing, else the translated error.

        A HEAD has no body, so its 404 does not say whether the key or the whole bucket is missing; the first
        such answer per backend asks the bucket, so a wrong bucket name is not mistaken for an empty store.
        """
        code = _code(exc)
        if code == "NoSuchKey" or (code in ("404", "NotFound") and _status(exc) == 404):
            if not self._bucket_seen:
                self._check_bucket()
            return self._missing(key)
        return self._failure(exc, key)

    def _check_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise self._failure(exc, None, bucket_request=True) from exc
        self._bucket_seen = True

    def iterate(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix/``, relative to this backend's prefix, as the local backend lists files."""
        start = self._name(prefix) + "/"
        strip = len(self._root)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._calls(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for entry in page.get("Contents", []):
                    name = entry["Key"]
                    if not name.endswith("/"):  # "folder" markers some consoles create are not keys
                        yield name[strip:]

    # -- debris of killed writers -----------------------------------------------------------------------------

    def _uploads(self) -> Iterator[Any]:
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self._calls(None):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root):
                yield from page.get("Uploads", [])

    def temp_count(self) -> int:
        """Incomplete multipart uploads under the prefix: running writers' and killed writers' alike."""
        return sum(1 for _ in self._uploads())

    def clean_tmp(self, older_than: float) -> int:
        """Abort incomplete multipart uploads under the prefix initiated before ``older_than`` (a timestamp).

        A writer still uploading one of them fails at completion, as a local writer whose temp file was removed
        fails at its rename: run this only when no writer can be older than the cutoff.
        """
        aborted = 0
        for upload in list(self._uploads()):
            if upload["Initiated"].timestamp() < older_than:
                with self._calls(None):
                    try:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except ClientError as exc:
                        if _code(exc) == "NoSuchUpload":
                            continue  # completed or aborted meanwhile
                        raise
                aborted += 1
        return aborted

    # -- errors -----------------------------------------------------------------------------------------------

    @contextmanager
    def _calls(self, key: str | None, *, retried: bool = True) -> Iterator[None]:
        """Turn what the client raises after its retries into ``StoreAccessError``; ``FileNotFoundError`` and
        ``StoreAccessError`` raised inside pass through. ``retried=False`` for reading a body, which botocore
        does not retry."""
        try:
            yield
        except ClientError as exc:
            raise self._failure(exc, key) from exc
        except _CREDENTIAL_ERRORS as exc:
            raise self._credentials_failure(exc) from exc
        except FlexibleChecksumError as exc:
            raise StoreAccessError(
                f"a response from the S3 endpoint {self.endpoint} for bucket {self.bucket!r} failed its "
                f"checksum{_for_key(key)}: the bytes were damaged on the way; try again"
            ) from exc
        except _NETWORK_ERRORS as exc:
            raise StoreAccessError(
                f"cannot reach the S3 endpoint {self.endpoint} for bucket {self.bucket!r}: {_network_reason(exc)}"
                f"{self._after_attempts(None) if retried else ''}{_for_key(key)}"
            ) from exc

    def _failure(
        self, exc: ClientError, key: str | None, *, bucket_request: bool = False
    ) -> StoreAccessError:
        code, status = _code(exc), _status(exc)
        where = f"bucket {self.bucket!r} at {self.endpoint}"
        if code in _AUTH_CODES or status == 403:
            hint = _AUTH_HINTS.get(code, _AUTH_HINT)
            if status == 403 and not code.isalpha():  # a HEAD's 403 has no body to name a code
                code = "403 Forbidden"
                hint += (
                    " (S3 also answers 403 for a missing key when the credentials may not list the bucket)"
                )
            return StoreAccessError(f"S3 refused access to {where}: {code}{_for_key(key)}; {hint}")
        if code == "NoSuchBucket" or (bucket_request and status == 404):
            return StoreAccessError(
                f"no bucket {self.bucket!r} at {self.endpoint}: create it, or fix the store URL or AWS_ENDPOINT_URL"
            )
        if status >= 500 or code in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"):
            return StoreAccessError(
                f"the S3 endpoint {self.endpoint} failed for bucket {self.bucket!r}: {code or 'no error code'} "
                f"(HTTP {status}){self._after_attempts(exc)}{_for_key(key)}"
            )
        message = exc.response.get("Error", {}).get("Message", "")
        return StoreAccessError(
            f"S3 error from {where}: {code} (HTTP {status}){_for_key(key)}"
            + (f": {message}" if message else "")
        )

    def _credentials_failure(self, exc: Exception) -> StoreAccessError:
        where = f"bucket {self.bucket!r} at {self.endpoint}"
        if isinstance(exc, NoCredentialsError):
            detail = "no AWS credentials found"
        elif isinstance(exc, PartialCredentialsError | ProfileNotFound):
            detail = str(exc)  # names the missing variable or profile, holds no secret
        else:
            detail = f"the credentials could not be loaded ({type(exc).__name__})"
        return StoreAccessError(
            f"cannot sign requests for {where}: {detail}; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials"
        )

    def _after_attempts(self, exc: ClientError | None) -> str:
        if exc is not None:
            attempts = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
        else:
            retries = getattr(self._client.meta.config, "retries", None) or {}
            attempts = int(retries.get("total_max_attempts", 0))
        return f" after {attempts} attempts" if attempts > 1 else ""


def _upload_gone(exc: BaseException) -> bool:
    """A multipart request failed because S3 no longer knows the upload (``NoSuchUpload``): it was aborted."""
    cause = exc.__cause__
    return isinstance(exc, StoreAccessError) and isinstance(cause, ClientError) and _code(cause) == "NoSuchUpload"


def _if_none_match(conditional: bool) -> dict[str, Any]:
    return {"IfNoneMatch": "*"} if conditional else {}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _for_key(key: str | None) -> str:
    return f" (key {key})" if key else ""


def _network_reason(exc: Exception) -> str:
    name = type(exc).__name__
    reasons = {
        "EndpointConnectionError": "the connection failed",
        "ConnectTimeoutError": "connecting timed out",
        "ReadTimeoutError": "the read timed out",
        "ConnectionClosedError": "the server closed the connection",
        "ProxyConnectionError": "the HTTP proxy could not be reached",
        "SSLError": "the TLS handshake failed",
        "IncompleteReadError": "the answer ended early",
        "ResponseStreamingError": "the answer broke off",
    }
    return reasons.get(name, name)


class _ViewReader(io.RawIOBase):
    """A seekable reader over a memoryview: botocore sends bytes, bytearrays or files, not memoryviews, and a
    part is a slice of a larger buffer that should not be copied whole first. Seekable, so a retry resends it."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(buffer)]
        count = len(chunk)
        memoryview(buffer).cast("B")[:count] = chunk
        self._pos += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._pos + size
        chunk = bytes(self._view[self._pos : end])
        self._pos += len(chunk)
        return chunk


class _BodyReader(io.RawIOBase):
    """A GetObject body as a binary reader whose failures are ``StoreAccessError``s like every other call's;
    closing it closes the HTTP response (a connection left half read is not reused)."""

    def __init__(self, body: Any, backend: S3Backend, key: str) -> None:
        super().__init__()
        self._body = body
        self._backend = backend
        self._key = key

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with self._backend._calls(self._key, retried=False):
            return bytes(self._body.read(None if size is None or size < 0 else size))

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            finally:
                super().close()

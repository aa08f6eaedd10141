"""A validated Hub listing's files, downloaded up to ``jobs`` at once, each bounded and verified: hf_fetch's transfers.

One file at a time made a multi-shard import as slow as one connection to the endpoint (a CDN throttles each), so
the files go to worker threads, largest first. The main thread only waits, so Ctrl-C and SIGTERM (cli/main.py raises
``Terminated`` in it) interrupt it at once. It then stops the workers: every socket the client opened is shut down
(found through httpx's ``trace`` extension, which sees each new connection), which wakes a read blocked on a stalled
endpoint where closing the socket would not, and the workers are joined before the caller removes the folder, so
none writes after the clean-up and no thread outlives the command. Every bound of a file (its listed size, its time
budget, its hash) is checked by the worker that downloads it, exactly as when they ran one at a time.

Every request to the endpoint (the listing too, hf_fetch.py) runs under a ``Deadline``: httpx's timeouts are per read,
so headers trickled a byte a second (h11 takes ~100 KiB of them, on every redirect hop) would hold a request for a
day, and a loop over the body never runs while httpx reads headers. Its watchdog thread stops the same ``Stopper``
when the time is up, so one mechanism, shutting the client's sockets down, ends both an interrupt and an expiry.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelarc.archive.manifest import printable_path
from modelarc.errors import SourceError

if TYPE_CHECKING:
    from modelarc.archive.remote.hf_fetch import HubFile


@dataclass(frozen=True)
class Budget:
    """A file may take ``timeout`` seconds plus its size at ``min_rate`` bytes per second (MODELARC_REMOTE_*)."""

    timeout: float
    min_rate: float


class _Stopped(Exception):
    """A worker saw the stop signal: another file failed, or the user interrupted. Never shown: the cause is."""


class Stopper:
    """Stops the downloads in flight: ``trace`` (httpx's trace extension, on every request) records each connection the
    client opens; ``stop`` sets the flag the workers check between reads and shuts every recorded socket down."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()
        self.cause: SourceError | None = None  # why it was stopped, when a request's deadline passed

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        # a new connection, after TCP and again after TLS (which wraps the socket in a new one); a kept-alive
        # connection was recorded when it was opened
        if not event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            return
        stream = info.get("return_value")
        if stream is None:
            return
        with self._lock:
            self._streams.add(stream)
            stopped = self._stopped.is_set()
        if stopped:  # opened after the stop: its request must not wait on it either
            _shut(stream)

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            streams = list(self._streams)
        for stream in streams:
            _shut(stream)

    def expire(self, error: SourceError) -> None:
        """Stop because a request's deadline passed: ``error`` (the first such) is what the command reports, not the
        broken connections the stop leaves in every request."""
        with self._lock:
            if self.cause is None:
                self.cause = error
        self.stop()


class Deadline:
    """A request's overall deadline, ``seconds`` from now (``at`` may be moved later as bytes arrive), enforced by a
    watchdog thread: when it passes, the watchdog expires ``stopper``, whose sockets shut down, so a read blocked
    anywhere in httpx (headers, a redirect hop, the body) returns, and the ``with`` block raises ``error`` instead of
    whatever the broken connection made httpx raise. The request must carry ``stopper.trace``. The watchdog is ended
    and joined when the block ends; an interrupt (not an ``Exception``) passes through unchanged."""

    def __init__(self, stopper: Stopper, seconds: float, error: SourceError) -> None:
        self.at = time.monotonic() + seconds
        self.error = error
        self._stopper = stopper
        self._done = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="modelarc-hf-deadline", daemon=True)

    @property
    def expired(self) -> bool:
        return self._stopper.cause is self.error

    def _watch(self) -> None:
        while not self._done.wait(max(0.0, self.at - time.monotonic())):
            if time.monotonic() >= self.at:
                self._stopper.expire(self.error)
                return

    def __enter__(self) -> Deadline:
        self._watchdog.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._done.set()
        self._watchdog.join()
        if self.expired and (exc_type is None or issubclass(exc_type, Exception)):
            raise self.error from None


def _shut(stream: Any) -> None:
    """Shut down (not close) the stream's socket from another thread: a blocked ``recv`` returns at once. The base
    class's method, so an SSL socket is not told to drop its state under the thread reading it."""
    sock = stream.get_extra_info("socket")
    if isinstance(sock, socket.socket):
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # closed already


def git_blob_sha1(size: int) -> Any:
    """A sha1 primed with git's blob header: fed the ``size`` bytes of a file, it gives the file's git blob id."""
    return hashlib.sha1(b"blob %d\0" % size)


def download_all(
    client: Any,
    work: list[tuple[str, HubFile, Path]],
    where: str,
    budget: Budget,
    jobs: int,
    progress: Callable[[int], None] | None,
    stopper: Stopper,
) -> None:
    """Each (url, file, dest) downloaded and verified, at most ``jobs`` at once; the first failure (or an interrupt)
    stops the others and is raised once every worker has ended. ``progress`` is called from the workers."""
    if not work:
        return
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(jobs, len(work))), thread_name_prefix="modelarc-hf-download"
    )
    try:
        futures = [
            pool.submit(download_file, client, url, file, dest, where, budget, progress, stopper)
            for url, file, dest in sorted(
                work, key=lambda w: -w[1].size
            )  # the largest first: the last to end
        ]
        for future in as_completed(futures):
            future.result()
    except BaseException as exc:
        stopper.stop()
        if isinstance(exc, Exception) and stopper.cause is not None:
            # a deadline stopped every download: the others' broken connections may have ended first
            raise stopper.cause from None
        raise
    finally:
        _join(pool)


def _join(pool: ThreadPoolExecutor) -> None:
    """Wait for every worker, even through a second Ctrl-C: their sockets are shut down, so they end in moments, and
    one left running would write into the folder after the caller removed it."""
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            continue


def download_file(
    client: Any,
    url: str,
    file: HubFile,
    dest: Path,
    where: str,
    budget: Budget,
    progress: Callable[[int], None] | None,
    stopper: Stopper,
) -> None:
    """``file``'s bytes into ``dest``, never more than its listed size, checked against its listed hash, within its
    time budget: a ``Deadline`` over the whole request (redirects and headers included), and checked at every read of
    the body too."""
    if stopper.stopped:
        raise _Stopped()
    shown = f"{where}: '{printable_path(file.path)}'"
    seconds = budget.timeout + file.size / budget.min_rate
    late = SourceError(
        f"{shown}: not received within {budget.timeout:g} s plus {budget.min_rate:g} bytes/s, {seconds:.6g} s for "
        f"its {file.size} bytes (MODELARC_REMOTE_TIMEOUT, MODELARC_REMOTE_MIN_RATE)"
    )
    digest = hashlib.sha256() if file.sha256 else git_blob_sha1(file.size)
    received = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the trace extension shows the stopper every connection this request opens (redirects keep it)
    with Deadline(stopper, seconds, late) as deadline:
        with (
            client.stream("GET", url, extensions={"trace": stopper.trace}) as response,
            open(dest, "xb") as out,
        ):
            # httpx refuses other schemes; this says why that may not change
            if response.url.scheme not in ("http", "https"):
                raise SourceError(f"{shown}: redirected to a {response.url.scheme} URL")
            if response.status_code != 200:
                raise SourceError(f"{shown}: download failed (HTTP {response.status_code})")
            # no chunk size: each network read as it arrives (at most 64 KiB), so the deadline is checked at every
            # read; with a size, httpx gathered reads until it had that many bytes before the loop saw any
            for chunk in response.iter_raw():
                if stopper.stopped:
                    raise _Stopped()
                received += len(chunk)
                if received > file.size:
                    raise SourceError(f"{shown}: the endpoint sent more than the {file.size} bytes it listed")
                if time.monotonic() > deadline.at:
                    raise late
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        # inside the deadline: a body cut short by its expiry is reported as the expiry
        if received != file.size:
            raise SourceError(f"{shown}: the endpoint sent {received} bytes, not the {file.size} it listed")
        if digest.hexdigest() != file.digest:
            kind = "LFS sha256" if file.sha256 else "blob id"
            raise SourceError(
                f"{shown}: its bytes hash to {digest.hexdigest()}, not the {kind} {file.digest} listed"
            )

"""A validated Hub listing's files, downloaded up to ``jobs`` at once, each bounded and verified: hf_fetch's transfers.

One file at a time made a multi-shard import as slow as one connection to the endpoint (a CDN throttles each), so
the files go to worker threads, largest first. The main thread only waits, so Ctrl-C and SIGTERM (cli/main.py raises
``Terminated`` in it) interrupt it at once. It then stops the workers: every socket the client opened is shut down
(found through httpx's ``trace`` extension, which sees each new connection), which wakes a read blocked on a stalled
endpoint where closing the socket would not, and the workers are joined before the caller removes the folder, so
none writes after the clean-up and no thread outlives the command. Every bound of a file (its listed size, its time
budget, its hash) is checked by the worker that downloads it, exactly as when they ran one at a time.
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
    except BaseException:
        stopper.stop()
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
    progress: Callable[[int], None] | None = None,
    stopper: Stopper | None = None,
) -> None:
    """``file``'s bytes into ``dest``, never more than its listed size, within its time budget (checked at every
    read, each of which waits at most the timeout: a body trickled a byte at a time would otherwise never end),
    checked against its listed hash."""
    if stopper is not None and stopper.stopped:
        raise _Stopped()
    shown = f"{where}: '{printable_path(file.path)}'"
    deadline = time.monotonic() + budget.timeout + file.size / budget.min_rate
    digest = hashlib.sha256() if file.sha256 else git_blob_sha1(file.size)
    received = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the trace extension shows the stopper every connection this request opens (redirects keep it)
    extensions = {"trace": stopper.trace} if stopper is not None else None
    with client.stream("GET", url, extensions=extensions) as response, open(dest, "xb") as out:
        if response.url.scheme not in (
            "http",
            "https",
        ):  # httpx refuses others; this says why it may not change
            raise SourceError(f"{shown}: redirected to a {response.url.scheme} URL")
        if response.status_code != 200:
            raise SourceError(f"{shown}: download failed (HTTP {response.status_code})")
        # no chunk size: each network read as it arrives (at most 64 KiB), so the deadline is checked at every read;
        # with a size, httpx gathered reads until it had that many bytes before the loop saw any
        for chunk in response.iter_raw():
            if stopper is not None and stopper.stopped:
                raise _Stopped()
            received += len(chunk)
            if received > file.size:
                raise SourceError(f"{shown}: the endpoint sent more than the {file.size} bytes it listed")
            if time.monotonic() > deadline:
                raise SourceError(
                    f"{shown}: not received within {budget.timeout:g} s plus {budget.min_rate:g} bytes/s "
                    "(MODELARC_REMOTE_TIMEOUT, MODELARC_REMOTE_MIN_RATE)"
                )
            digest.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(len(chunk))
    if received != file.size:
        raise SourceError(f"{shown}: the endpoint sent {received} bytes, not the {file.size} it listed")
    if digest.hexdigest() != file.digest:
        kind = "LFS sha256" if file.sha256 else "blob id"
        raise SourceError(
            f"{shown}: its bytes hash to {digest.hexdigest()}, not the {kind} {file.digest} listed"
        )

"""SHA-256 of two messages at once, interleaved, where the CPU has the x86 SHA extensions.

One SHA-256 stream cannot use all of the SHA unit (each round waits on the previous one), so hashing two
independent messages together (``_sha256.c``) gets through about 1.4 times as many bytes per core as hashlib
(OpenSSL). The digests are plain SHA-256 and are compared with ids exactly like hashlib's. Elsewhere, and for a
buffer with no partner of a similar length, this is hashlib.

Three ways to pair: ``sha256_hexdigests`` hashes several buffers two at a time (a reader verifying chunks);
``update_and_digest`` feeds a buffer to a running whole-file digest (``sha256_stream``) and returns the buffer's
own digest in the same pass (a push, which needs both the file's sha256 and each chunk's object id);
``update_both`` feeds the same buffer to two running digests (a pull from a remote, which checks each chunk it
writes against its object id and the file against its sha256, the chunk written in pieces).

Whether pairing pays is measured, once per process, not assumed from the CPU flags (``pairing_pays``): on the
machine these were written on, two interleaved messages went 1.36 times as fast as hashlib one after the other; on
another with the same flags (2026-12-01, "Intel Xeon Processor @ 2.80GHz", 2 vCPUs) 0.81-0.84 times, where
hashlib alone ran at 1.25-1.29 GB/s and this code's single lane as fast. There every caller gets hashlib.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Sequence
from typing import Protocol

from modelarc.storage import _sha256  # type: ignore[attr-defined]

Buffer = bytes | bytearray | memoryview

# Two buffers are hashed together only if the shorter is at least this share of the longer: the longer one's
# remainder is hashed alone by the native code, which is slower on one buffer than hashlib.
PAIR_MIN_SHARE = 0.5

# ``pairing_pays``: two messages of this many bytes, hashed both ways this many times in turn, the best of each kept
CALIBRATION_BYTES = 128 * 1024
CALIBRATION_ROUNDS = 5
# and the pair is used only when it took less than this share of hashlib's time (a tie is not worth the native path)
PAIRING_MUST_TAKE = 0.95


def pairs_well(a: int, b: int) -> bool:
    """Whether buffers of ``a`` and ``b`` bytes gain from being hashed together (``sha256_hexdigests``)."""
    return min(a, b) >= PAIR_MIN_SHARE * max(a, b) and pairing_pays()


@functools.cache
def pairing_pays() -> bool:
    """Whether this CPU hashes two interleaved messages faster than hashlib hashes them one after the other.

    Measured on first use (about 3 ms: two 128 KiB messages each way, five times in turn, best of each) because
    the SHA flags say only that the instructions exist, not how they pipeline: the interleaved code won on one
    machine and lost on another with the same flags (module docstring). The answer changes which code hashes, never
    a digest. Both sides are timed in the same few milliseconds, so a busy machine slows both alike."""
    if not _sha256.lanes:
        return False
    first, second = bytes(CALIBRATION_BYTES), bytes(range(256)) * (CALIBRATION_BYTES // 256)
    paired = alone = float("inf")
    for _ in range(CALIBRATION_ROUNDS):
        start = time.perf_counter()
        _sha256.digests((first, second))
        paired = min(paired, time.perf_counter() - start)
        start = time.perf_counter()
        hashlib.sha256(first).digest()
        hashlib.sha256(second).digest()
        alone = min(alone, time.perf_counter() - start)
    return choose_pairing(paired, alone)


def choose_pairing(paired: float, alone: float) -> bool:
    """The rule ``pairing_pays`` applies to its two best times (seconds): pair only for a clear gain."""
    return paired < PAIRING_MUST_TAKE * alone


def sha256_hexdigests(buffers: Sequence[Buffer]) -> list[str]:
    """The SHA-256 of each buffer, hex, in order. Pairs that ``pairs_well`` are hashed together, one after the
    other; anything left over goes through hashlib. Releases the GIL while hashing, as hashlib does."""
    out: list[str | None] = [None] * len(buffers)
    if pairing_pays():
        i = 0
        while i + 1 < len(buffers):
            if pairs_well(len(buffers[i]), len(buffers[i + 1])):
                first, second = _sha256.digests((buffers[i], buffers[i + 1]))
                out[i], out[i + 1] = first.hex(), second.hex()
                i += 2
            else:
                i += 1
    return [d if d is not None else hashlib.sha256(b).hexdigest() for d, b in zip(out, buffers, strict=True)]


class Sha256Stream(Protocol):
    """A running SHA-256 as hashlib's: ``sha256_stream()`` gives the native one or a ``hashlib.sha256()``."""

    def update(self, data: Buffer, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Sha256Stream: ...


def sha256_stream(*, native: bool | None = None) -> Sha256Stream:
    """A new running SHA-256: native where pairing pays here (``pairing_pays``: so ``update_and_digest`` can pair
    it with each buffer it is fed), hashlib's otherwise or with ``native=False``; the digests are the same.
    ``native=True`` asks for the native stream on any CPU with the SHA extensions (tests of the native code)."""
    if native is None:
        native = pairing_pays()
    stream: Sha256Stream = _sha256.Sha256Stream() if native else hashlib.sha256()
    return stream


def update_and_digest(stream: Sha256Stream, data: Buffer) -> bytes:
    """``stream.update(data)`` and the SHA-256 of ``data`` alone (32 bytes), hashed in one interleaved pass when
    ``stream`` is native, one after the other with hashlib otherwise. Releases the GIL while hashing.

    >>> file = sha256_stream()
    >>> chunk_id = update_and_digest(file, b"abc").hex()  # == hashlib.sha256(b"abc").hexdigest()
    >>> file.hexdigest() == chunk_id
    True
    """
    if isinstance(stream, _sha256.Sha256Stream):
        return _sha256.update_and_digest(stream, data)  # type: ignore[no-any-return]
    stream.update(data)
    return hashlib.sha256(data).digest()


def update_both(first: Sha256Stream, second: Sha256Stream, data: Buffer) -> None:
    """``first.update(data)`` and ``second.update(data)``: in one interleaved pass when both are native (two
    different streams), one after the other otherwise. Releases the GIL while hashing."""
    if isinstance(first, _sha256.Sha256Stream) and isinstance(second, _sha256.Sha256Stream) and first is not second:
        _sha256.update_two(first, second, data)
        return
    first.update(data)
    second.update(data)

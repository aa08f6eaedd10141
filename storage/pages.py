"""Memory by the page: fresh memory made ready to be written in one call, and page-aligned memory for O_DIRECT.

The first write to each 4 KiB page of a new allocation costs a page fault; for a model's tensors that is a large
share of a load (about 0.19 CPU seconds per 336 MB here). Asking the kernel to map all of a buffer's pages at once
(``MADV_POPULATE_WRITE``, Linux 5.14) costs about 0.14. The native helper lives in ``codecs/_planes.c``, beside
the plane join, which does the same for a result it allocates; a caller joining into fresh memory of its own (a
loader's tensors) calls this first. Memory already mapped is not worth the call: the kernel still walks every page
(in a load casting FP32 to BF16, re-populating each thread's reused scratch buffer was ~3% of its CPU).

A write with O_DIRECT goes from the caller's memory to the device, with no page-cache page to allocate and copy
into, but only from page-aligned memory, whole pages at a time (``storage/local.py``): ``aligned_buffer`` gives
such memory, ``to_page_boundary`` finds it inside a ``bytearray`` allocated a page longer, and ``is_page_aligned``
tells whether a buffer a caller handed over already is.
"""

from __future__ import annotations

import ctypes
import mmap

from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]

PAGE = mmap.PAGESIZE


def populate_for_write(buffer: bytearray | memoryview) -> None:
    """Map the whole pages of writable ``buffer`` for writing now. Best effort: pages already mapped are left
    alone, and where the system cannot (another OS, an older kernel) the writer takes the faults as before."""
    _planes.populate(buffer)


def aligned_buffer(size: int) -> mmap.mmap:
    """``size`` bytes (at least one page) starting on a page boundary: an anonymous map always does. Private: a
    shared one (mmap's default) would be shared with a forked child, which could then write into our buffers."""
    return mmap.mmap(-1, max(PAGE, -(-size // PAGE) * PAGE), flags=mmap.MAP_PRIVATE)


def is_page_aligned(buffer: bytes | bytearray | memoryview | mmap.mmap) -> bool:
    """Whether ``buffer``'s first byte is on a page boundary. A read-only buffer (``bytes``) counts as not: its
    address cannot be asked for without a copy, and a ``bytes`` object's data never starts a page anyway."""
    view = memoryview(buffer)
    if view.readonly or not view.c_contiguous or not view.nbytes:
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % PAGE == 0


def to_page_boundary(buffer: bytearray) -> int:
    """How many bytes into writable ``buffer`` its first page boundary is (0 when it starts on one): where a caller
    that over-allocated by a page finds page-aligned memory inside an ordinary ``bytearray``."""
    return -ctypes.addressof(ctypes.c_char.from_buffer(buffer)) % PAGE

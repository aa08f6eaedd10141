"""Fresh memory made ready to be written in one call, for a reader about to fill it.

The first write to each 4 KiB page of a new allocation costs a page fault; for a model's tensors that is a large
share of a load (about 0.19 CPU seconds per 336 MB here). Asking the kernel to map all of a buffer's pages at once
(``MADV_POPULATE_WRITE``, Linux 5.14) costs about 0.14. The native helper lives in ``codecs/_planes.c``, beside
the plane join, which does the same for a result it allocates; a caller joining into fresh memory of its own (a
loader's tensors) calls this first. Memory already mapped is not worth the call: the kernel still walks every page
(in a load casting FP32 to BF16, re-populating each thread's reused scratch buffer was ~3% of its CPU).
"""

from __future__ import annotations

from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]


def populate_for_write(buffer: bytearray | memoryview) -> None:
    """Map the whole pages of writable ``buffer`` for writing now. Best effort: pages already mapped are left
    alone, and where the system cannot (another OS, an older kernel) the writer takes the faults as before."""
    _planes.populate(buffer)

"""A pull from a remote writes each chunk's whole pages with O_DIRECT straight from the buffer the downloaded object
was decoded into (at its file offset's place in a page), as a local pull does: no copy into a staging buffer."""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from pathlib import Path

import pytest
from modelfactory import write_odd_header_safetensors
from transferkit import Server, files_of, make_home


def test_a_remote_pull_writes_chunks_at_odd_offsets_from_their_decode_buffers(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write_odd_header_safetensors(src / "model.safetensors")
    server.archive.push(src, "acme/odd:v1")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    out = tmp_path / "out"
    counts = {"decoded": 0, "staged": 0}
    pwrite = os.pwrite
    lock = threading.Lock()

    def counting(fd: int, data: bytes, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0) and os.readlink(
            f"/proc/self/fd/{fd}"
        ).startswith(str(out)):
            with lock:
                counts["staged" if isinstance(memoryview(data).obj, mmap.mmap) else "decoded"] += 1
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", counting)
    bob("pull", "acme/odd:v1", out, "--remote", "origin")
    assert files_of(out) == files_of(src)
    if not counts["decoded"] + counts["staged"]:
        pytest.skip("the file system under tmp_path refuses O_DIRECT: the buffered path ran")
    assert counts["staged"] == 0 and counts["decoded"] >= 3  # 22 MiB of tensors: three chunks at least
    bob("fsck", "--read-data")  # every object downloaded was kept, verified

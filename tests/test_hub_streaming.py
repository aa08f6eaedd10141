"""Downloads through the Hub resolve route hold a bounded number of decoded chunks, proven by counting.

The server is the real app on 127.0.0.1 and the client real httpx. No timing and no RSS threshold: the app's
``ChunkDecoder`` counts the chunks each download holds (asked for and not yet sent), the decodes running at once and
the bytes handed to the socket, and the tests check those counts against the bounds of archive/streaming.py while
several clients read slowly, side by side. A backend that holds every chunk read until the test lets go makes the
downloads pile up on the decode cap instead of hoping they overlap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from liveserver import serve_app
from modelfactory import write_model

from modelarc.api.app import ServerDecoder, create_app
from modelarc.archive.manifest import FileEntry
from modelarc.archive.repository import Archive
from modelarc.archive.streaming import PIECE_BYTES, ChunkDecoder, overlapping_chunks
from modelarc.config import load_settings
from modelarc.errors import IntegrityError, UsageError
from modelarc.storage import ObjectStore
from modelarc.storage.local import LocalBackend
from modelarc.storage.store import object_key

SLOTS = 2
HELD_PER_STREAM = (
    2  # the documented bound (docs/API.md, "Serving many clients"), not read from the code under test
)
CLIENTS = 5
READ_BLOCK = 64 * 1024
CLIENT_RCVBUF = 64 * 1024  # a small, fixed receive buffer: the kernel holds little on the client's side
UVICORN_HIGH_WATER = 64 * 1024
URL_PATH = "acme/big/resolve/v1/model.safetensors"
WAIT_SECONDS = 60.0  # only a deadline for something that must happen; never part of an assertion


class HeldBackend(LocalBackend):
    """The local backend, except that reading one of ``keys`` waits until ``release()``; counts readers inside."""

    def __init__(self, root: Path, keys: set[str]) -> None:
        super().__init__(root)
        self.keys = keys
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.inside = self.peak_inside = 0

    def release(self) -> None:
        self.released.set()

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        if key not in self.keys:
            return super().get(key, max_bytes=max_bytes)
        with self.lock:
            self.inside += 1
            self.peak_inside = max(self.peak_inside, self.inside)
        try:
            if not self.released.wait(WAIT_SECONDS):
                raise TimeoutError("the test never released the held chunk reads")
            return super().get(key, max_bytes=max_bytes)
        finally:
            with self.lock:
                self.inside -= 1


def wait_until(condition: Callable[[], bool], seconds: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def kernel_send_buffer_max() -> int:
    """The most a server socket's send buffer can grow to (tcp_wmem's max): bytes sent but not yet read."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Iterator[dict]:
    """A 57 MiB safetensors file of 49 chunks: 48 one-MiB tensors and a 9 MiB one split into 8 + 1 MiB chunks."""
    base = tmp_path_factory.mktemp("streaming")
    rng = np.random.default_rng(7)
    tensors = {f"layer.{i:02d}.weight": rng.standard_normal(1 << 18, dtype=np.float32) for i in range(48)}
    tensors["embed.weight"] = rng.standard_normal(9 << 18, dtype=np.float32)
    src = write_model(base / "src", tensors)
    with (
        pytest.MonkeyPatch.context() as mp
    ):  # the catalog is SQLite inside the home; the env is restored at once
        mp.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(base / "home")
    archive.push(src, "acme/big:v1")
    _ref, snap = archive.resolve("acme/big:v1")
    entry = next(f for f in archive.manifest(snap).files if f.path == "model.safetensors")
    data = (src / "model.safetensors").read_bytes()
    yield {"archive": archive, "entry": entry, "data": data}
    archive.close()


def chunk_count(entry: FileEntry, start: int = 0, end: int | None = None) -> int:
    """How many of the file's chunks hold a byte of ``[start, end)``, counted here from the manifest."""
    end = entry.size if end is None else end
    lengths = [c.length for p in entry.parts for c in p.chunks]
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    return sum(1 for at, n in zip(offsets, lengths, strict=True) if at < end and at + n > start)


def small_buffer_client() -> httpx.Client:
    options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)]
    return httpx.Client(transport=httpx.HTTPTransport(socket_options=options), timeout=WAIT_SECONDS)


def test_slow_concurrent_downloads_hold_at_most_two_chunks_each_and_decode_at_most_the_cap(big) -> None:
    archive: Archive = big["archive"]
    entry: FileEntry = big["entry"]
    # a file of many chunks, far larger than the socket buffers: otherwise the bounds below prove nothing
    assert chunk_count(entry) > 40 and entry.size > 10 * kernel_send_buffer_max()
    keys = {object_key(c.id) for p in entry.parts for c in p.chunks}
    held = HeldBackend(archive.settings.store_path, keys)
    store, archive.store = archive.store, ObjectStore(held)
    decoder = ChunkDecoder(SLOTS)
    try:
        with serve_app(create_app(lambda: archive, decoder=decoder)) as url, small_buffer_client() as client:
            request = client.build_request("GET", f"{url}/{URL_PATH}")
            responses = [client.send(request, stream=True) for _ in range(CLIENTS)]
            assert all(r.status_code == 200 for r in responses)
            # every download has asked for its first chunk; only SLOTS of them got to read one
            assert wait_until(lambda: decoder.counts().held == CLIENTS and held.inside >= SLOTS)
            assert not wait_until(lambda: held.inside > SLOTS, seconds=0.3), (
                "more decodes at once than the cap"
            )
            held.release()

            # Read slowly: one block of one download at a time, round robin. What the server has handed over and
            # the client has not read yet sits in the kernel's buffers (the send buffer, doubled for the kernel's
            # own accounting, and the client's small receive buffer) and at most two pieces in the server: the one
            # in its socket's buffer and the one waiting to go there. A server that decoded ahead of a client that
            # stops would run past this towards the whole file (57 MiB a download).
            slack = 2 * kernel_send_buffer_max() + 2 * CLIENT_RCVBUF + UVICORN_HIGH_WATER + 2 * PIECE_BYTES
            digests = [hashlib.sha256() for _ in responses]
            reading = {i: r.iter_raw(READ_BLOCK) for i, r in enumerate(responses)}
            read = 0
            while reading:
                for i, blocks in list(reading.items()):
                    block = next(blocks, None)
                    if block is None:
                        del reading[i]
                        continue
                    digests[i].update(block)
                    read += len(block)
                    now = decoder.counts()
                    assert now.held <= HELD_PER_STREAM * CLIENTS
                    assert now.decoding <= SLOTS
                    assert now.sent - read <= CLIENTS * slack, "the server decodes ahead of clients that stop"
            for r in responses:
                r.close()
    finally:
        held.release()  # a failed check must not leave the server's reads waiting
        archive.store = store
    want = hashlib.sha256(big["data"]).hexdigest()
    assert [d.hexdigest() for d in digests] == [want] * CLIENTS
    final = decoder.counts()
    assert final.peak_held_per_stream <= HELD_PER_STREAM
    assert final.peak_decoding <= SLOTS and held.peak_inside <= SLOTS
    assert final.peak_held <= HELD_PER_STREAM * CLIENTS
    assert final.decoded == CLIENTS * chunk_count(entry)  # each chunk once per download, none twice
    assert wait_until(lambda: decoder.counts().streams == 0 and decoder.counts().held == 0)


@pytest.fixture(scope="module")
def served(big) -> Iterator[dict]:
    """The big file behind a live server with a decoder of its own, for the tests that do not hold reads."""
    decoder = ChunkDecoder(SLOTS)
    with serve_app(create_app(lambda: big["archive"], decoder=decoder)) as url:
        yield {**big, "url": url, "decoder": decoder}


@pytest.mark.parametrize(
    "header",
    ["bytes=9000000-9000099", "bytes=8388000-10485800", "bytes=-70000", "bytes=0-0", "bytes=50000000-"],
)
def test_a_range_decodes_only_the_chunks_it_overlaps(served, header: str) -> None:
    entry: FileEntry = served["entry"]
    decoder: ChunkDecoder = served["decoder"]
    first, _, last = header.removeprefix("bytes=").partition("-")
    start, end = (
        (entry.size - int(last), entry.size) if not first else (int(first), int(last or entry.size - 1) + 1)
    )
    needed = chunk_count(entry, start, end)
    assert needed < chunk_count(entry) / 4
    before = decoder.counts().decoded
    got = httpx.get(f"{served['url']}/{URL_PATH}", headers={"Range": header})
    assert got.status_code == 206 and got.content == served["data"][start:end]
    assert decoder.counts().decoded - before == needed
    head = httpx.head(f"{served['url']}/{URL_PATH}", headers={"Range": header})
    assert head.status_code == 206 and decoder.counts().decoded - before == needed  # HEAD decodes nothing


def test_a_client_that_hangs_up_leaves_nothing_held(served) -> None:
    """Starlette cancels the sending when a client hangs up but leaves the body generator suspended (with the
    chunks it holds) until the garbage collector finds it; the Hub response closes it at once."""
    decoder: ChunkDecoder = served["decoder"]
    with small_buffer_client() as client:
        response = client.send(client.build_request("GET", f"{served['url']}/{URL_PATH}"), stream=True)
        blocks = response.iter_raw(READ_BLOCK)  # kept: a dropped iterator would close the connection itself
        next(blocks)
        assert decoder.counts().streams == 1 and decoder.counts().held >= 1
        response.close()
    assert wait_until(lambda: decoder.counts().streams == 0 and decoder.counts().held == 0)
    assert decoder.counts().decoded < chunk_count(served["entry"])  # it stopped decoding when the client left


def test_a_corrupt_chunk_is_never_sent(tmp_path: Path, monkeypatch) -> None:
    """A flipped byte in an incompressible (stored raw) chunk: only the re-hash against its id can catch it."""
    monkeypatch.delenv("MODELARC_DATABASE_URL", raising=False)
    rng = np.random.default_rng(3)
    tensors = {f"t{i}": rng.integers(0, 256, 1 << 20, dtype=np.uint8) for i in range(4)}
    src = write_model(tmp_path / "src", tensors)
    archive, _ = Archive.init(tmp_path / "home")
    archive.push(src, "acme/big:v1")
    _ref, snap = archive.resolve("acme/big:v1")
    entry = next(f for f in archive.manifest(snap).files if f.path == "model.safetensors")
    offset, victim = list(overlapping_chunks(entry, 0, entry.size))[2]
    path = archive.settings.store_path / object_key(victim.id)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(blob)
    data = (src / "model.safetensors").read_bytes()
    got = bytearray()
    with serve_app(create_app(lambda: archive, decoder=ChunkDecoder(SLOTS))) as url:
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", f"{url}/{URL_PATH}") as response:
            for block in response.iter_raw():
                got += block
    archive.close()
    assert bytes(got) == data[:offset]  # everything before the corrupt chunk, and not one byte of it


def test_the_decode_cap_is_read_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELARC_DECODE_SLOTS", raising=False)
    assert load_settings(tmp_path).decode_slots == 2 * (os.cpu_count() or 1)
    monkeypatch.setenv("MODELARC_DECODE_SLOTS", " 3 ")
    assert load_settings(tmp_path).decode_slots == 3
    for bad in ("0", "-1", "two", "1.5", "9" * 50):
        monkeypatch.setenv("MODELARC_DECODE_SLOTS", bad)
        with pytest.raises(UsageError, match="MODELARC_DECODE_SLOTS"):
            load_settings(tmp_path)


def test_the_server_sizes_its_decoder_from_the_archive_settings(big) -> None:
    made = ServerDecoder(lambda: big["archive"])
    try:
        assert made().slots == big["archive"].settings.decode_slots and made() is made()
    finally:
        made.close()


def test_a_chunk_whose_length_differs_from_the_manifest_ends_the_stream(big) -> None:
    """The store vouches for a chunk's bytes; the manifest's length for it is checked too, before it is sent."""
    entry: FileEntry = big["entry"]
    part = entry.parts[1]
    lying = dataclasses.replace(part.chunks[0], length=part.chunks[0].length + 1)
    tampered = dataclasses.replace(
        entry,
        parts=(entry.parts[0], dataclasses.replace(part, chunks=(lying, *part.chunks[1:])), *entry.parts[2:]),
    )

    async def read_all() -> bytes:
        return b"".join(
            [piece async for piece in decoder.stream(big["archive"].store, tampered, 0, entry.size)]
        )

    decoder = ChunkDecoder(SLOTS)
    try:
        with pytest.raises(IntegrityError, match=f"object {lying.id} is .* manifest says {lying.length}"):
            asyncio.run(read_all())
    finally:
        decoder.close()
    assert decoder.counts().held == 0 and decoder.counts().streams == 0

"""Object bodies a remote gets wrong on the wire, pulled with the concurrent fetch-and-decode path.

A pull runs more fetch-and-decode threads than ``--jobs`` downloads (archive/remote/sync.py ``pull_workers``), and
the store is written by a thread of its own: whatever arrives, an object whose bytes are not its id never enters
the puller's store, nothing is recorded, and no file appears under a real name.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hostilekit import ROUTES, RewritingProxy, lie_about, object_files, serve_proxy
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, files_of, make_home

from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.objectformat import unpack_header

REF = "acme/wire:v1"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model", tiny_tensors(layers=4), extra_files={"vocab.txt": b"a\nb\n" * 50})


@pytest.fixture
def served(server: Server, source: Path) -> Server:
    """The server holds REF, pushed locally and signed by its own key (which a puller trusts at ``remote add``)."""
    server.archive.push(source, REF)
    return server


def _weight(server: Server) -> str:
    """The largest weight object of REF: one whose payload the float-planes codec stores, so a flip decodes."""
    _ref, snap = server.archive.resolve(REF)
    manifest = server.archive.manifest(snap)
    return str(max((p for _f, p in manifest.tensors()), key=lambda p: p.length).chunks[0].id)


def _puller(tmp_path: Path, url: str) -> Home:
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "evil", url)
    return bob


def _pull(bob: Home, tmp_path: Path, into_folder: bool, *, ok: bool = False, jobs: int = 2):  # type: ignore[no-untyped-def]
    dest = [tmp_path / "out"] if into_folder else []
    return bob("pull", REF, *dest, "--remote", "evil", "--jobs", jobs, ok=ok)


def _nothing_kept(bob: Home, tmp_path: Path, bad: str, source: Path) -> None:
    assert bad not in object_files(bob.path / "store")
    assert not bob.json("ls")
    out = tmp_path / "out"
    written = files_of(out) if out.exists() else {}
    honest = files_of(source)
    # no partial or wrong file under a real name, and no temp file (the pull writes chunks into them as they arrive)
    assert all(honest.get(path) == digest for path, digest in written.items()), written
    assert not [p for p in written if "modelarc-partial" in p], written


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("into_folder", [True, False], ids=["into a folder", "into the store only"])
def test_a_body_corrupted_on_the_wire_is_refused_before_it_is_stored(
    served: Server, source: Path, tmp_path: Path, into_folder: bool, route: str
) -> None:
    bad = _weight(served)
    honest = served.archive.store.get_stored(ObjectId(bad))
    flipped = bytearray(honest)
    flipped[-1] ^= 0x01
    # the flip still decodes to the right length: only the sha256 of the decoded bytes can tell
    assert (
        len(ObjectStore.decode_stored(ObjectId(bad), flipped, verify=False))
        == unpack_header(honest).raw_length
    )

    corrupt = lie_about(bad, lambda body: (bytes(flipped), len(flipped)), route)
    with serve_proxy(RewritingProxy(served.url, rewrite=corrupt)) as url:
        bob = _puller(tmp_path, url)
        result = _pull(bob, tmp_path, into_folder)
    assert bad in result.stderr and "hash" in result.stderr
    _nothing_kept(bob, tmp_path, bad, source)


@pytest.mark.parametrize("route", ROUTES)
def test_a_truncated_body_is_refused_and_not_stored(
    served: Server, source: Path, tmp_path: Path, route: str
) -> None:
    bad = _weight(served)
    # the length of the whole body is declared, half of it sent
    truncate = lie_about(bad, lambda body: (body[: len(body) // 2], len(body)), route)
    with serve_proxy(RewritingProxy(served.url, rewrite=truncate)) as url:
        bob = _puller(tmp_path, url)
        result = _pull(bob, tmp_path, True)
    assert bad in result.stderr
    _nothing_kept(bob, tmp_path, bad, source)


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_longer_than_its_object_is_refused(
    served: Server, source: Path, tmp_path: Path, route: str
) -> None:
    bad = _weight(served)
    pad = lie_about(bad, lambda body: (body + b"\0" * 64, len(body) + 64), route)
    with serve_proxy(RewritingProxy(served.url, rewrite=pad)) as url:
        bob = _puller(tmp_path, url)
        result = _pull(bob, tmp_path, True)
    assert bad in result.stderr
    _nothing_kept(bob, tmp_path, bad, source)


def test_bytes_sent_past_the_content_length_are_not_read_as_the_object(
    served: Server, source: Path, tmp_path: Path
) -> None:
    bad = _weight(served)

    def overrun(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path.endswith("/v1/objects/batch"):
            return 405, {}, b""  # one by one: a frame has no equivalent of bytes past the Content-Length
        if path.endswith(f"/v1/objects/{bad}"):
            # declares the true length, then sends junk after it (and the proxy hangs up)
            return (
                status,
                {**headers, "Content-Length": str(len(body))},
                body + b"HTTP/1.1 200 OK\r\n\r\njunk",
            )
        return status, headers, body

    with serve_proxy(RewritingProxy(served.url, rewrite=overrun)) as url:
        bob = _puller(tmp_path, url)
        _pull(bob, tmp_path, True, ok=True)
    assert files_of(tmp_path / "out") == files_of(source)
    assert bad in object_files(bob.path / "store")
    bob("verify", REF)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_pull_has_at_most_jobs_object_bodies_on_the_wire(
    served: Server, source: Path, tmp_path: Path, jobs: int
) -> None:
    lock = threading.Lock()
    active = peak = 0

    def count(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        nonlocal active, peak
        if "/v1/objects/" in path and method in ("GET", "POST"):  # one object, or a batch of them
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.05)  # hold each answer open so that overlapping downloads would be seen
            with lock:
                active -= 1
        return status, headers, body

    with serve_proxy(RewritingProxy(served.url, rewrite=count)) as url:
        bob = _puller(tmp_path, url)
        _pull(bob, tmp_path, True, ok=True, jobs=jobs)
    assert files_of(tmp_path / "out") == files_of(source)
    assert 1 <= peak <= jobs  # more fetch-and-decode threads than that, but never more downloads

"""docs/FORMAT.md is enough to read an archive: an independent reader, written from the document alone.

The reader below (``read_object`` .. ``find_manifests``, delta objects included) uses only hashlib, json, struct,
zlib, zstandard and numpy; nothing from modelarc is imported to read. modelarc is used only to *write* the archive
under test. If one of these tests fails after a format change, either the change broke compatibility or
docs/FORMAT.md is out of date.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import posixpath
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from modelfactory import big_model, write_model
from safetensors.numpy import save_file

# ---------------------------------------------------------------------------------------------------------------
# The independent reader (docs/FORMAT.md sections "Object files", "Codecs", "Manifest", "Finding manifests").
# ---------------------------------------------------------------------------------------------------------------

MIB8 = 8 * 1024 * 1024
HEADER = struct.Struct("<4sBBHQ")  # magic, format version, codec id, params length, raw length
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PLANE_ENTRY = struct.Struct("<BQ")  # plane coder, coded length

# Float planes, per element type: (element width, [plane bit fields]). Each plane is a list of
# (lowest bit in the element, lowest bit in the plane byte, number of bits), exactly the table in FORMAT.md.
FLOAT_PLANES: dict[int, tuple[int, list[list[tuple[int, int, int]]]]] = {
    1: (2, [[(7, 0, 8)], [(15, 7, 1), (0, 0, 7)]]),  # BF16
    2: (2, [[(10, 0, 5)], [(15, 7, 1), (8, 0, 2)], [(0, 0, 8)]]),  # F16
    3: (4, [[(23, 0, 8)], [(31, 7, 1), (16, 0, 7)], [(8, 0, 8)], [(0, 0, 8)]]),  # F32
}


class FormatError(Exception):
    pass


def object_path(store: Path, oid: str) -> Path:
    return store / "objects" / oid[:2] / oid


def zstd_frame(coded: bytes, length: int) -> bytes:
    """Codec 1: a frame declaring another size than the header's is refused before decoding; nothing may follow
    the frame. A streaming decompressor, so a frame that does not record its content size still decodes."""
    declared = zstandard.frame_content_size(coded)
    if declared not in (-1, length):
        raise FormatError(f"zstd frame declares {declared} bytes, the header {length}")
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(coded)
    if not d.eof or d.unused_data:
        raise FormatError("zstd frame is truncated or has bytes after it")
    return out


def decode_plane(coder: int, coded: bytes, length: int) -> bytes:
    if coder == 0:
        return coded
    if coder == 1:  # one frame declaring its content size, nothing after it
        if zstandard.frame_content_size(coded) != length:
            raise FormatError("zstd plane does not declare its plane length")
        return zstandard.ZstdDecompressor().decompress(coded, allow_extra_data=False)
    if coder == 2:  # one raw deflate stream (RFC 1951) filling the coded plane
        d = zlib.decompressobj(wbits=-15)
        out = d.decompress(coded)
        if not d.eof or d.unused_data:
            raise FormatError("deflate plane is truncated or has bytes after its stream")
        return out
    raise FormatError(f"unknown plane coder {coder}")


def decode_floatplanes(params: bytes, payload: bytes, raw_length: int, seen: Counter[str]) -> bytes:
    version, kind, count = struct.unpack_from("<BBB", params, 0)
    if version != 1 or kind not in FLOAT_PLANES:
        raise FormatError(f"float planes params version {version}, element type {kind}")
    width, layout = FLOAT_PLANES[kind]
    n, tail_length = divmod(raw_length, width)
    if count != len(layout) + 1 or len(params) != 3 + count * PLANE_ENTRY.size:
        raise FormatError("float planes: wrong plane count")
    planes, pos = [], 0
    for i in range(count):
        coder, length = PLANE_ENTRY.unpack_from(params, 3 + i * PLANE_ENTRY.size)
        expected = n if i < len(layout) else tail_length
        plane = decode_plane(coder, payload[pos : pos + length], expected)
        if len(plane) != expected:
            raise FormatError(f"float planes: plane {i} has {len(plane)} bytes")
        planes.append(plane)
        seen[f"floatplanes.type{kind}.plane{i}.coder{coder}"] += 1
        pos += length
    if pos != len(payload):
        raise FormatError("float planes: payload length does not match the plane table")
    elements = np.zeros(n, dtype=np.uint64)
    for plane, fields in zip(planes[:-1], layout, strict=True):
        byte = np.frombuffer(plane, dtype=np.uint8).astype(np.uint64)
        for element_bit, plane_bit, bits in fields:
            elements |= ((byte >> np.uint64(plane_bit)) & np.uint64((1 << bits) - 1)) << np.uint64(
                element_bit
            )
    return elements.astype(f"<u{width}").tobytes() + planes[-1]


DELTA_WIDTH = {0: 1, 1: 2, 2: 2, 3: 4}  # delta element type -> element width
MAX_DELTA_DEPTH = 4


def decode_delta(params: bytes, payload: bytes, raw_length: int, base: bytes, seen: Counter[str]) -> bytes:
    """Codec 3, given the base's raw bytes (already checked against the base id)."""
    version, kind, transform, _base_id, count = struct.unpack_from("<BBB32sB", params, 0)
    if version != 1 or kind not in DELTA_WIDTH or transform not in (0, 1, 2):
        raise FormatError(f"delta params version {version}, element type {kind}, transform {transform}")
    width = DELTA_WIDTH[kind]
    if count != width + 1 or len(params) != 36 + count * PLANE_ENTRY.size:
        raise FormatError("delta: wrong plane count")
    if len(base) != raw_length:
        raise FormatError("delta: the base has another length")
    n, tail_length = divmod(raw_length, width)
    planes, pos = [], 0
    for i in range(count):
        coder, length = PLANE_ENTRY.unpack_from(params, 36 + i * PLANE_ENTRY.size)
        expected = n if i < width else tail_length
        plane = decode_plane(coder, payload[pos : pos + length], expected)
        if len(plane) != expected:
            raise FormatError(f"delta: plane {i} has {len(plane)} bytes")
        planes.append(plane)
        seen[f"delta.type{kind}.transform{transform}.plane{i}.coder{coder}"] += 1
        pos += length
    if pos != len(payload):
        raise FormatError("delta: payload length does not match the plane table")
    x = bytearray(raw_length)
    for k in range(width):  # plane k byte i = x[w*i + w - 1 - k]
        x[width - 1 - k : width * n : width] = planes[k]
    x[width * n :] = planes[-1]
    if transform == 0:  # XOR
        return (np.frombuffer(bytes(x), np.uint8) ^ np.frombuffer(base, np.uint8)).tobytes()
    # subtract: elements add back mod 2^(8w) (numpy's unsigned arithmetic wraps), tail bytes mod 256
    body = np.frombuffer(bytes(x[: width * n]), f"<u{width}")
    tail = np.frombuffer(bytes(x[width * n :]), np.uint8)
    if transform == 2:  # zigzag: z -> (z >> 1) XOR (all ones if z is odd); tail bytes as 1-byte elements
        body, tail = unzigzag(body), unzigzag(tail)
    body = body + np.frombuffer(base[: width * n], f"<u{width}")
    tail = tail + np.frombuffer(base[width * n :], np.uint8)
    return body.astype(f"<u{width}").tobytes() + tail.tobytes()


def unzigzag(z: np.ndarray) -> np.ndarray:
    """FORMAT.md, transform 2: d = (z >> 1) XOR (2^W - 1 if z is odd else 0), on W-bit unsigned values."""
    all_ones = np.array(np.iinfo(z.dtype).max, z.dtype)
    return (z >> 1) ^ np.where(z & 1 == 1, all_ones, np.array(0, z.dtype))


def read_object(
    store: Path, oid: str, seen: Counter[str] | None = None, chain: tuple[str, ...] = ()
) -> bytes:
    """The raw bytes of object ``oid`` (64 hex), checked against the header length and the id. ``chain``: the
    deltas whose bases lead here, outermost first."""
    seen = seen if seen is not None else Counter()
    blob = object_path(store, oid).read_bytes()
    magic, version, codec, params_length, raw_length = HEADER.unpack_from(blob, 0)
    if magic != b"MAOB" or version != 1:
        raise FormatError(f"{oid}: magic {magic!r}, version {version}")
    params, payload = blob[16 : 16 + params_length], blob[16 + params_length :]
    if codec == 0:
        raw = payload
    elif codec == 1:
        raw = zstd_frame(payload, raw_length)
    elif codec == 2:
        raw = decode_floatplanes(params, payload, raw_length, seen)
    elif codec == 3:
        base_id = params[3:35].hex()
        if base_id in (*chain, oid) or len(chain) + 1 > MAX_DELTA_DEPTH:
            raise FormatError(
                f"{oid}: delta chain {' -> '.join((*chain, oid, base_id))} is circular or too deep"
            )
        base = read_object(store, base_id, seen, (*chain, oid))  # checked against base_id in there
        raw = decode_delta(params, payload, raw_length, base, seen)
    else:
        raise FormatError(f"{oid}: unknown codec {codec}")
    seen[f"codec{codec}"] += 1
    if len(raw) != raw_length or hashlib.sha256(raw).hexdigest() != oid:
        raise FormatError(f"{oid}: decoded bytes do not match the header length or the id")
    return raw


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def safe_path(path: str) -> str:
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or posixpath.normpath(path) != path
        or any(seg in ("", ".", "..") for seg in path.split("/"))
        or path[1:2] == ":"
    ):
        raise FormatError(f"unsafe path {path!r}")
    return path


def read_manifest(store: Path, snapshot_id: str) -> dict:
    if not snapshot_id.startswith("sha256:"):
        raise FormatError(f"not a snapshot id: {snapshot_id}")
    data = read_object(store, snapshot_id[len("sha256:") :])
    doc = json.loads(data)
    if doc.get("format") != "modelarc.manifest" or doc.get("version") != 1:
        raise FormatError(f"not a version 1 manifest: {doc.get('format')!r} v{doc.get('version')!r}")
    if canonical(doc) != data:
        raise FormatError("manifest bytes are not canonical JSON")
    return doc


def rebuild(store: Path, snapshot_id: str, dest: Path, seen: Counter[str]) -> dict:
    """Write every file of the snapshot under ``dest``; returns the manifest."""
    manifest = read_manifest(store, snapshot_id)
    for entry in manifest["files"]:
        target = dest.joinpath(*safe_path(entry["path"]).split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        sha, position = hashlib.sha256(), 0
        with open(target, "wb") as out:
            for part in entry["parts"]:
                if part["offset"] != position:
                    raise FormatError(f"{entry['path']}: part at {part['offset']}, expected {position}")
                for chunk in part["chunks"]:
                    data = read_object(store, chunk["id"], seen)
                    if len(data) != chunk["length"]:
                        raise FormatError(
                            f"{chunk['id']}: {len(data)} bytes, manifest says {chunk['length']}"
                        )
                    sha.update(data)
                    out.write(data)
                    position += len(data)
                if position != part["offset"] + part["length"]:
                    raise FormatError(f"{entry['path']}: part chunks do not add up to its length")
        if position != entry["size"] or sha.hexdigest() != entry["sha256"]:
            raise FormatError(f"{entry['path']}: rebuilt file does not match its size and sha256")
    return manifest


def all_objects(store: Path) -> Iterator[str]:
    for path in sorted((store / "objects").glob("*/*")):
        if len(path.name) == 64 and path.parent.name == path.name[:2]:
            yield path.name


def find_manifests(store: Path) -> dict[str, dict]:
    """Snapshot id -> manifest, for every object in the store that is a manifest: no catalog needed."""
    found = {}
    for oid in all_objects(store):
        data = read_object(store, oid)
        if not data.startswith(b"{"):
            continue
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("format") == "modelarc.manifest":
            found["sha256:" + oid] = doc
    return found


# ---------------------------------------------------------------------------------------------------------------
# The archive under test, written by modelarc.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    from modelarc.archive.repository import Archive

    root = tmp_path_factory.mktemp("spec")
    src = root / "model"
    rng = np.random.default_rng(7)
    write_model(
        src,
        extra_files={
            "noise.bin": rng.bytes(100_000),  # incompressible: stored raw
            "small.txt": b"hi\n",  # under 64 bytes: stored raw
            "empty.bin": b"",
            "sub/dir/notes.md": b"# notes\n" * 200,
        },
    )
    big_model(src, megabytes=20)  # a.safetensors (F32) and b.safetensors (BF16), 10 MiB each: two chunks each
    half = (rng.standard_normal(4_500_001) * 0.05).astype(np.float16)  # 9 MB: two chunks, odd element count
    # Values near 1000 have exponent bytes above 128, which the writer's Huffman frames cannot name: deflate.
    large = (rng.standard_normal(300_000) * 1000).astype(np.float32)
    save_file({"h.f16": half, "h.small": half[:33].copy(), "h.large": large}, str(src / "c.safetensors"))
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELARC_DATABASE_URL", raising=False)
        mp.setenv("MODELARC_ACTOR", "spec")
        archive, _created = Archive.init(home)
        try:
            snapshot = archive.push(src, "acme/tiny:v1").snapshot
        finally:
            archive.close()
    return src, home, snapshot


def test_layout_of_the_home_and_store(pushed: tuple[Path, Path, str]) -> None:
    _src, home, snapshot = pushed
    assert (home / "store" / "objects").is_dir() and (home / "store" / "tmp").is_dir()
    assert (home / "registry.db").is_file() and not (
        home / "store" / "lock"
    ).exists()  # locks are catalog rows
    assert (home / "keys" / "signing-key.pem").is_file()
    assert object_path(home / "store", snapshot.removeprefix("sha256:")).is_file()


def test_independent_reader_rebuilds_every_file_byte_identically(
    pushed: tuple[Path, Path, str], tmp_path: Path
) -> None:
    src, home, snapshot = pushed
    seen: Counter[str] = Counter()
    manifest = rebuild(home / "store", snapshot, tmp_path / "out", seen)
    originals = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    assert [f["path"] for f in manifest["files"]] == originals
    for entry in manifest["files"]:
        original = (src / entry["path"]).read_bytes()
        assert (tmp_path / "out" / entry["path"]).read_bytes() == original, entry["path"]
        assert hashlib.sha256(original).hexdigest() == entry["sha256"]
    # every codec, and float planes for each element type, really occurred
    assert seen["codec0"] and seen["codec1"] and seen["codec2"], seen
    for kind in (1, 2, 3):
        assert any(k.startswith(f"floatplanes.type{kind}.") for k in seen), (kind, seen)
    for coder in (0, 1, 2):  # and every plane coder
        assert any(k.endswith(f".coder{coder}") for k in seen), (coder, seen)


def test_manifest_parts_follow_the_safetensors_layout_and_chunk_rule(pushed: tuple[Path, Path, str]) -> None:
    src, home, snapshot = pushed
    manifest = read_manifest(home / "store", snapshot)
    for entry in manifest["files"]:
        parts = entry["parts"]
        for part in parts:  # chunks are cut every 8 MiB from the start of their part
            lengths = [c["length"] for c in part["chunks"]]
            assert all(n == MIB8 for n in lengths[:-1]) and 0 < (lengths or [1])[-1] <= MIB8
            assert sum(lengths) == part["length"]
        if entry["kind"] == "blob":
            assert [p["kind"] for p in parts] == ["blob"] and parts[0]["offset"] == 0
            assert set(parts[0]) == {"kind", "offset", "length", "chunks"}
            continue
        assert entry["kind"] == "safetensors" and entry["path"].endswith(".safetensors")
        data = (src / entry["path"]).read_bytes()
        (n,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8 : 8 + n])
        header.pop("__metadata__", None)
        assert parts[0]["kind"] == "header" and (parts[0]["offset"], parts[0]["length"]) == (0, 8 + n)
        expected = sorted(
            (8 + n + info["data_offsets"][0], name, info["dtype"], info["shape"])
            for name, info in header.items()
        )
        got = [(p["offset"], p["name"], p["dtype"], p["shape"]) for p in parts[1:]]
        assert all(p["kind"] == "tensor" for p in parts[1:]) and got == expected


def test_manifest_is_found_without_the_catalog(pushed: tuple[Path, Path, str]) -> None:
    _src, home, snapshot = pushed
    found = find_manifests(home / "store")
    assert list(found) == [snapshot]
    assert "sha256:" + hashlib.sha256(canonical(found[snapshot])).hexdigest() == snapshot


def test_signature_bundle_is_an_object_that_signs_the_manifest_files(pushed: tuple[Path, Path, str]) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _src, home, snapshot = pushed
    store = home / "store"
    bundles = []
    for oid in all_objects(store):
        data = read_object(store, oid)
        if data.startswith(b"{") and json.loads(data).get("mediaType") == BUNDLE_MEDIA_TYPE:
            bundles.append(json.loads(data))
    assert len(bundles) == 1
    envelope = bundles[0]["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"])
    statement = json.loads(payload)
    predicate = statement["predicate"]
    assert predicate["modelarc"] == {"version": 1, "snapshot": snapshot}
    files = {f["path"]: f["sha256"] for f in read_manifest(store, snapshot)["files"]}
    assert {r["name"]: r["digest"] for r in predicate["resources"]} == files
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in predicate["resources"])).hexdigest()
    assert statement["subject"][0]["digest"]["sha256"] == root
    # DSSE PAE over the payload, ECDSA P-256/SHA-256, key named by the sha256 of its PEM public key
    private = serialization.load_pem_private_key((home / "keys" / "signing-key.pem").read_bytes(), None)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert bundles[0]["verificationMaterial"]["publicKey"]["hint"] == hashlib.sha256(pem).hexdigest()
    ptype = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    private.public_key().verify(signature, pae, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(("offset", "value"), [(4, 2), (5, 9)])
def test_modelarc_refuses_unknown_object_versions_and_codecs(tmp_path: Path, offset: int, value: int) -> None:
    """FORMAT.md, "Versions": a reader must refuse, never guess, an unknown object version or codec id; modelarc
    says it needs a newer modelarc (the object is not damaged), naming the object once."""
    from modelarc.errors import UnsupportedObjectError
    from modelarc.storage import ObjectStore

    store = ObjectStore.open_local(tmp_path / "store")
    oid = store.put(b"x" * 1000).id
    path = object_path(tmp_path / "store", oid)
    blob = bytearray(path.read_bytes())
    blob[offset] = value
    path.write_bytes(bytes(blob))
    with pytest.raises(UnsupportedObjectError, match="needs a newer modelarc") as err:
        store.get(oid)
    assert str(err.value).count(oid) == 1 and "corrupt" not in str(err.value)
    with pytest.raises(FormatError):
        read_object(tmp_path / "store", oid)


def _write_zstd_object(store: Path, raw: bytes, payload: bytes) -> str:
    oid = hashlib.sha256(raw).hexdigest()
    path = object_path(store, oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER.pack(b"MAOB", 1, 1, 0, len(raw)) + payload)
    return oid


@pytest.mark.parametrize("content_size", [False, True])
def test_both_readers_refuse_bytes_after_a_zstd_frame(tmp_path: Path, content_size: bool) -> None:
    """FORMAT.md, "1: zstd": a reader MUST refuse bytes after the frame, whether or not it states its size."""
    from modelarc.errors import ObjectCorruptError
    from modelarc.storage import ObjectStore

    raw = b"hello modelarc " * 100
    frame = zstandard.ZstdCompressor(write_content_size=content_size).compress(raw)
    store = ObjectStore.open_local(tmp_path / "store")
    assert read_object(tmp_path / "store", _write_zstd_object(tmp_path / "store", raw, frame)) == raw
    oid = _write_zstd_object(tmp_path / "store", raw, frame + b"TRAILING GARBAGE")
    with pytest.raises(FormatError, match="bytes after it"):
        read_object(tmp_path / "store", oid)
    with pytest.raises(ObjectCorruptError, match="bytes after its frame"):
        store.get(oid)


def test_independent_reader_refuses_a_zstd_frame_declaring_another_size_before_decoding(tmp_path: Path) -> None:
    """FORMAT.md, "1: zstd": refused from the frame header, so a 10 KB object cannot make a reader inflate 300 MiB."""
    import resource

    coder, zeros = zstandard.ZstdCompressor(level=1).compressobj(size=300 << 20), bytes(1 << 20)
    bomb = b"".join(coder.compress(zeros) for _ in range(300)) + coder.flush()  # never 300 MiB in memory here
    oid = _write_zstd_object(tmp_path, b"tiny", bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FormatError, match="declares 314572800 bytes, the header 4"):
        read_object(tmp_path, oid)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024 < 64, "the frame was inflated"


def test_independent_reader_decodes_delta_objects(tmp_path: Path) -> None:
    """FORMAT.md, "3: delta": every element type, ragged lengths, an empty object, and a chain of the maximum
    depth, as modelarc's store writes them; one deeper, and a cycle, are refused."""
    from modelarc.storage import ObjectId, ObjectStore
    from modelarc.storage.codecs.delta import DeltaCodec
    from modelarc.storage.objectformat import ObjectHeader
    from modelarc.storage.store import object_key

    store = ObjectStore.open_local(tmp_path / "store")
    rng = np.random.default_rng(11)
    seen: Counter[str] = Counter()
    for hint, length in [("BF16", 20_001), ("F16", 6_000), ("F32", 40_003), (None, 9_999), ("F32", 0)]:
        base = (rng.standard_normal(length) * 0.02).astype(np.float32).tobytes()[:length]
        changed = np.frombuffer(base, np.uint8).copy()
        changed[rng.random(length) < 0.3] ^= 3
        base_id = store.put(base, dtype_hint=hint).id
        put = store.put_delta(changed.tobytes(), base_id, dtype_hint=hint)
        assert put.codec == ("delta" if length else "raw")
        assert read_object(tmp_path / "store", put.id, seen) == changed.tobytes()
    # the writer no longer picks transform 1 (nor 2 for plain bytes): written here as older writers did
    for hint, transform in [("F32", 1), ("BF16", 1), (None, 1), (None, 2)]:
        base = (rng.standard_normal(3001) * 0.02).astype(np.float32).tobytes()[:12_003]
        changed = (np.frombuffer(base[:12_000], "<u4").astype(np.int64) + rng.integers(-9, 10, 3000)) % 2**32
        data = changed.astype("<u4").tobytes() + bytes((b + 200) % 256 for b in base[12_000:])
        encoded = DeltaCodec().encode_against(data, base, bytes.fromhex(store.put(base).id), hint, transform)
        oid = ObjectId.of(data)
        store.backend.put(
            object_key(oid), ObjectHeader(3, len(data), encoded.params).pack() + encoded.payload
        )
        assert read_object(tmp_path / "store", oid, seen) == data
    # objects written by modelarc before transform 2 existed (tests/storage/fixtures/delta-transforms-0-1)
    old = Path(__file__).parent / "storage" / "fixtures" / "delta-transforms-0-1"
    for entry in json.loads((old / "objects.json").read_text()):
        for oid in (entry["base"], entry["delta"]):
            object_path(tmp_path / "old", oid).parent.mkdir(parents=True, exist_ok=True)
            object_path(tmp_path / "old", oid).write_bytes((old / oid).read_bytes())
        read_object(tmp_path / "old", entry["delta"], seen)  # checked against its id in there
    for kind in (0, 1, 2, 3):
        assert any(k.startswith(f"delta.type{kind}.") for k in seen), (kind, seen)
    for transform in (0, 1, 2):
        assert any(f".transform{transform}." in k for k in seen), (transform, seen)
    # a chain of the maximum depth reads; one more link, written by hand, and a cycle are refused
    values = [(rng.standard_normal(5000) * 0.02).astype(np.float32).tobytes()]
    ids = [store.put(values[0], dtype_hint="F32").id]
    for _ in range(MAX_DELTA_DEPTH):
        nxt = np.frombuffer(values[-1], np.uint8).copy()
        nxt[rng.random(nxt.size) < 0.2] ^= 1
        values.append(nxt.tobytes())
        ids.append(store.put_delta(values[-1], ids[-1], dtype_hint="F32").id)
    assert store.delta_depth(ids[-1]) == MAX_DELTA_DEPTH
    assert read_object(tmp_path / "store", ids[-1]) == values[-1]

    def forge(data: bytes, base: bytes) -> str:
        encoded = DeltaCodec().encode_against(data, base, hashlib.sha256(base).digest(), "F32")
        oid = ObjectId.of(data)
        store.backend.put(
            object_key(oid), ObjectHeader(3, len(data), encoded.params).pack() + encoded.payload
        )
        return oid

    too_deep = forge(values[-1][::-1], values[-1])
    with pytest.raises(FormatError, match="too deep"):
        read_object(tmp_path / "store", too_deep)
    a, b = bytes(range(256)) * 4, bytes(range(255, -1, -1)) * 4
    forge(a, b)
    with pytest.raises(FormatError, match="circular"):
        read_object(tmp_path / "store", forge(b, a))


def test_independent_reader_restores_a_fine_tune_stored_as_deltas(tmp_path: Path) -> None:
    """A snapshot pushed with --parent: its tensor chunks are deltas (codec 3) against the parent's, and the reader
    above rebuilds every file from the store alone, chains included."""
    from finetunes import LIGHT, write_family

    from modelarc.archive.push import DeltaRequest
    from modelarc.archive.repository import Archive
    from modelarc.registry.records import Provenance

    family = write_family(tmp_path / "family", strengths=(LIGHT,))
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _created = Archive.init(home)
        try:
            pushed = {}
            for dtype in ("BF16", "F32"):
                archive.push(family.folder("base", dtype), f"acme/base:{dtype.lower()}")
                parent = Provenance(parents=((f"acme/base:{dtype.lower()}", "finetune"),))
                result = archive.push(
                    family.folder("light", dtype), f"acme/ft:{dtype.lower()}", parent, delta=DeltaRequest()
                )
                assert result.delta_objects > 0
                pushed[dtype] = result.snapshot
        finally:
            archive.close()
    for dtype, snapshot in pushed.items():
        seen: Counter[str] = Counter()
        manifest = rebuild(home / "store", snapshot, tmp_path / dtype, seen)
        for entry in manifest["files"]:
            original = (family.folder("light", dtype) / entry["path"]).read_bytes()
            assert (tmp_path / dtype / entry["path"]).read_bytes() == original, entry["path"]
        kind = {"BF16": 1, "F32": 3}[dtype]
        assert any(k.startswith(f"delta.type{kind}.transform2.") for k in seen), seen  # zigzag subtraction


# ---------------------------------------------------------------------------------------------------------------
# GGUF files (FORMAT.md "Parts", "GGUF rules", "Chunks"): restored by concatenation like any file; the header is
# parsed here only to check that the manifest's parts are the ones the rules give.
# ---------------------------------------------------------------------------------------------------------------

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
GGUF_STRING, GGUF_ARRAY = 8, 9
# ggml type id -> (name, elements per block, bytes per block): the part of FORMAT.md's table this test writes
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}


class GGUFReader:
    """Just enough of ggml's docs/gguf.md (versions 2 and 3) to find the data start and each tensor's range."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("<Q")
        self.pos += n
        return self.data[self.pos - n : self.pos].decode("utf-8")

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in GGUF_SCALARS:
            return self.take(GGUF_SCALARS[vtype])
        if vtype == GGUF_STRING:
            return self.string()
        if vtype == GGUF_ARRAY and depth < 4:
            item, count = self.take("<I"), self.take("<Q")
            return [self.value(item, depth + 1) for _ in range(count)]
        raise FormatError(f"GGUF value type {vtype}")

    def layout(self) -> tuple[int, list[tuple[int, int, str, str, list[int]]]]:
        """The data start, and (begin, end, name, ggml type name, dimensions) per tensor in FORMAT.md's file order."""
        if self.take("<4s") != b"GGUF" or self.take("<I") not in (2, 3):
            raise FormatError("not a GGUF file of version 2 or 3")
        tensor_count, kv_count = self.take("<Q"), self.take("<Q")
        metadata = {}
        for _ in range(kv_count):
            key = self.string()
            metadata[key] = self.value(self.take("<I"))
        infos = []
        for _ in range(tensor_count):
            name = self.string()
            dims = [self.take("<Q") for _ in range(self.take("<I"))]
            gtype, offset = self.take("<I"), self.take("<Q")
            infos.append((name, dims, gtype, offset))
        alignment = metadata.get("general.alignment", 32)
        start = -(-self.pos // alignment) * alignment
        tensors = []
        for name, dims, gtype, offset in infos:
            type_name, per_block, block_bytes = GGML_TYPES[gtype]
            length = math.prod(dims) // per_block * block_bytes
            tensors.append((start + offset, start + offset + length, name, type_name, dims))
        return start, sorted(tensors, key=lambda t: (t[0], t[1]))  # stable: equal ranges keep header order


def test_independent_reader_restores_a_gguf_file_with_a_multi_chunk_header(tmp_path: Path) -> None:
    """A GGUF v3 file (F32, F16, BF16 and Q8_0 tensors, a zero-length one, an alignment of 64 and padding between
    tensors) whose header is over 8 MiB (a long metadata string): the reader rebuilds it from the store alone, and
    the manifest's parts are the header cut into 8 MiB chunks, one tensor part per tensor in file order and pad
    parts for the gaps, as FORMAT.md says."""
    import gguf

    from modelarc.archive.repository import Archive

    rng = np.random.default_rng(3)
    src = tmp_path / "model"
    src.mkdir()
    writer = gguf.GGUFWriter(str(src / "tiny.gguf"), "llama")
    writer.add_block_count(1)
    writer.add_custom_alignment(64)  # general.alignment: the data start and offsets round to 64, not 32
    writer.add_token_list(["<s>", "</s>", "a"])  # an array of strings
    writer.add_float32("spec.scale", 0.5)
    writer.add_string("spec.filler", "modelarc " * (MIB8 // 9 + 4096))  # pushes the data start past 8 MiB
    q8 = rng.standard_normal((4, 64)).astype(np.float32)
    writer.add_tensor("q8.weight", gguf.quants.quantize(q8, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # fmt: skip
    writer.add_tensor("f32.weight", rng.standard_normal((3, 5)).astype(np.float32))  # 60 bytes: padding follows
    writer.add_tensor("empty.weight", np.zeros((0, 4), np.float32))  # zero-length: shares its offset, no chunks
    writer.add_tensor("f16.weight", rng.standard_normal(7).astype(np.float16))
    bf16 = (rng.standard_normal((2, 48)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("bf16.weight", bf16, raw_shape=(2, 48), raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    original = (src / "tiny.gguf").read_bytes()
    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _created = Archive.init(home)
        try:
            snapshot = archive.push(src, "acme/gguf:v1").snapshot
        finally:
            archive.close()

    seen: Counter[str] = Counter()
    manifest = rebuild(home / "store", snapshot, tmp_path / "out", seen)
    assert (tmp_path / "out" / "tiny.gguf").read_bytes() == original
    [entry] = manifest["files"]
    assert (entry["path"], entry["kind"], entry["size"]) == ("tiny.gguf", "gguf", len(original))
    start, tensors = GGUFReader(original).layout()
    assert start > MIB8 and all(begin % 64 == 0 for begin, *_ in tensors)
    expected, position = [("header", 0, start, None)], start
    for begin, end, name, dtype, dims in tensors:
        if begin > position:
            expected.append(("pad", position, begin - position, None))
        expected.append(("tensor", begin, end - begin, (name, dtype, dims)))
        position = end
    if position < len(original):
        expected.append(("pad", position, len(original) - position, None))
    got = [
        (p["kind"], p["offset"], p["length"], (p["name"], p["dtype"], p["shape"]) if "name" in p else None)
        for p in entry["parts"]
    ]
    assert got == expected
    assert "pad" in {p["kind"] for p in entry["parts"]}
    assert {p["dtype"] for p in entry["parts"] if p["kind"] == "tensor"} == {"F32", "F16", "BF16", "Q8_0"}
    for part in entry["parts"]:  # the header too is cut every 8 MiB from the start of its part
        tensor_fields = {"name", "dtype", "shape"} if part["kind"] == "tensor" else set()
        assert set(part) == {"kind", "offset", "length", "chunks"} | tensor_fields
        whole, rest = divmod(part["length"], MIB8)
        assert [c["length"] for c in part["chunks"]] == [MIB8] * whole + ([rest] if rest else [])
    assert len(entry["parts"][0]["chunks"]) == 2
    [empty] = [p for p in entry["parts"] if p.get("name") == "empty.weight"]
    assert (empty["length"], empty["chunks"], empty["shape"]) == (0, [], [4, 0])  # fastest-varying first
    # no config.json: the snapshot record's architecture is the GGUF header's (FORMAT.md "Catalog records")
    [record] = [r for r in map(json.loads, map(Path.read_bytes, (home / "store" / "records").glob("*.json")))
                if r["kind"] == "snapshot"]  # fmt: skip
    assert record["architecture"] == {
        "format": "gguf", "gguf_quantization": ["BF16", "F16", "F32", "Q8_0"], "model_type": "llama",
        "num_layers": 1, "vocab_size": 3,
    }  # fmt: skip

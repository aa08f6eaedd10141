"""Differences between two snapshots: files by sha256, tensors by name, using stored digests first.

Tensors are matched by name across all safetensors files (a tensor moving between shards is not a change). Equal
part digests mean equal bytes and cost nothing; only tensors whose digests differ are decoded, chunk by chunk (both
sides are chunked at the same boundaries), so memory stays bounded by one chunk per side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from modelarc.archive.manifest import Part, SnapshotManifest
from modelarc.archive.repository import Archive
from modelarc.storage import ObjectId

_INT_DTYPES = {
    "U8": "<u1",
    "I8": "<i1",
    "I16": "<i2",
    "U16": "<u2",
    "I32": "<i4",
    "U32": "<u4",
    "I64": "<i8",
    "U64": "<u8",
    "BOOL": "<u1",
}


def as_float64(raw: bytes | bytearray, dtype: str) -> np.ndarray | None:
    """Values of one chunk as float64, or None for dtypes compared by bytes only (F8, F6, F4, complex)."""
    if dtype == "F32":
        return np.frombuffer(raw, "<f4").astype(np.float64)
    if dtype == "F64":
        return np.frombuffer(raw, "<f8").astype(np.float64)
    if dtype == "F16":
        return np.frombuffer(raw, "<f2").astype(np.float64)
    if dtype == "BF16":  # numpy has no bfloat16: its bits are the top half of a float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype in _INT_DTYPES:
        return np.frombuffer(raw, _INT_DTYPES[dtype]).astype(np.float64)
    return None


@dataclass(frozen=True)
class TensorChange:
    name: str
    dtype: str
    shape: list[int]
    # ||b - a|| / ||a|| over the elements whose difference is finite; None when not numeric or ||a|| = 0
    relative_l2: float | None
    max_abs_diff: float | None  # over the elements whose difference is finite
    # elements whose change is not a finite number: one became (or stopped being) NaN or an infinity, or moved
    # between them. A fine-tune that diverged shows here, where a difference of NaN taken as 0 said "unchanged"
    nonfinite: int = 0


@dataclass(frozen=True)
class ShapeChange:
    name: str
    before: str
    after: str


@dataclass
class SnapshotDiff:
    identical: int = 0
    identical_names: list[str] = field(default_factory=list)
    changed: list[TensorChange] = field(default_factory=list)
    shape_changed: list[ShapeChange] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    files_added: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    files_identical: int = 0


def _tensors(manifest: SnapshotManifest) -> dict[str, Part]:
    return {p.name or "": p for _f, p in manifest.tensors()}


def compare_tensor(archive: Archive, a: Part, b: Part) -> TensorChange:
    sum_sq_diff = sum_sq_base = 0.0
    max_abs = 0.0
    nonfinite = 0
    numeric = True
    for ca, cb in zip(a.chunks, b.chunks, strict=True):
        raw_a = archive.store.get(ObjectId(ca.id))
        va = as_float64(raw_a, a.dtype or "")
        if va is None:
            numeric = False
            break
        base = np.where(np.isfinite(va), va, 0.0)  # a NaN the two share is no change, nor part of the norm
        sum_sq_base += float(np.dot(base, base))
        if ca.id == cb.id:
            continue
        vb = as_float64(archive.store.get(ObjectId(cb.id)), b.dtype or "")
        assert vb is not None
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN: counted below, not warned about
            d = vb - va
        finite = np.isfinite(d)
        # NaN where both are NaN, or the same infinity on both sides, is no change
        unchanged = (va == vb) | (np.isnan(va) & np.isnan(vb))
        # counted where a value is not finite: two finite values (near 1e308, of either sign) may differ by more
        # than a float holds, and neither went NaN
        either = ~(np.isfinite(va) & np.isfinite(vb))
        nonfinite += int(np.count_nonzero(either & ~unchanged))
        d = np.where(finite, d, 0.0)
        sum_sq_diff += float(np.dot(d, d))
        if d.size:
            max_abs = max(max_abs, float(np.abs(d).max()))
    if not numeric:
        return TensorChange(b.name or "", b.dtype or "", list(b.shape or ()), None, None)
    defined = sum_sq_base > 0 and math.isfinite(sum_sq_base)
    rel = math.sqrt(sum_sq_diff) / math.sqrt(sum_sq_base) if defined else None
    return TensorChange(b.name or "", b.dtype or "", list(b.shape or ()), rel, max_abs, nonfinite)


def compare_manifests(archive: Archive, before: SnapshotManifest, after: SnapshotManifest) -> SnapshotDiff:
    out = SnapshotDiff()
    files_a = {f.path: f.sha256 for f in before.files}
    files_b = {f.path: f.sha256 for f in after.files}
    out.files_added = sorted(set(files_b) - set(files_a))
    out.files_removed = sorted(set(files_a) - set(files_b))
    common = set(files_a) & set(files_b)
    out.files_changed = sorted(p for p in common if files_a[p] != files_b[p])
    out.files_identical = len(common) - len(out.files_changed)
    ta, tb = _tensors(before), _tensors(after)
    out.added = sorted(set(tb) - set(ta))
    out.removed = sorted(set(ta) - set(tb))
    for name in sorted(set(ta) & set(tb)):
        a, b = ta[name], tb[name]
        if a.digest == b.digest and a.dtype == b.dtype and a.shape == b.shape:
            out.identical += 1
            out.identical_names.append(name)
        elif a.dtype != b.dtype or a.shape != b.shape:
            out.shape_changed.append(
                ShapeChange(name, f"{a.dtype}{list(a.shape or ())}", f"{b.dtype}{list(b.shape or ())}")
            )
        else:
            out.changed.append(compare_tensor(archive, a, b))
    # a tensor with values gone NaN or infinite first (a diverged fine-tune): the table shows the first rows only
    out.changed.sort(key=lambda c: (-c.nonfinite, -(c.relative_l2 or 0.0)))
    return out


def diff_snapshots(archive: Archive, ref_a: str, ref_b: str) -> SnapshotDiff:
    _ra, a = archive.resolve(ref_a)
    _rb, b = archive.resolve(ref_b)
    return compare_manifests(archive, archive.manifest(a), archive.manifest(b))

"""Archived tensors straight into torch, on CUDA when present and on CPU otherwise.

Nothing is written to disk for weights: each tensor's chunks are decoded from the store into the tensor they end in.
On CPU, when the dtype is kept, they are decoded directly into the tensor's own storage; otherwise into one reusable
host buffer (pinned for CUDA) and copied once, the dtype conversion and the move to the device in the same copy. The
same code runs on CPU with ``device="cpu"``, which is how it is tested here. ``load_model`` builds the model on the
meta device, so no weight is allocated twice, initialised at random or cast after loading. Only tokenizers are
restored to a temporary folder, because the tokenizer classes read files by path; they are small.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelarc.archive.catalog.views import SnapshotView
from modelarc.archive.manifest import FileEntry, Part, SnapshotManifest
from modelarc.archive.repository import Archive, refuse_if_withdrawn
from modelarc.archive.restore import iter_chunk_bytes, restore_file
from modelarc.errors import ModelarcError, NotFoundError, UsageError

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "added_tokens.json",
    "spiece.model",
    "config.json",
    "generation_config.json",
)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is the first CUDA device when one is usable, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but CUDA is not available here")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise UsageError(f"unknown dtype {dtype!r}: one of {', '.join(DTYPE_NAMES)}") from None


def _torch_dtype(part: Part) -> torch.dtype:
    try:
        return TORCH_DTYPES[part.dtype or ""]
    except KeyError:
        raise UsageError(f"tensor {part.name}: dtype {part.dtype} cannot be loaded into torch") from None


def _bytes_of(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's own storage as a flat writable uint8 array (CPU, contiguous)."""
    return tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else np.empty(0, np.uint8)


def _land(
    archive: Archive,
    device: torch.device,
    plan: list[tuple[Part, torch.dtype | None]],
    staged: bool = False,
) -> Generator[tuple[Part, torch.Tensor], None, None]:
    """Each planned part as a new tensor on ``device`` in its planned dtype (None: the archived one), in plan order.

    After decompression each byte is copied at most once. On CPU a one-chunk tensor (most of them) is the decoded
    chunk itself, or one converting copy of it when its dtype changes; a larger tensor is decoded straight into its
    own storage when it keeps its dtype. Everything else (a larger tensor changing dtype; any tensor for another
    device) is decoded into one reusable host staging buffer, pinned for CUDA, and one ``copy_`` into the final
    tensor converts the dtype and crosses to the device in the same step; no tensor handed out is a view of that
    buffer. ``staged=True`` takes that path for every tensor on CPU too, so that the GPU path's code runs in the
    tests here.

    The chunks of every part are one stream, decoded ahead on two threads across tensor boundaries: most tensors
    are a single chunk, and read-ahead within one tensor would keep one thread busy and the other idle.
    """
    direct = device.type == "cpu" and not staged
    via_staging = [
        p
        for p, dtype in plan
        if not direct or (len(p.chunks) > 1 and (dtype or _torch_dtype(p)) != _torch_dtype(p))
    ]
    staging = torch.empty(
        max((p.length for p in via_staging), default=0), dtype=torch.uint8, pin_memory=device.type == "cuda"
    )
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelarc-load")
    chunks = iter_chunk_bytes(archive.store, (c for p, _d in plan for c in p.chunks), pool)
    try:
        for part, dtype in plan:
            source = _torch_dtype(part)
            final = dtype or source
            shape = tuple(part.shape or ())
            if direct and len(part.chunks) == 1:  # most tensors: no copy at all when the dtype is kept
                host = _one_chunk_tensor(part, next(chunks), source, shape)
                out = host if final == source else host.to(final)
            elif direct and final == source:
                out = torch.empty(shape, dtype=final)
                _decode_into(part, chunks, _bytes_of(out))
            else:
                view = staging[: part.length]
                _decode_into(part, chunks, view.numpy())
                out = torch.empty(shape, dtype=final, device=device)
                out.copy_(view.view(source).view(shape), non_blocking=device.type == "cuda")
                if device.type == "cuda":
                    torch.cuda.current_stream(device).synchronize()  # the staging buffer is reused next
            yield part, out
    finally:
        chunks.close()
        pool.shutdown(cancel_futures=True)


def _one_chunk_tensor(
    part: Part, data: bytes | bytearray, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """A tensor held in one chunk, as the decoded chunk itself: codecs hand out a fresh bytearray that nothing else
    holds, so it becomes the tensor's storage without a copy (immutable bytes are copied once)."""
    if len(data) != part.length:
        raise ModelarcError(f"tensor {part.name}: decoded {len(data)} bytes, manifest says {part.length}")
    if not part.length:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(data if isinstance(data, bytearray) else bytearray(data), dtype=dtype).view(shape)


def _decode_into(part: Part, chunks: Iterator[bytes | bytearray], target: np.ndarray) -> None:
    """The next ``len(part.chunks)`` decoded chunks into the flat uint8 array ``target`` (len == part.length)."""
    pos = 0
    for _chunk in part.chunks:
        data = next(chunks)
        target[pos : pos + len(data)] = np.frombuffer(data, dtype=np.uint8)
        pos += len(data)
    if pos != part.length:
        raise ModelarcError(f"tensor {part.name}: decoded {pos} bytes, manifest says {part.length}")


def iter_tensors(
    archive: Archive,
    manifest: SnapshotManifest,
    device: torch.device,
    dtype: torch.dtype | None,
    *,
    staged: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) on ``device``, floating tensors in ``dtype`` when given. ``staged`` forces the CUDA path (one
    reusable host buffer, then a copy) on CPU; see ``_land``."""
    plan = [(p, _cast(p, dtype)) for _f, p in manifest.tensors()]
    with closing(_land(archive, device, plan, staged)) as landed:
        for part, tensor in landed:
            yield part.name or "", tensor


def _cast(part: Part, dtype: torch.dtype | None) -> torch.dtype | None:
    """``dtype`` for a floating tensor, None (keep the archived dtype) for the rest."""
    return dtype if dtype is not None and _torch_dtype(part).is_floating_point else None


def load_state_dict(
    archive: Archive, ref: str, device: str | torch.device = "auto", dtype: str | torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Every tensor of the snapshot, by name, on ``device`` (floating tensors cast to ``dtype`` if given)."""
    _r, snap = archive.resolve(ref)
    refuse_if_withdrawn(snap, ref)
    return dict(iter_tensors(archive, archive.manifest(snap), resolve_device(device), resolve_dtype(dtype)))


def _file(manifest: SnapshotManifest, path: str) -> FileEntry | None:
    return next((f for f in manifest.files if f.path == path), None)


def read_small_file(archive: Archive, manifest: SnapshotManifest, path: str) -> bytes | None:
    entry = _file(manifest, path)
    if entry is None:
        return None
    with ThreadPoolExecutor(max_workers=1) as pool:
        return b"".join(
            bytes(d) for p in entry.parts for d in iter_chunk_bytes(archive.store, p.chunks, pool)
        )


@dataclass
class SnapshotHandle:
    """An archived snapshot opened for study: metadata now, tensors on demand."""

    archive: Archive
    ref: str
    info: SnapshotView
    manifest: SnapshotManifest

    @property
    def id(self) -> str:
        return self.info.snapshot

    def tensor_names(self) -> list[str]:
        return [p.name or "" for _f, p in self.manifest.tensors()]

    def tensor(
        self, name: str, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> torch.Tensor:
        part = next((p for _f, p in self.manifest.tensors() if p.name == name), None)
        if part is None:
            raise NotFoundError(f"{self.ref} has no tensor {name!r}")
        plan = [(part, _cast(part, resolve_dtype(dtype)))]
        with closing(_land(self.archive, resolve_device(device), plan)) as landed:
            return next(landed)[1]

    def config(self) -> dict[str, Any] | None:
        raw = read_small_file(self.archive, self.manifest, "config.json")
        return json.loads(raw) if raw else None


def open_snapshot(archive: Archive, ref: str) -> SnapshotHandle:
    _r, snap = archive.resolve(ref)
    refuse_if_withdrawn(snap, ref)
    return SnapshotHandle(archive, ref, archive.show(ref), archive.manifest(snap))


def load_model(
    archive: Archive,
    ref: str,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """Build the transformers model from the archived config.json, offline, and load the archived weights.

    Only classes that ship with transformers are used (``trust_remote_code`` must stay False: archived code is not
    run). ``dtype`` defaults to torch's default dtype (float32), as with ``from_pretrained``. The model is built on
    the meta device (no memory, no initialisation) and every archived tensor is decoded once into its final buffer
    on ``device``, in the dtype the model declares for it; a parameter the archive lacks is an error.
    """
    import transformers

    if trust_remote_code:
        raise UsageError("trust_remote_code is not supported: modelarc never runs code from an archive")
    handle = open_snapshot(archive, ref)
    config_doc = handle.config()
    gguf_file = _gguf_file(handle.manifest)
    if config_doc is None and gguf_file is not None:
        return _load_gguf_model(archive, handle, gguf_file, resolve_device(device), resolve_dtype(dtype))
    if config_doc is None:
        raise NotFoundError(f"{ref} has no config.json; load_state_dict() gives its tensors")
    model_type = config_doc.get("model_type")
    if not isinstance(model_type, str):
        raise UsageError(f"{ref}: config.json has no model_type")
    try:
        config = transformers.AutoConfig.for_model(
            model_type, **{k: v for k, v in config_doc.items() if k != "model_type"}
        )
    except (ValueError, KeyError) as exc:
        raise UsageError(
            f"{ref}: transformers cannot build a config for model_type {model_type!r} ({exc})"
        ) from None
    arch_names = config_doc.get("architectures") or []
    cls = getattr(transformers, arch_names[0], None) if arch_names else None
    if cls is None:
        raise UsageError(f"{ref}: architecture {arch_names[:1]} is not a transformers class")
    target_device = resolve_device(device)
    model = _empty_model(cls, config, resolve_dtype(dtype) or torch.get_default_dtype())
    missing = _load_weights(model, archive, handle, target_device)
    # Symmetric, as in from_pretrained: a tied parameter the archive lacks (lm_head saved as the embeddings) is
    # tied to the one it has, and leaves `missing`; two present but different copies are left untied.
    model.tie_weights(missing_keys=missing, recompute_mapping=False)
    if missing:
        first = next(k for k in model.state_dict(keep_vars=True) if k in missing)
        raise ModelarcError(f"{ref}: the archive has no weights for {len(missing)} parameters, e.g. {first}")
    _compute_buffers(model, target_device)
    empty = next((n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None)
    if empty is not None:
        raise ModelarcError(f"{ref}: {empty} is neither in the archive nor computed by {cls.__name__}")
    return model.eval()


def _empty_model(cls: Any, config: Any, dtype: torch.dtype) -> Any:
    """The model's modules with every parameter and buffer on the meta device: nothing allocated or initialised.

    Floating parameters are declared in ``dtype`` the way ``from_pretrained`` declares them, through torch's default
    dtype while the model is built; what a model builds in float32 on purpose (rotary frequencies) stays float32.
    Tying is left until the weights are in, so every archived tensor still has its own slot.
    """
    from transformers.initialization import no_tie_weights

    for sub in [config, *(getattr(config, k, None) for k in getattr(config, "sub_configs", {}))]:
        if sub is not None:
            sub.dtype = dtype  # as from_pretrained records it; save_pretrained writes it back
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"), no_tie_weights():
            return cls(config)
    finally:
        torch.set_default_dtype(previous)


def _load_weights(model: Any, archive: Archive, handle: SnapshotHandle, device: torch.device) -> set[str]:
    """Every archived tensor the model has a slot for, decoded into a new tensor on ``device`` in the slot's dtype
    and put in the slot's place (the meta placeholder is dropped). Tensors the model has no slot for are not
    decoded. Returns the slots left empty."""
    slots = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    # one part per name (the last, as a dict of the state would keep), in archive order
    parts = list({p.name: p for _f, p in handle.manifest.tensors() if p.name in slots}.values())
    for part in parts:  # all shapes first: a mismatch is refused before anything is decoded
        slot = slots[part.name or ""]
        if tuple(part.shape or ()) != tuple(slot.shape):
            raise ModelarcError(
                f"{handle.ref}: tensor {part.name} is {list(part.shape or ())} in the archive, the model expects "
                f"{list(slot.shape)}"
            )
    with closing(_land(archive, device, [(p, slots[p.name or ""].dtype) for p in parts])) as landed:
        for part, tensor in landed:
            _put(model, part.name or "", tensor)
            del slots[part.name or ""]
    return set(slots)


def _put(model: Any, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    placeholder = owner._parameters.get(leaf)
    value = tensor if placeholder is None else torch.nn.Parameter(tensor, placeholder.requires_grad)
    # transformers' initialisers skip what carries this flag; _compute_buffers relies on it
    value._is_hf_initialized = True  # type: ignore[attr-defined]  # a plain attribute transformers reads
    setattr(owner, leaf, value)


def _compute_buffers(model: Any, device: torch.device) -> None:
    """Non-persistent buffers (rotary inv_freq, position ids) are not in checkpoints, so on the meta device they
    hold nothing. As from_pretrained does, each gets an empty tensor on ``device`` and the model's own
    ``_init_weights`` computes it; every loaded tensor is flagged, so nothing else is touched. A buffer shared by
    several modules stays shared."""
    fresh: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for name in module._non_persistent_buffers_set:
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.is_meta:
                if id(buffer) not in fresh:
                    fresh[id(buffer)] = torch.empty_like(buffer, device=device)
                module._buffers[name] = fresh[id(buffer)]
    model.initialize_weights()


def _gguf_file(manifest: SnapshotManifest) -> FileEntry | None:
    return next((f for f in manifest.files if f.kind == "gguf"), None)


def _load_gguf_model(
    archive: Archive,
    handle: SnapshotHandle,
    entry: FileEntry,
    device: torch.device,
    dtype: torch.dtype | None,
) -> Any:
    """GGUF goes through transformers' own GGUF loader, which reads a file by path: the one file is restored to a
    temporary folder (verified while written) and removed once loaded."""
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory(prefix="modelarc-gguf-") as tmp, ThreadPoolExecutor(2) as pool:
        target = Path(tmp) / Path(entry.path).name
        restore_file(archive.store, entry, target, pool, None)
        kwargs: dict[str, Any] = {"gguf_file": target.name}
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            model = AutoModelForCausalLM.from_pretrained(tmp, **kwargs)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise UsageError(
                f"{handle.ref}: transformers cannot load this GGUF file ({str(exc)[:200]})"
            ) from None
    return model.to(device).eval()  # type: ignore[arg-type]  # transformers stubs misdescribe .to


def load_tokenizer(archive: Archive, ref: str) -> Any:
    from transformers import AutoTokenizer

    handle = open_snapshot(archive, ref)
    gguf_file = _gguf_file(handle.manifest)
    if gguf_file is not None and not any(f.path in TOKENIZER_FILES[:-2] for f in handle.manifest.files):
        with tempfile.TemporaryDirectory(prefix="modelarc-gguf-") as tmp, ThreadPoolExecutor(2) as pool:
            target = Path(tmp) / Path(gguf_file.path).name
            restore_file(archive.store, gguf_file, target, pool, None)
            return AutoTokenizer.from_pretrained(tmp, gguf_file=target.name)
    with tempfile.TemporaryDirectory(prefix="modelarc-tokenizer-") as tmp, ThreadPoolExecutor(2) as pool:
        found = False
        for entry in handle.manifest.files:
            if entry.path in TOKENIZER_FILES:
                restore_file(archive.store, entry, Path(tmp) / entry.path, pool, None)
                found = found or entry.path != "config.json"
        if not found:
            raise NotFoundError(f"{ref} has no tokenizer files")
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True)

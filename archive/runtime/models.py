"""Transformers models from archived snapshots: built offline from the archived config, weights decoded once into
their final buffers (``loading.py`` streams the tensors; this module builds the model around them), and the
tokenizer from the archived tokenizer files. GGUF snapshots go through transformers' own GGUF reader.
"""

from __future__ import annotations

import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import torch

from modelarc.archive.limits import clip_text
from modelarc.archive.manifest import FileEntry, SnapshotManifest
from modelarc.archive.repository import Archive
from modelarc.archive.restore import restore_file
from modelarc.archive.runtime.loading import (
    TOKENIZER_FILES,
    SnapshotHandle,
    land_snapshot,
    open_snapshot,
    resolve_device,
    resolve_dtype,
)
from modelarc.errors import ModelarcError, NotFoundError, UsageError


def load_model(
    archive: Archive,
    ref: str,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    *,
    cache: bool = False,
) -> Any:
    """Build the transformers model from the archived config.json, offline, and load the archived weights.

    Only classes that ship with transformers are used (``trust_remote_code`` must stay False: archived code is not
    run). ``dtype`` defaults to torch's default dtype (float32), as with ``from_pretrained``. The model is built on
    the meta device (no memory, no initialisation) and every archived tensor is decoded once into its final buffer
    on ``device``, in the dtype the model declares for it; a parameter the archive lacks is an error.

    ``cache=True`` decodes the snapshot's safetensors files once into the load cache (``cache.py``: verified,
    per snapshot id) and maps them on every later load instead of decoding; GGUF snapshots ignore it.
    """
    if trust_remote_code:
        raise UsageError("trust_remote_code is not supported: modelarc never runs code from an archive")
    return model_from_snapshot(open_snapshot(archive, ref), device, dtype, cache=cache)


def model_from_snapshot(
    handle: SnapshotHandle,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    *,
    cache: bool = False,
    archived_generation_config: bool = True,
) -> Any:
    """``load_model`` of a snapshot already opened: everything it reads comes from ``handle``'s one snapshot, so a
    caller that also wants its tokenizer (``tokenizer_from_snapshot``) or records its id gets all three from the
    same snapshot, however a tag moves meanwhile (a REF resolved once per use, never once per file).

    The snapshot's generation_config.json, if it has one, becomes the model's generation defaults, as with
    ``from_pretrained`` (eos token lists, repetition penalties); ``archived_generation_config=False`` keeps the
    defaults transformers derives from config.json alone, as modelarc did before (``rerun`` of a version 1 record).
    """
    model = _built_model(handle, device, dtype, cache)
    if archived_generation_config and model.can_generate():
        _apply_generation_config(model, handle)
    return model


def _apply_generation_config(model: Any, handle: SnapshotHandle) -> None:
    from huggingface_hub.errors import StrictDataclassError
    from transformers import GenerationConfig

    doc = handle.generation_config()
    if doc is None:
        return
    try:
        model.generation_config = GenerationConfig.from_dict(doc)
    except (ValueError, TypeError, KeyError, AttributeError, StrictDataclassError) as exc:
        raise UsageError(
            f"{handle.ref}: transformers cannot read its generation_config.json ({_reason(exc)})"
        ) from None


def _built_model(
    handle: SnapshotHandle, device: str | torch.device, dtype: str | torch.dtype | None, cache: bool
) -> Any:
    import transformers

    archive, ref = handle.archive, handle.ref
    gguf_file = _gguf_file(handle.manifest)
    # a GGUF file describes its model itself: one that comes with a config.json (as many Hub GGUF repos do) still
    # loads through transformers' GGUF reader, unless there are safetensors weights to build that config from
    has_safetensors = any(f.kind == "safetensors" and any(f.tensors()) for f in handle.manifest.files)
    if gguf_file is not None and not has_safetensors:
        return _load_gguf_model(archive, handle, gguf_file, resolve_device(device), resolve_dtype(dtype))
    config_doc = handle.config()
    if config_doc is None:
        raise NotFoundError(f"{ref} has no config.json; load_state_dict() gives its tensors")
    from huggingface_hub.errors import StrictDataclassError
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config_doc.get("model_type")
    if not isinstance(model_type, str):
        raise UsageError(f"{ref}: config.json has no model_type")
    if model_type not in CONFIG_MAPPING:  # said here: transformers' own message lists all ~900 types it knows
        raise UsageError(
            f"{ref}: config.json's model_type {_clipped(model_type)} is not one transformers "
            f"{transformers.__version__} knows"
        )
    try:
        config = transformers.AutoConfig.for_model(
            model_type, **{k: v for k, v in config_doc.items() if k != "model_type"}
        )
    # StrictDataclassError: a field of the wrong type (hidden_size "sixty-four"), as huggingface_hub checks them
    except (ValueError, KeyError, TypeError, StrictDataclassError) as exc:
        raise UsageError(
            f"{ref}: transformers cannot build a config for model_type {model_type!r} ({_reason(exc)})"
        ) from None
    arch_names = config_doc.get("architectures") or []
    if not isinstance(arch_names, list):  # a number, an object or one bare string: config.json says a list
        raise UsageError(
            f"{ref}: config.json's architectures is {_clipped(arch_names)}, not a list of class names"
        )
    cls = getattr(transformers, arch_names[0], None) if arch_names and isinstance(arch_names[0], str) else None
    # only a model class is built: config.json names any attribute of transformers (a function such as
    # `pipeline`, `Trainer`), and what it names is called with the archived config
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        first = arch_names[0] if arch_names else arch_names
        raise UsageError(f"{ref}: architecture [{_clipped(first)}] is not a transformers model class")
    wanted = getattr(cls, "config_class", None)
    if isinstance(wanted, type) and not isinstance(config, wanted):
        raise UsageError(
            f"{ref}: architecture {cls.__name__} takes a {wanted.__name__}, but config.json's model_type "
            f"{model_type!r} gives a {type(config).__name__}"
        )
    target_device = resolve_device(device)
    try:
        model = _empty_model(cls, config, resolve_dtype(dtype) or torch.get_default_dtype())
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, StrictDataclassError) as exc:
        # a config.json transformers accepted but its class cannot be built from (a field missing or mistyped)
        raise UsageError(f"{ref}: transformers cannot build {cls.__name__} from config.json ({_reason(exc)})") from None
    missing = _load_weights(model, archive, handle, target_device, cache)
    # Symmetric, as in from_pretrained: a tied parameter the archive lacks (lm_head saved as the embeddings) is
    # tied to the one it has, and leaves `missing`; two present but different copies are left untied.
    model.tie_weights(missing_keys=missing, recompute_mapping=False)
    if missing:
        first = next(k for k in model.state_dict(keep_vars=True) if k in missing)
        raise ModelarcError(f"{ref}: the archive has no weights for {len(missing)} parameters, e.g. {first}")
    _compute_buffers(model, target_device, handle)
    empty = next((n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None)
    if empty is not None:
        raise ModelarcError(f"{ref}: {empty} is neither in the archive nor computed by {cls.__name__}")
    return model.eval()


# how much of an archived config's text, or of transformers' complaint about it, an error line repeats: config.json
# is anyone's, and transformers' messages echo it whole (a 400 KB model_type made a 400 KB "one line")
ECHOED_CHARS = 200


def _clipped(value: object, limit: int = ECHOED_CHARS // 2) -> str:
    return clip_text(repr(value), limit)


def _reason(exc: BaseException) -> str:
    """An exception's message on one line, at most ``ECHOED_CHARS`` long (its cause's too: huggingface_hub's
    field validation says what was wrong on a second line)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= ECHOED_CHARS else f"{text[:ECHOED_CHARS]}..."


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


def _load_weights(
    model: Any, archive: Archive, handle: SnapshotHandle, device: torch.device, cache: bool
) -> set[str]:
    """Every archived tensor the model has a slot for, decoded (or mapped from the load cache) into a new tensor on
    ``device`` in the slot's dtype and put in the slot's place (the meta placeholder is dropped). Tensors the model
    has no slot for are not decoded. Returns the slots left empty."""
    slots = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    # one part per name (the last, as a dict of the state would keep), in archive order
    chosen = list({p.name: (f, p) for f, p in handle.manifest.tensors() if p.name in slots}.values())
    for _f, part in chosen:  # all shapes first: a mismatch is refused before anything is decoded
        slot = slots[part.name or ""]
        if tuple(part.shape or ()) != tuple(slot.shape):
            raise ModelarcError(
                f"{handle.ref}: tensor {part.name} is {list(part.shape or ())} in the archive, the model expects "
                f"{list(slot.shape)}"
            )
    plan = [(f, p, slots[p.name or ""].dtype) for f, p in chosen]
    landing = land_snapshot(
        archive, handle.snapshot, handle.model, handle.manifest, device, plan, cache=cache
    )
    with closing(landing) as landed:
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


# Computed buffers (rotary frequencies, position ids, GPT-Neo's causal masks) are a small fraction of a real model's
# weights: GPT-Neo 125M's twelve 2048x2048 masks are 48 MB beside 500 MB of weights. A config.json may say anything.
BUFFER_SLACK = 2
BUFFER_FLOOR = 64 << 20


def _compute_buffers(model: Any, device: torch.device, handle: SnapshotHandle) -> None:
    """Non-persistent buffers (rotary inv_freq, position ids) are not in checkpoints, so on the meta device they
    hold nothing. As from_pretrained does, each gets an empty tensor on ``device`` and the model's own
    ``_init_weights`` computes it; every loaded tensor is flagged, so nothing else is touched. A buffer shared by
    several modules stays shared.

    Their sizes come from config.json alone, so they are totalled first and refused, before any is allocated, when
    far larger than the archived weights: a 16 MB GPT-Neo whose config said max_position_embeddings=1000000 asked
    for a 1 TB mask (a traceback; at 100000, the machine's memory). An allocation that still fails is one line."""
    pending: dict[int, tuple[torch.Tensor, list[tuple[Any, str]]]] = {}
    for module in model.modules():
        for name in module._non_persistent_buffers_set:
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.is_meta:
                pending.setdefault(id(buffer), (buffer, []))[1].append((module, name))
    needed = sum(b.numel() * b.element_size() for b, _uses in pending.values())
    weights = sum(p.length for _f, p in handle.manifest.tensors())
    if needed > BUFFER_SLACK * weights + BUFFER_FLOOR:
        raise UsageError(
            f"{handle.ref}: its config.json makes the model compute {needed:,} bytes of buffers beside "
            f"{weights:,} bytes of archived weights (a size such as max_position_embeddings out of proportion to "
            "the model): not loaded"
        )
    try:
        for buffer, uses in pending.values():
            fresh = torch.empty_like(buffer, device=device)
            for module, name in uses:
                module._buffers[name] = fresh
        model.initialize_weights()
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError too
        if not isinstance(exc, MemoryError | torch.OutOfMemoryError) and "alloc" not in str(exc):
            raise  # not an allocation failure: a bug, shown as one
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ModelarcError(
            f"{handle.ref}: not enough memory on {device} for the {needed:,} bytes of buffers it computes ({reason})"
        ) from None


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
        _refuse_a_model_larger_than_its_weights(handle, entry, tmp, target.name)
        try:
            model = AutoModelForCausalLM.from_pretrained(tmp, **kwargs)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise UsageError(
                f"{handle.ref}: transformers cannot load this GGUF file ({str(exc)[:200]})"
            ) from None
    return model.to(device).eval()  # type: ignore[arg-type]  # transformers stubs misdescribe .to


# a GGUF file may hold a little less than its model (an output layer tied to the embeddings), never far less
GGUF_PARAMETER_SLACK = 2


def _refuse_a_model_larger_than_its_weights(
    handle: SnapshotHandle, entry: FileEntry, folder: str, name: str
) -> None:
    """Refuse a GGUF file whose metadata describes a model far larger than the weights it holds, before any of it
    is allocated: transformers fills the hyperparameters a file lacks with its defaults, so a 192-byte GGUF
    (architecture llama, one tensor of 16 floats) had a 7B Llama allocated and the process killed for memory."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, RuntimeError, TypeError, OverflowError) as exc:
        raise UsageError(
            f"{handle.ref}: transformers cannot load this GGUF file ({str(exc)[:200]})"
        ) from None
    needed = sum(p.numel() for p in skeleton.parameters())
    held = sum(math.prod(p.shape or ()) for p in entry.tensors())
    if needed > GGUF_PARAMETER_SLACK * held + (1 << 20):
        raise UsageError(
            f"{handle.ref}: {entry.path} holds {held:,} weights, but the model its metadata describes has "
            f"{needed:,} parameters (transformers takes defaults for what the file does not say): not loaded"
        )


def load_tokenizer(archive: Archive, ref: str) -> Any:
    return tokenizer_from_snapshot(open_snapshot(archive, ref))


def tokenizer_from_snapshot(handle: SnapshotHandle) -> Any:
    """``load_tokenizer`` of a snapshot already opened (see ``model_from_snapshot``)."""
    from transformers import AutoTokenizer

    archive, ref = handle.archive, handle.ref
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

"""Running archived models and keeping a signed record of exactly what was run and what came out.

A record holds the snapshot id, prompt, generation parameters, output, library versions and hardware. Its canonical
JSON is stored as an object, and signed with the archive's key in a DSSE envelope (payload type
``application/vnd.modelarc.run+json``) so that a record can be checked long after the run: ``rerun`` refuses a
record whose signature does not verify.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelarc import __version__
from modelarc.archive.manifest import canonical_json
from modelarc.archive.records import catalog_time, write_record
from modelarc.archive.repository import Archive
from modelarc.archive.signing import dsse
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.fields import parse_json
from modelarc.errors import IntegrityError, SignatureError, UnsupportedFormatError, UsageError
from modelarc.registry import runs as run_rows
from modelarc.registry.records import ObjectRecord
from modelarc.registry.refs import SnapshotId, parse_ref
from modelarc.storage import ObjectId

if TYPE_CHECKING:
    import torch

# torch (and the loaders built on it) are imported by the functions that generate: listing and checking recorded
# runs (`modelarc runs`, the record's signature) reads the catalog and the store only.

RUN_PAYLOAD_TYPE = "application/vnd.modelarc.run+json"
# the run document's version, written by record_run: 2 since runs take their generation defaults from the snapshot's
# generation_config.json (version 1: from config.json alone, as modelarc ran them before). Both are read, and
# `rerun` of a version 1 record runs as version 1 did, so an old record is compared like for like.
RUN_VERSION = 2
READ_RUN_VERSIONS = (1, 2)


# The least temperature sampled with: generate divides float32 logits by it, and 1e-40 made every logit of the tiny
# test model infinite ("probability tensor contains either inf, nan or element < 0", a traceback). At 1e-6 a logit
# would have to exceed 3e32 to overflow, and sampling is already greedy in all but name.
MIN_TEMPERATURE = 1e-6


@dataclass(frozen=True)
class GenerationParams:
    """How ``generate`` continues a prompt: greedily unless ``temperature`` or ``top_p`` is given.

    Checked here, once, so the Python API refuses what the CLI's option types refuse. A temperature of 0 means
    greedy, as at the CLI, whatever ``top_p`` says; it is kept as None (greedy) so that a run record says greedy,
    and ``generate`` only ever sees a temperature it can sample with.
    """

    max_new_tokens: int = 32
    seed: int = 0
    temperature: float | None = None  # None: greedy
    top_p: float | None = None
    device: str = "auto"
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UsageError(
                f"max_new_tokens (--max-new-tokens) must be at least 1, not {self.max_new_tokens}"
            )
        t, p = self.temperature, self.top_p
        if t is not None and not (math.isfinite(t) and t >= 0):
            raise UsageError(f"temperature must be a finite number, 0 (greedy) or more, not {t}")
        if t is not None and 0 < t < MIN_TEMPERATURE:
            raise UsageError(
                f"temperature {t:g} is below {MIN_TEMPERATURE:g}: the logits divided by it overflow (sampling from "
                "NaN); use 0 for greedy, which is what so low a temperature comes to"
            )
        if p is not None and not 0 < p <= 1:  # NaN fails both comparisons
            raise UsageError(f"top_p must be a number with 0 < top_p <= 1, not {p}")
        if t == 0:
            object.__setattr__(self, "temperature", None)  # frozen: set once, while it is being made
            object.__setattr__(self, "top_p", None)


@dataclass(frozen=True)
class RunResult:
    text: str
    snapshot: SnapshotId
    ref: str
    prompt: str
    params: dict[str, Any]
    device: str
    dtype: str
    versions: dict[str, str]
    hardware: dict[str, Any]
    load_seconds: float
    new_tokens: int
    tokens_per_second: float


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {
        "modelarc": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _hardware(device: torch.device) -> dict[str, Any]:
    import torch

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def generate(
    archive: Archive,
    ref: str,
    prompt: str,
    params: GenerationParams,
    *,
    archived_generation_config: bool = True,
) -> RunResult:
    """``prompt`` continued by the model of ``ref``, as ``params`` say. Its generation defaults (eos tokens, a
    repetition penalty...) are the snapshot's generation_config.json, as ``from_pretrained`` makes them; what
    ``params`` sets (greedy or sampled, temperature, top_p, max_new_tokens) is as asked, whatever the file says.
    ``archived_generation_config=False``: without the file, as version 1 run records were made."""
    import torch

    from modelarc.archive.runtime.loading import open_snapshot, resolve_device, resolve_dtype
    from modelarc.archive.runtime.models import model_from_snapshot, tokenizer_from_snapshot

    _check_prompt_text(prompt)
    device = resolve_device(params.device)
    dtype = resolve_dtype(params.dtype)
    started = time.perf_counter()
    # REF resolved once: the model, the tokenizer and the id a record signs are all of this one snapshot (resolved
    # per file, a tag moved meanwhile made a signed record name a snapshot other than the one that ran)
    snap = open_snapshot(archive, ref)
    # the model first: it says clearly when the snapshot is not one transformers can build, the tokenizer may not
    model = model_from_snapshot(
        snap, device=device, dtype=dtype, archived_generation_config=archived_generation_config
    )
    if not model.can_generate():  # an encoder (BertModel) or a classifier has no generate(): nothing to continue
        raise UsageError(
            f"{ref} is a {type(model).__name__}, not a text-generation model: `run` continues a prompt; "
            "load_model() gives the model itself"
        )
    tokenizer = tokenizer_from_snapshot(snap)
    load_seconds = time.perf_counter() - started
    inputs = tokenizer(prompt, return_tensors="pt")
    prompt_tokens = int(inputs["input_ids"].shape[1])
    if prompt_tokens == 0:
        raise UsageError(
            f"--prompt is no tokens to {ref}'s tokenizer (only what it drops): give text to continue"
        )
    _check_context(model.config, ref, prompt_tokens, params.max_new_tokens)
    inputs = _model_inputs(model, inputs).to(device)
    torch.manual_seed(params.seed)
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens}
    if params.temperature is not None or params.top_p is not None:
        kwargs.update(do_sample=True, temperature=params.temperature or 1.0, top_p=params.top_p or 1.0)
    else:
        kwargs["do_sample"] = False
    if tokenizer.pad_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    elif tokenizer.eos_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.eos_token_id
    t = time.perf_counter()
    try:
        with torch.no_grad():
            out = model.generate(**inputs, **kwargs)
    except ValueError as exc:  # transformers' refusal of what this model cannot generate with: one bounded line
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{ref}: transformers cannot generate with this model ({reason})") from None
    seconds = time.perf_counter() - t
    new = out[0, inputs["input_ids"].shape[1] :]
    return RunResult(
        text=tokenizer.decode(new, skip_special_tokens=True),
        snapshot=snap.snapshot,
        ref=ref,
        prompt=prompt,
        params=asdict(params),
        device=str(device),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        versions=_versions(),
        hardware=_hardware(device),
        load_seconds=load_seconds,
        new_tokens=int(new.numel()),
        tokens_per_second=float(new.numel()) / seconds if seconds > 0 else 0.0,
    )


def _model_inputs(model: Any, inputs: Any) -> Any:
    """The tokenizer's outputs the model takes, as a text-generation pipeline passes them: ``input_ids`` and
    ``attention_mask`` always, anything else (``token_type_ids``) only when the model names it. A BERT-style
    tokenizer returns ``token_type_ids`` to models (Falcon's, a Llama with a WordPiece vocabulary) whose ``generate``
    refuses them."""
    import inspect

    named = set(inspect.signature(model.forward).parameters) | set(
        inspect.signature(model.prepare_inputs_for_generation).parameters
    )
    for key in [k for k in inputs if k not in ("input_ids", "attention_mask") and k not in named]:
        del inputs[key]
    return inputs


def _check_prompt_text(prompt: str) -> None:
    """Refuse a prompt that is empty, or that is not text: a lone surrogate (how Python presents bytes that were
    not UTF-8, e.g. from a shell argument) cannot be tokenized, nor written into a run record."""
    if not prompt:
        raise UsageError("--prompt is empty: give text to continue")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"--prompt is not valid UTF-8 text (an undecodable byte at character {exc.start})"
        ) from None


# the config fields that state how many positions (prompt plus generated tokens) a model can attend over
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def _check_context(config: Any, ref: str, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse a run that would go past the model's context rather than truncate the prompt: a silently shortened
    prompt (or a shorter output) is not the run that was asked for, nor one a record could describe."""
    context = next(
        (
            value
            for name in _CONTEXT_FIELDS
            if isinstance(value := getattr(config, name, None), int)
            and not isinstance(value, bool)
            and value > 0
        ),
        None,
    )
    if context is None or prompt_tokens + max_new_tokens <= context:
        return
    if prompt_tokens >= context:
        raise UsageError(
            f"--prompt is {prompt_tokens} tokens; {ref} has a context of {context} tokens, so it must be at most "
            f"{context - 1} to leave room for one new token"
        )
    raise UsageError(
        f"--prompt is {prompt_tokens} tokens and --max-new-tokens {max_new_tokens} would go past {ref}'s context "
        f"of {context} tokens; give --max-new-tokens {context - prompt_tokens} or less, or a shorter prompt"
    )


def _record_doc(result: RunResult) -> dict[str, Any]:
    return {
        "version": RUN_VERSION,
        "snapshot": result.snapshot,
        "ref": result.ref,
        "prompt": result.prompt,
        "parameters": result.params,
        "output": result.text,
        "device": result.device,
        "dtype": result.dtype,
        "versions": result.versions,
        "hardware": result.hardware,
    }


def record_run(archive: Archive, result: RunResult) -> int:
    doc = _record_doc(result)
    payload = canonical_json(doc)
    key = archive._private_key()
    fingerprint = keyring.key_fingerprint(keyring.public_key_pem(key))
    signature = dsse.sign(RUN_PAYLOAD_TYPE, payload, key)
    envelope = json.dumps(dsse.Envelope(RUN_PAYLOAD_TYPE, payload, ((fingerprint, signature),)).to_json())
    put = archive.store.put(payload)
    archive.store.sync()
    with archive.catalog.session() as s:
        at = catalog_time()
        run_id = run_rows.add_run(
            s,
            digest=result.snapshot,
            ref=result.ref,
            actor=archive.settings.actor,
            record=doc,
            stored=ObjectRecord(put.id, put.raw_size, put.stored_size, put.codec),
            envelope=envelope,
            key_fingerprint=fingerprint,
            at=at,
        )
        write_record(
            archive.store.backend,
            s,
            "run",
            at=at,
            actor=archive.settings.actor,
            snapshot=result.snapshot,
            ref=result.ref,
            object=put.id,
            signature=envelope,
            key=fingerprint,
        )
        return run_id


# what `runs` shows of each record: a row whose stored document lacks one (damaged, or not written by `run
# --record`) is listed as damaged, never a traceback
_LISTED_FIELDS = ("ref", "snapshot", "prompt", "output")


def list_runs(archive: Archive, ref: str | None = None) -> list[dict[str, Any]]:
    """The recorded runs as the catalog lists them (newest first): each its id, time and actor, and its document's
    fields. Rows ``rerun`` would refuse are marked, never listed as ordinary runs:

    - a document of a newer version (as a newer modelarc sharing the catalog records) carries ``unreadable`` and
      its ``version``, and none of its fields (they may mean something else there), only the snapshot the
      catalog files it under;
    - one that is not a JSON object, has no version this modelarc knows, or lacks a listed field carries
      ``damaged`` saying so."""
    snapshot_id = archive.resolve(ref)[1].row_id if ref else None
    with archive.catalog.session() as s:
        rows = run_rows.list_runs(s, snapshot_id)
    return [_listed_run(row) for row in rows]


def _listed_run(row: run_rows.ListedRun) -> dict[str, Any]:
    listed: dict[str, Any] = {
        "id": row.id,
        "created_at": row.created_at.isoformat(timespec="seconds"),
        "actor": row.actor,
    }
    doc = row.record
    if not isinstance(doc, dict):
        return {**listed, "record": doc, "damaged": "the catalog's run document is not a JSON object"}
    version = doc.get("version")
    if type(version) is int and version > RUN_VERSION:  # not true: check_run_version's test
        return {
            **listed,
            "snapshot": row.snapshot,
            "version": version,
            "unreadable": f"run document version {version}, written by a newer modelarc (this one reads up to "
            f"version {RUN_VERSION}); use that modelarc to read it",
        }
    listed = {**listed, **doc, **listed}  # the catalog's id, time and actor, whatever the document holds
    if not (type(version) is int and version in READ_RUN_VERSIONS):
        listed["damaged"] = (
            f"the catalog's run document's version is {str(version)[:40]!r}, not a version of the run document"
        )
        return listed
    bad = [name for name in _LISTED_FIELDS if not isinstance(doc.get(name), str)]
    if bad:
        listed["damaged"] = f"the catalog's run document has no text {', '.join(bad)}"
    return listed


def read_signed_run(envelope: str, pems: Sequence[bytes], where: str) -> tuple[bytes, dict[str, Any], str]:
    """A run's DSSE envelope checked against ``pems``: its payload (the canonical record's bytes), that payload as
    a JSON object, and the fingerprint of the key that signed it; ``SignatureError`` naming ``where`` otherwise.
    The one check of a run's signature, for ``rerun`` and for a rebuild's replay of a ``run`` record alike."""
    try:
        env = dsse.read_envelope(parse_json(envelope, "run envelope"), "run envelope")
    except SignatureError as exc:
        raise SignatureError(f"{where}: {exc}") from None
    signer = None
    if env.payload_type == RUN_PAYLOAD_TYPE and len(env.signatures) == 1:
        signer = next(
            (
                pem
                for pem in pems
                if dsse.signature_valid(
                    keyring.load_public_key_pem(pem), env.signatures[0][1], env.payload_type, env.payload
                )
            ),
            None,
        )
    if signer is None:
        raise SignatureError(f"{where}: signature does not verify")
    try:
        doc = json.loads(env.payload)
    except (ValueError, RecursionError):
        raise SignatureError(f"{where}: the signed record is not JSON") from None
    if not isinstance(doc, dict):
        raise SignatureError(f"{where}: the signed record is not a JSON object")
    check_run_version(doc.get("version"), where)
    return env.payload, doc, keyring.key_fingerprint(signer)


def check_run_version(version: object, where: str) -> None:
    """Refuse a signed run document of a layout this modelarc does not know (docs/FORMAT.md "Run documents"): its
    fields may mean something else there (a parameter with another unit, an output that is not the continuation
    alone), and ``rerun`` would compare against, or a rebuild index, a run it misreads. A larger version is a
    newer modelarc's; anything else is no run document modelarc wrote."""
    if type(version) is int and version in READ_RUN_VERSIONS:  # not true, not 1.0
        return
    if type(version) is int and version > RUN_VERSION:
        raise UnsupportedFormatError(
            f"{where}: the signed run document is version {version}, written by a newer modelarc (this one reads "
            f"up to version {RUN_VERSION}); use that modelarc to read it"
        )
    raise IntegrityError(
        f"{where}: the signed run document's version is {str(version)[:40]!r}, not a version of the run "
        f"document (this modelarc reads versions {', '.join(map(str, READ_RUN_VERSIONS))})"
    )


def verified_record(archive: Archive, run_id: int) -> dict[str, Any]:
    """The run record as signed, after checking its signature against a trusted key, and that the catalog's row
    and the stored copy say what was signed: a row that differs (an altered catalog, or one rebuilt from a record
    that did not hold) is refused, lest `rerun` confirm a signed run while `runs` lists another."""
    with archive.catalog.session() as s:
        row = run_rows.recorded_run(s, run_id)
    if row.pem is None:
        raise SignatureError(f"run {run_id} is not signed by a trusted key")
    payload, doc, _signer = read_signed_run(row.envelope, [row.pem], f"run {run_id}")
    if row.record != doc:
        listed = row.record if isinstance(row.record, dict) else {}
        differ = sorted(k for k in set(listed) | set(doc) if listed.get(k) != doc.get(k)) or ["document"]
        raise SignatureError(
            f"run {run_id}: the catalog's record is not the signed one (its {', '.join(differ)} differ); the "
            "catalog was changed after the run was recorded"
        )
    if doc.get("snapshot") != row.snapshot:
        raise SignatureError(
            f"run {run_id}: the catalog files it under snapshot {row.snapshot}, but the signed record is a run "
            f"of {str(doc.get('snapshot'))[:80]}"
        )
    if row.object_id is not None and bytes(archive.store.get(ObjectId(row.object_id))) != payload:
        raise SignatureError(f"run {run_id}: the stored record {row.object_id} is not the signed one")
    return doc


def rerun(archive: Archive, run_id: int) -> tuple[dict[str, Any], RunResult, bool]:
    record = verified_record(archive, run_id)
    params = GenerationParams(**record["parameters"])
    ref = f"{parse_ref(record['ref']).model}@{record['snapshot']}"
    # a version 1 record was run without the snapshot's generation_config.json: run it so again, like for like
    result = generate(
        archive, ref, record["prompt"], params, archived_generation_config=record["version"] >= 2
    )
    return record, result, result.text == record["output"]

"""The load cache (archive/runtime/cache.py): a cached load computes exactly what a decoding load computes, a changed
cache file is never used, a fill checks every file's sha256, and the cap evicts the least recently used entry."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
import transformers

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.cache import LoadCache
from modelarc.archive.runtime.loading import load_state_dict
from modelarc.archive.runtime.models import load_model
from modelarc.config import load_settings
from modelarc.errors import IntegrityError, ModelarcError, UsageError, WithdrawnError
from modelarc.registry.refs import SnapshotId

IDS = torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]])


def _llama(seed: int = 1, tie: bool = False) -> transformers.PreTrainedModel:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=20,
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _gpt2() -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=20, n_positions=64)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _push(archive: Archive, tmp_path: Path, model: transformers.PreTrainedModel, name: str) -> str:
    model.save_pretrained(tmp_path / name)
    archive.push(tmp_path / name, f"acme/{name}:v1")
    return f"acme/{name}:v1"


def _logits(model: transformers.PreTrainedModel) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def _entry_file(archive: Archive, ref: str, path: str = "model.safetensors") -> Path:
    _r, snap = archive.resolve(ref)
    entry = LoadCache.of(archive.settings).entry(snap.digest)
    assert entry is not None, f"no cache entry for {ref}"
    return entry.file_path(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_sha256(archive: Archive, ref: str, path: str = "model.safetensors") -> str:
    _r, snap = archive.resolve(ref)
    return next(f.sha256 for f in archive.manifest(snap).files if f.path == path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("make", [_llama, _gpt2], ids=["llama", "gpt2"])
def test_cached_loads_give_the_logits_of_an_uncached_load(
    archive: Archive, tmp_path: Path, make, dtype
) -> None:
    ref = _push(archive, tmp_path, make(), "m")
    uncached = _logits(load_model(archive, ref, device="cpu", dtype=dtype))
    filling = load_model(archive, ref, device="cpu", dtype=dtype, cache=True)  # decodes into the cache
    mapped = load_model(archive, ref, device="cpu", dtype=dtype, cache=True)  # maps the cached copy
    assert torch.equal(_logits(filling), uncached)
    assert torch.equal(_logits(mapped), uncached)
    if mapped.config.tie_word_embeddings:
        assert mapped.get_output_embeddings().weight is mapped.get_input_embeddings().weight
    assert _sha256(_entry_file(archive, ref)) == _manifest_sha256(archive, ref)


def _object_path(archive: Archive, oid: str) -> Path:
    return archive.settings.store_path / "objects" / oid[:2] / oid


def test_a_cached_load_reads_no_weights_from_the_store(archive: Archive, tmp_path: Path) -> None:
    ref = _push(archive, tmp_path, _llama(), "llama")
    expected = _logits(load_model(archive, ref, device="cpu", cache=True))
    _r, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    weights = {c.id for f in manifest.files if f.kind == "safetensors" for p in f.parts for c in p.chunks}
    others = {c.id for f in manifest.files if f.kind != "safetensors" for p in f.parts for c in p.chunks}
    aside = tmp_path / "aside"
    aside.mkdir()
    for oid in weights - others:  # config.json stays: the model is built from it
        _object_path(archive, oid).rename(aside / oid)
    with pytest.raises(ModelarcError):  # without the cache the weights are needed
        load_model(archive, ref, device="cpu")
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)


def test_state_dict_from_the_cache_equals_the_decoded_one(archive: Archive, tmp_path: Path) -> None:
    ref = _push(archive, tmp_path, _llama(tie=True), "llama")
    decoded = load_state_dict(archive, ref, device="cpu")
    for _ in range(2):  # fill, then map
        cached = load_state_dict(archive, ref, device="cpu", cache=True)
        assert cached.keys() == decoded.keys()
        for k, v in decoded.items():
            assert cached[k].dtype == v.dtype and torch.equal(cached[k], v), k
    half = load_state_dict(archive, ref, device="cpu", dtype="bfloat16", cache=True)
    assert all(t.dtype == torch.bfloat16 for t in half.values() if t.is_floating_point())


def test_changing_a_loaded_model_does_not_change_the_cache(archive: Archive, tmp_path: Path) -> None:
    """The files are mapped copy-on-write: training a loaded model must not write into the cached copy."""
    ref = _push(archive, tmp_path, _llama(), "llama")
    expected = _logits(load_model(archive, ref, device="cpu"))
    load_model(archive, ref, device="cpu", cache=True)
    mapped = load_model(archive, ref, device="cpu", cache=True)
    with torch.no_grad():
        for p in mapped.parameters():
            p.add_(1.0)
    assert not torch.equal(_logits(mapped), expected)
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert _sha256(_entry_file(archive, ref)) == _manifest_sha256(archive, ref)


def test_a_loaded_model_outlives_clearing_the_cache(archive: Archive, tmp_path: Path) -> None:
    ref = _push(archive, tmp_path, _llama(), "llama")
    load_model(archive, ref, device="cpu", cache=True)
    mapped = load_model(archive, ref, device="cpu", cache=True)
    removed = LoadCache.of(archive.settings).clear().removed
    assert len(removed) == 1 and not list((archive.settings.cache_path / "entries").iterdir())
    assert torch.equal(_logits(mapped), _logits(load_model(archive, ref, device="cpu")))


# ---- a changed cache file is detected and never used ----------------------------------------------------------


def _norm_byte(archive: Archive, ref: str) -> int:
    """The offset of the high byte of model.norm.weight[0] in model.safetensors: a change there changes every logit."""
    _r, snap = archive.resolve(ref)
    part = next(p for _f, p in archive.manifest(snap).tensors() if p.name == "model.norm.weight")
    return part.offset + 3


def _flip(path: Path, offset: int) -> None:
    path.chmod(0o644)  # fills make their files read-only
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0x40]))


def _tamper_flip(path: Path, offset: int) -> None:
    _flip(path, offset)


def _tamper_flip_keeping_mtime(path: Path, offset: int) -> None:
    """A flipped byte with the file's size and mtime put back: only the ctime tells."""
    st = path.stat()
    _flip(path, offset)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _tamper_truncate(path: Path, _offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 8)


def _tamper_replace(path: Path, offset: int) -> None:
    """Another file put in its place (a copy with one byte changed, its mtime copied): a new inode."""
    copy = path.with_name("copy")
    shutil.copy2(path, copy)
    _flip(copy, offset)
    os.replace(copy, path)


@pytest.mark.parametrize(
    "tamper",
    [_tamper_flip, _tamper_flip_keeping_mtime, _tamper_truncate, _tamper_replace],
    ids=["flip", "flip-keeping-mtime", "truncate", "replace"],
)
def test_a_changed_cache_file_is_never_used_and_the_entry_is_rebuilt(
    archive: Archive, tmp_path: Path, tamper
) -> None:
    ref = _push(archive, tmp_path, _llama(), "llama")
    expected = _logits(load_model(archive, ref, device="cpu"))
    load_model(archive, ref, device="cpu", cache=True)
    cached = _entry_file(archive, ref)
    tamper(cached, _norm_byte(archive, ref))
    assert _sha256(cached) != _manifest_sha256(archive, ref)
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert _sha256(_entry_file(archive, ref)) == _manifest_sha256(archive, ref)  # rebuilt


@pytest.mark.parametrize("damage", ["garbled", "missing", "other-snapshot", "no-files", "other-sha256"])
def test_a_damaged_entry_file_discards_the_entry(archive: Archive, tmp_path: Path, damage: str) -> None:
    ref = _push(archive, tmp_path, _llama(), "llama")
    expected = _logits(load_model(archive, ref, device="cpu"))
    load_model(archive, ref, device="cpu", cache=True)
    entry_json = _entry_file(archive, ref).parents[1] / "entry.json"
    entry_json.chmod(0o644)
    if damage == "garbled":
        entry_json.write_bytes(entry_json.read_bytes()[:-20])
    elif damage == "missing":
        entry_json.unlink()
    else:  # a well-formed entry.json that does not describe this snapshot's files
        doc = json.loads(entry_json.read_text())
        if damage == "other-snapshot":
            doc["snapshot"] = "sha256:" + "0" * 64
        elif damage == "no-files":
            doc["files"] = []
        else:
            doc["files"][0]["sha256"] = "0" * 64
        entry_json.write_text(json.dumps(doc))
    if (
        damage != "other-sha256"
    ):  # a flip the stat check would also catch: the entry check alone must find that
        _flip(_entry_file_path_unchecked(archive, ref), _norm_byte(archive, ref))
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert _sha256(_entry_file(archive, ref)) == _manifest_sha256(archive, ref)
    _r, snap = archive.resolve(ref)
    (rebuilt,) = LoadCache.of(archive.settings).entry(snap.digest).files
    assert rebuilt.sha256 == _manifest_sha256(archive, ref)


def _entry_file_path_unchecked(archive: Archive, ref: str) -> Path:
    _r, snap = archive.resolve(ref)
    return archive.settings.cache_path / "entries" / snap.digest.hex / "files" / "model.safetensors"


# ---- filling ---------------------------------------------------------------------------------------------------


def _swap_objects(archive: Archive, ref: str, a: str, b: str) -> None:
    """Put tensor b's stored object where tensor a's is: it decodes fine, to the wrong bytes of the right length.
    A fill hashes each file whole, not each object, so only the file's sha256 can notice."""
    _r, snap = archive.resolve(ref)
    parts = {p.name: p for _f, p in archive.manifest(snap).tensors()}
    (ca,), (cb,) = parts[a].chunks, parts[b].chunks
    assert ca.length == cb.length and ca.id != cb.id
    shutil.copyfile(_object_path(archive, cb.id), _object_path(archive, ca.id))


def test_a_fill_refuses_a_file_whose_sha256_does_not_match(archive: Archive, tmp_path: Path) -> None:
    ref = _push(archive, tmp_path, _llama(), "llama")
    _swap_objects(
        archive, ref, "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"
    )
    with pytest.raises(IntegrityError):
        load_model(archive, ref, device="cpu", cache=True)
    cache = archive.settings.cache_path
    assert not list((cache / "entries").iterdir()) and not list((cache / "tmp").iterdir())


def test_two_fills_of_one_entry_leave_one_entry_and_no_temp_folder(archive: Archive, tmp_path: Path) -> None:
    """Two loaders filling at once: both write, the second rename fails, that one removes its temp folder."""
    ref = _push(archive, tmp_path, _llama(), "llama")
    _r, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    cache = LoadCache.of(archive.settings)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def fill() -> None:
        try:
            start.wait()
            assert cache.fill(archive.store, snap.digest, snap.model, manifest)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.fill(archive.store, snap.digest, snap.model, manifest)  # and once more, after the fact
    assert [e.snapshot for e in cache.entries()] == [snap.digest]
    assert not list((cache.folder / "tmp").iterdir())
    files = cache.open_files(snap.digest, manifest)
    assert files is not None
    for fh in files.values():
        fh.close()
    assert torch.equal(
        _logits(load_model(archive, ref, device="cpu", cache=True)),
        _logits(load_model(archive, ref, device="cpu")),
    )


# ---- the cap ---------------------------------------------------------------------------------------------------


def _capped(archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: str) -> Archive:
    monkeypatch.setenv("MODELARC_CACHE_MAX_BYTES", cap)
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(tmp_path / "shared-cache"))
    return Archive(load_settings(archive.settings.home))


def test_the_cap_evicts_the_least_recently_used_entry(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = [_push(archive, tmp_path, _llama(seed=s), f"m{s}") for s in range(3)]
    size = _entry_size(archive, refs[0])
    with _capped(archive, tmp_path, monkeypatch, str(2 * size + size // 2)) as capped:
        assert capped.settings.cache_path == tmp_path / "shared-cache"
        cache = LoadCache.of(capped.settings)

        def cached() -> set[str]:
            return {e.snapshot for e in cache.entries()}

        ids = [capped.resolve(r)[1].digest for r in refs]
        load_model(capped, refs[0], device="cpu", cache=True)
        load_model(capped, refs[1], device="cpu", cache=True)
        _age(cache, ids[0], ids[1])
        load_model(capped, refs[0], device="cpu", cache=True)  # a hit: m0 becomes the most recently used
        assert cached() == {ids[0], ids[1]}
        load_model(capped, refs[2], device="cpu", cache=True)  # needs room: m1, least recently used, goes
        assert cached() == {ids[0], ids[2]}
        assert cache.listing().bytes <= 2 * size + size // 2
        expected = _logits(load_model(archive, refs[1], device="cpu"))
        assert torch.equal(_logits(load_model(capped, refs[1], device="cpu", cache=True)), expected)


def _entry_size(archive: Archive, ref: str) -> int:
    _r, snap = archive.resolve(ref)
    return sum(f.size for f in archive.manifest(snap).files if f.kind == "safetensors")


def _age(cache: LoadCache, *snapshots: SnapshotId) -> None:
    """Make the given entries' last use older, oldest first (mtimes within one second may tie on some filesystems)."""
    for age, snapshot in enumerate(snapshots):
        used = cache.folder / "entries" / snapshot.hex / "last-used"
        past = used.stat().st_mtime - 100 + age
        os.utime(used, (past, past))


def test_a_snapshot_larger_than_the_cap_loads_without_the_cache(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _push(archive, tmp_path, _llama(), "llama")
    with _capped(archive, tmp_path, monkeypatch, "1KB") as capped:
        model = load_model(capped, ref, device="cpu", cache=True)
        assert torch.equal(_logits(model), _logits(load_model(archive, ref, device="cpu")))
        assert LoadCache.of(capped.settings).entries() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000", 1000),
        ("20GB", 20 * 10**9),
        ("20g", 20 * 10**9),
        ("18GiB", 18 * 2**30),
        ("512 MiB", 512 * 2**20),
    ],
)
def test_the_cap_reads_sizes_with_units(monkeypatch: pytest.MonkeyPatch, text: str, expected: int) -> None:
    monkeypatch.setenv("MODELARC_CACHE_MAX_BYTES", text)
    assert load_settings("/nonexistent").cache_max_bytes == expected


@pytest.mark.parametrize("text", ["-1", "20 apples", "1e9", "GB"])
def test_a_bad_cap_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("MODELARC_CACHE_MAX_BYTES", text)
    with pytest.raises(UsageError, match="MODELARC_CACHE_MAX_BYTES"):
        load_settings("/nonexistent")


def test_a_withdrawn_snapshot_is_refused_even_when_cached(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache the withdrawal does not reach (another home's, a server's MODELARC_CACHE_DIR) still holds the entry;
    a load checks the catalog before it looks there."""
    from modelarc.archive.provenance.withdrawal import withdraw

    ref = _push(archive, tmp_path, _llama(), "llama")
    elsewhere = tmp_path / "another-cache"
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(elsewhere))
    with Archive(load_settings(archive.settings.home)) as other:
        load_model(other, ref, device="cpu", cache=True)
        withdraw(archive, ref, "bad weights")  # this archive's settings know nothing of `elsewhere`
        _r, snap = other.resolve(ref)
        assert LoadCache.of(other.settings).entry(snap.digest) is not None
        with pytest.raises(WithdrawnError):
            load_model(other, ref, device="cpu", cache=True)
        with pytest.raises(WithdrawnError):
            load_state_dict(other, ref, device="cpu", cache=True)


def test_a_file_whose_tensors_are_not_aligned_loads_the_same_from_the_cache(
    archive: Archive, tmp_path: Path
) -> None:
    """safetensors writers need not align tensors to their element size (this one puts an F32 at offset 6); the
    mapped path then copies such a tensor to an aligned buffer instead of viewing it."""
    half = torch.tensor([1.5, -2.0, 3.25], dtype=torch.float16)
    single = torch.tensor([0.1, -7.0], dtype=torch.float32)
    header = {
        "a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [6, 14]},
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    folder = tmp_path / "odd"
    folder.mkdir()
    data = half.numpy().tobytes() + single.numpy().tobytes()
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data)
    archive.push(folder, "acme/odd:v1")
    for _ in range(2):  # fill, then map
        loaded = load_state_dict(archive, "acme/odd:v1", device="cpu", cache=True)
        assert torch.equal(loaded["a"], half) and torch.equal(loaded["b"], single)
    _r, snap = archive.resolve("acme/odd:v1")
    assert {p.name: p.offset % 4 for _f, p in archive.manifest(snap).tensors()}["b"] != 0


FILL_IN_A_PROCESS = """
import os, sys, time
from pathlib import Path
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import load_state_dict
home, ref, go = sys.argv[1:4]
with Archive.open(home) as archive:
    while not Path(go).exists():
        time.sleep(0.01)
    state = load_state_dict(archive, ref, device="cpu", cache=True)
    print(len(state))
"""


def test_two_processes_loading_at_once_leave_one_good_entry(archive: Archive, tmp_path: Path) -> None:
    import subprocess
    import sys

    ref = _push(archive, tmp_path, _llama(), "llama")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FILL_IN_A_PROCESS, str(archive.settings.home), ref, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    go.touch()  # both start filling at about the same moment
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    cache = LoadCache.of(archive.settings)
    _r, snap = archive.resolve(ref)
    assert [e.snapshot for e in cache.entries()] == [snap.digest]
    assert not list((cache.folder / "tmp").iterdir())
    assert _sha256(_entry_file(archive, ref)) == _manifest_sha256(archive, ref)
    decoded = load_state_dict(archive, ref, device="cpu")
    cached = load_state_dict(archive, ref, device="cpu", cache=True)
    assert all(torch.equal(cached[k], v) for k, v in decoded.items())


def test_a_capped_load_is_not_stopped_by_an_unreadable_entry(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eviction reads every entry: one whose entry.json has a date string for "created" (a co-user of a shared
    cache folder, a damaged disk) ended every capped load with a ValueError."""
    refs = [_push(archive, tmp_path, _llama(seed=s), f"m{s}") for s in range(2)]
    with _capped(archive, tmp_path, monkeypatch, "10GB") as capped:
        load_model(capped, refs[0], device="cpu", cache=True)
        entry_json = _entry_file(capped, refs[0]).parents[1] / "entry.json"
        entry_json.chmod(0o644)
        entry_json.write_text(json.dumps({**json.loads(entry_json.read_text()), "created": "2026-12-01"}))
        expected = _logits(load_model(archive, refs[1], device="cpu"))
        assert torch.equal(_logits(load_model(capped, refs[1], device="cpu", cache=True)), expected)
        _r, snap = capped.resolve(refs[1])
        assert [e.snapshot for e in LoadCache.of(capped.settings).entries()] == [snap.digest]

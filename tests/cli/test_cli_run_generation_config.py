"""`run` and `load_model` take a snapshot's generation defaults from its generation_config.json, as from_pretrained
does, and a run record says so by its version (2): `rerun` of a version 1 record, made without the file, runs
without it again, so an old record is compared like for like (archive/runtime/models.py, runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from test_cli_run import _save_gpt2  # the tiny GPT-2 (context 64) and word-level tokenizer of the run tests
from test_rebuild_runs_trust import _archive, _signed_by_the_home

from modelarc.archive.runtime.models import load_model
from modelarc.archive.runtime.runs import GenerationParams, generate
from modelarc.registry.models import RunRecord

PROMPT = "what year is it ?"
# no token may come twice: greedy decoding of a tiny random model repeats itself, so this changes its output
GENERATION = {"no_repeat_ngram_size": 1, "eos_token_id": [14, 15], "pad_token_id": 1}


def _generated_by_transformers(folder: Path, new_tokens: int) -> str:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=1)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.fixture
def with_generation_config(arc, tmp_path: Path) -> tuple[object, Path]:
    folder = tmp_path / "m"
    _save_gpt2(folder)
    plain = _generated_by_transformers(folder, 8)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION))
    assert _generated_by_transformers(folder, 8) != plain  # the file matters to what from_pretrained generates
    arc("push", folder, "acme/gen:v1")
    return arc, folder


def test_run_generates_as_from_pretrained_does_with_the_archived_generation_config(
    with_generation_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc, folder = with_generation_config
    ran = arc.json("run", "acme/gen:v1", "--prompt", PROMPT, "--max-new-tokens", "8", "--record")
    assert ran["text"] == _generated_by_transformers(folder, 8)
    assert arc.json("rerun", str(ran["run_id"]))["identical"] is True  # a version 2 record, rerun as made
    with _archive(arc, monkeypatch) as archive:
        loaded = load_model(archive, "acme/gen:v1", device="cpu")
    assert loaded.generation_config.eos_token_id == [14, 15] and loaded.generation_config.no_repeat_ngram_size == 1


def test_rerun_of_a_version_1_record_runs_without_the_generation_config_as_it_was_made(
    with_generation_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record modelarc made before it read generation_config.json: its output is config.json's defaults'. Rerun
    with the file it would differ, and say DIFFERENT of a run that reproduces exactly."""
    arc, folder = with_generation_config
    ran = arc.json("run", "acme/gen:v1", "--prompt", PROMPT, "--max-new-tokens", "8", "--record")
    with _archive(arc, monkeypatch) as archive, archive.catalog.session() as s:
        row = s.get(RunRecord, ran["run_id"])
        assert row is not None and row.record["version"] == 2
        doc = dict(row.record)
    with _archive(arc, monkeypatch) as archive:
        old = generate(archive, "acme/gen:v1", PROMPT, GenerationParams(**doc["parameters"]),
                       archived_generation_config=False).text  # fmt: skip
    assert old != ran["text"]
    doc.update(version=1, output=old)  # as modelarc wrote it then
    payload, envelope, _key = _signed_by_the_home(arc, monkeypatch, doc)
    with _archive(arc, monkeypatch) as archive, archive.catalog.session() as s:
        put = archive.store.put(payload)
        archive.store.sync()
        row = s.get(RunRecord, ran["run_id"])
        assert row is not None
        row.record, row.signature, row.object_id = doc, envelope, str(put.id)
    again = arc.json("rerun", str(ran["run_id"]))
    assert again["identical"] is True and again["output"] == old


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"[1, 2]", "generation_config.json is not a JSON object"),
        (b"{not json", "generation_config.json is not valid JSON"),
        (json.dumps({"num_return_sequences": 2}).encode(), "transformers cannot read its generation_config.json"),
        # valid for sampling, as the file says; `run` is greedy unless asked, and generate() refuses the mixture
        (json.dumps({"do_sample": True, "num_return_sequences": 2}).encode(), "cannot generate with this model"),
        # read whole into memory, so refused by its size in the manifest before a byte is read
        (b"{}" + b" " * (16 << 20), "generation_config.json is 16,777,218 bytes; it is read whole"),
    ],
    ids=["not-an-object", "not-json", "refused-by-transformers", "refused-by-generate", "too-large"],
)
def test_a_generation_config_that_cannot_be_used_is_one_error_line(
    arc, tmp_path: Path, content: bytes, said: str
) -> None:
    folder = tmp_path / "m"
    _save_gpt2(folder)
    (folder / "generation_config.json").write_bytes(content)
    arc("push", folder, "acme/gen:v1")
    err = arc.fail("run", "acme/gen:v1", "--prompt", PROMPT, "--max-new-tokens", "2").stderr
    assert said in err and len(err) < 600, err

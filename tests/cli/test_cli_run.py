"""modelarc run / runs / rerun / lock, and the root package API, on tiny models built here (no downloads)."""

import json
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

import modelarc
from modelarc.archive.repository import Archive

WORDS = ["<unk>", "<pad>", "the", "model", "was", "trained", "in", "2021", "2023", "on", "news", "what", "year", "is", "it", "?"]


def _save_gpt2(folder: Path, seed: int = 0) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(WORDS), n_positions=64)).eval()
    model.save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>").save_pretrained(folder)
    return model


def test_run_output_equals_generate_on_the_original(arc, tmp_path: Path) -> None:
    original = _save_gpt2(tmp_path / "m")
    arc("push", tmp_path / "m", "acme/gpt2:v1")
    out = arc.json("run", "acme/gpt2:v1", "--prompt", "what year is it ?", "--max-new-tokens", "6", "--device", "cpu")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "m")
    ids = tok("what year is it ?", return_tensors="pt").input_ids
    expected = original.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=1)[0, ids.shape[1]:]
    assert out["text"] == tok.decode(expected, skip_special_tokens=True)
    assert out["device"] == "cpu" and out["dtype"] == "float32" and out["new_tokens"] == 6
    assert out["snapshot"].startswith("sha256:") and out["versions"]["torch"] == torch.__version__
    assert out["tokens_per_second"] > 0 and out["load_seconds"] > 0
    assert arc("run", "acme/gpt2:v1", "--prompt", "what year is it ?", "--max-new-tokens", "6").stdout.strip() == out["text"].strip()


def test_recorded_run_reruns_identically_and_tampering_is_refused(arc, tmp_path: Path, monkeypatch) -> None:
    _save_gpt2(tmp_path / "m")
    arc("push", tmp_path / "m", "acme/gpt2:v1")
    out = arc.json("run", "acme/gpt2:v1", "--prompt", "the model was", "--max-new-tokens", "4", "--record")
    run_id = out["run_id"]
    [listed] = arc.json("runs", "acme/gpt2:v1")
    assert listed["id"] == run_id and listed["output"] == out["text"] and listed["prompt"] == "the model was"
    again = arc.json("rerun", str(run_id))
    assert again["identical"] is True and again["output"] == out["text"]
    assert "IDENTICAL" in arc("rerun", str(run_id)).stdout
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    archive = Archive.open(arc.home)
    from modelarc.registry.models import RunRecord

    with archive, archive.catalog.session() as s:  # forge the output inside the signed envelope
        row = s.get(RunRecord, run_id)
        env = json.loads(row.signature)
        import base64

        payload = json.loads(base64.b64decode(env["payload"]))
        payload["output"] = "forged"
        env["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        row.signature = json.dumps(env)
    assert "signature does not verify" in arc.fail("rerun", str(run_id)).stderr
    assert "no run record" in arc.fail("rerun", "999").stderr


def test_lockfile_pins_refs_for_the_python_api(arc, tmp_path: Path, monkeypatch) -> None:
    first = _save_gpt2(tmp_path / "a", seed=1)
    arc("push", tmp_path / "a", "acme/gpt2:latest")
    lock = tmp_path / "modelarc.lock"
    lock.write_text(arc("lock", "acme/gpt2:latest").stdout)
    _save_gpt2(tmp_path / "b", seed=2)
    arc("push", tmp_path / "b", "acme/gpt2:latest")  # the tag moves on; the lock does not
    monkeypatch.setenv("MODELARC_HOME", str(arc.home))
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    pinned = modelarc.load_model("acme/gpt2:latest", device="cpu", lock=lock)
    ids = torch.tensor([[2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(pinned(ids).logits, first(ids).logits)
        assert not torch.equal(modelarc.load_model("acme/gpt2:latest", device="cpu")(ids).logits, first(ids).logits)
    assert modelarc.open("acme/gpt2:latest", lock=lock).id == json.loads(lock.read_text())["refs"]["acme/gpt2:latest"]["snapshot"]
    from modelarc.errors import NotFoundError

    with pytest.raises(NotFoundError, match="not pinned"):
        modelarc.open("acme/other:v1", lock=lock)


def test_run_errors_are_clean(arc, tmp_path: Path, monkeypatch) -> None:
    _save_gpt2(tmp_path / "m")
    arc("push", tmp_path / "m", "acme/gpt2:v1")
    assert "unknown device 'tpu:0'" in arc.fail("run", "acme/gpt2:v1", "--prompt", "x", "--device", "tpu:0").stderr
    # meta holds no data: a "load" there succeeded and then failed far away, naming the architecture
    meta = arc.fail("run", "acme/gpt2:v1", "--prompt", "x", "--device", "meta").stderr
    assert "device 'meta' cannot be loaded onto" in meta and "Traceback" not in meta
    with monkeypatch.context() as m:  # a machine without CUDA, also when this one has a GPU
        m.setattr(torch.cuda, "is_available", lambda: False)
        err = arc.fail("run", "acme/gpt2:v1", "--prompt", "x", "--device", "cuda:0").stderr
        assert "device 'cuda:0' asked for, but CUDA is not available here" in err
        ran = arc.json("run", "acme/gpt2:v1", "--prompt", "the model", "--device", "auto", "--max-new-tokens", "1")
        assert ran["device"] == "cpu"  # auto falls back to the CPU
    assert "no tag" in arc.fail("run", "acme/gpt2:v9", "--prompt", "x").stderr
    from modelfactory import write_model

    arc("push", write_model(tmp_path / "raw"), "acme/raw:v1")  # a config transformers cannot build
    assert "error" in arc.fail("run", "acme/raw:v1", "--prompt", "x").stderr


def test_recorded_runs_come_back_with_a_rebuilt_catalog(arc, tmp_path: Path) -> None:
    from catalogkit import drop_catalog

    _save_gpt2(tmp_path / "m")
    arc("push", tmp_path / "m", "acme/gpt2:v1")
    run_id = arc.json("run", "acme/gpt2:v1", "--prompt", "the model was", "--max-new-tokens", "3", "--record")["run_id"]
    runs = arc.json("runs")
    drop_catalog(arc.env["MODELARC_DATABASE_URL"])
    assert arc.json("rebuild-catalog")["replayed"] == {"key": 1, "run": 1, "snapshot": 1}
    assert arc.json("runs") == runs
    assert arc.json("rerun", str(run_id))["identical"] is True  # its signature still verifies

"""`run` and `load_model` build only transformers model classes, and `run` only generative ones: anything else is
one `error:` line (archive/runtime/models.py, archive/runtime/runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers
from modelfactory import tiny_gpt2, tiny_llama


def test_run_on_an_encoder_says_it_is_not_a_text_generation_model(arc, tmp_path: Path) -> None:
    folder = tiny_gpt2(tmp_path / "bert")  # the tokenizer; the weights are a BertModel's
    for stale in folder.glob("model*.safetensors"):
        stale.unlink()
    bert = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=5
    )
    transformers.BertModel(bert).save_pretrained(folder)
    arc("push", folder, "acme/bert:v1")
    err = arc.fail("run", "acme/bert:v1", "--prompt", "the model").stderr
    assert "acme/bert:v1 is a BertModel, not a text-generation model" in err, err


@pytest.mark.parametrize("architecture", ["pipeline", "Trainer", "GPT2LMHeadModel", "LlamaConfig"])
def test_an_architecture_that_is_not_a_model_class_of_the_config_is_refused(
    arc, tmp_path: Path, architecture: str
) -> None:
    folder = tiny_llama(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = [architecture]
    (folder / "config.json").write_text(json.dumps(config))
    arc("push", folder, "acme/odd:v1")
    err = arc.fail("run", "acme/odd:v1", "--prompt", "x").stderr
    assert "Traceback" not in err and "acme/odd:v1: architecture" in err, err


def test_run_without_dtype_runs_in_float32_as_its_help_says(arc, tmp_path: Path) -> None:
    import torch

    folder = tiny_gpt2(tmp_path / "m")
    transformers.GPT2LMHeadModel.from_pretrained(folder).to(torch.bfloat16).save_pretrained(folder)
    arc("push", folder, "acme/bf16:v1")
    assert "Default: float32, whatever dtype the weights were archived in" in " ".join(arc("run", "--help").stdout.split())
    ran = arc.json("run", "acme/bf16:v1", "--prompt", "the model", "--max-new-tokens", "1")
    assert ran["dtype"] == "float32"
    assert arc.json("run", "acme/bf16:v1", "--prompt", "the model", "--max-new-tokens", "1", "--dtype", "bfloat16")[
        "dtype"
    ] == "bfloat16"


def test_run_of_a_model_whose_tokenizer_gives_token_type_ids_generates_as_from_pretrained_does(
    arc, tmp_path: Path
) -> None:
    """A BERT WordPiece tokenizer returns token_type_ids, which a Llama's generate() refuses (Falcon's tokenizer does
    the same): run passes the model what it takes, as a text-generation pipeline does."""
    import torch

    folder = tiny_llama(tmp_path / "m")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "model", "was"]) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(vocab))
    tok.save_pretrained(folder)
    assert "token_type_ids" in tok("the model")
    arc("push", folder, "acme/tt:v1")
    ran = arc.json("run", "acme/tt:v1", "--prompt", "the model was", "--max-new-tokens", "3")
    original = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tok("the model was", return_tensors="pt")
    with torch.no_grad():
        out = original.generate(
            input_ids=ids.input_ids, attention_mask=ids.attention_mask, max_new_tokens=3, do_sample=False,
            pad_token_id=tok.pad_token_id,
        )  # fmt: skip
    assert ran["text"] == tok.decode(out[0, ids.input_ids.shape[1] :], skip_special_tokens=True)
    assert ran["new_tokens"] == 3


def test_a_config_asking_for_buffers_far_larger_than_the_weights_is_refused_before_allocating(
    arc, tmp_path: Path
) -> None:
    """GPT-Neo computes a max_position_embeddings-squared causal mask at load: a 4 MB snapshot whose config.json says
    1,000,000 positions asked for 1 TB (a traceback; 100,000 had the machine's memory taken)."""
    import torch
    from safetensors.torch import save_file

    config = transformers.GPTNeoConfig(
        hidden_size=1, num_heads=1, num_layers=1, intermediate_size=2, vocab_size=8, max_position_embeddings=16,
        attention_types=[[["global"], 1]],
    )  # fmt: skip
    folder = tmp_path / "neo"
    transformers.GPTNeoForCausalLM(config).save_pretrained(folder)
    tensors = {k: v for k, v in transformers.GPTNeoForCausalLM(config).state_dict().items() if k != "lm_head.weight"}
    tensors["transformer.wpe.weight"] = torch.zeros(1_000_000, 1)  # what the positions' count needs
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    doc = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**doc, "max_position_embeddings": 1_000_000}))
    arc("push", folder, "acme/neo:v1")
    err = arc.fail("run", "acme/neo:v1", "--prompt", "x", "--max-new-tokens", "1").stderr
    assert "buffers beside 4,000" in err and "not loaded" in err, err


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"hidden_size": "sixty-four"}, "Field 'hidden_size' expected int, got str"),  # huggingface_hub's check
        ({"model_type": "nonexistent_arch"}, "model_type 'nonexistent_arch' is not one transformers"),
        ({"model_type": "x" * 400_000}, "is not one transformers"),
        ({"architectures": ["y" * 400_000]}, "is not a transformers model class"),
        ({"architectures": 5}, "architectures is 5, not a list of class names"),  # a traceback before
        ({"architectures": {"a": 1}}, "not a list of class names"),
        ({"architectures": "LlamaForCausalLM"}, "architectures is 'LlamaForCausalLM', not a list"),
    ],
    ids=[
        "mistyped-field", "unknown-model-type", "huge-model-type", "huge-architecture", "architectures-a-number",
        "architectures-an-object", "architectures-a-string",
    ],  # fmt: skip
)
def test_a_config_json_transformers_refuses_is_one_short_error_line(
    arc, tmp_path: Path, change: dict, said: str
) -> None:
    """transformers' own messages echo config.json's text whole, with its list of ~900 model types: a 400 KB
    "one line" (and a mistyped field escaped as a traceback)."""
    folder = tiny_llama(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    arc("push", folder, "acme/bad:v1")
    err = arc.fail("run", "acme/bad:v1", "--prompt", "x").stderr
    assert said in err and len(err) < 500 and len(err.splitlines()) == 1, err[:1000]

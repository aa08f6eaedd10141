"""``GenerationParams`` through the Python API: temperature 0 is greedy, as at the CLI, and what no generation can
use (a negative, NaN or infinite temperature, a top_p outside (0, 1], no new tokens) is refused when it is made.

The run itself does not depend on the catalog's backend: SQLite only.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.runs import GenerationParams, generate
from modelarc.errors import UsageError

WORDS = [
    "<unk>",
    "<pad>",
    "the",
    "model",
    "was",
    "trained",
    "in",
    "2021",
    "2023",
    "on",
    "news",
    "what",
    "year",
]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def gpt2(archive: Archive, tmp_path: Path) -> str:
    """A tiny random GPT-2 and its word-level tokenizer (as tests/cli/test_cli_run.py builds one), archived."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(WORDS), n_positions=64)
    )
    model.save_pretrained(tmp_path / "m")
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>"
    ).save_pretrained(tmp_path / "m")
    archive.push(tmp_path / "m", "acme/gpt2:v1")
    return "acme/gpt2:v1"


def test_temperature_zero_is_greedy_whatever_the_seed(archive: Archive, gpt2: str) -> None:
    def text(**params: object) -> str:
        return generate(
            archive, gpt2, "what year", GenerationParams(max_new_tokens=12, device="cpu", **params)
        ).text

    greedy = text()
    assert text(temperature=0, seed=1) == greedy
    assert text(temperature=0.0, seed=2) == greedy
    assert text(temperature=0, top_p=0.5, seed=3) == greedy  # 0 is greedy at the CLI whatever --top-p says
    assert text(temperature=1.0, seed=1) != greedy  # so the checks above would notice sampling


def test_temperature_zero_is_recorded_as_greedy() -> None:
    params = GenerationParams(temperature=0, top_p=0.9)
    assert (params.temperature, params.top_p) == (None, None)
    assert GenerationParams(temperature=0.7, top_p=0.9).temperature == 0.7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": -0.5}, "temperature must be a finite number"),
        ({"temperature": math.nan}, "temperature must be a finite number"),
        ({"temperature": math.inf}, "temperature must be a finite number"),
        ({"temperature": 1e-40}, "temperature 1e-40 is below 1e-06"),
        ({"temperature": 5e-324}, "temperature 4.94066e-324 is below 1e-06"),
        ({"temperature": 9.9e-7}, "is below 1e-06"),
        ({"top_p": 0}, "top_p must be a number with 0 < top_p <= 1"),
        ({"top_p": 1.5}, "top_p must be a number with 0 < top_p <= 1"),
        ({"top_p": -0.1}, "top_p must be a number with 0 < top_p <= 1"),
        ({"top_p": math.nan}, "top_p must be a number with 0 < top_p <= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens (--max-new-tokens) must be at least 1"),
        ({"max_new_tokens": -3}, "max_new_tokens (--max-new-tokens) must be at least 1"),
    ],
)
def test_parameters_no_generation_can_use_are_refused_when_made(
    params: dict[str, float], message: str
) -> None:
    with pytest.raises(UsageError) as refused:
        GenerationParams(**params)  # type: ignore[arg-type]
    assert message in str(refused.value)


def test_the_bounds_themselves_are_accepted() -> None:
    GenerationParams(max_new_tokens=1, temperature=1e-3, top_p=1.0)
    assert GenerationParams(temperature=1e-6).temperature == 1e-6

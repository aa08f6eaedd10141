"""`modelarc run` refuses inputs it cannot run as asked, in one line and before generating: an empty or undecodable
prompt, sampling options outside their meaning, and a prompt plus new tokens past the model's context (refused,
never truncated: a shortened prompt is not the run that was asked for, nor one a record could describe)."""

from pathlib import Path

import pytest
from test_cli_run import _save_gpt2  # the tiny GPT-2 (context 64) and word-level tokenizer of the run tests

REF = "acme/gpt2:v1"


@pytest.fixture
def gpt2(arc, tmp_path: Path):
    _save_gpt2(tmp_path / "m")
    arc("push", tmp_path / "m", REF)
    return arc


def _words(n: int) -> str:
    return " ".join(["the"] * n)  # one token each


def _refused(arc, *args: str) -> str:
    result = arc.fail("run", REF, *args, "--record")
    assert arc.json("runs") == []  # nothing recorded
    return result.stderr


def test_empty_prompt_is_refused(gpt2) -> None:
    assert "--prompt is empty" in _refused(gpt2, "--prompt", "")


def test_prompt_of_no_tokens_is_refused(gpt2) -> None:
    assert "--prompt is no tokens" in _refused(gpt2, "--prompt", "   ")


@pytest.mark.parametrize("prompt", ["\udcff", "the \udcff model"])  # how Python presents a byte not UTF-8
def test_prompt_that_is_not_utf8_is_refused(gpt2, prompt: str) -> None:
    assert "--prompt is not valid UTF-8" in _refused(gpt2, "--prompt", prompt)


@pytest.mark.parametrize(
    "option, value",
    [
        ("--temperature", "-1"),
        ("--temperature", "nan"),
        ("--temperature", "inf"),
        ("--top-p", "-1"),
        ("--top-p", "0"),
        ("--top-p", "5"),
        ("--top-p", "1.0001"),
        ("--top-p", "nan"),
    ],
)
def test_sampling_option_outside_its_meaning_is_refused(gpt2, option: str, value: str) -> None:
    stderr = _refused(gpt2, "--prompt", "the model", option, value)
    assert f"invalid value for '{option}'" in stderr


@pytest.mark.parametrize("value", ["1e-40", "5e-324", "1e-7"])
def test_a_temperature_too_small_to_divide_by_is_refused_in_one_line(gpt2, value: str) -> None:
    """1e-40 made every logit infinite: torch's "probability tensor contains either inf, nan" as a traceback."""
    result = gpt2.fail("run", REF, "--prompt", "the model", "--temperature", value, "--record")
    assert result.exit_code == 2 and "is below 1e-06" in result.stderr and "use 0 for greedy" in result.stderr
    assert gpt2.json("runs") == []


def test_temperature_zero_is_greedy_and_recorded_as_greedy(gpt2) -> None:
    greedy = gpt2.json("run", REF, "--prompt", "the model", "--max-new-tokens", "8")
    zero = gpt2.json(
        "run", REF, "--prompt", "the model", "--max-new-tokens", "8", "--temperature", "0", "--record"
    )
    assert zero["text"] == greedy["text"]
    assert zero["params"]["temperature"] is None and zero["params"]["top_p"] is None
    assert gpt2.json("rerun", str(zero["run_id"]))["identical"] is True


def test_sampling_bounds_themselves_are_accepted(gpt2) -> None:
    for args in (
        ("--top-p", "1"),
        ("--temperature", "1e-3", "--top-p", "0.01"),
        ("--temperature", "1e-6"),  # the least sampled with (archive/runtime/runs.py MIN_TEMPERATURE)
        ("--seed", str(2**64 - 1), "--temperature", "0.7"),
    ):
        out = gpt2.json("run", REF, "--prompt", "the model", "--max-new-tokens", "4", *args)
        assert out["new_tokens"] == 4


def test_prompt_longer_than_the_context_is_refused(gpt2) -> None:
    stderr = _refused(gpt2, "--prompt", _words(70))
    assert "--prompt is 70 tokens" in stderr and "context of 64 tokens" in stderr and "at most 63" in stderr
    assert "context of 64" in _refused(gpt2, "--prompt", _words(64), "--max-new-tokens", "1")


def test_prompt_plus_new_tokens_past_the_context_is_refused_with_what_fits(gpt2) -> None:
    stderr = _refused(gpt2, "--prompt", _words(40))  # and the default 32 new tokens
    assert (
        "--prompt is 40 tokens and --max-new-tokens 32" in stderr and "--max-new-tokens 24 or less" in stderr
    )
    out = gpt2.json("run", REF, "--prompt", _words(40), "--max-new-tokens", "24")
    assert out["new_tokens"] == 24  # exactly the context: runs, untruncated
    assert gpt2.json("run", REF, "--prompt", _words(63), "--max-new-tokens", "1")["new_tokens"] == 1

"""The research scripts run on CPU against a real archive of tiny causal LMs and write their tables and plots."""

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import transformers
from click.testing import CliRunner
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers

from modelarc.archive.repository import Archive
from modelarc.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent


class Study(NamedTuple):
    path: Path  # the archive home
    database_url: str  # its catalog; the scripts get it through their environment


WORDS = ["<unk>", "<pad>", "what", "year", "is", "it", "?", "the", "news", "today", "in", "2023", ",", "football", "won"]


@pytest.fixture(scope="module")
def home(tmp_path_factory, module_database_url: str) -> Study:
    base = tmp_path_factory.mktemp("study")
    env = {"MODELARC_DATABASE_URL": module_database_url}
    with pytest.MonkeyPatch.context() as mp:  # the archive keeps its settings; the env is restored at once
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    with archive:
        for i, cutoff in enumerate(["2023-05", "2021", None]):
            torch.manual_seed(i)
            folder = base / f"m{i}"
            transformers.GPT2LMHeadModel(transformers.GPT2Config(
                n_layer=1, n_embd=16, n_head=2, vocab_size=len(WORDS), n_positions=32)).save_pretrained(folder)
            tok = Tokenizer(models.WordLevel({w: j for j, w in enumerate(WORDS)}, unk_token="<unk>"))
            tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
            transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>").save_pretrained(folder)
            extra = ["--cutoff", cutoff] if cutoff else []
            result = CliRunner().invoke(
                cli, ["--home", str(base / "home"), "push", str(folder), f"lab/lm{i}:v1", *extra], env=env
            )
            assert result.exit_code == 0, result.output
        # a causal LM by its config whose files do not fill the model: every script names it and goes on
        folder = base / "broken"
        transformers.LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 vocab_size=len(WORDS), architectures=["LlamaForCausalLM"]).save_pretrained(folder)
        save_file({"w": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
        result = CliRunner().invoke(
            cli, ["--home", str(base / "home"), "push", str(folder), "lab/broken:v1", "--cutoff", "2022"], env=env
        )
        assert result.exit_code == 0, result.output
    return Study(base / "home", module_database_url)


def _run(script: str, home: Study, out: Path, *args: str) -> str:
    env = {**os.environ, "MODELARC_DATABASE_URL": home.database_url}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--home", str(home.path), "--device", "cpu",
                           "--out", str(out), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [skipped] = [line for line in proc.stderr.splitlines() if line.startswith("skipped ")]
    assert skipped.startswith("skipped lab/broken:v1: ") and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_cutoff_probe_orders_by_cutoff_and_plots(home: Study, tmp_path: Path) -> None:
    _run("cutoff_probe.py", home, tmp_path, "--max-new-tokens", "3")
    rows = list(csv.DictReader(open(tmp_path / "cutoff_probe.csv")))
    assert [r["cutoff"] for r in rows[::4]] == ["2021", "2023-05", "unknown"]
    assert len(rows) == 12 and all(r["mean_logprob"] for r in rows)
    assert (tmp_path / "cutoff_probe.png").stat().st_size > 1000
    assert (tmp_path / "cutoff_probe.md").read_text().startswith("| cutoff | model |")


def test_perplexity_over_time(home: Study, tmp_path: Path) -> None:
    text = tmp_path / "news.txt"
    text.write_text("the news today is football , what year is it ? in 2023 football won")
    _run("perplexity_over_time.py", home, tmp_path, "--text-file", str(text))
    rows = list(csv.DictReader(open(tmp_path / "perplexity_over_time.csv")))
    assert [r["cutoff"] for r in rows] == ["2021", "2023-05", "unknown"]
    assert all(1.0 < float(r["perplexity"]) < 10 * len(WORDS) for r in rows)  # random tiny models: near vocab size
    assert (tmp_path / "perplexity_over_time.png").stat().st_size > 1000


def test_compare_generations_side_by_side(home: Study, tmp_path: Path) -> None:
    _run("compare_generations.py", home, tmp_path, "--prompt", "what year is it ?", "--prompt", "the news", "--max-new-tokens", "3")
    rows = list(csv.DictReader(open(tmp_path / "compare_generations.csv")))
    assert [r["prompt"] for r in rows] == ["what year is it ?", "the news"]
    assert len(rows[0]) == 4  # prompt + one column per archived model


def test_causal_lms_counts_only_causal_lms_against_its_limit(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """causal_lms asked search() for the first 1000 snapshots of any kind, then kept the causal LMs: past 1000
    snapshots, LMs left the study silently. The query now asks for causal LMs, with no limit of its own; here two
    other snapshots with earlier cutoffs and limit=2 stand for the 1000."""
    import datetime as dt

    import numpy as np
    from safetensors.numpy import save_file

    from modelarc.registry.records import Provenance

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from _study import causal_lms

    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    archive, _ = Archive.init(tmp_path / "home")
    with archive:
        for i in range(2):  # not causal LMs: plain tensors (an embedding table, a probe), with earlier cutoffs
            folder = tmp_path / f"probe{i}"
            folder.mkdir()
            save_file({"w": np.full(4, i, np.float32)}, str(folder / "model.safetensors"))
            archive.push(folder, f"lab/probe{i}:v1", Provenance(cutoff=dt.date(2020, 1, 1), cutoff_precision="day"))
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=1, n_embd=16, n_head=2, vocab_size=len(WORDS), n_positions=32)).save_pretrained(tmp_path / "lm")
        archive.push(tmp_path / "lm", "lab/lm:v1", Provenance(cutoff=dt.date(2024, 1, 1), cutoff_precision="day"))
        assert [r.model for r in causal_lms(archive, limit=2)] == ["lab/lm"]
        assert [r.model for r in causal_lms(archive)] == ["lab/lm"]

"""Unmodified huggingface_hub and transformers load an archived model from `modelarc serve` on 127.0.0.1."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch
import transformers
from liveserver import serve
from tokenizers import Tokenizer, models, pre_tokenizers

from modelarc.api.hub import commit_id
from modelarc.archive.repository import Archive

WORDS = ["<unk>", "<pad>", "the", "model", "was", "trained", "in", "2021", "what", "year", "is", "it", "?"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, module_database_url: str):
    base = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:  # the archive keeps its settings; the env is restored at once
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2,
                                                                 vocab_size=len(WORDS), n_positions=64)).eval()
    src = base / "src"
    model.save_pretrained(src)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>").save_pretrained(src)
    pushed = archive.push(src, "acme/gpt2:v1")
    with serve(archive) as url:
        yield {"url": url, "src": src, "model": model, "snapshot": pushed.snapshot, "base": base}
    archive.close()


def test_huggingface_hub_client_reads_the_archive(served, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    api = HfApi(endpoint=served["url"])
    info = api.model_info("acme/gpt2", revision="v1")
    assert info.sha == commit_id(served["snapshot"]) and len(info.sha) == 40
    assert {s.rfilename for s in info.siblings} == {p.name for p in served["src"].iterdir()}
    assert sorted(api.list_repo_files("acme/gpt2", revision="v1")) == sorted(p.name for p in served["src"].iterdir())
    folder = Path(snapshot_download("acme/gpt2", revision="v1", endpoint=served["url"], cache_dir=tmp_path / "c"))
    for p in served["src"].iterdir():
        assert (folder / p.name).read_bytes() == p.read_bytes(), p.name
    one = hf_hub_download("acme/gpt2", "config.json", revision=info.sha, endpoint=served["url"], cache_dir=tmp_path / "d")
    assert Path(one).read_bytes() == (served["src"] / "config.json").read_bytes()


def test_errors_and_ranges_follow_the_hub_contract(served) -> None:
    url = served["url"]
    assert httpx.get(f"{url}/api/models/acme/none").headers["X-Error-Code"] == "RepoNotFound"
    assert httpx.get(f"{url}/api/models/acme/gpt2/revision/v9").headers["X-Error-Code"] == "RevisionNotFound"
    missing = httpx.head(f"{url}/acme/gpt2/resolve/v1/nope.txt")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == commit_id(served["snapshot"])
    weights = (served["src"] / "model.safetensors").read_bytes()
    head = httpx.head(f"{url}/acme/gpt2/resolve/v1/model.safetensors")
    assert head.headers["X-Linked-Size"] == str(len(weights)) and "xet" not in " ".join(head.headers).lower()
    part = httpx.get(f"{url}/acme/gpt2/resolve/v1/model.safetensors", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == weights[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(weights)}"
    assert httpx.get(f"{url}/acme/gpt2/resolve/v1%2F..%2F..%2Fetc/passwd").status_code in (400, 404)
    problem = httpx.get(f"{url}/v1/snapshots/acme/none/v1")
    assert problem.status_code == 404 and problem.headers["content-type"] == "application/problem+json"


def test_transformers_loads_through_hf_endpoint_with_identical_logits(served, tmp_path: Path) -> None:
    code = (
        "import sys, torch, transformers\n"
        "m = transformers.AutoModelForCausalLM.from_pretrained('acme/gpt2', revision='v1')\n"
        "t = transformers.AutoTokenizer.from_pretrained('acme/gpt2', revision='v1')\n"
        "ids = t('what year is it ?', return_tensors='pt').input_ids\n"
        "torch.save(m(ids).logits.detach(), sys.argv[1])\n"
    )
    env = {**os.environ, "HF_ENDPOINT": served["url"], "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
    out = tmp_path / "logits.pt"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tok = transformers.AutoTokenizer.from_pretrained(served["src"])
    with torch.no_grad():
        expected = served["model"](tok("what year is it ?", return_tensors="pt").input_ids).logits
    assert torch.equal(torch.load(out), expected)

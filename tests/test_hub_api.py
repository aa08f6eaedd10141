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
from modelfactory import tiny_tensors, write_model
from tokenizers import Tokenizer, models, pre_tokenizers

from modelarc.api.hub import commit_id
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive

WORDS = ["<unk>", "<pad>", "the", "model", "was", "trained", "in", "2021", "what", "year", "is", "it", "?"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, module_database_url: str):
    base = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:  # the archive keeps its settings; the env is restored at once
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(WORDS), n_positions=64)
    ).eval()
    src = base / "src"
    model.save_pretrained(src)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>"
    ).save_pretrained(src)
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
    assert sorted(api.list_repo_files("acme/gpt2", revision="v1")) == sorted(
        p.name for p in served["src"].iterdir()
    )
    folder = Path(
        snapshot_download("acme/gpt2", revision="v1", endpoint=served["url"], cache_dir=tmp_path / "c")
    )
    for p in served["src"].iterdir():
        assert (folder / p.name).read_bytes() == p.read_bytes(), p.name
    one = hf_hub_download(
        "acme/gpt2", "config.json", revision=info.sha, endpoint=served["url"], cache_dir=tmp_path / "d"
    )
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
    env = {
        **os.environ,
        "HF_ENDPOINT": served["url"],
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_XET": "1",
    }
    out = tmp_path / "logits.pt"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    tok = transformers.AutoTokenizer.from_pretrained(served["src"])
    with torch.no_grad():
        expected = served["model"](tok("what year is it ?", return_tensors="pt").input_ids).logits
    assert torch.equal(torch.load(out), expected)


@pytest.fixture(scope="module")
def versions(tmp_path_factory, module_database_url: str, served):
    """acme/tiny with v1 and latest on different snapshots, and acme/gone:v1 withdrawn: a second home on the
    module's catalog and so on its store (a new, empty store for a catalog holding snapshots is refused: init)."""
    base = tmp_path_factory.mktemp("hub-versions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home", store=str(served["base"] / "home" / "store"))
    v1 = archive.push(write_model(base / "v1", tiny_tensors(seed=1)), "acme/tiny:v1").snapshot
    latest = archive.push(write_model(base / "v2", tiny_tensors(seed=2)), "acme/tiny:latest").snapshot
    gone = archive.push(write_model(base / "gone", tiny_tensors(seed=3)), "acme/gone:v1").snapshot
    withdraw(archive, "acme/gone:v1", reason="license revoked")
    with serve(archive) as url:
        yield {"url": url, "base": base, "v1": v1, "latest": latest, "gone": gone}
    archive.close()


def test_a_tag_revision_is_that_tags_snapshot_and_main_is_latest(versions, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download

    url, base = versions["url"], versions["base"]
    assert versions["v1"] != versions["latest"]
    api = HfApi(endpoint=url)
    for revision, snapshot, folder in (("v1", "v1", "v1"), ("main", "latest", "v2"), (None, "latest", "v2")):
        assert api.model_info("acme/tiny", revision=revision).sha == commit_id(versions[snapshot]), revision
        got = hf_hub_download("acme/tiny", "model.safetensors", revision=revision, endpoint=url,
                              cache_dir=tmp_path / f"cache-{revision}")
        assert Path(got).read_bytes() == (base / folder / "model.safetensors").read_bytes(), revision
        head = httpx.head(f"{url}/acme/tiny/resolve/{revision or 'main'}/model.safetensors")
        assert head.headers["X-Repo-Commit"] == commit_id(versions[snapshot]), revision


def test_a_withdrawn_snapshot_is_not_served_on_the_hub_routes(versions, tmp_path: Path) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    url = versions["url"]
    # config.json is a small file the withdrawn snapshot still keeps: only the withdrawal check refuses it.
    # huggingface_hub reports any HEAD error it has no class for as "not reachable and not cached", with the
    # server's answer as the cause.
    with pytest.raises(LocalEntryNotFoundError) as download:
        hf_hub_download("acme/gone", "config.json", revision="v1", endpoint=url, cache_dir=tmp_path / "c")
    assert isinstance(download.value.__cause__, HfHubHTTPError)
    assert download.value.__cause__.response.status_code == 410
    assert not list((tmp_path / "c").rglob("config.json"))
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(endpoint=url).model_info("acme/gone", revision="v1")
    assert info.value.response.status_code == 410
    commit = commit_id(versions["gone"])
    for path in ("api/models/acme/gone/revision/v1", f"api/models/acme/gone/revision/{commit}",
                 "api/models/acme/gone/tree/v1", "acme/gone/resolve/v1/config.json",
                 f"acme/gone/resolve/{commit}/config.json", "acme/gone/resolve/v1/model.safetensors"):
        answer = httpx.get(f"{url}/{path}")
        assert answer.status_code == 410 and "withdrawn" in answer.json()["error"], path
    assert httpx.head(f"{url}/acme/gone/resolve/v1/config.json").status_code == 410

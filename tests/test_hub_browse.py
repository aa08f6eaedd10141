"""Unmodified huggingface_hub (HfApi, HfFileSystem, fsspec) browses the archive on `modelarc serve` (127.0.0.1):
list and search models, refs, commit history, trees with last commits, paths info, ranged reads (issue 17)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest
from hubarchive import MANY_FILES, Browsable, build
from huggingface_hub import HfApi, HfFileSystem, snapshot_download
from huggingface_hub.errors import (
    BadRequestError,
    DisabledRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from huggingface_hub.utils import paginate
from liveserver import serve_app

from modelarc.api.app import create_app
from modelarc.archive.catalog.revisions import commit_id


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("hub-browse")
    with pytest.MonkeyPatch.context() as mp:  # the archive keeps its settings; the env is restored at once
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        b = build(base)
    seen = RequestLog(create_app(lambda: b.archive))
    with serve_app(seen) as url:
        yield {"url": url, "api": HfApi(endpoint=url), "b": b, "seen": seen}
    b.archive.close()


class RequestLog:
    """The app, wrapped to record each request as it arrives: method, path, Range header, and the response body bytes
    sent so far (counted before each part is handed to the server, so before the client can have read it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ranges = dict(scope["headers"]).get(b"range")
        seen = {
            "method": scope["method"],
            "path": scope["path"],
            "range": ranges and ranges.decode(),
            "sent": 0,
        }
        self.requests.append(seen)

        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                seen["sent"] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting)


def pointer(sha256: str, size: int) -> bytes:
    """A Git LFS pointer file, from the spec (not from the code under test)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def sha(b: Browsable, key: str) -> str:
    return commit_id(b.snapshots[key])


# ----------------------------------------------------------------------------------------------- list_models
def test_list_models_searches_by_name_and_author(hub) -> None:
    api: HfApi = hub["api"]
    assert [m.id for m in api.list_models()] == sorted(hub["b"].created)  # default order: by id
    assert [m.id for m in api.list_models(search="BAS")] == ["acme/base"]
    assert {m.id for m in api.list_models(author="other")} == {"other/gpt"}
    assert [m.id for m in api.list_models(author="acme", search="t")] == ["acme/tuned"]


def test_list_models_sorts_by_last_modified_and_by_creation_newest_first(hub) -> None:
    api: HfApi = hub["api"]
    created = list(hub["b"].created)
    assert [m.id for m in api.list_models(sort="created_at")] == created[::-1]
    by_push = [m.id for m in api.list_models(sort="last_modified", full=True)]
    assert by_push[0] == "other/gpt"  # its head is the newest snapshot, though the model is not the newest
    dated = list(api.list_models(sort="last_modified", full=True))
    assert all(a.last_modified >= b.last_modified for a, b in zip(dated, dated[1:], strict=False))
    # the Hub's old `direction` parameter (huggingface_hub no longer sends it): 1 is ascending
    ascending = httpx.get(f"{hub['url']}/api/models", params={"sort": "createdAt", "direction": "1"}).json()
    assert [m["id"] for m in ascending] == created
    with pytest.raises(BadRequestError):
        list(api.list_models(sort="downloads"))  # the archive counts no downloads: refused, not faked


def test_list_models_pages_with_link_headers_as_the_hub_sends_them(hub) -> None:
    url = hub["url"]
    first = httpx.get(f"{url}/api/models", params={"limit": 2, "search": "acme"})
    assert first.status_code == 200 and len(first.json()) == 2
    assert first.headers["link"].startswith(f"<{url}/api/models?") and first.headers["link"].endswith(
        '>; rel="next"'
    )
    nxt = first.links["next"]["url"]
    assert "search=acme" in nxt and "cursor=" in nxt
    # huggingface_hub's own pagination follows the links to the end: every model once, in order
    rows = list(paginate(f"{url}/api/models", params={"limit": 2}, headers={}))
    assert [r["id"] for r in rows] == sorted(hub["b"].created)
    assert len(list(hub["api"].list_models(limit=3))) == 3


def test_list_models_filters_map_onto_the_catalog(hub) -> None:
    api: HfApi = hub["api"]

    def ids(**kw: Any) -> set[str]:
        return {m.id for m in api.list_models(**kw)}

    assert ids(filter="license:mit") == {"acme/base", "other/gpt"}  # any case, as `modelarc ls --license`
    assert ids(filter="gpt2") == {"other/gpt"}  # a bare tag: the architecture
    assert ids(filter="arch:LlamaForCausalLM") == {"acme/base", "acme/tuned", "acme/mainline", "acme/gone",
                                                    "acme/many"}  # fmt: skip
    assert ids(filter="cutoff_before:2022-01-01") == {"other/gpt"}
    assert ids(filter="cutoff_before:2023-01-01") == {"other/gpt", "acme/tuned"}  # 2022 ends before 2023
    assert ids(filter="cutoff_after:2022-12-31") == {"acme/base"}
    assert ids(filter=["license:mit", "cutoff_after:2022-01-01"]) == {"acme/base"}  # filters are ANDed
    assert ids(trained_dataset="the-pile") == {"acme/tuned"}  # sent as filter=dataset:the-pile
    assert ids(filter="base_model:acme/base") == {"acme/tuned"}
    assert ids(filter="base_model:finetune:acme/base") == {"acme/tuned"}
    assert ids(filter="base_model:quantized:acme/base") == set()
    assert ids(num_parameters="min:1K,max:1M") == set(hub["b"].created)
    assert ids(num_parameters="min:1M") == set()
    assert ids(gated=True) == set() and ids(gated=False) == set(hub["b"].created)
    for bad in ("region:us", "cutoff:2023"):  # a filter the archive cannot answer is refused, never ignored
        with pytest.raises(BadRequestError):
            ids(filter=bad)
    with pytest.raises(BadRequestError):
        ids(pipeline_tag="text-generation")


def test_listed_cards_carry_license_architecture_cutoff_lineage_and_datasets(hub) -> None:
    b: Browsable = hub["b"]
    (tuned,) = hub["api"].list_models(search="acme/tuned", cardData=True, full=True)
    card = tuned.card_data
    assert card.license == "apache-2.0" and card.base_model == "acme/base" and card.datasets == ["the-pile"]
    assert card.base_model_relation == "finetune"
    assert card.modelarc["snapshot"] == b.snapshots["tuned"] and card.modelarc["training_cutoff"] == "2022"
    for tag in ("llama", "license:apache-2.0", "base_model:acme/base", "base_model:finetune:acme/base",
                "dataset:the-pile", "cutoff:2022"):  # fmt: skip
        assert tag in tuned.tags, tag
    assert tuned.sha == sha(b, "tuned") and tuned.author == "acme" and tuned.disabled is False
    assert {s.rfilename for s in tuned.siblings} == {p.name for p in b.folders["tuned"].iterdir()}
    (gpt,) = hub["api"].list_models(search="other/gpt", cardData=True)
    assert "gpt2" in gpt.tags and "cutoff:2021-03-15" in gpt.tags and gpt.card_data.license == "mit"
    assert gpt.sha is None  # the default listing is short, as the Hub's (full=True adds sha, siblings, ...)


def test_list_models_expand_returns_only_the_properties_asked_for(hub) -> None:
    (m,) = hub["api"].list_models(search="acme/mainline", expand=["sha", "lastModified"])
    assert m.sha == sha(hub["b"], "mainline-main") and m.last_modified is not None
    assert m.tags is None and m.card_data is None and m.created_at is None


# ----------------------------------------------------------------------------------------------- refs, revisions
def test_list_repo_refs_gives_tags_as_branches_and_snapshot_ids_as_tags(hub) -> None:
    b: Browsable = hub["b"]
    refs = hub["api"].list_repo_refs("acme/base")
    branches = {r.name: r.target_commit for r in refs.branches}
    assert branches == {"v1": sha(b, "base1"), "latest": sha(b, "base3"), "main": sha(b, "base3")}
    assert {r.ref for r in refs.branches} == {f"refs/heads/{n}" for n in branches}
    assert {r.name: r.target_commit for r in refs.tags} == {
        b.snapshots[k]: sha(b, k) for k in ("base1", "base2", "base3")
    }
    mainline = {r.name: r.target_commit for r in hub["api"].list_repo_refs("acme/mainline").branches}
    assert mainline["main"] == sha(b, "mainline-main") != mainline["latest"]  # a real `main` tag wins
    assert hub["api"].list_repo_refs("acme/base", include_pull_requests=True).pull_requests == []
    with pytest.raises(RepositoryNotFoundError):
        hub["api"].list_repo_refs("acme/nothing")


def test_every_listed_ref_is_a_revision_that_resolves_to_its_commit(hub, tmp_path: Path) -> None:
    api: HfApi = hub["api"]
    refs = api.list_repo_refs("acme/base")
    for ref in [*refs.branches, *refs.tags]:
        assert api.model_info("acme/base", revision=ref.name).sha == ref.target_commit, ref.name
        assert api.model_info("acme/base", revision=ref.target_commit).sha == ref.target_commit
    old = api.hf_hub_download(
        "acme/base", "sub/deep/y.txt", revision=sha(hub["b"], "base1"), cache_dir=tmp_path
    )
    assert Path(old).read_bytes() == b"y1"


# ----------------------------------------------------------------------------------------------- commits
def test_list_repo_commits_gives_a_tags_history_newest_first(hub) -> None:
    api: HfApi = hub["api"]
    b: Browsable = hub["b"]
    latest = api.list_repo_commits("acme/base", revision="latest")
    assert [c.commit_id for c in latest] == [sha(b, k) for k in ("base3", "base2", "base1")]
    assert latest[0].commit_id == api.model_info("acme/base", revision="latest").sha
    # a push without a description is "push NS/NAME:TAG"; base1 was pushed as v1 with a description
    assert [c.title for c in latest] == ["push acme/base:latest", "push acme/base:latest", "first release"]
    assert latest[2].message.startswith("with notes") and b.snapshots["base1"] in latest[2].message
    actor = b.archive.settings.actor
    assert all(c.authors == [actor] for c in latest)
    assert latest[0].created_at >= latest[1].created_at >= latest[2].created_at
    assert api.list_repo_commits("acme/base") == latest  # main is latest here
    assert [c.commit_id for c in api.list_repo_commits("acme/base", revision="v1")] == [sha(b, "base1")]
    by_id = api.list_repo_commits("acme/base", revision=b.snapshots["base2"])  # an id has no tag history
    assert [c.commit_id for c in by_id] == [sha(b, "base2")]
    formatted = api.list_repo_commits("acme/base", revision="v1", formatted=True)
    assert formatted[0].formatted_title == "first release"
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits("acme/base", revision="v9")


def test_commit_history_pages_with_link_headers(hub) -> None:
    rows = list(
        paginate(f"{hub['url']}/api/models/acme/base/commits/latest", params={"limit": 1}, headers={})
    )
    assert [r["id"] for r in rows] == [sha(hub["b"], k) for k in ("base3", "base2", "base1")]


# ----------------------------------------------------------------------------------------------- trees
def test_tree_lists_folders_then_files_with_the_ids_git_computes(hub, tmp_path: Path) -> None:
    api: HfApi = hub["api"]
    top = list(api.list_repo_tree("acme/base", revision="v1"))
    assert [(type(e).__name__, e.path) for e in top] == [
        ("RepoFolder", "sub"),
        ("RepoFile", "config.json"),
        ("RepoFile", "model.safetensors"),
        ("RepoFile", "tokenizer.json"),
    ]
    src = hub["b"].folders["base1"]
    for e in top[1:]:
        data = (src / e.path).read_bytes()
        assert (
            e.size == len(data)
            and e.lfs.sha256 == hashlib.sha256(data).hexdigest()
            and e.lfs.size == len(data)
        )
        assert e.lfs.pointer_size == len(pointer(e.lfs.sha256, len(data)))
    inside = [(type(e).__name__, e.path) for e in api.list_repo_tree("acme/base", "sub", revision="v1")]
    assert inside == [("RepoFolder", "sub/deep"), ("RepoFile", "sub/x.txt")]
    everything = list(api.list_repo_tree("acme/base", revision="v1", recursive=True))
    assert {e.path for e in everything if isinstance(e, RepoFile)} == {
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()
    }
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the ids are checked against git's own")
    # what git computes for a checkout of this snapshot, every file being its LFS pointer
    repo = tmp_path / "git"
    for e in everything:
        if isinstance(e, RepoFile):
            (repo / e.path).parent.mkdir(parents=True, exist_ok=True)
            (repo / e.path).write_bytes(pointer(e.lfs.sha256, e.size))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    tree = subprocess.run(["git", "-C", str(repo), "write-tree"], check=True, capture_output=True, text=True)
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "-t", tree.stdout.strip()],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    git_ids = {line.split("\t")[1]: line.split()[2] for line in listed.splitlines()}
    ours = {e.path: e.blob_id if isinstance(e, RepoFile) else e.tree_id for e in everything}
    assert ours == git_ids


def test_missing_folder_and_unknown_revision_raise_the_hubs_errors(hub) -> None:
    api: HfApi = hub["api"]
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree("acme/base", "nope"))
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree("acme/base", "config.json"))  # a file is no folder
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree("acme/base", revision="v9"))
    with pytest.raises(RepositoryNotFoundError):
        list(api.list_repo_tree("acme/nothing"))
    with pytest.raises(BadRequestError):
        list(api.list_repo_tree("acme/base", "sub/../../etc"))


def test_expanded_tree_gives_each_path_the_commit_since_which_it_is_unchanged(hub) -> None:
    b: Browsable = hub["b"]
    tree = {e.path: e for e in hub["api"].list_repo_tree("acme/base", recursive=True, expand=True)}
    last = {path: e.last_commit.oid for path, e in tree.items()}
    assert last == {
        "config.json": sha(b, "base1"),  # never changed in latest's history
        "sub/x.txt": sha(b, "base1"),
        "model.safetensors": sha(b, "base2"),
        "sub/deep/y.txt": sha(b, "base2"),
        "sub/deep": sha(b, "base2"),  # a folder changes when anything in it does
        "sub": sha(b, "base2"),
        "tokenizer.json": sha(b, "base3"),
    }
    assert tree["tokenizer.json"].last_commit.title == "push acme/base:latest"
    assert tree["config.json"].last_commit.title == "first release"


def test_expanded_tree_pages_through_many_files(hub) -> None:
    url = hub["url"]
    page = httpx.get(f"{url}/api/models/acme/many/tree/main/shards", params={"expand": "true"})
    assert len(page.json()) == 50 and 'rel="next"' in page.headers["link"]
    entries = list(hub["api"].list_repo_tree("acme/many", "shards", expand=True))
    assert len(entries) == MANY_FILES and all(e.last_commit is not None for e in entries)
    assert len({e.path for e in entries}) == MANY_FILES


def test_get_paths_info_answers_the_paths_that_exist(hub) -> None:
    api: HfApi = hub["api"]
    found = api.get_paths_info(
        "acme/base", ["sub", "config.json", "missing.txt", "sub/deep/y.txt"], revision="v1"
    )
    assert [(type(e).__name__, e.path) for e in found] == [
        ("RepoFolder", "sub"),
        ("RepoFile", "config.json"),
        ("RepoFile", "sub/deep/y.txt"),
    ]
    assert found[2].size == 2 and found[2].last_commit is None
    expanded = api.get_paths_info("acme/base", ["sub/deep/y.txt"], expand=True)
    assert expanded[0].last_commit.oid == sha(hub["b"], "base2")
    answer = httpx.post(  # JSON works too, as on the Hub
        f"{hub['url']}/api/models/acme/base/paths-info/v1", json={"paths": ["config.json"], "expand": False}
    )
    assert [e["path"] for e in answer.json()] == ["config.json"]
    bad = httpx.post(f"{hub['url']}/api/models/acme/base/paths-info/v1", json={"paths": "config.json"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_paths_info_refuses_unsafe_paths_and_oversized_requests(hub) -> None:
    url = f"{hub['url']}/api/models/acme/base/paths-info/v1"
    with pytest.raises(BadRequestError):
        hub["api"].get_paths_info("acme/base", ["sub/../../etc/passwd"], revision="v1")
    assert httpx.post(url, data={"paths": [f"f{i}" for i in range(1001)]}).status_code == 400  # 1000 at most
    huge = httpx.post(url, content=b"paths=" + b"a" * (1 << 20), headers={"content-type": "text/plain"})
    assert huge.status_code == 413 and len(huge.content) < 1000


# ----------------------------------------------------------------------------------------------- HfFileSystem
def test_hf_file_system_lists_globs_reads_and_describes_files(hub) -> None:
    fs = HfFileSystem(endpoint=hub["url"], skip_instance_cache=True)
    src = hub["b"].folders["base3"]
    assert fs.ls("acme/base", detail=False) == [
        "acme/base/sub", "acme/base/config.json", "acme/base/model.safetensors", "acme/base/tokenizer.json"
    ]  # fmt: skip
    assert sorted(fs.glob("acme/base/**/*.txt")) == ["acme/base/sub/deep/y.txt", "acme/base/sub/x.txt"]
    assert fs.info("acme/base/sub/deep/y.txt")["size"] == 2 and fs.isdir("acme/base/sub")
    assert fs.cat("acme/base/tokenizer.json") == (src / "tokenizer.json").read_bytes()
    with fs.open("acme/base@v1/model.safetensors", "rb") as fh:
        fh.seek(8)
        assert fh.read(16) == (hub["b"].folders["base1"] / "model.safetensors").read_bytes()[8:24]
    assert fs.modified("acme/base/sub/deep/y.txt") == hub["api"].list_repo_commits("acme/base")[1].created_at
    assert not fs.exists("acme/base/nothing.txt")
    # through fsspec, as pandas, datasets and others open hf:// URLs
    with fsspec.open("hf://acme/base@v1/sub/deep/y.txt", "rb", endpoint=hub["url"]) as fh:
        assert fh.read() == b"y1"
    of = fsspec.filesystem("hf", endpoint=hub["url"], skip_instance_cache=True)
    assert of.find("acme/base/sub") == ["acme/base/sub/deep/y.txt", "acme/base/sub/x.txt"]


def test_get_safetensors_metadata_reads_the_header_without_the_weights(hub) -> None:
    src = hub["b"].folders["base3"] / "model.safetensors"
    data = src.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert len(data) > 100_001  # bigger than the client's first ranged read, or nothing is proven
    hub["seen"].requests.clear()
    meta = hub["api"].get_safetensors_metadata("acme/base")
    tensors = meta.files_metadata["model.safetensors"].tensors
    assert {name: (t.dtype, t.shape, list(t.data_offsets)) for name, t in tensors.items()} == {
        name: (v["dtype"], v["shape"], v["data_offsets"])
        for name, v in header.items()
        if name != "__metadata__"
    }
    weights = [r for r in hub["seen"].requests if r["path"] == "/acme/base/resolve/main/model.safetensors"]
    reads = [r for r in weights if r["method"] == "GET"]
    assert reads and all(r["range"] for r in reads)  # every read of the weights was a ranged one
    assert sum(r["sent"] for r in weights) <= 100_001 < len(data)


# ----------------------------------------------------------------------------------------------- model_info
def test_model_info_gives_size_and_sha256_of_every_file(hub, tmp_path: Path) -> None:
    api: HfApi = hub["api"]
    src = hub["b"].folders["base3"]
    info = api.model_info("acme/base", files_metadata=True)
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert {s.rfilename: (s.size, s.lfs.sha256) for s in info.siblings} == {
        path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()
    }
    assert info.safetensors.total == sum(info.safetensors.parameters.values()) > 0
    assert info.config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert info.card_data.license == "mit" and info.card_data.modelarc["training_cutoff"] == "2023-05"
    assert info.created_at <= info.last_modified
    # huggingface_hub checks a download against these: every file by its sha256
    folder = snapshot_download("acme/base", endpoint=hub["url"], cache_dir=tmp_path / "c")
    checked = api.verify_repo_checksums("acme/base", local_dir=folder)
    assert checked.checked_count == len(files) and not checked.mismatches and not checked.missing_paths


def test_model_info_expand_returns_only_the_properties_asked_for(hub) -> None:
    api: HfApi = hub["api"]
    info = api.model_info("acme/tuned", expand=["cardData", "sha", "downloads"])
    assert info.sha == sha(hub["b"], "tuned") and info.card_data.base_model == "acme/base"
    assert info.siblings is None and info.tags is None and info.downloads is None  # none counted: absent
    raw = httpx.get(f"{hub['url']}/api/models/acme/tuned", params={"expand": ["sha", "author"]}).json()
    assert raw == {"id": "acme/tuned", "modelId": "acme/tuned", "sha": info.sha, "author": "acme"}
    assert httpx.get(f"{hub['url']}/api/models/acme/tuned", params={"expand": "nonsense"}).status_code == 400


# ----------------------------------------------------------------------------------------------- withdrawn
def test_a_withdrawn_snapshot_raises_disabled_repo_error_where_files_would_be_handed_out(hub) -> None:
    api: HfApi = hub["api"]
    gone = hub["b"].snapshots["gone"]
    calls = {
        "model_info": lambda: api.model_info("acme/gone"),
        "model_info by id": lambda: api.model_info("acme/gone", revision=gone),
        "list_repo_tree": lambda: list(api.list_repo_tree("acme/gone")),
        "get_paths_info": lambda: api.get_paths_info("acme/gone", ["config.json"]),
        "get_hf_file_metadata": lambda: api.get_hf_file_metadata(
            url=f"{hub['url']}/acme/gone/resolve/main/config.json"
        ),
    }
    for what, call in calls.items():
        with pytest.raises(DisabledRepoError) as err:
            call()
        assert err.value.response.status_code == 410, what
    # its history and provenance stay readable, marked
    (commit,) = api.list_repo_commits("acme/gone")
    assert (
        commit.commit_id == commit_id(gone)
        and "withdrawn" in commit.message
        and "license revoked" in commit.message
    )
    (listed,) = api.list_models(search="acme/gone", full=True)
    assert listed.disabled is True
    assert {r.name for r in api.list_repo_refs("acme/gone").branches} == {"latest", "main"}
    with pytest.raises(
        DisabledRepoError
    ):  # HfFileSystem passes it on, as for a disabled repository on the Hub
        HfFileSystem(endpoint=hub["url"], skip_instance_cache=True).ls("acme/gone")


def test_folders_come_back_as_repo_folders(hub) -> None:
    (folder,) = hub["api"].get_paths_info("acme/many", ["shards"])
    assert isinstance(folder, RepoFolder) and folder.path == "shards" and len(folder.tree_id) == 40

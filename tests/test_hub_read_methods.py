"""docs/API.md's table of HfApi read methods stays true: it lists exactly the installed client's read methods, every
`supported` one works against the server, and every `not yet` one still fails cleanly (issue 17)."""

from __future__ import annotations

import hashlib
import inspect
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from hubarchive import Browsable, build
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import ExpandModelProperty_T
from liveserver import serve

from modelarc.api.hub_browse import HubProperty
from modelarc.archive.catalog.revisions import commit_id
from modelarc.archive.tokens import create_token

DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"
ROW = re.compile(r"^\| `(\w+)` \| (supported|not applicable|not yet) \|", re.MULTILINE)
# What makes a method a read: it asks the Hub something and changes nothing there. A new client method matching
# this must be added to the table (test_the_table_lists_every_read_method_of_the_installed_client).
READ = re.compile(
    r"^(get_|list_|fetch_|inspect_|search_|read_)|_info$|_exists$|^(hf_hub_download|snapshot_download|"
    r"download_bucket_files|verify_repo_checksums|parse_safetensors_file_metadata|resolve_revision|whoami|"
    r"auth_check|wait_for_job|wait_for_space)$"
)


def table() -> dict[str, str]:
    return dict(ROW.findall(DOC.read_text()))


def read_methods() -> set[str]:
    return {name for name, _f in inspect.getmembers(HfApi, inspect.isfunction) if READ.search(name)}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("hub-methods")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        b = build(base)
    token = create_token(b.archive, "read", "reader").token
    with serve(b.archive) as url:
        yield {"api": HfApi(endpoint=url, token=token), "b": b, "tmp": base}
    b.archive.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def supported_calls(api: HfApi, b: Browsable, tmp: Path) -> dict[str, Callable[[], bool]]:
    """One call per supported method, each true only when the answer is right, not merely when it arrives."""
    head, src = commit_id(b.snapshots["base3"]), b.folders["base3"]
    files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    weights = src / "model.safetensors"
    url = f"{api.endpoint}/acme/base/resolve/main/config.json"

    def downloaded(folder: str) -> bool:
        return all(sha256(Path(folder) / f) == sha256(src / f) for f in files)

    return {
        "file_exists": lambda: (
            api.file_exists("acme/base", "sub/x.txt") and not api.file_exists("acme/base", "x")
        ),
        "get_hf_file_metadata": lambda: api.get_hf_file_metadata(url=url).commit_hash == head,
        "get_paths_info": lambda: (
            [p.path for p in api.get_paths_info("acme/base", ["sub", "nope"])] == ["sub"]
        ),
        "get_safetensors_metadata": lambda: (
            api.get_safetensors_metadata("acme/base").weight_map.keys()
            == api.parse_safetensors_file_metadata("acme/base", "model.safetensors").tensors.keys()
        ),
        "hf_hub_download": lambda: (
            sha256(Path(api.hf_hub_download("acme/base", "model.safetensors", cache_dir=tmp)))
            == sha256(weights)
        ),
        "list_models": lambda: {m.id for m in api.list_models(author="other")} == {"other/gpt"},
        "list_repo_commits": lambda: (
            [c.commit_id for c in api.list_repo_commits("acme/base")]
            == [commit_id(b.snapshots[k]) for k in ("base3", "base2", "base1")]
        ),
        "list_repo_files": lambda: sorted(api.list_repo_files("acme/base")) == files,
        "list_repo_refs": lambda: (
            {r.name for r in api.list_repo_refs("acme/base").branches} == {"v1", "latest", "main"}
        ),
        "list_repo_tree": lambda: (
            [e.path for e in api.list_repo_tree("acme/base", "sub/deep")] == ["sub/deep/y.txt"]
        ),
        "model_info": lambda: api.model_info("acme/base").sha == head,
        "parse_safetensors_file_metadata": lambda: (
            api.parse_safetensors_file_metadata("acme/base", "model.safetensors").parameter_count
            == api.model_info("acme/base").safetensors.parameters
        ),
        "repo_exists": lambda: api.repo_exists("acme/base") and not api.repo_exists("acme/nothing"),
        "repo_info": lambda: api.repo_info("acme/base", revision="v1").sha == commit_id(b.snapshots["base1"]),
        "resolve_revision": lambda: (
            api.resolve_revision("acme/base", revision="latest", cache_dir=tmp).resolved == head
        ),
        "revision_exists": lambda: (
            api.revision_exists("acme/base", "v1") and not api.revision_exists("acme/base", "v9")
        ),
        "snapshot_download": lambda: downloaded(api.snapshot_download("acme/base", cache_dir=tmp / "snap")),
        "verify_repo_checksums": lambda: (
            not api.verify_repo_checksums(
                "acme/base", local_dir=api.snapshot_download("acme/base", local_dir=tmp / "local")
            ).mismatches
        ),
    }


def not_yet_calls(api: HfApi) -> dict[str, Callable[[], object]]:
    return {
        "auth_check": lambda: api.auth_check("acme/base"),
        "get_model_tags": lambda: api.get_model_tags(),
        "get_sharded_safetensors_metadata": lambda: api.get_sharded_safetensors_metadata("acme/base"),
        "list_accepted_access_requests": lambda: list(api.list_accepted_access_requests("acme/base")),
        "list_lfs_files": lambda: list(api.list_lfs_files("acme/base")),
        "list_pending_access_requests": lambda: list(api.list_pending_access_requests("acme/base")),
        "list_rejected_access_requests": lambda: list(api.list_rejected_access_requests("acme/base")),
        "whoami": lambda: api.whoami(),
    }


def test_the_table_lists_every_read_method_of_the_installed_client() -> None:
    assert set(table()) == read_methods(), "classify the new (or gone) HfApi read methods in docs/API.md"
    assert f"`huggingface_hub` ({huggingface_hub.__version__})" in DOC.read_text()  # the version it was made from


def test_every_supported_read_method_answers_right(hub) -> None:
    calls = supported_calls(hub["api"], hub["b"], hub["tmp"])
    assert set(calls) == {m for m, status in table().items() if status == "supported"}
    wrong = [name for name, call in calls.items() if not call()]
    assert not wrong


def test_every_not_yet_read_method_still_fails_cleanly(hub) -> None:
    calls = not_yet_calls(hub["api"])
    assert set(calls) == {m for m, status in table().items() if status == "not yet"}
    for name, call in calls.items():
        try:
            call()
        except HfHubHTTPError as err:
            assert 400 <= err.response.status_code < 500, name
        else:
            pytest.fail(f"{name} works now: check it and mark it supported in docs/API.md")


def test_the_servers_expand_properties_are_the_clients() -> None:
    assert set(typing.get_args(HubProperty)) == set(typing.get_args(ExpandModelProperty_T))

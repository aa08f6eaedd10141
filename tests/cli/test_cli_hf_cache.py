"""The Hugging Face cache that `push hf://` writes after an online import and reads with HF_HUB_OFFLINE=1: written
only inside the repo's cache folder and whole (or with a warning), read without blocking, and imported offline only
as the whole revision its listing names, unless --allow-partial says otherwise and the record says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from conftest import ArchiveCli
from hubserver import HubServer
from modelfactory import tiny_tensors, write_model

CONFIG = b'{"model_type": "gpt2", "n_layer": 1}\n'
LONG_NAME = "L" * 240 + ".json"  # 245 bytes: a name that fits NAME_MAX (255), but not with 20 bytes more


@pytest.fixture
def served(tmp_path: Path, hub: HubServer) -> Path:
    folder = write_model(
        tmp_path / "served",
        tiny_tensors(seed=7),
        extra_files={"config.json": CONFIG, "tokenizer/vocab.txt": b"a\nb\n"},
    )
    hub.add("org/tiny", folder)
    return folder


def repo_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-home" / "hub" / "models--org--tiny"


def snapshot(tmp_path: Path) -> Path:
    [commit] = list((repo_cache(tmp_path) / "snapshots").iterdir())
    return commit


def offline(arc: ArchiveCli, hub: HubServer) -> None:
    hub.stop()
    arc.env["HF_HUB_OFFLINE"] = "1"


def last_line(result: Result) -> str:
    return result.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------------ whole or not
def test_offline_refuses_a_revision_the_cache_holds_only_part_of(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """A cache holding part of the revision (huggingface_hub fetches file by file) was archived as the whole commit."""
    arc("push", "hf://org/tiny", "org/tiny:v1")
    before = arc.json("ls")
    (snapshot(tmp_path) / "model.safetensors").unlink()
    offline(arc, hub)
    line = last_line(arc.fail("push", "hf://org/tiny", "part/tiny:v1"))
    assert "lacks 1 of the 4 files" in line and "'model.safetensors'" in line and "--allow-partial" in line
    assert arc.json("ls") == before


def test_offline_refuses_a_link_to_another_blob_than_the_listing_names(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """Every link is to a blob named by its hash, and that hash is another file's: the listing says which it is."""
    arc("push", "hf://org/tiny", "org/tiny:v1")
    link = snapshot(tmp_path) / "config.json"
    link.unlink()
    link.symlink_to(os.readlink(snapshot(tmp_path) / "model.safetensors"))
    offline(arc, hub)
    line = last_line(arc.fail("push", "hf://org/tiny", "org/tiny:v2"))
    assert "config.json" in line and "which the revision's listing names" in line


def test_allow_partial_archives_what_the_cache_holds_and_says_so(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    arc("push", "hf://org/tiny", "org/tiny:v1")
    (snapshot(tmp_path) / "model.safetensors").unlink()
    offline(arc, hub)
    result = arc("push", "hf://org/tiny", "part/tiny:v1", "--allow-partial")
    assert "warning: org/tiny: the snapshot may be partial: 3 of the 4 files" in result.stderr
    shown = arc.json("show", "part/tiny:v1")
    assert sorted(f["path"] for f in shown["files"]) == [
        "config.json",
        "tokenizer.json",
        "tokenizer/vocab.txt",
    ]
    assert shown["description"].startswith("Possibly partial: 3 of the 4 files of Hub commit")
    event = next(e for e in arc.json("audit", "--action", "import") if e["target"] == "part/tiny:v1")
    assert "lacked 'model.safetensors'" in event["details"]["partial"]


def test_a_cache_huggingface_hub_wrote_is_imported_offline_only_with_allow_partial(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The real huggingface_hub downloads config.json alone: the cache then holds that file of the commit and no
    listing, so nothing tells a whole revision from part of one."""
    from huggingface_hub import hf_hub_download

    hf_hub_download("org/tiny", "config.json", cache_dir=repo_cache(tmp_path).parent, endpoint=hub.url)
    offline(arc, hub)
    line = last_line(arc.fail("push", "hf://org/tiny", "org/tiny:v1"))
    assert "without modelarc's listing" in line and "--allow-partial" in line
    assert arc.json("ls") == []
    arc("push", "hf://org/tiny", "org/tiny:v1", "--allow-partial")
    shown = arc.json("show", "org/tiny:v1")
    assert [f["path"] for f in shown["files"]] == ["config.json"]
    assert "Possibly partial" in shown["description"] and "may lack others" in shown["description"]


def test_allow_partial_goes_with_a_hub_source(arc: ArchiveCli, tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", tiny_tensors(seed=1))
    assert "--allow-partial goes with an hf:// source" in last_line(
        arc.fail("push", folder, "org/m:v1", "--allow-partial")
    )


# ------------------------------------------------------------------------------------------------------ writing
def test_a_linked_blobs_folder_is_not_written_through(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo_cache(tmp_path).mkdir(parents=True)
    (repo_cache(tmp_path) / "blobs").symlink_to(outside)
    result = arc("push", "hf://org/tiny", "org/tiny:v1")
    assert list(outside.iterdir()) == []
    assert "warning: the Hugging Face cache" in result.stderr and "blobs is a link" in result.stderr
    assert arc.json("show", "org/tiny:v1")["files"]


def test_long_file_names_are_cached_with_every_other_file(
    arc: ArchiveCli, hub: HubServer, tmp_path: Path
) -> None:
    """The temporary name was the file's plus 20 bytes: past NAME_MAX, that file and every later one (and the ref)
    were left out of the cache without a word."""
    folder = write_model(
        tmp_path / "served", tiny_tensors(seed=8), extra_files={LONG_NAME: b"{}\n", "zz.txt": b"z\n"}
    )
    hub.add("org/tiny", folder)
    online = arc.json("push", "hf://org/tiny", "org/tiny:v1")["snapshot"]
    assert sorted(p.name for p in snapshot(tmp_path).iterdir()) == sorted(p.name for p in folder.iterdir())
    assert (repo_cache(tmp_path) / "refs" / "main").read_text() == snapshot(tmp_path).name
    assert list((repo_cache(tmp_path) / ".modelarc" / "tmp").iterdir()) == []
    offline(arc, hub)
    assert arc.json("push", "hf://org/tiny", "org/tiny:v1-offline")["snapshot"] == online


def test_a_file_the_cache_cannot_take_is_warned_and_then_refused_offline(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The cache is a courtesy: a file it cannot take costs that file only, is said, and makes an offline import
    name it instead of archiving the rest as the commit."""
    commit = hub.commit("org/tiny", "main")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = repo_cache(tmp_path) / "snapshots" / commit / "tokenizer"
    planted.parent.mkdir(parents=True)
    planted.symlink_to(elsewhere)
    result = arc("push", "hf://org/tiny", "org/tiny:v1")
    assert (
        "lacks 'tokenizer/vocab.txt'" in result.stderr and "offline import of it is refused" in result.stderr
    )
    assert list(elsewhere.iterdir()) == []
    assert (snapshot(tmp_path) / "model.safetensors").is_file()  # the others were written
    assert (repo_cache(tmp_path) / "refs" / "main").read_text() == commit
    offline(arc, hub)
    line = last_line(arc.fail("push", "hf://org/tiny", "org/tiny:v2"))
    assert "lacks 1 of the 4 files" in line and "tokenizer/vocab.txt" in line


# ------------------------------------------------------------------------------------------------------ reading
def _push_in_a_process(arc: ArchiveCli, *args: str) -> subprocess.CompletedProcess[str]:
    """In a child process, so that an import that blocks is ended by the timeout, not left hanging the suite."""
    env = {**os.environ, **arc.env}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "modelarc.cli.main", "push", *args, "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("where", ["refs/main", "listing"])
def test_a_fifo_in_the_cache_is_refused_without_blocking(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, where: str
) -> None:
    arc("push", "hf://org/tiny", "org/tiny:v1")
    commit = hub.commit("org/tiny", "main")
    path = repo_cache(tmp_path) / (where if where != "listing" else f".modelarc/listings/{commit}.json")
    path.unlink()
    os.mkfifo(path)
    offline(arc, hub)
    done = _push_in_a_process(arc, "hf://org/tiny", "org/tiny:v2")
    assert done.returncode == 4, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and str(path) in done.stderr


def test_a_fifo_as_the_token_file_is_not_waited_on(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    (tmp_path / "hf-home").mkdir()
    os.mkfifo(tmp_path / "hf-home" / "token")
    done = _push_in_a_process(arc, "hf://org/tiny", "org/tiny:v1")
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------------------------------ where
@pytest.mark.parametrize("inside", ["hf", "store/hf"])
def test_a_cache_inside_the_archive_home_is_refused_naming_it(
    arc: ArchiveCli, hub: HubServer, served: Path, inside: str
) -> None:
    """It failed (exit 4) naming the download folder made beside the cache as "inside this archive's own files"."""
    arc.env["HF_HOME"] = str(arc.home / inside)
    result = arc.fail("push", "hf://org/tiny", "org/tiny:v1")
    line = last_line(result)
    assert result.exit_code == 7 and f"the Hugging Face cache {arc.home / inside / 'hub'}" in line
    assert "set HF_HOME or HF_HUB_CACHE" in line and ".modelarc-import-" not in line
    assert hub.requests == [] and not (arc.home / inside).exists()


# ------------------------------------------------------------------------------------------------------ provenance
def _import_event(arc: ArchiveCli, ref: str) -> dict:
    return next(e for e in arc.json("audit", "--action", "import") if e["target"] == ref)["details"]


def test_offline_records_the_endpoint_its_listing_names_not_hf_endpoint(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The cache was filled from the test's endpoint; offline, HF_ENDPOINT (here unset: huggingface.co) says nothing
    about where cached bytes came from, and was recorded as their source."""
    arc("push", "hf://org/tiny", "org/tiny:v1")
    commit = hub.commit("org/tiny", "main")
    offline(arc, hub)
    arc.env.pop("HF_ENDPOINT")
    arc("push", "hf://org/tiny", "org/tiny:v1-offline")
    assert arc.json("show", "org/tiny:v1-offline")["source_url"] == f"{hub.url}/org/tiny/tree/{commit}"
    assert _import_event(arc, "org/tiny:v1-offline")["endpoint"] == hub.url


def test_offline_from_a_cache_of_unknown_origin_claims_no_endpoint(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """A cache huggingface_hub filled (from any endpoint, a mirror say) was recorded as from huggingface.co."""
    from huggingface_hub import hf_hub_download

    commit = hub.commit("org/tiny", "main")
    hf_hub_download("org/tiny", "config.json", cache_dir=repo_cache(tmp_path).parent, endpoint=hub.url)
    offline(arc, hub)
    arc.env.pop("HF_ENDPOINT")
    arc("push", "hf://org/tiny", "org/tiny:v1", "--allow-partial")
    assert arc.json("show", "org/tiny:v1")["source_url"] == f"hf-cache:org/tiny@{commit}"
    shown = arc("show", "org/tiny:v1").stdout
    assert f"source:       hf-cache:org/tiny@{commit} (from a Hugging Face cache: the endpoint" in shown
    assert _import_event(arc, "org/tiny:v1")["endpoint"] is None
    # the user may say where it came from
    arc("push", "hf://org/tiny", "mine/tiny:v1", "--allow-partial", "--source", "https://example.org/tiny")
    assert arc.json("show", "mine/tiny:v1")["source_url"] == "https://example.org/tiny"


def test_offline_from_a_listing_that_names_no_endpoint_claims_none(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """A listing written before listings named their endpoint: the origin is not known."""
    arc("push", "hf://org/tiny", "org/tiny:v1")
    commit = hub.commit("org/tiny", "main")
    listing = repo_cache(tmp_path) / ".modelarc" / "listings" / f"{commit}.json"
    doc = json.loads(listing.read_text())
    assert doc["endpoint"] == hub.url
    del doc["endpoint"]
    listing.write_text(json.dumps(doc))
    offline(arc, hub)
    arc("push", "hf://org/tiny", "other/tiny:v1")
    assert arc.json("show", "other/tiny:v1")["source_url"] == f"hf-cache:org/tiny@{commit}"


@pytest.mark.parametrize(
    "endpoint",
    [
        "file:///etc",
        # a path and a "?" made the recorded source another repository's page
        "https://huggingface.co/meta-llama/Llama-2-7b-hf/tree/main?",
        "https://huggingface.co/meta-llama/Llama-2-7b-hf/tree/main#",
        "https://someone@huggingface.co",
    ],
)
def test_offline_refuses_a_listing_naming_an_endpoint_that_is_no_url(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, endpoint: str
) -> None:
    arc("push", "hf://org/tiny", "org/tiny:v1")
    commit = hub.commit("org/tiny", "main")
    listing = repo_cache(tmp_path) / ".modelarc" / "listings" / f"{commit}.json"
    listing.write_text(json.dumps({**json.loads(listing.read_text()), "endpoint": endpoint}))
    offline(arc, hub)
    line = last_line(arc.fail("push", "hf://org/tiny", "other/tiny:v1"))
    assert f"names endpoint '{endpoint}', not an http(s)://host[:port] URL" in line
    assert line.startswith("error: org/tiny@main in the Hugging Face cache: ")  # not "on HF_ENDPOINT"


def test_a_partial_reimport_of_an_archived_snapshot_moves_the_tag_and_keeps_its_record(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The same files imported again with --allow-partial were refused as a provenance conflict naming
    --description, which the user never gave: the import wrote the "Possibly partial" note (and an hf-cache:
    source). Only what the user states is held against the record."""
    arc("push", "hf://org/tiny", "org/tiny:v1")
    before = arc.json("show", "org/tiny:v1")
    commit = hub.commit("org/tiny", "main")
    (repo_cache(tmp_path) / ".modelarc" / "listings" / f"{commit}.json").unlink()  # as huggingface_hub leaves it
    offline(arc, hub)
    result = arc("push", "hf://org/tiny", "org/tiny:v2", "--allow-partial")
    assert "unchanged snapshot" in result.stdout
    after = arc.json("show", "org/tiny:v2")
    assert after["snapshot"] == before["snapshot"]
    assert (after["description"], after["source_url"]) == (before["description"], before["source_url"])
    assert _import_event(arc, "org/tiny:v2")["partial"] is not None
    # what the user states is still held against the record
    line = last_line(arc.fail("push", "hf://org/tiny", "org/tiny:v3", "--allow-partial", "--license", "mit"))
    assert "license 'mit' (--license; recorded: none)" in line and "--description" not in line

"""push hf://org/name[@rev] against a hostile Hub endpoint (tests/hubserver.py's tamper knobs): nothing outside the
private download folder is read or written, nothing the endpoint says is recorded unless the bytes bear it out, and
every refusal is one error line with the catalog unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ArchiveCli
from hubserver import HubServer, git_blob_id
from modelfactory import tiny_tensors, write_model

CONFIG = b'{"model_type": "gpt2", "n_layer": 1}\n'
SECRET = b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def served(tmp_path: Path, hub: HubServer) -> Path:
    folder = write_model(tmp_path / "served", tiny_tensors(seed=7), extra_files={"config.json": CONFIG})
    hub.add("org/tiny", folder)
    return folder


def refused(arc: ArchiveCli, *args: str) -> str:
    """The command fails in one line and the catalog holds no snapshot and no import event."""
    result = arc.fail(*args)
    assert arc.json("ls") == [] and arc.json("audit", "--action", "import") == []
    return result.stderr.strip().splitlines()[-1]


def _with_etag(etag: str) -> Callable[[str, bytes, dict[str, str]], bytes]:
    def tamper(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if path == "config.json":
            headers["ETag"] = f'"{etag}"'
        return data

    return tamper


@pytest.mark.parametrize("relative", [False, True])
def test_an_etag_naming_an_existing_file_does_not_get_it_archived(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, relative: bool
) -> None:
    secret = tmp_path / "secret.pem"
    secret.write_bytes(SECRET)
    # huggingface_hub named the blob by the ETag: blobs/<etag>, from HF_HOME/hub/models--org--tiny/blobs
    hub.tamper_file = _with_etag("../../../../secret.pem" if relative else str(secret))
    arc("push", "hf://org/tiny", "org/tiny:v1")
    arc("pull", "org/tiny:v1", tmp_path / "out")
    assert (tmp_path / "out" / "config.json").read_bytes() == CONFIG
    assert secret.read_bytes() == SECRET
    for p in (tmp_path / "out").rglob("*"):
        assert not p.is_file() or SECRET not in p.read_bytes(), p


@pytest.mark.parametrize("relative", [False, True])
def test_an_etag_naming_a_new_file_writes_nothing_there(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, relative: bool
) -> None:
    target = tmp_path / "site-packages" / "evil.pth"
    target.parent.mkdir()
    hub.tamper_file = _with_etag("../../../../site-packages/evil.pth" if relative else str(target))
    arc("push", "hf://org/tiny", "org/tiny:v1")
    assert not target.exists() and not target.with_name("evil.pth.lock").exists()
    assert list(target.parent.iterdir()) == []


def _lfs_sha256(value: str) -> Callable[[dict[str, Any]], None]:
    def tamper(info: dict[str, Any]) -> None:
        for sib in info["siblings"]:
            if "lfs" in sib:
                sib["lfs"]["sha256"] = value

    return tamper


def test_a_lying_lfs_sha256_is_refused(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    hub.tamper_info = _lfs_sha256("f" * 64)
    line = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert "model.safetensors" in line and "not the LFS sha256 " + "f" * 64 in line


def test_a_lying_blob_id_is_refused(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    def tamper(info: dict[str, Any]) -> None:
        for sib in info["siblings"]:
            if sib["rfilename"] == "config.json":
                sib["blobId"] = git_blob_id(b"something else")

    hub.tamper_info = tamper
    line = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert "config.json" in line and "not the blob id" in line


def test_a_body_the_listing_does_not_bear_out_is_refused(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    """The body (and its headers, consistent with it) differ from the listing: the listing's hash is what counts."""

    def tamper(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if path != "config.json":
            return data
        headers["ETag"] = f'"{git_blob_id(b"evil")}"'
        return b"evil"

    hub.tamper_file = tamper
    assert "config.json" in refused(arc, "push", "hf://org/tiny", "org/tiny:v1")


def test_a_body_longer_than_listed_is_refused(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    def tamper(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if path != "config.json":
            return data
        longer = data + b" " * (1 << 20)
        headers["ETag"] = f'"{git_blob_id(longer)}"'
        return longer

    hub.tamper_file = tamper
    line = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert "config.json" in line and f"more than the {len(CONFIG)} bytes it listed" in line


def test_a_listing_naming_another_commit_records_nothing_false(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The listing for main names v2's commit: the files are fetched at the commit the listing names and checked
    against the listing's hashes, so main's hashes with v2's bytes are refused, not recorded as either."""
    other = hub.add("org/tiny", write_model(tmp_path / "v2", tiny_tensors(seed=8)), revision="v2")

    def tamper(info: dict[str, Any]) -> None:
        info["sha"] = other

    hub.tamper_info = tamper
    line = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    # every file differs: the files download in parallel, and the one refused first is named
    assert line.startswith("error: org/tiny@main on ") and ("config.json" in line or "model.safetensors" in line)


def test_a_listing_whose_commit_and_files_agree_is_recorded_as_that_commit(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The endpoint answers "main" with v2's listing: v2's bytes are archived and v2's commit is what is recorded."""
    other = hub.add("org/tiny", write_model(tmp_path / "v2", tiny_tensors(seed=8)), revision="v2")
    arc("push", "hf://org/tiny@v2", "org/tiny:v2")
    hub.repos[("org/tiny", "main")] = tmp_path / "v2"  # main now serves v2's files under main's commit
    hub.tamper_info = lambda info: info.update(sha=other)
    pushed = arc.json("push", "hf://org/tiny", "org/tiny:main")
    assert pushed["snapshot"] == arc.json("show", "org/tiny:v2")["snapshot"]
    assert other in arc.json("show", "org/tiny:main")["source_url"]
    events = {e["target"]: e for e in arc.json("audit", "--action", "import")}
    assert events["org/tiny:main"]["details"]["commit"] == other


@pytest.mark.parametrize("sha", ["main; rm -rf ~", "../../x", "A" * 40, "a" * 39, 12])
def test_a_commit_that_is_not_40_hex_is_refused(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, sha: object
) -> None:
    hub.tamper_info = lambda info: info.update(sha=sha)
    assert "is not 40 lowercase hex digits" in refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/escape.txt", "a/../../b", "a//b", "a\\b"])
def test_a_listed_filename_that_could_escape_is_refused(
    arc: ArchiveCli, hub: HubServer, served: Path, name: str
) -> None:
    def tamper(info: dict[str, Any]) -> None:
        info["siblings"].append({"rfilename": name, "size": 1, "blobId": git_blob_id(b"x")})

    hub.tamper_info = tamper
    line = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert "listed file" in line
    assert not any("escape" in r for r in hub.requests)  # refused before any file was asked for


def test_a_listed_file_named_like_a_pull_temp_file_is_refused_before_any_download(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    """As a folder push refuses one: it was downloaded first, then refused naming the private download folder."""
    name = "sub/.modelarc-partial-0123456789abcdef0123456789abcdef"

    def tamper(info: dict[str, Any]) -> None:
        info["siblings"].append({"rfilename": name, "size": 1, "blobId": git_blob_id(b"x")})

    hub.tamper_info = tamper
    line = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert f"listed file '{name}' is named like the temp file of an interrupted 'modelarc pull'" in line
    assert not any("resolve" in r for r in hub.requests)  # refused before any file was asked for


@pytest.mark.parametrize(
    "sibling",
    [
        {"rfilename": "x.bin", "size": -1, "blobId": "0" * 40},
        {"rfilename": "x.bin", "size": 2**60, "blobId": "0" * 40},
        {"rfilename": "x.bin", "size": "7", "blobId": "0" * 40},
        {"rfilename": "x.bin", "size": 1},
        {"rfilename": "x.bin", "size": 1, "blobId": "../../etc"},
        {"rfilename": "x.bin", "size": 1, "lfs": {"sha256": "/etc/passwd"}},
        {"rfilename": "x.bin", "size": 1, "lfs": "yes"},
        {"size": 1, "blobId": "0" * 40},
        "x.bin",
    ],
)
def test_a_malformed_listing_is_refused_in_one_line(
    arc: ArchiveCli, hub: HubServer, served: Path, sibling: object
) -> None:
    hub.tamper_info = lambda info: info["siblings"].append(sibling)
    assert "org/tiny@main" in refused(arc, "push", "hf://org/tiny", "org/tiny:v1")


def test_a_listing_that_is_no_list_is_refused_in_one_line(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    hub.tamper_info = lambda info: info.update(siblings={"a": 1})
    assert "no list of files" in refused(arc, "push", "hf://org/tiny", "org/tiny:v1")


def test_a_listing_larger_than_the_file_limit_needs_is_refused_unparsed(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    """100,000 files (MAX_FILES_PER_SNAPSHOT) need ~30 MB of listing: a 40 MiB one is not parsed (60 MiB of "[]"
    once took the import to 1.7 GB)."""
    hub.tamper_info = lambda info: info.update(pad=" " * (40 << 20))
    assert "the endpoint's listing is larger than" in refused(arc, "push", "hf://org/tiny", "org/tiny:v1")


def test_a_revision_without_files_is_named_not_the_private_folder(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    hub.tamper_info = lambda info: info.update(siblings=[])
    said = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    assert "org/tiny@main" in said and "has no files to archive" in said
    assert ".modelarc-import" not in said


def test_a_stalled_body_ends_in_one_line(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    """The endpoint stalls a body until the push has ended: a push that returned at all was ended by its own
    1 s deadline, not by the endpoint (a wall-clock bound would fail on a loaded machine, not on a bug)."""
    import threading

    pushed = threading.Event()

    def tamper(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if path == "config.json":
            pushed.wait(120)  # (the answer a push that waited would get, after two minutes)
        return data

    hub.tamper_file = tamper
    arc.env["MODELARC_REMOTE_TIMEOUT"] = "1"
    try:
        # httpx's read timeout and the request's deadline fall within milliseconds here: either may say so
        error = refused(arc, "push", "hf://org/tiny", "org/tiny:v1")
    finally:
        stalled_still = not pushed.is_set()
        pushed.set()
    assert stalled_still and ("in time" in error or "not received within" in error), error


def test_git_paths_are_skipped_and_listed(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    def tamper(info: dict[str, Any]) -> None:
        info["siblings"].append({"rfilename": ".git/config", "size": 1, "blobId": git_blob_id(b"x")})

    hub.tamper_info = tamper
    result = arc("push", "hf://org/tiny", "org/tiny:v1")
    assert ".git" in result.stderr
    [event] = arc.json("audit", "--action", "import")
    assert event["details"]["skipped_git_paths"] == [".git/config"]
    assert not any(".git" in r for r in hub.requests)
    assert ".git/config" not in {f["path"] for f in arc.json("show", "org/tiny:v1")["files"]}


@pytest.mark.parametrize(
    "revision", ["../../x", "/abs", "a/../b", "a//b", "main\nx", "-x", "a/.hidden", "a" * 201, "..", "x/"]
)
def test_a_revision_that_could_escape_is_refused_before_any_request(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, revision: str
) -> None:
    line = refused(arc, "push", f"hf://org/tiny@{revision}", "org/tiny:v1")
    assert line.startswith("error: invalid Hub revision")
    assert hub.requests == []
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "revision", ["v1.0", "refs/pr/12", "feature/x_y-z", "0123456789abcdef0123456789abcdef01234567"]
)
def test_a_branch_tag_pr_or_commit_revision_is_asked_for(
    arc: ArchiveCli, hub: HubServer, served: Path, revision: str
) -> None:
    line = refused(arc, "push", f"hf://org/tiny@{revision}", "org/tiny:v1")
    assert line.startswith("error: no revision")
    assert hub.requests


@pytest.mark.parametrize(
    "repo", ["org/a..b", "org/a--b", "org/x.git", "org/x.", "org/é", "org/tiny/x", "../x/y"]
)
def test_a_repo_id_the_hub_refuses_is_refused_before_any_request(
    arc: ArchiveCli, hub: HubServer, served: Path, repo: str
) -> None:
    assert refused(arc, "push", f"hf://{repo}", "org/tiny:v1").startswith("error: invalid Hub source")
    assert hub.requests == []


# ------------------------------------------------------------------------------------------------------ offline
def _snapshot_link(tmp_path: Path, name: str) -> Path:
    snapshots = tmp_path / "hf-home" / "hub" / "models--org--tiny" / "snapshots"
    [commit] = list(snapshots.iterdir())
    return commit / name


def test_offline_import_from_the_cache_it_wrote(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    online = arc.json("push", "hf://org/tiny", "org/tiny:v1")["snapshot"]
    hub.stop()
    arc.env["HF_HUB_OFFLINE"] = "1"
    assert arc.json("push", "hf://org/tiny", "org/tiny:v1-offline")["snapshot"] == online
    events = {e["target"]: e["details"] for e in arc.json("audit", "--action", "import")}
    assert events["org/tiny:v1-offline"]["from_cache"] is True
    assert events["org/tiny:v1-offline"]["etags"] == events["org/tiny:v1"]["etags"]


@pytest.mark.parametrize("where", ["absolute", "relative", "inside-snapshot"])
def test_offline_a_cache_link_outside_blobs_is_refused(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path, where: str
) -> None:
    arc("push", "hf://org/tiny", "org/tiny:v1")
    before = arc.json("ls")
    secret = tmp_path / "secret.pem"
    secret.write_bytes(SECRET)
    link = _snapshot_link(tmp_path, "config.json")
    link.unlink()
    if where == "absolute":
        link.symlink_to(secret)
    elif where == "relative":
        link.symlink_to(os.path.relpath(secret, link.parent))
    else:
        (link.parent / "plain.txt").write_bytes(SECRET)
        link.symlink_to("plain.txt")
    hub.stop()
    arc.env["HF_HUB_OFFLINE"] = "1"
    result = arc.fail("push", "hf://org/tiny", "org/tiny:v2")
    assert "config.json" in result.stderr.splitlines()[-1]
    assert arc.json("ls") == before


def test_offline_a_plain_file_in_the_snapshot_is_refused(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    arc("push", "hf://org/tiny", "org/tiny:v1")
    (_snapshot_link(tmp_path, "extra.txt")).write_bytes(SECRET)
    hub.stop()
    arc.env["HF_HUB_OFFLINE"] = "1"
    assert "extra.txt" in arc.fail("push", "hf://org/tiny", "org/tiny:v2").stderr.splitlines()[-1]


def test_offline_a_blob_whose_bytes_do_not_match_its_name_is_refused(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """A shared cache another endpoint (or user) wrote: a blob is taken only when it hashes to its own name."""
    arc("push", "hf://org/tiny", "org/tiny:v1")
    blob = _snapshot_link(tmp_path, "model.safetensors").resolve()
    blob.chmod(0o644)
    blob.write_bytes(b"planted")
    hub.stop()
    arc.env["HF_HUB_OFFLINE"] = "1"
    line = arc.fail("push", "hf://org/tiny", "org/tiny:v2").stderr.splitlines()[-1]
    assert "model.safetensors" in line and "do not hash" in line


def test_sigterm_during_a_download_ends_the_import_and_leaves_no_folder(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The download runs in the main thread, so SIGTERM ends it like Ctrl-C (huggingface_hub's worker threads kept
    a stalled download going for minutes after it); the private folder is removed and nothing is recorded."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    release = threading.Event()

    def stall(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if path == "config.json":
            release.wait(60)
        return data

    hub.tamper_file = stall
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelarc.cli.main", "push", "hf://org/tiny", "org/tiny:v1", "--no-progress"],
        env={**os.environ, **arc.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(r.endswith("/config.json") for r in hub.requests) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=20)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143 and b"terminated" in stderr, stderr
    hub_cache = tmp_path / "hf-home" / "hub"
    assert not [p for p in hub_cache.iterdir() if p.name.startswith(".modelarc-import-")]
    assert arc.json("ls") == [] and arc.json("audit", "--action", "import") == []


def test_a_revision_pinned_to_a_commit_refuses_a_listing_for_another(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """The user pinned a commit: a listing (whose files all agree) for any other commit is not imported under the
    pin, and no ``refs/<40 hex>`` is written into the Hugging Face cache (a commit is a snapshot name, never a ref)."""
    pin = "0123456789abcdef0123456789abcdef01234567"
    answered = hub.add("org/tiny", served, revision=pin)  # the endpoint answers the pin with another commit
    assert answered != pin
    line = refused(arc, "push", f"hf://org/tiny@{pin}", "org/tiny:v1")
    assert answered in line and pin in line and "not the commit" in line
    assert not any(any(part == pin for part in p.parts) for p in (tmp_path / "hf-home").rglob("*"))


def test_cache_folders_are_skipped_and_listed(arc: ArchiveCli, hub: HubServer, tmp_path: Path) -> None:
    """Files under a .cache/ folder are skipped as a folder import skips them, and said so: never downloaded."""
    folder = write_model(tmp_path / "served", tiny_tensors(seed=7), extra_files={"config.json": CONFIG})
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "x.metadata").write_bytes(b"tool state")
    hub.add("org/tiny", folder)
    result = arc("push", "hf://org/tiny", "org/tiny:v1")
    assert ".cache" in result.stderr
    [event] = arc.json("audit", "--action", "import")
    assert event["details"]["skipped_git_paths"] == [".cache/huggingface/x.metadata"]
    assert not any(".cache" in r for r in hub.requests)
    assert not any(f["path"].startswith(".cache") for f in arc.json("show", "org/tiny:v1")["files"])

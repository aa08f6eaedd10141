"""Two `modelarc serve` processes sharing one PostgreSQL catalog and one S3 bucket serve one archive: clients push
different models through different servers at the same time while gc runs in a loop from a third process, and
afterwards every snapshot verifies, fsck --read-data is clean, and each model pulls byte-identical through the
server it was not pushed through."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from liveserver import serve_process
from modelfactory import big_model, finetune, tiny_tensors, write_model
from transferkit import files_of, make_home

from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.errors import LockedError


def test_two_servers_one_catalog_one_bucket_with_gc_in_a_loop(
    tmp_path: Path, postgresql_url: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = {"MODELARC_DATABASE_URL": postgresql_url, "MODELARC_STORE_URL": f"s3://{s3_bucket}/shared"}
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
    env = {k: v for k, v in os.environ.items()}
    homes = [tmp_path / "host-a", tmp_path / "host-b"]
    for home in homes:
        Archive.init(home)[0].close()  # each host its own home (signing key); catalog and bucket shared
    admin = Archive.open(homes[0])  # the gc host: a third client of the same catalog and bucket
    token = create_token(admin, "push", "ci").token
    for name in shared:
        monkeypatch.delenv(name)  # the clients below are plain local archives
    clients = [make_home(tmp_path, "alice"), make_home(tmp_path, "bob")]
    for client in clients:  # every server trusts what the shared catalog trusts: one import serves them all
        with client.archive() as mine:
            admin.import_key(mine.public_key_pem(), label=client.path.name)

    with ExitStack() as stack:
        # host b runs two uvicorn workers (the app factory of api/asgi.py): three server processes in all
        urls = [
            stack.enter_context(serve_process(homes[0], env)).url,
            stack.enter_context(serve_process(homes[1], env, "--workers", "2")).url,
        ]
        for client, url in zip(clients, urls, strict=True):
            client("remote", "add", "origin", url, "--token", token)
            other = urls[1] if url == urls[0] else urls[0]
            client("remote", "add", "other", other)

        sources = {}
        for i, client in enumerate(clients):
            for v in range(2):
                tensors = finetune(tiny_tensors(seed=i), [f"model.layers.{v}.mlp.weight"], seed=v + 1)
                sources[(client.path.name, v)] = write_model(tmp_path / f"src-{client.path.name}-{v}", tensors)
        sources[("alice", 2)] = big_model(tmp_path / "src-alice-big", megabytes=20, seed=7)

        stop = threading.Event()
        runs = {"gc": 0, "busy": 0, "removed": 0}

        def collect() -> None:
            while not stop.is_set():
                try:
                    runs["removed"] += admin.gc().objects_removed
                    runs["gc"] += 1
                except LockedError:
                    runs["busy"] += 1
                time.sleep(0.05)

        def push_all(client_name: str) -> None:
            client_env = {**os.environ, **next(c for c in clients if c.path.name == client_name).env}
            for (name, v), src in sorted(sources.items()):
                if name != client_name:
                    continue
                subprocess.run(
                    [sys.executable, "-m", "modelarc.cli.main", "push", str(src), f"{name}/m:v{v}",
                     "--remote", "origin", "--no-progress"],
                    env=client_env,
                    check=True,
                    capture_output=True,
                )

        collector = threading.Thread(target=collect)
        collector.start()
        pushers = [threading.Thread(target=push_all, args=(c.path.name,)) for c in clients]
        try:
            for t in pushers:
                t.start()
            for t in pushers:
                t.join(timeout=600)
        finally:
            stop.set()
            collector.join(timeout=120)
        assert runs["gc"] > 0, runs
        assert runs["removed"] == 0, runs  # nothing any push needed was ever garbage

        for (name, v), src in sorted(sources.items()):  # pulled through the server it was not pushed through
            client = clients[0] if name == "alice" else clients[1]
            out = tmp_path / f"out-{name}-{v}"
            client("pull", f"{name}/m:v{v}", out, "--remote", "other")
            assert files_of(out) == files_of(src)
    for (name, v) in sources:
        admin.verify(f"{name}/m:v{v}")
    report = admin.fsck(read_data=True)
    assert report.ok and report.unreferenced == 0, report
    admin.close()


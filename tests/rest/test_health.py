"""Liveness and readiness for the load balancer in front of several servers (docs/DEPLOY.md)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from liveserver import serve
from s3server import drop_bucket, raw_client

from modelarc.archive.repository import Archive


def test_ready_when_catalog_and_store_answer_and_not_once_the_bucket_is_gone(
    tmp_path: Path, s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELARC_DATABASE_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    archive, _ = Archive.init(tmp_path / "home", store=f"s3://{s3_bucket}/p")
    with archive, serve(archive, anonymous_read=False) as url:  # open even where reads need a token
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        assert ready.headers["cache-control"] == "no-store"
        drop_bucket(raw_client(s3_endpoint), s3_bucket)  # emptied first: init wrote catalog records into it
        try:
            gone = httpx.get(f"{url}/readyz")
            assert gone.status_code == 503
            checks = gone.json()["checks"]
            assert checks["catalog"]["ok"] and not checks["store"]["ok"]
            assert s3_bucket in checks["store"]["detail"]
            assert httpx.get(f"{url}/healthz").status_code == 200  # alive: restarting would not help
        finally:
            raw_client(s3_endpoint).create_bucket(Bucket=s3_bucket)  # for the fixture's clean-up

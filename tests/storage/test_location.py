"""Store locations: a folder path or s3://BUCKET/PREFIX; malformed URLs are one-line usage errors; boto3 is
imported for S3 stores only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelarc.errors import UsageError
from modelarc.storage.local import LocalBackend
from modelarc.storage.location import S3Location, open_backend, parse_s3_url
from modelarc.storage.store import ObjectStore


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://models", "models", ""),
        ("s3://models/", "models", ""),
        ("s3://models/prod", "models", "prod"),
        ("s3://models/team-a/prod/", "models", "team-a/prod"),
        ("S3://my.bucket-1/x", "my.bucket-1", "x"),
    ],
)
def test_parse_s3_url(url: str, bucket: str, prefix: str) -> None:
    assert parse_s3_url(url) == S3Location(bucket, prefix)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://ab", "invalid S3 bucket name"),
        ("s3://Models", "invalid S3 bucket name"),
        ("s3://under_score", "invalid S3 bucket name"),
        ("s3://-dash", "invalid S3 bucket name"),
        ("s3://two..dots", "invalid S3 bucket name"),
        ("s3://192.168.1.1", "invalid S3 bucket name"),
        ("s3://" + "a" * 64, "invalid S3 bucket name"),
        ("s3://models/../other", "invalid S3 prefix"),
        ("s3://models/a//b", "invalid S3 prefix"),
        ("s3://models/./a", "invalid S3 prefix"),
        ("s3://models:9000/x", "has a port"),
        ("s3://models/x?versionId=1", "no query"),
    ],
)
def test_malformed_s3_urls_are_one_line_usage_errors(url: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        open_backend(url)
    assert "\n" not in str(caught.value)


def test_credentials_in_an_s3_url_are_refused_without_being_echoed() -> None:
    with pytest.raises(UsageError, match="holds no credentials") as caught:
        parse_s3_url("s3://AKIAEXAMPLE:s3cr3t@models/prod")
    assert "s3cr3t" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_other_url_schemes_are_refused() -> None:
    with pytest.raises(UsageError, match="unsupported store URL scheme 'gs'"):
        open_backend("gs://models/prod")


def test_a_path_opens_the_local_backend(tmp_path: Path) -> None:
    backend = open_backend(str(tmp_path / "store"))
    assert isinstance(backend, LocalBackend)
    assert isinstance(open_backend(tmp_path / "other"), LocalBackend)
    store = ObjectStore.open_location(tmp_path / "store")
    assert store.get(store.put(b"local").id) == b"local"


def test_an_s3_url_opens_the_s3_backend_on_the_configured_endpoint(s3_bucket: str, s3_endpoint: str) -> None:
    from modelarc.storage.s3 import S3Backend

    backend = open_backend(f"s3://{s3_bucket}/team/prod")
    assert isinstance(backend, S3Backend)
    assert (backend.bucket, backend.prefix, backend.endpoint) == (s3_bucket, "team/prod", s3_endpoint)
    store = ObjectStore.open_location(f"s3://{s3_bucket}/team/prod")
    assert store.get(store.put(b"on s3").id) == b"on s3"


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_a_local_store_never_imports_boto3(tmp_path: Path) -> None:
    loaded = _imported_after(
        "from modelarc.storage.store import ObjectStore\n"
        f"store = ObjectStore.open_location({str(tmp_path / 'store')!r})\n"
        "store.get(store.put(b'x').id)"
    )
    assert not loaded & {"boto3", "botocore", "s3transfer"}


def test_boto3_is_imported_when_an_s3_url_is_opened() -> None:
    # a malformed URL is refused before the import; a well-formed one builds a client (no request is sent)
    assert "boto3" not in _imported_after(
        "from modelarc.storage.location import open_backend\ntry:\n    open_backend('s3://x')\nexcept Exception:\n"
        "    pass"
    )
    assert "boto3" in _imported_after(
        "import os\nos.environ['AWS_DEFAULT_REGION'] = 'us-east-1'\n"
        "from modelarc.storage.location import open_backend\nopen_backend('s3://models/prod')"
    )


def test_a_named_endpoint_host_gets_path_style_addressing(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore addresses buckets by path whenever an endpoint URL is configured (storage/s3.py default_client):
    with virtual-hosted style this would ask for BUCKET.localhost, which MinIO-style servers do not serve."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint.replace("127.0.0.1", "localhost"))
    store = ObjectStore.open_location(f"s3://{s3_bucket}/named-host")
    assert store.get(store.put(b"by path").id) == b"by path"

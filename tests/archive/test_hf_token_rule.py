"""Which Hub endpoints the user's token may be sent to: https anywhere, plain http only to this machine."""

from __future__ import annotations

import pytest

from modelarc.archive.remote.hf_fetch import may_carry_token


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://huggingface.co",
        "https://10.0.0.5:8443",
        "HTTPS://hub.example",
        "http://127.0.0.1:8080",
        "http://127.3.2.1",
        "http://localhost:9",
        "http://LOCALHOST",
        "http://[::1]:8080",
    ],
)
def test_the_token_may_go_to(endpoint: str) -> None:
    assert may_carry_token(endpoint)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://huggingface.co",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "http://[::2]:80",
        "http://0.0.0.0:80",
        "http://192.168.1.2",
    ],
)
def test_the_token_may_not_go_to(endpoint: str) -> None:
    assert not may_carry_token(endpoint)

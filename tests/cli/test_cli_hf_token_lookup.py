"""How push hf:// finds the user's token: HF_TOKEN, else the token file of `hf auth login`, read without a request.

huggingface_hub's own lookup may post a browser login's refresh token, or exchange an OIDC token
(`HF_OIDC_RESOURCE`), at `{HF_ENDPOINT}/oauth/token`: the untrusted endpoint, with no deadline (an endpoint that
never answered held the import for ever), and it stores the answer as the user's token.
"""

from __future__ import annotations

from pathlib import Path

from conftest import ArchiveCli
from hubserver import HubServer
from modelfactory import tiny_tensors, write_model

TOKEN = "hf_modelarcTestTokenFromFile0123456789"


def _serve(tmp_path: Path, hub: HubServer) -> None:
    hub.add(
        "org/tiny",
        write_model(tmp_path / "served", tiny_tensors(seed=9), extra_files={"config.json": b"{}\n"}),
    )


def test_the_token_file_is_read_and_nothing_asks_the_endpoint_for_a_token(
    arc: ArchiveCli, hub: HubServer, tmp_path: Path
) -> None:
    _serve(tmp_path, hub)
    token_file = tmp_path / "hf-token"
    token_file.write_text(TOKEN + "\n")
    arc.env.pop("HF_TOKEN", None)
    arc.env["HF_TOKEN_PATH"] = str(token_file)
    # huggingface_hub would exchange an OIDC token at the endpoint
    arc.env["HF_OIDC_RESOURCE"] = "modelarc-test"
    arc("push", "hf://org/tiny", "org/tiny:v1")
    assert hub.requests and not [r for r in hub.requests if "oauth" in r], hub.requests
    assert [h.get("authorization") for h in hub.headers] == [f"Bearer {TOKEN}"] * len(hub.requests)
    assert arc.json("show", "org/tiny:v1")["snapshot"]

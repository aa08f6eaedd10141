"""What docs/API.md says about gated models is what the server answers unmodified huggingface_hub.

Found by probing the server (finding 5): the docs said ``list_models(gated=True)`` finds nothing, that
``model_info``'s ``gated`` is always false, that "gated models come with a later issue" and that ``auth_check``
would come "with gated models", while the server had gated models and answered otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi
from liveserver import serve
from modelfactory import tiny_tensors, write_model

from modelarc.archive.access import set_policy
from modelarc.archive.repository import Archive

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"


@pytest.fixture(scope="module")
def api(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfApi]:
    base = tmp_path_factory.mktemp("gated-docs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    try:
        for seed, name in enumerate(("open", "closed", "secret")):
            archive.push(write_model(base / name, tiny_tensors(seed=seed)), f"acme/{name}:latest")
        set_policy(archive, "acme/closed", "gated", reason="ask first")
        set_policy(archive, "acme/secret", "restricted", reason="under agreement")
        with serve(archive) as url:
            yield HfApi(endpoint=url, token=False)
    finally:
        archive.close()


def _doc() -> str:
    return " ".join(DOC.read_text().split())  # a phrase may be wrapped anywhere


def test_list_models_gated_finds_the_models_whose_weights_are_withheld(api: HfApi) -> None:
    assert {m.id for m in api.list_models(gated=True)} == {"acme/closed", "acme/secret"}
    assert {m.id for m in api.list_models(gated=False)} == {"acme/open"}
    assert "`gated=true` keeps the models whose default revision's weights are withheld (gated or restricted" in _doc()
    assert "`gated=true` finds nothing" not in _doc()


def test_model_info_reports_gated_as_manual_for_withheld_weights(api: HfApi) -> None:
    gated: dict[str, Any] = {name: api.model_info(f"acme/{name}").gated for name in ("open", "closed", "secret")}
    assert gated == {"open": False, "closed": "manual", "secret": "manual"}
    doc = _doc()
    assert '`gated` (`"manual"` when the revision\'s weights are withheld, else false' in doc
    assert "`private`/`gated`/`disabled` (false)" not in doc


def test_the_docs_promise_no_later_issue_for_gated_models() -> None:
    doc = _doc()
    assert "Gated models come with a later issue" not in doc
    assert "| not yet | with gated models |" not in doc

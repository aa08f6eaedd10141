"""A name, tag or revision with a final newline names nothing on any route family. The REF parser matched
``^...$`` with ``re.match``, where ``$`` also matches before a final newline, so ``/ui/snapshots/acme/m/v1%0A``
served v1's page (200) while ``/v1`` (its own path patterns) answered 400."""

from __future__ import annotations

import httpx
import pytest
from liveserver import serve
from modelfactory import write_model

from modelarc.archive.repository import Archive


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, module_database_url: str):  # type: ignore[no-untyped-def]
    """One server per module and backend: every test only reads."""
    tmp_path = tmp_path_factory.mktemp("names")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(tmp_path / "home")
    archive.push(write_model(tmp_path / "m"), "acme/m:v1")
    with serve(archive) as url:
        yield url
    archive.close()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/snapshots/acme/m/v1{nl}",
        "/ui/snapshots/acme/m{nl}/v1",
        "/ui/snapshots/acme{nl}/m/v1",
        "/ui/models/acme/m{nl}",
        "/v1/snapshots/acme/m/v1{nl}",
        "/v1/transfer/snapshots/acme/m/v1{nl}",
        "/acme/m/resolve/v1{nl}/config.json",
        "/api/models/acme/m/revision/v1{nl}",
        "/api/models/acme/m/tree/v1{nl}",
    ],
)
def test_a_final_newline_names_nothing(served: str, path: str) -> None:
    assert httpx.get(served + path.format(nl="")).status_code == 200, path
    answer = httpx.get(served + path.format(nl="%0A"))
    assert answer.status_code in (400, 404, 422), (path, answer.status_code)

"""An app built from the environment alone, for process managers that start the server themselves:

    uvicorn --factory modelarc.api.asgi:create_app_from_env --host 0.0.0.0 --port 8470 --workers 4

with ``MODELARC_HOME`` (signing key, config.json), ``MODELARC_DATABASE_URL`` and ``MODELARC_STORE_URL`` set as in
docs/DEPLOY.md. ``modelarc serve --workers N`` uses it too: every worker opens its own archive (engine pool, S3
client), since neither may cross a fork.
"""

from __future__ import annotations

from fastapi import FastAPI

from modelarc.api.app import create_app
from modelarc.archive.repository import Archive
from modelarc.config import anonymous_read_default


def create_app_from_env() -> FastAPI:
    archive = Archive.open()
    return create_app(lambda: archive, anonymous_read=anonymous_read_default())

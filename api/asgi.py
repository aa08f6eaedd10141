"""An app built from the environment alone, for process managers that start the server themselves:

    uvicorn --factory modelarc.api.asgi:create_app_from_env --host 0.0.0.0 --port 8470 --workers 4

with ``MODELARC_HOME`` (signing key, config.json), ``MODELARC_DATABASE_URL`` and ``MODELARC_STORE_URL`` set as in
docs/DEPLOY.md, and ``MODELARC_PUBLIC_URL`` where clients reach the servers through another name (a proxy).
``modelarc serve --workers N`` uses it too: every worker opens its own archive (engine pool, S3
client), since neither may cross a fork.
"""

from __future__ import annotations

from fastapi import FastAPI

from modelarc.api.app import create_app
from modelarc.api.public_url import PublicUrl
from modelarc.archive.repository import Archive
from modelarc.config import anonymous_read_default, public_url_setting
from modelarc.errors import UsageError


def create_app_from_env() -> FastAPI:
    public = public_url_setting()
    try:  # before the archive: a typo fails first, in one line rather than uvicorn's traceback of the factory
        public_url = PublicUrl.parse(public) if public is not None else None
    except UsageError as exc:
        raise SystemExit(f"error: MODELARC_PUBLIC_URL: {exc}") from None
    archive = Archive.open()
    return create_app(lambda: archive, anonymous_read=anonymous_read_default(), public_url=public_url)

"""``modelarc serve``: the REST API and Hugging Face Hub-compatible routes over this archive."""

from __future__ import annotations

import os

import click

from modelarc.cli.startup import startup_done


def _host(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """An empty host would bind every interface (uvicorn passes it on as it is): that must be asked for as 0.0.0.0."""
    if not value.strip():
        raise click.BadParameter("give a host name or address (0.0.0.0 for every interface), not an empty one")
    return value


# seconds a stopping server (Ctrl-C, SIGTERM) gives the downloads in flight before it closes them: a slow client
# that keeps reading is never dropped by the send timeout, and would otherwise hold the stop for as long as it reads
GRACEFUL_SHUTDOWN = 10


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, callback=_host)
@click.option("--port", type=click.IntRange(1, 65535), default=8470, show_default=True)
@click.option(
    "--anonymous-read/--no-anonymous-read",
    default=True,
    show_default=True,
    help="Allow reads without a token (see `modelarc token create --scope read`).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Server processes on this port (uvicorn workers); each opens the archive itself. Several servers on "
    "other hosts may share the same catalog and store: see docs/DEPLOY.md.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, anonymous_read: bool, workers: int) -> None:
    """Serve the archive: /v1 JSON API, OpenAPI at /docs, and Hub routes for HF_ENDPOINT=http://HOST:PORT."""
    import uvicorn

    from modelarc.archive.repository import Archive

    archive = Archive.open(ctx.obj["home"])
    startup_done()  # a long-lived process: the collector's usual thresholds from here on
    base = f"http://{host}:{port}"
    click.echo(
        f"serving {archive.settings.home} at {base}/ (catalog), {base}/docs (API), HF_ENDPOINT={base}; "
        f"objects in {archive.settings.store_location}; Ctrl-C stops",
        err=True,
    )
    if workers > 1:
        # each worker process builds its own app from the environment (modelarc/api/asgi.py)
        archive.close()
        os.environ["MODELARC_HOME"] = str(archive.settings.home)
        os.environ["MODELARC_ANONYMOUS_READ"] = "1" if anonymous_read else "0"
        uvicorn.run(
            "modelarc.api.asgi:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
        return
    from modelarc.api.app import create_app

    uvicorn.run(
        create_app(lambda: archive, anonymous_read=anonymous_read),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )


def register(group: click.Group) -> None:
    group.add_command(serve)

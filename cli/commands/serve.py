"""``modelarc serve``: the REST API and Hugging Face Hub-compatible routes over this archive."""

from __future__ import annotations

import click


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8470, show_default=True)
@click.option(
    "--anonymous-read/--no-anonymous-read",
    default=True,
    show_default=True,
    help="Allow reads without a token (see `modelarc token create --scope read`).",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, anonymous_read: bool) -> None:
    """Serve the archive: /v1 JSON API, OpenAPI at /docs, and Hub routes for HF_ENDPOINT=http://HOST:PORT."""
    import uvicorn

    from modelarc.api.app import create_app
    from modelarc.archive.repository import Archive

    archive = Archive.open(ctx.obj["home"])
    base = f"http://{host}:{port}"
    click.echo(
        f"serving {archive.settings.home} at {base}/ (catalog), {base}/docs (API), HF_ENDPOINT={base}; Ctrl-C stops",
        err=True,
    )
    uvicorn.run(
        create_app(lambda: archive, anonymous_read=anonymous_read), host=host, port=port, log_level="warning"
    )


def register(group: click.Group) -> None:
    group.add_command(serve)

"""``modelarc serve``: the REST API and Hugging Face Hub-compatible routes over this archive."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import socket
import sys
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from modelarc.cli.options import FiniteFloatRange
from modelarc.cli.startup import startup_done

if TYPE_CHECKING:  # the api package (FastAPI, Starlette) is imported only when `serve` runs
    from modelarc.api.public_url import PublicUrl


def _host(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """An empty host would bind every interface (uvicorn passes it on as it is): that must be asked for as 0.0.0.0."""
    if not value.strip():
        raise click.BadParameter(
            "give a host name or address (0.0.0.0 for every interface), not an empty one"
        )
    return value


def _public_url(ctx: click.Context, param: click.Parameter, value: str | None) -> PublicUrl | None:
    """Parsed before the archive is opened or a port bound: a typo is one error line, not a server that names
    itself wrongly in every next-page link. The line names the variable when the value came from it."""
    from modelarc.api.public_url import PublicUrl
    from modelarc.errors import UsageError

    if value is None or not value.strip():
        return None
    try:
        return PublicUrl.parse(value)
    except UsageError as exc:
        from_env = param.name is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
        raise click.BadParameter(f"{exc} (from MODELARC_PUBLIC_URL)" if from_env else str(exc)) from None


# seconds a stopping server (Ctrl-C, SIGTERM) gives the downloads in flight before it closes them, unless
# `--shutdown-grace` says otherwise: a slow client that keeps reading is never dropped by the send timeout, and would
# otherwise hold the stop for as long as it reads
GRACEFUL_SHUTDOWN = 10.0
# the longest grace `--shutdown-grace` takes: a stop held for longer is one a process manager has long since killed
MAX_SHUTDOWN_GRACE = 3600.0

# uvicorn's own line when the grace runs out (uvicorn/server.py ``Server.shutdown``), logged to "uvicorn.error" with
# the number of request tasks it is about to cancel as its one argument
_UVICORN_GRACE_EXCEEDED = "Cancel %s running task(s), timeout graceful shutdown exceeded"

# the last line of a traceback formatted as text (Starlette's lifespan sends uvicorn ``traceback.format_exc()``, and
# uvicorn logs it as the message) when the exception was a ``CancelledError``
_CANCELLED_LAST_LINE = re.compile(r"(asyncio\.(exceptions\.)?)?CancelledError(:.*)?")
# the same text, of a ``CancelledError`` raised while a ``KeyboardInterrupt`` was handled (see ``_torn_down``)
_TORN_DOWN_TEXT = re.compile(r"^KeyboardInterrupt\n\nDuring handling of the above exception", re.MULTILINE)


class StoppingServerLog(logging.Filter):
    """What a stopping server says about the requests it cut off: one line, never a traceback per request.

    When the grace runs out uvicorn cancels every request task still running (a download to a slow reader, most
    likely), and its protocol catches the task's ``CancelledError`` as any ``BaseException`` and logs it as
    "Exception in ASGI application" with the traceback. That record is dropped here, but only for a task that was
    itself cancelled (``Task.cancelling()``): the server stopping, by the grace or by asyncio's teardown after a
    second Ctrl-C. Every other exception of a request, and a ``CancelledError`` that some code raised without its
    task being cancelled (a bug), is logged as uvicorn logs it. uvicorn's own line is reworded to name the grace.

    After a second Ctrl-C (``forced``, set by cli/stopping_server.py ``StoppingServer``, which then says how many
    requests it stopped) every ``CancelledError`` of a request or of the lifespan is asyncio's teardown cancelling
    what uvicorn left running, whether or not the task still counts itself cancelled: dropped too. A worker of
    ``--workers N`` runs uvicorn's own server, which sets no ``forced``; there the sign is the ``KeyboardInterrupt``
    that asyncio's teardown runs under (the ``CancelledError``'s context), and each request gets its one line.

    Installed on the "uvicorn.error" logger through uvicorn's ``log_config``, so each worker process of
    ``--workers N`` (spawned, configured from that dict) has it too.
    """

    def __init__(self, grace: float) -> None:
        super().__init__()
        self.grace = grace
        self.grace_exceeded = False  # the one line was said: a cut-off request needs none of its own
        self.forced = False  # a second Ctrl-C skipped the grace; the server said the one line

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _UVICORN_GRACE_EXCEEDED and isinstance(record.args, tuple) and len(record.args) == 1:
            count = record.args[0]
            record.msg = "stopped %s request%s still in flight after the %g s grace"
            record.args = (count, "" if count == 1 else "s", self.grace)
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            self.grace_exceeded = True
            return True
        if _cancelled_traceback_text(record):  # the lifespan's, handed to uvicorn as text
            return not ((self.forced or _TORN_DOWN_TEXT.search(record.msg)) and _only_cancellation(record.msg))
        if record.exc_info is None or not isinstance(record.exc_info[1], asyncio.CancelledError):
            return True
        if self.forced:
            return False
        if not (_task_cancelled() or _torn_down(record.exc_info[1])):
            return True
        if self.grace_exceeded:
            return False
        # cut off without the grace line (a second Ctrl-C): one line for this request, in place of the traceback
        record.msg = "stopped a request still in flight"
        record.args, record.exc_info, record.exc_text = (), None, None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def _task_cancelled() -> bool:
    """Whether the record is logged from an asyncio task that something cancelled (uvicorn, asyncio.run)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not in the event loop's thread
        return False
    return task is not None and task.cancelling() > 0


def _torn_down(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a ``KeyboardInterrupt`` was handled: a second Ctrl-C makes uvicorn return
    and raise it again, and asyncio.run, on its way out with it, cancels every task still running."""
    context = exc.__context__
    for _ in range(8):  # a teardown's is the first or second; a chain is never a loop, but need not be walked far
        if context is None:
            return False
        if isinstance(context, KeyboardInterrupt):
            return True
        context = context.__context__
    return False


def _cancelled_traceback_text(record: logging.LogRecord) -> bool:
    """Whether the record's message is a traceback, as text, of a ``CancelledError`` (the lifespan's, cancelled)."""
    if record.exc_info is not None or not isinstance(record.msg, str):
        return False
    text = record.msg.rstrip()
    return text.startswith("Traceback (most recent call last):") and bool(
        _CANCELLED_LAST_LINE.fullmatch(text.rsplit("\n", 1)[-1])
    )


# the lines of a traceback text that join one exception to the next, besides the exceptions themselves
_CHAIN_LINES = (
    "Traceback (most recent call last):",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def _only_cancellation(text: str) -> bool:
    """Whether every exception of a traceback text is a Ctrl-C's ``KeyboardInterrupt`` or the ``CancelledError``
    of the teardown: a lifespan that failed on its own (a disk full at shutdown) before it was cancelled keeps its
    traceback. An exception is a line that is not indented (frames and exception groups are) and not one of the
    lines that chain them; a message of several lines counts as another exception, so it too is kept."""
    for line in text.splitlines():
        if not line or line[0].isspace() or line in _CHAIN_LINES:
            continue
        if line != "KeyboardInterrupt" and not _CANCELLED_LAST_LINE.fullmatch(line):
            return False
    return True


def log_config(grace: float) -> dict[str, Any]:
    """uvicorn's logging, with ``StoppingServerLog`` on the "uvicorn.error" logger (where both its lines go)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["stopping"] = {
        "()": f"{__name__}.{StoppingServerLog.__name__}",
        "grace": grace,
    }
    config["loggers"]["uvicorn.error"]["filters"] = ["stopping"]
    return config


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, callback=_host, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8470, show_default=True, help="Port to listen on.")
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
@click.option(
    "--shutdown-grace",
    type=FiniteFloatRange(0, MAX_SHUTDOWN_GRACE),
    default=GRACEFUL_SHUTDOWN,
    show_default=True,
    metavar="SECONDS",
    help="On Ctrl-C or SIGTERM, how long requests in flight (downloads to slow readers) may go on before they are "
    "cut off; keep it below your process manager's stop timeout (systemd's TimeoutStopSec, Kubernetes' "
    "terminationGracePeriodSeconds). A second Ctrl-C cuts them off at once.",
)
@click.option(
    "--public-url",
    envvar="MODELARC_PUBLIC_URL",
    callback=_public_url,
    metavar="URL",
    help="http(s)://HOST[:PORT] clients reach this server at (behind a proxy or a cache): the URLs it hands out "
    "(next pages, redirects) name it instead of each request's Host header. Env: MODELARC_PUBLIC_URL.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    anonymous_read: bool,
    workers: int,
    shutdown_grace: float,
    public_url: PublicUrl | None,
) -> None:
    """Serve the archive: /v1 JSON API, OpenAPI at /docs, and Hub routes for HF_ENDPOINT=http://HOST:PORT."""
    import uvicorn

    from modelarc.archive.repository import Archive
    from modelarc.cli.http_protocol import ServeHTTPProtocol

    archive = Archive.open(ctx.obj["home"])
    startup_done()  # a long-lived process: the collector's usual thresholds from here on
    # the socket is bound here, before the banner: a port in use is one `error:` line (ListenError, exit 16), not
    # "serving ..." followed by uvicorn's own ERROR line and its exit code 3 (which is modelarc's "not found")
    sock = _listen(host, port)
    base = f"http://{host}:{port}"
    reached = f"{public_url}/ (public URL), " if public_url is not None else ""
    click.echo(
        f"serving {archive.settings.home} at {base}/ (catalog), {reached}{base}/docs (API), "
        f"HF_ENDPOINT={public_url or base}; objects in {archive.settings.store_location}; Ctrl-C stops",
        err=True,
    )
    if workers > 1:
        # each worker process builds its own app from the environment (modelarc/api/asgi.py)
        archive.close()
        os.environ["MODELARC_HOME"] = str(archive.settings.home)
        os.environ["MODELARC_ANONYMOUS_READ"] = "1" if anonymous_read else "0"
        # the option's value, over what the shell set (click read that already: it is ``public_url`` when no
        # option was given); empty for none, a blank variable included
        os.environ["MODELARC_PUBLIC_URL"] = str(public_url or "")
        uvicorn.run(
            "modelarc.api.asgi:create_app_from_env",
            factory=True,
            fd=sock.fileno(),  # the listening socket bound above, shared by the workers
            http=ServeHTTPProtocol,  # cli/http_protocol.py: no 40 ms ACK wait; unread bodies get a deadline
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            timeout_graceful_shutdown=shutdown_grace,  # typed int, used as asyncio.timeout's delay: a float works
            log_config=log_config(shutdown_grace),
        )
        return
    from uvicorn.config import STARTUP_FAILURE

    from modelarc.api.app import create_app
    from modelarc.cli.stopping_server import StoppingServer

    # what uvicorn.run does for one process, with the server that tells the log of a second Ctrl-C
    server = StoppingServer(
        uvicorn.Config(
            create_app(lambda: archive, anonymous_read=anonymous_read, public_url=public_url),
            http=ServeHTTPProtocol,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=shutdown_grace,
            log_config=log_config(shutdown_grace),
        )
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # the Ctrl-C (or SIGTERM) that stopped it, raised again once the server is down
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` as uvicorn binds one (SO_REUSEADDR, IPv6 for an address with ':'), or
    ``ListenError`` naming the address and what the system said."""
    from modelarc.errors import ListenError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's default backlog
    except (OSError, OverflowError) as exc:  # socket.gaierror too: a host name that does not resolve
        sock.close()
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        shown = f"[{host}]" if ":" in host else host
        raise ListenError(f"cannot listen on {shown}:{port}: {said[:1].lower() + said[1:]}") from None
    sock.set_inheritable(True)
    return sock


def register(group: click.Group) -> None:
    group.add_command(serve)

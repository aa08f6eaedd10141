"""uvicorn's server for ``modelarc serve``, telling its log filter when a second Ctrl-C cut the stop short.

Kept out of cli/commands/serve.py because importing uvicorn costs about a quarter of a second, and every module of
cli/commands is imported for ``modelarc --help``; ``serve`` imports this one when it starts the server.
"""

from __future__ import annotations

import logging
import socket
from types import FrameType

import uvicorn

from modelarc.cli.commands.serve import StoppingServerLog

# where uvicorn logs, and where the filter sits (serve.log_config)
logger = logging.getLogger("uvicorn.error")


class StoppingServer(uvicorn.Server):
    """A second Ctrl-C makes uvicorn skip the grace: it leaves the requests still running to asyncio's teardown,
    which cancels them once the server has returned, and each then logged its ``CancelledError`` with a traceback,
    as did the app's lifespan (Starlette hands uvicorn that traceback as text). Under anyio such a task may no longer
    count as cancelled, which is how the filter knows the grace's cancel from a bug's ``CancelledError``, so the
    server says so: from the forced exit on, the filter drops them, and the server says once how many it stopped.

    Only the one-process server: the workers of ``--workers N`` are uvicorn's own ``Server``, built by its
    supervisor (uvicorn/supervisors/multiprocess.py ``Process.server``), which takes no server class. The filter
    knows their teardown by the ``KeyboardInterrupt`` it runs under, and says one line per request.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.force_exit:
            for stopping in _stopping_logs():
                stopping.forced = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        if self.force_exit and self.server_state.tasks:
            count = len(self.server_state.tasks)
            logger.warning(
                "stopped %s request%s still in flight: a second Ctrl-C skips the %g s grace",
                count,
                "" if count == 1 else "s",
                self.config.timeout_graceful_shutdown,
            )


def _stopping_logs() -> list[StoppingServerLog]:
    return [f for f in logger.filters if isinstance(f, StoppingServerLog)]

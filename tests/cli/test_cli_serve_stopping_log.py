"""What ``serve``'s log filter (cli/commands/serve.py ``StoppingServerLog``) lets through, record by record, as uvicorn
logs them: a request task's exception from inside that task, and the grace line from the server's.

The whole path (a real ``modelarc serve`` stopped with a slow reader, one process and ``--workers 2``) is
tests/rest/test_stalled_downloads.py::test_a_stopping_server_does_not_wait_on_a_slow_reader; this one holds the
other side, fast: a genuine exception of a request is still logged with its traceback, stopping or not. A second
Ctrl-C (the filter's ``forced``, set by cli/stopping_server.py ``StoppingServer``) is
tests/rest/test_serve_second_ctrl_c.py.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from modelarc.cli.commands.serve import StoppingServerLog

ASGI_ERROR = "Exception in ASGI application\n"  # uvicorn/protocols/http/h11_impl.py run_asgi
# what Starlette's lifespan hands uvicorn as the message of "lifespan.shutdown.failed" (traceback.format_exc()) when
# asyncio's teardown cancels it, logged by uvicorn/lifespan/on.py as it is, without exc_info
LIFESPAN_CANCELLED = """Traceback (most recent call last):
  File "starlette/routing.py", line 668, in lifespan
    await receive()
  File "asyncio/queues.py", line 158, in get
    await getter
asyncio.exceptions.CancelledError
"""
# how that text begins when asyncio's teardown cancelled the lifespan, under the KeyboardInterrupt a second Ctrl-C
# makes uvicorn raise again
TORN_DOWN = """Traceback (most recent call last):
  File "uvicorn/server.py", line 349, in capture_signals
    signal.raise_signal(captured_signal)
KeyboardInterrupt

During handling of the above exception, another exception occurred:

"""
GRACE_LINE = "Cancel %s running task(s), timeout graceful shutdown exceeded"  # uvicorn/server.py shutdown


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of the test's own (never uvicorn's, which other tests' servers configure) with the filter on."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger(f"{__name__}.serve")
    logger.propagate = False
    logger.addHandler(handler)
    logger.addFilter(StoppingServerLog(10))
    yield logger, out
    logger.removeHandler(handler)
    logger.filters.clear()


async def _request(logger: logging.Logger, body: BaseException | None, *, cancel: bool) -> None:
    """A request task that fails with ``body`` (or waits, to be cancelled), logged as uvicorn's ``run_asgi`` does:
    from within the task, in its ``except BaseException``."""

    async def run_asgi() -> None:
        try:
            if body is not None and not cancel:
                raise body
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                if body is not None:
                    raise body from None  # cleanup that fails while the task is being cancelled
                raise
        except BaseException as exc:
            logger.error(ASGI_ERROR, exc_info=exc)

    task = asyncio.create_task(run_asgi())
    await asyncio.sleep(0)
    if cancel:
        task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
    await task


def test_the_grace_line_says_what_was_stopped_and_the_cancelled_download_no_traceback(log) -> None:
    logger, out = log
    logger.error(GRACE_LINE, 1)
    asyncio.run(_request(logger, None, cancel=True))
    assert out.getvalue() == "WARNING: stopped 1 request still in flight after the 10 s grace\n"


def test_a_request_cut_off_without_the_grace_line_gets_one_line(log) -> None:
    """A second Ctrl-C skips the grace: asyncio's teardown cancels the request, and no summary came before."""
    logger, out = log
    asyncio.run(_request(logger, None, cancel=True))
    assert out.getvalue() == "WARNING: stopped a request still in flight\n"


@pytest.mark.parametrize("stopping", [False, True], ids=["serving", "stopping"])
def test_a_genuine_exception_of_a_request_keeps_its_traceback(log, stopping: bool) -> None:
    logger, out = log
    if stopping:
        logger.error(GRACE_LINE, 2)
    asyncio.run(_request(logger, ValueError("a real bug"), cancel=False))
    asyncio.run(_request(logger, OSError("cleanup failed"), cancel=True))
    # a CancelledError some code raised while its task was not cancelled is a bug too, not the server stopping
    asyncio.run(_request(logger, asyncio.CancelledError("raised by hand"), cancel=False))
    text = out.getvalue()
    assert text.count("Traceback") == 3, text
    assert "ValueError: a real bug" in text and "OSError: cleanup failed" in text, text
    assert "CancelledError: raised by hand" in text, text


def test_after_a_second_ctrl_c_the_cancelled_requests_and_lifespan_say_nothing(log) -> None:
    """The server said the one line; asyncio's teardown cancels what it left, and under anyio a cancelled request's
    task may no longer count as cancelled (the same record as a hand-raised ``CancelledError``)."""
    logger, out = log
    logger.filters[0].forced = True
    asyncio.run(_request(logger, None, cancel=True))
    asyncio.run(_request(logger, asyncio.CancelledError(), cancel=False))
    logger.error(LIFESPAN_CANCELLED)
    assert out.getvalue() == ""


def test_after_a_second_ctrl_c_a_genuine_exception_keeps_its_traceback(log) -> None:
    logger, out = log
    logger.filters[0].forced = True
    asyncio.run(_request(logger, ValueError("a real bug"), cancel=False))
    asyncio.run(_request(logger, OSError("cleanup failed"), cancel=True))
    logger.error(LIFESPAN_CANCELLED.replace("asyncio.exceptions.CancelledError", "OSError: shutdown failed"))
    text = out.getvalue()
    assert text.count("Traceback") == 3, text
    assert "ValueError: a real bug" in text and "OSError: cleanup failed" in text, text
    assert "OSError: shutdown failed" in text, text


def test_in_a_worker_what_the_teardown_after_a_second_ctrl_c_cancels_gets_a_line_per_request(log) -> None:
    """A worker of ``--workers N`` runs uvicorn's own server, which sets no ``forced``: asyncio.run cancels what it
    left while the ``KeyboardInterrupt`` uvicorn raised again is handled, the context of each ``CancelledError``."""
    logger, out = log

    def torn_down() -> asyncio.CancelledError:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            try:
                raise asyncio.CancelledError()
            except asyncio.CancelledError as exc:
                return exc

    logger.error(ASGI_ERROR, exc_info=torn_down())
    logger.error(LIFESPAN_CANCELLED.replace("Traceback", TORN_DOWN + "Traceback", 1))
    assert out.getvalue() == "WARNING: stopped a request still in flight\n"


def test_before_any_stop_the_lifespans_cancelled_traceback_is_logged(log) -> None:
    logger, out = log
    logger.error(LIFESPAN_CANCELLED)
    assert out.getvalue() == "ERROR: " + LIFESPAN_CANCELLED + "\n"


def test_after_a_second_ctrl_c_a_lifespan_that_failed_before_its_cancel_keeps_its_traceback(log) -> None:
    """The text ends in the teardown's ``CancelledError``, but a genuine error came first (review finding): one
    process (``forced``) and a worker (the ``KeyboardInterrupt`` it was torn down under) alike."""
    logger, out = log
    failed_first = LIFESPAN_CANCELLED.replace(
        "Traceback",
        "Traceback (most recent call last):\n  File \"app.py\", line 9, in shutdown\n    flush()\n"
        "OSError: [Errno 28] No space left on device\n\n"
        "During handling of the above exception, another exception occurred:\n\nTraceback",
        1,
    )
    logger.error(TORN_DOWN + failed_first)  # a worker
    logger.filters[0].forced = True
    logger.error(failed_first)  # one process
    text = out.getvalue()
    assert text.count("No space left on device") == 2, text

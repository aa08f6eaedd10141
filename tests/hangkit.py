"""Running a call that must end, not hang, on a thread of its own: what it raised, or a failed test if it is still
running at the deadline (a pool waiting forever on a failed item shows up as a timeout, not a stuck suite)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def raised_within(call: Callable[[], object], seconds: float, what: str) -> list[BaseException]:
    """Run ``call`` on a daemon thread and wait up to ``seconds``; the exceptions it raised (at most one). ``what``
    names the call in the failure message, e.g. ``"restore"``."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), f"{what} hung"
    return raised

"""tests/liveserver.py fails loudly when its server does not come up, and leaves no server thread behind."""

from __future__ import annotations

import asyncio
import socket
import threading
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from liveserver import ServerStartError, free_port, serve_app


def _threads_on(port: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"liveserver:{port}" and t.is_alive()]


def test_a_server_that_starts_is_served_and_stopped() -> None:
    port = free_port()
    with serve_app(FastAPI(), port=port) as url:
        assert httpx.get(f"{url}/openapi.json").status_code == 200
    assert not _threads_on(port)


def test_a_port_in_use_raises_at_once_instead_of_carrying_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match="exited before it served"):
            with serve_app(FastAPI(), port=port, startup_timeout=30):
                pytest.fail("the block must not run without a server")
    assert not _threads_on(port)


def test_a_server_that_does_not_answer_in_time_raises_and_is_stopped() -> None:
    @asynccontextmanager
    async def slow_startup(_app: FastAPI):
        await asyncio.sleep(2)
        yield

    port = free_port()
    with pytest.raises(ServerStartError, match=r"did not answer within 0\.3 s"):
        with serve_app(FastAPI(lifespan=slow_startup), port=port, startup_timeout=0.3):
            pytest.fail("the block must not run without a server")
    assert not _threads_on(port)

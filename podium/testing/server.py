"""Run a Podium ASGI app on a loopback port inside the current event loop, for tests that
drive it with real HTTP clients (the official vendor SDKs among them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serve(app: Any, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT``) while ``app`` serves."""
    config = uvicorn.Config(
        app,
        host=host,
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="none",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped the server
            raise RuntimeError("the test server stopped before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task

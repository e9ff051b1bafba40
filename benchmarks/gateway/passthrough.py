"""The practical limit: a pass-through proxy with no features at all (ASGI on uvicorn, one
pooled aiohttp session). Every byte of the request goes upstream, every byte of the answer
comes back, streamed as it arrives.

    PASSTHROUGH_UPSTREAM=http://127.0.0.1:9100 uvicorn benchmarks.gateway.passthrough:app \
        --port 9200 --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class PassThrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0, limit_per_host=1024)
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert self.session is not None
        async with self.session.post(
            self.upstream + scope["path"],
            data=body,
            headers={"content-type": "application/json"},
        ) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (b"content-type", response.headers.get("content-type", "").encode())
                    ],
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


app = PassThrough(os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:9100"))

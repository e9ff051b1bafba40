"""The little of ASGI's WebSocket protocol Podium needs: accept (or refuse) a handshake, read
text messages until the client leaves, send text messages, close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Close codes (RFC 6455): the server refuses what was sent, or what it is asked to do.
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009


class WebSocket:
    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        self.params: dict[str, str] = {}
        self.closed = False
        # Messages go out whole and one at a time, whichever task sends them.
        self._sending = asyncio.Lock()

    async def accept(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise ConnectionError(f"expected websocket.connect, got {message['type']}")
        await self._send({"type": "websocket.accept"})

    async def refuse(self, reason: str) -> None:
        """Turn the handshake down (the server answers it with HTTP 403)."""
        await self._receive()  # websocket.connect
        self.closed = True
        await self._send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason})

    async def receive_text(self) -> str | None:
        """The next message as text, or None once the client has left."""
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                self.closed = True
                return None
            if kind == "websocket.receive":
                text = message.get("text")
                if text is None:
                    data = message.get("bytes") or b""
                    text = data.decode("utf-8", errors="replace")
                return str(text)

    async def send_text(self, text: str) -> None:
        async with self._sending:
            if not self.closed:
                await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})


SocketHandler = Callable[[WebSocket], Awaitable[None]]

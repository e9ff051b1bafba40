"""A fast mock OpenAI upstream for gateway benchmarks.

A bare asyncio protocol on uvloop with httptools parsing: it must be much faster than anything
it measures. ``POST /v1/chat/completions`` answers a canned completion after ``--delay-ms``;
with ``"stream": true`` it sends ``--chunks`` SSE chunks ``--chunk-ms`` apart, then usage and
``[DONE]``. ``--slots N`` makes it a server of N slots (a GPU server's batch): N requests are
answered at once, the rest wait in line, first come first served.

    python -m benchmarks.gateway.mock_upstream --port 9100 --delay-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools
import uvloop

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
).encode()


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "mock",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )
    return f"data: {body}\n\n".encode()


USAGE_CHUNK = (
    "data: "
    + json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "mock",
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 64, "total_tokens": 76},
        }
    )
    + "\n\n"
).encode()


class Mock(asyncio.Protocol):
    def __init__(
        self, delay: float, chunks: int, chunk_delay: float, slots: asyncio.Semaphore | None
    ) -> None:
        self.delay, self.chunks, self.chunk_delay = delay, chunks, chunk_delay
        self.slots = slots
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        stream = b'"stream":true' in body.replace(b" ", b"")
        keep_alive = self.parser.should_keep_alive()
        asyncio.get_running_loop().create_task(self.respond(stream, keep_alive))

    async def respond(self, stream: bool, keep_alive: bool) -> None:
        if self.slots is None:
            await self._respond(stream, keep_alive)
            return
        async with self.slots:
            await self._respond(stream, keep_alive)

    async def _respond(self, stream: bool, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        if not stream:
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(COMPLETION)).encode()
                + b"\r\n\r\n"
                + COMPLETION
            )
        else:
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )

            def write(data: bytes) -> None:
                transport.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            write(_chunk({"role": "assistant", "content": ""}))
            for index in range(self.chunks):
                if transport.is_closing():
                    return
                write(_chunk({"content": f"tok{index} "}))
                await asyncio.sleep(self.chunk_delay)
            write(_chunk({}, "stop"))
            write(USAGE_CHUNK)
            write(b"data: [DONE]\n\n")
            transport.write(b"0\r\n\r\n")
        if not keep_alive:
            transport.close()


async def run(
    host: str, port: int, delay: float, chunks: int, chunk_delay: float, slots: int = 0
) -> None:
    loop = asyncio.get_running_loop()
    shared = asyncio.Semaphore(slots) if slots else None
    server = await loop.create_server(
        lambda: Mock(delay, chunks, chunk_delay, shared), host, port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--slots", type=int, default=0, help="answer at most N at once")
    args = parser.parse_args()
    uvloop.run(
        run(
            args.host,
            args.port,
            args.delay_ms / 1000,
            args.chunks,
            args.chunk_ms / 1000,
            args.slots,
        )
    )


if __name__ == "__main__":
    main()

"""A worker's upstream call (``Upstream.post_json``) against a server that answers late: the
response head's bound, the whole call's bound after the head is in, and a cancellation from
outside that must stay a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from podium.config import Timeouts
from podium.errors import ProviderError
from podium.providers.egress import Egress
from podium.providers.http import Upstream


@asynccontextmanager
async def late_server(head_after: float, body_after: float) -> AsyncIterator[int]:
    """Answers every request with its head after ``head_after`` s, its body after
    ``body_after`` s more."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await asyncio.sleep(head_after)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(body_after)
            writer.write(b'{"ok":true}')
            await writer.drain()
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def call(port: int, timeouts: Timeouts) -> object:
    egress = Egress()
    upstream = Upstream(
        egress,
        worker="slow",
        base_url=f"http://127.0.0.1:{port}",
        headers={},
        timeouts=timeouts,
    )
    try:
        return await upstream.post_json("/chat", {"x": 1})
    finally:
        await egress.aclose()


async def test_no_head_within_first_byte_is_a_head_timeout() -> None:
    async with late_server(head_after=5, body_after=0) as port:
        with pytest.raises(ProviderError) as raised:
            await call(port, Timeouts(first_byte=0.1, total=5))
    assert raised.value.kind == "timeout"
    assert "no response head" in raised.value.message


async def test_a_body_slower_than_total_after_the_head_is_a_total_timeout() -> None:
    # The head comes in before first_byte; the call's timer then bounds the whole call.
    async with late_server(head_after=0, body_after=5) as port:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProviderError) as raised:
            await call(port, Timeouts(first_byte=0.1, total=0.4))
        elapsed = asyncio.get_running_loop().time() - started
    assert raised.value.kind == "timeout"
    assert "(total)" in raised.value.message
    assert 0.35 < elapsed < 2


async def test_a_body_within_total_is_read_after_the_head_bound_passed() -> None:
    # The head bound passes while the body is still coming: not a timeout.
    async with late_server(head_after=0, body_after=0.3) as port:
        answer = await call(port, Timeouts(first_byte=0.1, total=5))
    assert answer == {"ok": True}


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async with late_server(head_after=5, body_after=0) as port:
        task = asyncio.create_task(call(port, Timeouts(first_byte=3, total=5)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_outer_timeout_nearer_than_the_calls_own_is_the_outer_ones() -> None:
    async with late_server(head_after=5, body_after=0) as port:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await call(port, Timeouts(first_byte=3, total=5))

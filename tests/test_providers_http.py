"""A worker's upstream call (``Upstream.post_json``) against a server that answers late: the
response head's bound, the whole call's bound after the head is in, and a cancellation from
outside that must stay a cancellation; and against one that answers with an error: what the
caller reads of it."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from podium.config import Timeouts
from podium.errors import ProviderError
from podium.providers.egress import Egress
from podium.providers.http import Upstream

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[int]:
    """A loopback HTTP/1.1 server: reads each request whole, then lets ``answer`` write."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def late_server(head_after: float, body_after: float) -> AbstractAsyncContextManager[int]:
    """Answers every request with its head after ``head_after`` s, its body after
    ``body_after`` s more."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(head_after)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(body_after)
        writer.write(b'{"ok":true}')
        await writer.drain()
        await reader.read()

    return raw_server(answer)


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


def canned_server(status: int, body: bytes, *headers: str) -> AbstractAsyncContextManager[int]:
    """Answers every request with ``status``, ``body`` and the given header lines."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        extra = "".join(f"{line}\r\n" for line in headers)
        head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        writer.write(head.encode() + body)
        await writer.drain()

    return raw_server(answer)


async def failure(status: int, body: bytes, *headers: str) -> ProviderError:
    async with canned_server(status, body, *headers) as port:
        with pytest.raises(ProviderError) as caught:
            await call(port, Timeouts(connect=1.0, first_byte=2.0, total=2.0))
    return caught.value


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b'{"error": {"message": "model is overloaded", "type": "x"}}', "model is overloaded"),
        (b'[{"error": {"code": 503, "message": "backend busy", "status": "UNAVAILABLE"}}]',
         "backend busy"),
        (b'{"detail": "queue full"}', "queue full"),  # FastAPI-style servers (vLLM and others)
        (b'{"error": "the model crashed"}', "the model crashed"),  # llama.cpp, Ollama
        (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),  # a proxy in front
        (b"", "no error message"),
    ],
)  # fmt: skip
async def test_the_upstreams_own_message_is_kept_whatever_its_shape(
    body: bytes, shown: str
) -> None:
    error = await failure(503, body)
    assert error.retryable
    assert error.message == f"worker 'slow' failed (upstream 503): {shown}"


async def test_retry_after_in_seconds_or_as_an_http_date_is_read() -> None:
    assert (await failure(429, b"{}", "retry-after: 7")).retry_after == 7.0
    when = email.utils.format_datetime(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30), usegmt=True
    )
    dated = await failure(429, b"{}", f"retry-after: {when}")
    assert dated.retry_after is not None and 25.0 <= dated.retry_after <= 31.0
    assert (await failure(429, b"{}", "retry-after: soon")).retry_after is None


async def test_a_refused_credential_is_named_without_the_upstreams_text() -> None:
    # the upstream's text may echo the key; the message never carries it
    error = await failure(401, b'{"error": {"message": "Incorrect API key provided: sk-abc123"}}')
    assert error.message == "worker 'slow' refused Podium's credential (upstream 401)"
    assert "sk-abc123" not in str(error)


async def test_a_success_with_a_body_that_is_not_json_is_a_retryable_upstream_error() -> None:
    async with canned_server(200, b"<html>login</html>") as port:
        with pytest.raises(ProviderError) as caught:
            await call(port, Timeouts(connect=1.0, first_byte=2.0, total=2.0))
    assert caught.value.retryable
    assert caught.value.message == "worker 'slow' answered with invalid JSON"

"""The HTTP layer as a client sees it on the wire (served by uvicorn, as in production)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from podium.api.http import App
from podium.api.websocket import WebSocket
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve
from tests.conftest import worker

HELLO = [{"role": "user", "content": "hello"}]


async def test_whole_answers_state_their_length_and_streams_are_chunked(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url, timeout=30) as client,
    ):
        answer = await client.post(
            "/v1/chat/completions", json={"model": "alpha", "messages": HELLO}
        )
        refusal = await client.post(
            "/v1/chat/completions", json={"model": "nobody", "messages": HELLO}
        )
        for response in (answer, refusal):
            assert "transfer-encoding" not in response.headers
            assert int(response.headers["content-length"]) == len(response.content)
        assert answer.status_code == 200 and refusal.status_code == 404
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "alpha", "messages": HELLO, "stream": True},
        ) as stream:
            assert stream.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in stream.headers
            assert "[DONE]" in (await stream.aread()).decode()


async def test_websockets_reach_only_their_endpoints_and_a_failing_handler_closes_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()

    async def echo(socket: WebSocket) -> None:
        await socket.accept()
        while (text := await socket.receive_text()) is not None:
            if text == "fail":
                raise RuntimeError("a bug")
            await socket.send_text(text.upper())

    app.websocket("/echo", echo)
    async with serve(app) as url:
        address = url.replace("http://", "ws://")
        with pytest.raises(InvalidStatus, match="403"):
            await connect(f"{address}/nowhere")
        async with connect(f"{address}/echo") as socket:
            await socket.send("hi")
            assert await socket.recv() == "HI"
            await socket.send("fail")
            with pytest.raises(ConnectionClosedError) as closed:
                await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert "a bug" not in (closed.value.rcvd.reason or "")
    assert any("WebSocket handler failed" in r.getMessage() for r in caplog.records)

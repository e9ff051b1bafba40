"""The HTTP layer as a client sees it on the wire (served by uvicorn, as in production)."""

from __future__ import annotations

from typing import Any

import httpx

from podium.testing.openai_fake import FakeOpenAI
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

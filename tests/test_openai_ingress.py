from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


async def test_sdk_gets_an_answer_with_podium_headers(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="alpha", messages=[{"role": "user", "content": "hello there"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "fake answer to: hello there"
    assert completion.model == "alpha"
    assert raw.headers["x-podium-worker"] == "alpha"
    assert raw.headers["x-podium-route"] == "direct"
    assert float(raw.headers["x-podium-cost-usd"]) > 0
    assert len(raw.headers["x-podium-trace-id"]) == 32
    assert fake_openai.received[0].body["model"] == "alpha-model"


async def test_sdk_streams_with_usage(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        stream = await client.chat.completions.create(
            model="podium/auto",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
    assert text == "fake answer to: stream please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_unknown_model_is_a_404_in_openai_format(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
    assert "nope" in caught.value.message
    assert fake_openai.received == []


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "alpha"}', 400, "messages"),
        (b'{"model": "alpha", "messages": "hi"}', 400, "messages"),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], "bogus": 1}',
            400,
            "bogus",
        ),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], "api_base": '
            b'"http://evil.example"}',
            400,
            "api_base",
        ),
        (b"\xff\xfe\x00", 400, "UTF-8"),
        (b"[]", 400, "JSON object"),
    ],
)
async def test_bad_input_is_a_clear_openai_error(
    gateway: Any, fake_openai: FakeOpenAI, body: bytes, status: int, needle: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient() as client,
    ):
        response = await client.post(
            f"{running.v1}/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake_openai.received == []

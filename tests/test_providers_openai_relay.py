"""An OpenAI client's stream from an OpenAI-compatible worker is relayed as the upstream sent
it; what Podium must know (usage, errors, the first real event) is still found, and what the
client sees is still a complete, well-formed stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from podium.errors import ProviderError
from podium.providers.http import EventSplitter
from podium.providers.openai import decode_usage
from podium.providers.openai_relay import relay_chunks
from podium.testing.openai_fake import FakeOpenAI
from podium.types import WireUsage
from tests.conftest import worker

HELLO = [{"role": "user", "content": "hello there"}]


def event(data: dict[str, Any], *, spaced: bool = True) -> bytes:
    text = orjson.dumps(data).decode()
    if spaced:
        text = text.replace('":', '": ').replace(',"', ', "')
    return f"data: {text}\n\n".encode()


def chunk(content: str | None = None, *, role: bool = False, finish: str | None = None) -> bytes:
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
    if content is not None:
        delta["content"] = content
    return event(
        {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "upstream-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


USAGE = event(
    {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
)
STREAM = (
    chunk(role=True)
    + chunk("Hel")
    + chunk("lo")
    + chunk(finish="stop")
    + USAGE
    + b"data: [DONE]\n\n"
)


class Body:
    def __init__(self, blocks: list[bytes]) -> None:
        self.blocks = list(blocks)

    async def read(self) -> bytes:
        return self.blocks.pop(0) if self.blocks else b""


def blocks_of(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


async def relayed(blocks: list[bytes]) -> list[bytes | WireUsage]:
    @asynccontextmanager
    async def opening() -> AsyncIterator[Body]:
        yield Body(blocks)

    return [item async for item in relay_chunks(opening(), "alpha", decode_usage)]  # type: ignore[arg-type]


def data_events(items: list[bytes | WireUsage]) -> list[dict[str, Any]]:
    raw = b"".join(item for item in items if isinstance(item, bytes))
    return [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: ")]


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
async def test_events_pass_whole_and_in_order_however_the_bytes_arrive(size: int) -> None:
    items = await relayed(blocks_of(STREAM, size))
    events = data_events(items)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert text == "Hello"
    assert [e["choices"][0]["finish_reason"] for e in events][-1] == "stop"
    # The usage event is held for the ingress (which adds the cost); [DONE] is its to write.
    assert all(e.get("usage") is None for e in events)
    [usage] = [item for item in items if isinstance(item, WireUsage)]
    assert (usage.usage.input_tokens, usage.usage.output_tokens) == (7, 3)
    assert b"[DONE]" not in b"".join(item for item in items if isinstance(item, bytes))


async def test_the_worker_is_named_as_the_model_and_the_rest_is_the_upstreams() -> None:
    events = data_events(await relayed([STREAM]))
    assert {e["model"] for e in events} == {"alpha"}
    assert {e["id"] for e in events} == {"chatcmpl-up"}


async def test_the_role_chunk_waits_for_the_first_real_event() -> None:
    # So that a stream breaking before any content can still be retried on another worker.
    items = await relayed([chunk(role=True), chunk("Hi"), chunk(finish="stop")])
    first = items[0]
    assert isinstance(first, bytes) and b'"role"' in first and b'"Hi"' in first


async def test_a_mid_stream_error_event_fails_the_stream() -> None:
    with pytest.raises(ProviderError, match="failed mid-stream"):
        await relayed([chunk(role=True) + chunk("Hi"), event({"error": {"message": "boom"}})])


async def test_a_malformed_event_fails_the_stream() -> None:
    with pytest.raises(ProviderError, match="malformed"):
        await relayed([chunk(role=True), b"data: {not json\n\n"])


async def test_without_usage_from_upstream_the_output_is_estimated() -> None:
    items = await relayed([chunk(role=True), chunk("abcd" * 25), chunk(finish="stop")])
    [usage] = [item for item in items if isinstance(item, WireUsage)]
    assert usage.event is None
    assert 20 <= usage.usage.output_tokens <= 30  # about 100 characters of text


def test_splitter_joins_events_cut_anywhere_and_reads_crlf() -> None:
    data = b"data: one\r\n\r\ndata: two\r\n\r\n: comment\r\n\r\n"
    for size in (1, 2, 3, 5):
        splitter, out = EventSplitter(), b""
        for block in blocks_of(data, size):
            out += splitter.feed(block)
        assert out == b"data: one\n\ndata: two\n\n: comment\n\n"
        assert splitter.rest() == b""


# -- through the gateway ------------------------------------------------------------------------


async def stream_lines(running: Any, **extra: Any) -> list[bytes]:
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{running.v1}/chat/completions",
            json={"model": "alpha", "messages": HELLO, "stream": True, **extra},
        ) as response,
    ):
        assert response.status_code == 200
        body = await response.aread()
    return [line for line in body.split(b"\n\n") if line]


async def test_an_openai_client_gets_the_upstream_stream_with_usage_and_cost(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        lines = await stream_lines(running, stream_options={"include_usage": True})
        await running.podium.recorder.flush()
        [trace] = await running.podium.store.list_traces(limit=10)
    assert lines[-1] == b"data: [DONE]"
    events = [orjson.loads(line[6:]) for line in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "fake answer to: hello there"
    assert {e["model"] for e in events} == {"alpha"}
    usage = events[-1]["usage"]
    assert events[-1]["choices"] == [] and usage["prompt_tokens"] == 2
    assert usage["cost_usd"] == pytest.approx(trace.cost_usd) and trace.cost_usd > 0
    assert trace.status == "ok" and trace.output_tokens == usage["completion_tokens"]


async def test_without_include_usage_no_usage_chunk_reaches_the_client(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        lines = await stream_lines(running)
    events = [orjson.loads(line[6:]) for line in lines[:-1]]
    assert all(e["choices"] and "usage" not in e for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    # Podium still asked the upstream for usage, to price the call.
    assert fake_openai.received[0].body["stream_options"] == {"include_usage": True}


async def test_a_caller_who_hangs_up_before_the_usage_is_charged_for_what_was_relayed(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    # The upstream's usage comes last; without the relay's own count the answer sent so far
    # was free, and a budget or a tokens-a-minute limit could be spent past.
    fake_openai.behaviour.reply = " ".join(f"w{i}" for i in range(2000))
    fake_openai.behaviour.chunk_size = 40
    fake_openai.behaviour.chunk_delay = 0.001
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        received = 0
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream(
                "POST",
                f"{running.v1}/chat/completions",
                json={"model": "alpha", "messages": HELLO, "stream": True},
            ) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    chunk = orjson.loads(line[6:])
                    received += len(chunk["choices"][0]["delta"].get("content") or "")
                if received >= 4000:
                    break
        for _ in range(100):
            await running.podium.gateway.drain_background()
            await running.podium.recorder.flush()
            traces = await running.podium.store.list_traces(limit=10)
            if traces:
                break
            await asyncio.sleep(0.05)
        [trace] = traces
    assert trace.status != "ok"
    # About a token for every four characters that went out, as for a decoded stream.
    assert received // 4 <= trace.output_tokens <= len(fake_openai.behaviour.reply) // 4
    assert trace.cost_usd > 0

"""Reliability as a client sees it, through the gateway against fake upstreams: timeouts,
retries, fallback, the circuit breaker, and the streaming guarantees."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from podium.routing.direct import DirectRouter
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def beta() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake  # type: ignore[misc]


def fast(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A worker whose retries wait milliseconds, not seconds."""
    settings: dict[str, Any] = {"retry": {"attempts": 2, "backoff_base": 0.001, "backoff_max": 1}}
    settings.update(extra)
    return worker(name, "openai", url, **settings)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            yield orjson.loads(line[6:])


def direct(running: Any, default: str = "alpha") -> None:
    """Route by the plain model-name router, ``podium/auto`` to ``default`` with the rest as
    fallbacks: these tests are about the engine, whatever the configured routing does."""
    running.podium.gateway.routers[:] = [DirectRouter({}, default)]


async def traces(running: Any) -> list[Any]:
    await running.podium.recorder.flush()
    return await running.podium.store.list_traces(limit=100)


# -- retries ------------------------------------------------------------------------------------


async def test_5xx_is_retried_on_the_same_worker(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.fail(500, times=2)
    async with (
        gateway([fast("alpha", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        completion = await client.chat.completions.create(model="alpha", messages=HELLO)
        [trace] = await traces(running)
    assert completion.choices[0].message.content == "fake answer to: hello"
    assert len(fake_openai.received) == 3
    assert [step["status"] for step in trace.steps] == ["error", "error", "ok"]


async def test_429_with_retry_after_is_retried(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.fail(429, "slow down", retry_after=0.05)
    async with (
        gateway([fast("alpha", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        await client.chat.completions.create(model="alpha", messages=HELLO)
        [trace] = await traces(running)
    assert len(fake_openai.received) == 2
    assert trace.steps[0]["error_kind"] == "rate_limit"


async def test_exhausted_429_reaches_the_client_as_429(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(429, "slow down", times=3, retry_after=0.01)
    async with (
        gateway([fast("alpha", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="alpha", messages=HELLO)
    assert len(fake_openai.received) == 3  # the first try and two retries


async def test_400_is_never_retried_nor_sent_elsewhere(
    gateway: Any, fake_openai: FakeOpenAI, beta: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(400, "bad tool schema")
    async with (
        gateway(
            [fast("alpha", fake_openai.base_url), fast("beta", beta.base_url)],
            default_worker="alpha",
        ) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        direct(running)
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="podium/auto", messages=HELLO)
    assert "bad tool schema" in caught.value.message
    assert len(fake_openai.received) == 1 and beta.received == []


# -- fallback -----------------------------------------------------------------------------------


async def test_unreachable_worker_falls_back(gateway: Any, beta: FakeOpenAI) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    async with (
        gateway(
            [fast("alpha", dead), fast("beta", beta.base_url)], default_worker="alpha"
        ) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        direct(running)
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=HELLO
        )
        [trace] = await traces(running)
    assert raw.headers["x-podium-worker"] == "beta"
    assert trace.workers == "alpha,beta" and trace.worker == "beta"
    assert [s["error_kind"] for s in trace.steps[:3]] == ["upstream"] * 3


async def test_a_refused_credential_falls_back_without_retrying(
    gateway: Any, fake_openai: FakeOpenAI, beta: FakeOpenAI
) -> None:
    fake_openai.behaviour.require_key = "something-else"
    async with (
        gateway(
            [fast("alpha", fake_openai.base_url), fast("beta", beta.base_url)],
            default_worker="alpha",
        ) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        direct(running)
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=HELLO
        )
    assert raw.headers["x-podium-worker"] == "beta"
    assert len(fake_openai.received) == 1  # asking again with the same key cannot help


async def test_first_byte_timeout_then_fallback(
    gateway: Any, fake_openai: FakeOpenAI, beta: FakeOpenAI
) -> None:
    fake_openai.behaviour.latency = 1.0
    slow = fast("alpha", fake_openai.base_url, timeouts={"first_byte": 0.1}, retry={"attempts": 0})
    async with (
        gateway([slow, fast("beta", beta.base_url)], default_worker="alpha") as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        direct(running)
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=HELLO
        )
        [trace] = await traces(running)
    assert raw.headers["x-podium-worker"] == "beta"
    assert trace.steps[0]["error_kind"] == "timeout"
    assert "no response head" in trace.steps[0]["error"]


async def test_total_timeout_bounds_a_slow_answer(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.latency = 1.0
    slow = fast(
        "alpha",
        fake_openai.base_url,
        timeouts={"first_byte": 5, "total": 0.1},
        retry={"attempts": 0},
    )
    async with (
        gateway([slow]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="alpha", messages=HELLO)
    assert caught.value.status_code == 504


async def test_connect_timeout(gateway: Any) -> None:
    # A listener with a full backlog: the kernel drops further SYNs, so connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(listener.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        async with (
            gateway(
                [fast("alpha", url, timeouts={"connect": 0.1}, retry={"attempts": 0})]
            ) as running,
            openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
        ):
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model="alpha", messages=HELLO)
            [trace] = await traces(running)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert caught.value.status_code in (502, 504)
    assert trace.steps[0]["error_kind"] in ("upstream", "timeout")
    assert trace.steps[0]["latency_ms"] < 5000  # bounded by the connect timeout, not hanging


# -- streams ------------------------------------------------------------------------------------


async def test_a_stream_broken_midway_ends_with_an_error_and_is_not_replayed(
    gateway: Any, fake_openai: FakeOpenAI, beta: FakeOpenAI
) -> None:
    fake_openai.behaviour.reply = "one two three four five six seven eight"
    fake_openai.behaviour.break_stream_after = 4  # role chunk + three pieces, then a dropped line
    async with (
        gateway(
            [fast("alpha", fake_openai.base_url), fast("beta", beta.base_url)],
            default_worker="alpha",
        ) as running,
        httpx.AsyncClient() as client,
    ):
        direct(running)
        async with client.stream(
            "POST",
            f"{running.v1}/chat/completions",
            json={"model": "podium/auto", "messages": HELLO, "stream": True},
        ) as response:
            events = [event async for event in sse(response)]
        [trace] = await traces(running)
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices")
    )
    assert text == "one two thre"
    assert "error" in events[-1]
    assert len(fake_openai.received) == 1 and beta.received == []
    assert trace.status == "error" and trace.stream


async def test_a_stream_that_fails_before_its_first_event_falls_back(
    gateway: Any, fake_openai: FakeOpenAI, beta: FakeOpenAI
) -> None:
    fake_openai.behaviour.break_stream_after = 1  # only the empty role chunk, then gone
    async with (
        gateway(
            [
                fast("alpha", fake_openai.base_url, retry={"attempts": 0}),
                fast("beta", beta.base_url),
            ],
            default_worker="alpha",
        ) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        direct(running)
        stream = await client.chat.completions.create(
            model="podium/auto", messages=HELLO, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "fake answer to: hello"
    assert len(fake_openai.received) == 1 and len(beta.received) == 1


async def test_a_stalled_stream_is_cut_by_the_gap_timeout(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.stall_stream_after = 3
    stalled = fast("alpha", fake_openai.base_url, timeouts={"first_byte": 0.2})
    async with (
        gateway([stalled]) as running,
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{running.v1}/chat/completions",
            json={"model": "alpha", "messages": HELLO, "stream": True},
        ) as response,
    ):
        events = [event async for event in sse(response)]
    assert "stream stalled" in events[-1]["error"]["message"]
    assert len(fake_openai.received) == 1


async def test_streams_pass_through_chunk_by_chunk(gateway: Any, fake_openai: FakeOpenAI) -> None:
    gate = asyncio.Event()
    fake_openai.behaviour.gate, fake_openai.behaviour.gate_after = gate, 3
    async with (
        gateway([fast("alpha", fake_openai.base_url)]) as running,
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{running.v1}/chat/completions",
            json={"model": "alpha", "messages": HELLO, "stream": True},
        ) as response,
    ):
        events = sse(response)
        first = [await anext(events), await anext(events)]
        # The client holds the first words while the upstream has not sent the rest yet.
        assert first[1]["choices"][0]["delta"]["content"] == "fake"
        assert fake_openai.gated_streams == 1 and fake_openai.completed_streams == 0
        gate.set()
        rest = [event async for event in events]
    assert fake_openai.completed_streams == 1
    assert rest[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_client_that_disconnects_cancels_the_upstream_call(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.reply = "word " * 400
    fake_openai.behaviour.chunk_delay = 0.02
    async with gateway([fast("alpha", fake_openai.base_url)]) as running:
        async with (
            httpx.AsyncClient() as client,
            client.stream(
                "POST",
                f"{running.v1}/chat/completions",
                json={"model": "alpha", "messages": HELLO, "stream": True},
            ) as response,
        ):
            async for line in response.aiter_lines():
                if "word" in line:
                    break  # leave mid-stream: closing the response drops the connection
        for _ in range(500):
            if fake_openai.cancelled_streams:
                break
            await asyncio.sleep(0.01)
        [trace] = await traces(running)
        alpha = running.podium.pool.get("alpha")
        assert alpha is not None and alpha.in_flight == 0
    assert fake_openai.cancelled_streams == 1 and fake_openai.completed_streams == 0
    assert trace.http_status == 499 and trace.error_kind == "cancelled"


# -- circuit breaker ----------------------------------------------------------------------------


async def test_breaker_opens_skips_probes_and_closes(
    gateway: Any, fake_openai: FakeOpenAI, beta: FakeOpenAI
) -> None:
    flaky = fast(
        "alpha",
        fake_openai.base_url,
        retry={"attempts": 0},
        breaker={"failures": 2, "reset_after": 0.2},
    )
    fake_openai.behaviour.fail(503, times=2)
    async with (
        gateway([flaky, fast("beta", beta.base_url)], default_worker="alpha") as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        direct(running)
        alpha = running.podium.pool.get("alpha")
        assert alpha is not None
        for _ in range(2):
            raw = await client.chat.completions.with_raw_response.create(
                model="podium/auto", messages=HELLO
            )
            assert raw.headers["x-podium-worker"] == "beta"
        assert alpha.breaker.state == "open"
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=HELLO
        )
        assert raw.headers["x-podium-worker"] == "beta"
        assert len(fake_openai.received) == 2  # open: alpha was not called
        await asyncio.sleep(0.25)
        assert alpha.breaker.state == "half_open"
        raw = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=HELLO
        )
        assert raw.headers["x-podium-worker"] == "alpha"  # the probe succeeded
        assert alpha.breaker.state == "closed"
        async with httpx.AsyncClient() as admin:
            listed = (await admin.get(f"{running.url}/admin/workers")).json()
    health = {w["name"]: w["health"]["circuit"] for w in listed["workers"]}
    assert health == {"alpha": "closed", "beta": "closed"}

"""Cost and transparency: every answer says who answered, how it was routed, what it cost and
which trace holds the details."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

PRICE = {"input": 3.0, "output": 15.0}  # USD per 1M tokens


def priced(usage_in: int, usage_out: int) -> float:
    return (usage_in * PRICE["input"] + usage_out * PRICE["output"]) / 1_000_000


async def test_a_completion_carries_the_four_headers_and_its_cost(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, price=PRICE)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-") as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="alpha", messages=[{"role": "user", "content": "what does this cost"}]
        )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(raw.headers["x-podium-trace-id"])
    completion = raw.parse()
    assert completion.usage is not None
    expected = priced(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert expected > 0
    assert raw.headers["x-podium-worker"] == "alpha"
    assert raw.headers["x-podium-route"]
    assert float(raw.headers["x-podium-cost-usd"]) == pytest.approx(expected, abs=1e-8)
    assert trace is not None and trace.cost_usd == pytest.approx(expected)
    assert trace.route == raw.headers["x-podium-route"]


async def test_a_stream_reports_its_cost_at_the_end(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, price=PRICE)]) as running,
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{running.v1}/chat/completions",
            json={
                "model": "alpha",
                "messages": [{"role": "user", "content": "stream the cost"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as response,
    ):
        headers = response.headers
        chunks = [
            orjson.loads(line[6:])
            async for line in response.aiter_lines()
            if line.startswith("data: {")
        ]
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(headers["x-podium-trace-id"])
    # The cost is unknown when the headers go out: the header says so, the usage chunk and
    # the trace carry the figure.
    assert headers["x-podium-cost-usd"] == "pending"
    assert headers["x-podium-worker"] == "alpha" and headers["x-podium-route"]
    usage = chunks[-1]["usage"]
    expected = priced(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["cost_usd"] == pytest.approx(expected)
    assert trace is not None and trace.cost_usd == pytest.approx(expected)
    assert trace.stream and trace.ttft_ms is not None


async def test_errors_carry_the_trace_id(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient() as client,
    ):
        response = await client.post(
            f"{running.v1}/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
        )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(response.headers["x-podium-trace-id"])
    assert response.status_code == 404
    assert trace is not None and trace.http_status == 404 and trace.status == "error"


async def test_a_long_prompt_is_charged_at_its_workers_long_context_rates(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """A worker priced like Claude or Gemini Pro, whose rates step up past a prompt length:
    a request over it is charged at the higher rates, as the vendor bills it."""
    tiered = {
        "input": 3.0,
        "output": 15.0,
        "tiers": [{"above": 1000, "input": 6.0, "output": 22.5}],
    }
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, price=tiered)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="x") as client,
    ):
        costs = []
        for words in (500, 1500):
            raw = await client.chat.completions.with_raw_response.create(
                model="alpha", messages=[{"role": "user", "content": "word " * words}]
            )
            usage = raw.parse().usage
            assert usage is not None
            costs.append((usage, float(raw.headers["x-podium-cost-usd"])))
    (short, short_cost), (long, long_cost) = costs
    assert short_cost == pytest.approx(
        (short.prompt_tokens * 3 + short.completion_tokens * 15) / 1e6
    )
    assert long.prompt_tokens > 1000
    assert long_cost == pytest.approx(
        (long.prompt_tokens * 6 + long.completion_tokens * 22.5) / 1e6
    )

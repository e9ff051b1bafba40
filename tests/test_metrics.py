"""Prometheus /metrics: counts by worker, route, caller and contract with bounded labels,
breaker state and the trace writer's queue depth."""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest

from podium.observe.metrics import LabelCap, MetricsHook, Registry
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_commands_traces import trace


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the series ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


async def test_metrics_count_requests_tokens_cost_errors_and_latency(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
            for _ in range(3):
                await client.chat.completions.create(
                    model="alpha", messages=[{"role": "user", "content": "hi"}]
                )
            stream = await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async for _ in stream:
                pass
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(
                    model="missing", messages=[{"role": "user", "content": "hi"}]
                )
        await running.podium.gateway.drain_background()
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    ok = {"worker": "alpha", "route": "direct", "caller": "anonymous", "contract": "none"}
    assert sample(text, "podium_requests_total", **ok, status="ok") == 4
    assert sample(text, "podium_request_errors_total", kind="not_found") == 1
    assert sample(text, "podium_request_duration_seconds_count", **ok) == 4
    assert sample(text, "podium_request_duration_seconds_bucket", **ok, le="+Inf") == 4
    assert sample(text, "podium_time_to_first_token_seconds_count", **ok) >= 1
    assert sample(text, "podium_tokens_total", **ok, direction="output") > 0
    assert sample(text, "podium_cost_usd_total", **ok) > 0
    assert sample(text, "podium_worker_calls_total", worker="alpha", status="ok") == 4
    assert sample(text, "podium_circuit_breaker_state", worker="alpha", state="closed") == 1
    assert sample(text, "podium_circuit_breaker_state", worker="alpha", state="open") == 0
    assert sample(text, "podium_trace_queue_depth") >= 0
    assert "# TYPE podium_request_duration_seconds histogram" in text


def test_label_values_are_capped_into_other() -> None:
    registry = Registry()
    hook = MetricsHook(registry, LabelCap(3))
    for i in range(10):
        hook.count(trace(f"t{i}", 0.0, "small", caller=f"caller-{i}"))
    text = registry.render()
    callers = set(re.findall(r'podium_requests_total\{[^}]*caller="([^"]+)"', text))
    assert callers == {"caller-0", "caller-1", "caller-2", "other"}
    assert sample(text, "podium_requests_total", caller="other") == 7


def test_label_values_are_escaped() -> None:
    registry = Registry()
    MetricsHook(registry, LabelCap(5)).count(trace("t", 0.0, "small", caller='a"b\\c\nd'))
    assert 'caller="a\\"b\\\\c\\nd"' in registry.render()


async def test_metrics_can_be_turned_off(gateway: Any, fake_openai: FakeOpenAI) -> None:
    settings = {"observe": {"metrics": {"enabled": False}}}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], **settings) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        response = await http.get("/metrics")
    assert response.status_code == 404

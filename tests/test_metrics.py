"""Prometheus /metrics: counts by worker, route, caller and contract with bounded labels,
breaker state and the trace writer's queue depth."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from podium.observe.metrics import LabelCap, MetricsHook, Registry
from podium.observe.metrics_shared import SharedMetrics
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import ask_behind_a_cached_system_prompt, worker
from tests.shared_servers import Replica
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


def test_series_appear_once_counted_and_add_up() -> None:
    registry = Registry()
    hook = MetricsHook(registry, LabelCap(5))
    hook.count(trace("t0", 0.0, "small", input_tokens=0, output_tokens=0, cost_usd=0.0))
    text = registry.render()
    assert "podium_tokens_total{" not in text  # nothing counted: no series at 0
    assert "podium_cost_usd_total{" not in text
    assert "podium_time_to_first_token_seconds_count" not in text
    for i in range(1, 4):
        hook.count(trace(f"t{i}", 0.0, "small", ttft_ms=100.0 * i))
    text = registry.render()
    assert sample(text, "podium_requests_total", worker="small", status="ok") == 4
    assert sample(text, "podium_tokens_total", worker="small", direction="input") == 360
    assert sample(text, "podium_cost_usd_total", worker="small") == pytest.approx(0.00126)
    assert sample(text, "podium_time_to_first_token_seconds_sum", worker="small") == pytest.approx(
        0.6
    )
    assert sample(text, "podium_request_duration_seconds_count", worker="small") == 4
    assert sample(text, "podium_worker_calls_total", worker="small", status="ok") == 4


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


# -- several server processes on one machine: one /metrics -----------------------------------

SHARED = {"metrics": {"shared": True, "snapshot_interval": 0.05}}


async def scrape(url: str) -> str:
    # A fresh connection each time, so that behind one port any process may answer.
    async with httpx.AsyncClient(
        base_url=url, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    return response.text


async def requests_counted(url: str, expected: float, seen: list[float]) -> bool:
    """Scrape until the merged request count reaches ``expected``; ``seen`` keeps every value."""
    for _ in range(200):
        seen.append(sample(await scrape(url), "podium_requests_total", status="ok"))
        if seen[-1] >= expected:
            return seen[-1] == expected
        await asyncio.sleep(0.05)
    return False


async def ask(url: str, count: int) -> None:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        for _ in range(count):
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "hi"}]
            )


async def test_processes_sharing_a_data_dir_answer_the_sum_of_their_counts(
    gateway: Any, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    async with gateway(workers, observe=SHARED) as second:
        async with gateway(workers, observe=SHARED) as first:
            await ask(first.url, 3)
            await ask(second.url, 2)
            for running in (first, second):
                await running.podium.gateway.drain_background()
            seen: list[float] = []
            # Either process answers for both: 3 + 2, whichever is scraped.
            assert await requests_counted(first.url, 5, seen)
            assert await requests_counted(second.url, 5, seen)
            text = await scrape(first.url)
            assert sample(text, "podium_server_processes") == 2
            # Gauges add up over the live processes: one closed breaker each.
            assert sample(text, "podium_circuit_breaker_state", state="closed") == 2
            assert sample(text, "podium_request_duration_seconds_count", worker="alpha") == 5
        # The first process has stopped: its counts stay (folded into the retired file), its
        # gauges go, and the sum never goes backwards.
        text = await scrape(second.url)
        assert sample(text, "podium_requests_total", status="ok") == 5
        assert sample(text, "podium_server_processes") == 1
        assert sample(text, "podium_circuit_breaker_state", state="closed") == 1
        await ask(second.url, 1)
        await second.podium.gateway.drain_background()
        assert sample(await scrape(second.url), "podium_requests_total", status="ok") == 6
    assert seen == sorted(seen)  # never backwards
    files = sorted(p.name for p in (tmp_path / "data" / "metrics").iterdir())
    assert files == ["directory.lck", "retired.json"]  # both folded, nothing left behind


async def test_a_killed_process_keeps_its_last_snapshot(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    dead, alive = Registry(), Registry()
    for registry in (dead, alive):
        MetricsHook(registry, LabelCap(5))
    killed = SharedMetrics(dead, directory, interval=60)
    survivor = SharedMetrics(alive, directory, interval=60)
    await killed.start()
    await survivor.start()
    try:
        for index in range(4):
            MetricsHook(dead, LabelCap(5)).count(trace(f"d{index}", 0.0, "small"))
        assert sample(await killed.render(), "podium_requests_total") == 4  # writes its file
        MetricsHook(alive, LabelCap(5)).count(trace("a", 0.0, "small"))
        # Killed without a chance to clean up: the kernel drops its lock, the file stays.
        assert killed._timer is not None and killed._lock is not None
        killed._timer.cancel()
        os.close(killed._lock)
        killed._lock = None
        first = await survivor.render()
        assert sample(first, "podium_requests_total") == 5
        assert sample(first, "podium_server_processes") == 1
        assert sample(await survivor.render(), "podium_requests_total") == 5  # folded once only
        assert not list(directory.glob(f"{killed.id}.*"))
    finally:
        await survivor.aclose()
    # Everything ended up in the retired counts: a process started later still sees it.
    later = SharedMetrics(Registry(), directory, interval=60)
    MetricsHook(later.registry, LabelCap(5))
    await later.start()
    try:
        assert sample(await later.render(), "podium_requests_total") == 5
    finally:
        await later.aclose()


async def test_podium_serve_with_two_processes_answers_their_sum(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    config = {
        "data_dir": str(tmp_path / "data"),
        "workers": [worker("alpha", "openai", fake_openai.base_url)],
        "observe": {"metrics": {"snapshot_interval": 0.1}},  # shared: on, as --workers 2
    }
    # info: the log then says when uvicorn's supervisor replaces a process
    replica = Replica(config, tmp_path, processes=2, log_level="info")
    await replica.start(wait=120)  # two processes starting at once on a busy machine
    try:
        # The port answers as soon as one process is up; the other may still be loading on a
        # busy machine, and a process counts once it has joined (written its first snapshot).
        for _ in range(1200):
            if sample(await scrape(replica.url), "podium_server_processes") == 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the second process never joined: {replica.log()[-2000:]}")
        # A connection per request, so both processes take requests.
        for _ in range(20):
            async with httpx.AsyncClient(base_url=replica.url) as http:
                response = await http.post(
                    "/v1/chat/completions",
                    json={"model": "alpha", "messages": [{"role": "user", "content": "hi"}]},
                )
            assert response.status_code == 200
        seen: list[float] = []
        assert await requests_counted(replica.url, 20, seen), seen
        for _ in range(10):  # whichever process answers, the same total
            text = await scrape(replica.url)
            seen.append(sample(text, "podium_requests_total", status="ok"))
            # a process found dead here was killed by uvicorn's supervisor (its health check)
            # or crashed: the log says which
            assert sample(text, "podium_server_processes") == 2, replica.log()[-2000:]
        assert seen == sorted(seen) and seen[-1] == 20
    finally:
        await replica.stop()


async def test_prompt_cache_reads_and_writes_are_counted_by_worker(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with gateway([worker("claude", "anthropic", fake_anthropic.base_url)]) as running:
        await ask_behind_a_cached_system_prompt(running.url, "one", "two", "three")
        await running.podium.gateway.drain_background()
        async with httpx.AsyncClient(base_url=running.url) as http:
            text = (await http.get("/metrics")).text
    counted = "podium_prompt_cache_tokens_total"
    assert sample(text, counted, worker="claude", kind="write") == 1100
    assert sample(text, counted, worker="claude", kind="read") == 2200

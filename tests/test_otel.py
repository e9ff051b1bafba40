"""OpenTelemetry spans with the GenAI semantic conventions, and no OpenTelemetry import at all
when no exporter is configured."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from podium.observe.otel import OTelHook
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import ask_behind_a_cached_system_prompt, worker


def memory_hook(podium: Any) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def lookup(name: str) -> Any:
        found = podium.pool.get(name)
        return found.config if found else None

    podium.hooks.append(OTelHook(provider, lookup))
    return exporter


async def test_a_request_becomes_genai_spans(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        exporter = memory_hook(running.podium)
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x") as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="alpha", messages=[{"role": "user", "content": "hello"}]
            )
        await running.podium.gateway.drain_background()
    spans = {span.kind: span for span in exporter.get_finished_spans()}
    root, call = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert root.name == "chat alpha"
    assert root.attributes is not None and call.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["podium.trace_id"] == raw.headers["x-podium-trace-id"]
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    assert call.parent is not None and call.parent.span_id == root.context.span_id
    assert call.attributes["gen_ai.request.model"] == "alpha-model"
    assert call.attributes["gen_ai.response.model"] == "alpha-model"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["server.address"] == "127.0.0.1"
    assert call.attributes["gen_ai.usage.input_tokens"] > 0
    assert root.start_time is not None and call.start_time is not None
    assert root.end_time is not None and call.end_time is not None
    assert root.start_time <= call.start_time <= call.end_time <= root.end_time


async def test_an_embedding_request_is_an_embeddings_operation(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    embedder = worker("vectors", "openai", fake_openai.base_url, role="embed")
    async with gateway([worker("alpha", "openai", fake_openai.base_url), embedder]) as running:
        exporter = memory_hook(running.podium)
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x") as client:
            await client.embeddings.create(model="vectors", input="a short text")
        await running.podium.gateway.drain_background()
    spans = {span.kind: span for span in exporter.get_finished_spans()}
    root, call = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert root.name == "embeddings vectors" and call.name == "embeddings vectors-model"
    assert root.attributes is not None and call.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "embeddings"
    assert call.attributes["gen_ai.operation.name"] == "embeddings"
    assert call.attributes["gen_ai.usage.input_tokens"] > 0


async def test_failures_carry_error_type(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.fail(400, "bad request upstream")
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        exporter = memory_hook(running.podium)
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
            try:
                await client.chat.completions.create(
                    model="alpha", messages=[{"role": "user", "content": "hello"}]
                )
            except openai.BadRequestError:
                pass
        await running.podium.gateway.drain_background()
    spans = {span.kind: span for span in exporter.get_finished_spans()}
    root, call = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes is not None and root.attributes["error.type"] == "invalid_request"
    assert call.attributes is not None and "error.type" in call.attributes


async def test_a_configured_endpoint_registers_the_exporter(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    settings = {"observe": {"otel": {"endpoint": "http://127.0.0.1:9/v1/traces"}}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], **settings) as running:
        assert any(isinstance(hook, OTelHook) for hook in running.podium.hooks)


def test_no_opentelemetry_import_without_an_exporter(tmp_path: Any) -> None:
    code = (
        "import sys\n"
        "from podium.app import create_podium\n"
        "from podium.config import parse_config\n"
        f"podium = create_podium(parse_config({{'data_dir': {str(tmp_path)!r}, 'workers': "
        "[{'name': 'a', 'provider': 'openai', 'model': 'm', 'base_url': 'http://127.0.0.1:9'}]}))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout


async def test_prompt_cache_counts_are_genai_usage_attributes(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with gateway([worker("claude", "anthropic", fake_anthropic.base_url)]) as running:
        exporter = memory_hook(running.podium)
        await ask_behind_a_cached_system_prompt(running.url, "one", "two")
        await running.podium.gateway.drain_background()
    calls = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.CLIENT]
    written, read = (span.attributes for span in calls)
    assert written is not None and read is not None
    assert written["gen_ai.usage.cache_creation.input_tokens"] == 1100
    assert "gen_ai.usage.cache_read.input_tokens" not in written
    assert read["gen_ai.usage.cache_read.input_tokens"] == 1100
    assert read["gen_ai.usage.input_tokens"] == 1101  # the reads are part of the input

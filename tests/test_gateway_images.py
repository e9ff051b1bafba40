"""Images in a request: they reach a worker that declares ``vision`` in that vendor's own format,
from either caller's format; a worker that reads no images is never sent them, and the caller
gets a 400 in its own format instead of the upstream's failure, which would also count against
the worker's circuit breaker for every other caller."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.fakes import FakeUpstream
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import Running, worker

PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SEEING = {"capabilities": ["streaming", "vision"]}
FAKES = {"openai": FakeOpenAI, "anthropic": FakeAnthropic, "gemini": FakeGemini}


def openai_content(url: str, detail: str | None = None) -> list[dict[str, Any]]:
    image: dict[str, Any] = {"url": url}
    if detail:
        image["detail"] = detail
    return [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": image}]


async def ask_openai(running: Running, model: str, content: list[dict[str, Any]]) -> Any:
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
        return await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": content}]
        )


async def ask_anthropic(running: Running, model: str) -> Any:
    async with anthropic.AsyncAnthropic(base_url=running.url, api_key="x", max_retries=0) as client:
        return await client.messages.with_raw_response.create(
            model=model,
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                        },
                    ],
                }
            ],
        )


def image_sent(egress: str, body: dict[str, Any]) -> Any:
    """The image part of the last user message, as the upstream received it."""
    if egress == "gemini":
        parts = body["contents"][-1]["parts"]
        return next(part for part in parts if "inlineData" in part or "fileData" in part)
    content = body["messages"][-1]["content"]
    kind = "image_url" if egress == "openai" else "image"
    return next(part for part in content if part["type"] == kind)


EXPECTED = {
    "openai": {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
    "anthropic": {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    },
    "gemini": {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
}


@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
@pytest.mark.parametrize("egress", ["openai", "anthropic", "gemini"])
async def test_an_image_reaches_a_seeing_worker_in_its_vendors_format(
    gateway: Any, ingress: str, egress: str
) -> None:
    async with FAKES[egress]() as fake:
        upstream: FakeUpstream = fake
        seeing = worker("eye", egress, fake.base_url, **SEEING)
        async with gateway([seeing]) as running:
            if ingress == "openai":
                raw = await ask_openai(
                    running, "eye", openai_content(f"data:image/png;base64,{PIXEL}")
                )
            else:
                raw = await ask_anthropic(running, "eye")
        assert raw.headers["x-podium-worker"] == "eye"
        assert image_sent(egress, upstream.received[-1].body) == EXPECTED[egress]


async def test_an_image_by_url_keeps_its_url_and_detail(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("eye", "openai", fake_openai.base_url, **SEEING)]) as running:
        await ask_openai(running, "eye", openai_content("https://img.test/cat.png", "low"))
    assert image_sent("openai", fake_openai.received[-1].body) == {
        "type": "image_url",
        "image_url": {"url": "https://img.test/cat.png", "detail": "low"},
    }


async def test_a_worker_that_reads_no_images_is_refused_in_the_callers_format(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    blind = worker("text-only", "openai", fake_openai.base_url, breaker={"failures": 1})
    async with gateway([blind]) as running:
        for _ in range(3):
            with pytest.raises(openai.BadRequestError) as refused:
                await ask_openai(
                    running, "text-only", openai_content(f"data:image/png;base64,{PIXEL}")
                )
        with pytest.raises(anthropic.BadRequestError) as refused_too:
            await ask_anthropic(running, "text-only")
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
            with pytest.raises(openai.BadRequestError):  # streamed: refused before the stream
                await client.chat.completions.create(
                    model="text-only",
                    messages=[{"role": "user", "content": openai_content(f"data:,{PIXEL}")}],
                    stream=True,
                )
        # nothing was sent, and the worker still serves everyone else
        assert fake_openai.received == []
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
            answer = await client.chat.completions.create(
                model="text-only", messages=[{"role": "user", "content": "hi"}]
            )
        assert answer.choices[0].message.content == "fake answer to: hi"
        await running.podium.recorder.flush()
        trace = await running.podium.store.list_traces(limit=10)
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_input" and error["param"] == "messages"
    assert "'text-only' does not accept images" in error["message"]
    assert "vision" in error["message"]
    assert refused_too.value.status_code == 400
    assert "does not accept images" in str(refused_too.value)
    assert sum(1 for t in trace if t.http_status == 400) == 5  # each refusal is on record


async def test_podium_auto_sends_images_past_a_default_that_reads_none(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("text-only", "openai", fake_openai.base_url),
        worker("eye", "openai", fake_openai.base_url, **SEEING),
    ]
    async with gateway(workers, default_worker="text-only") as running:
        raw = await ask_openai(
            running, "podium/auto", openai_content(f"data:image/png;base64,{PIXEL}")
        )
        assert raw.headers["x-podium-worker"] == "eye"
        text = await ask_openai(running, "podium/auto", [{"type": "text", "text": "hi"}])
        assert text.headers["x-podium-worker"] == "text-only"  # text still goes to the default


async def test_a_fallback_that_reads_no_images_is_not_tried(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with FakeOpenAI() as failing:
        failing.behaviour.fail(500, times=100)
        workers = [
            worker("eye", "openai", failing.base_url, retry={"attempts": 0}, **SEEING),
            worker("text-only", "openai", fake_openai.base_url),
        ]
        async with gateway(workers, default_worker="eye") as running:
            with pytest.raises(openai.InternalServerError):
                await ask_openai(
                    running, "podium/auto", openai_content(f"data:image/png;base64,{PIXEL}")
                )
    assert fake_openai.received == []


async def test_the_local_model_refuses_images_even_if_declared_seeing(
    gateway: Any,
) -> None:
    misdeclared = {
        "name": "local",
        "provider": "local",
        "model": "SmolLM2-135M-Instruct",
        "options": {"model": "smollm2-135m", "n_ctx": 1024, "parallel": 1},
        "price": {"input": 0.0, "output": 0.0},
        "capabilities": ["streaming", "vision"],
    }
    async with gateway([misdeclared]) as running:
        with pytest.raises(openai.BadRequestError) as refused:
            await ask_openai(running, "local", openai_content(f"data:image/png;base64,{PIXEL}"))
        local = running.podium.pool.get("local")
        assert local is not None and local.breaker.state == "closed"
        # the model still answers text
        text = await ask_openai(running, "local", [{"type": "text", "text": "Say hi."}])
        assert text.parse().choices[0].message.content
    assert "text-only model and cannot read images" in refused.value.message

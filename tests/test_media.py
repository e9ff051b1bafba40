"""What images and PDF pages cost each worker: counted by its vendor's rule in the token counts
callers ask for, in budgets, in the cost ceiling and in the context-window fit, as the vendors
(here, their fakes) bill them."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace
from typing import Any

import anthropic
import openai
import pytest
from PIL import Image

from podium.config import parse_config
from podium.image_tokens import CLAUDE, GEMINI, PRESETS, UNKNOWN_SIZE, ImageSize
from podium.media import request_media
from podium.policy.budgets import estimate_cost
from podium.routing.base import Decision
from podium.routing.fit import cannot_take
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from podium.types import ChatRequest, DocumentPart, ImagePart, Message, TextPart
from podium.workers import prompt_tokens
from podium.workflow import Workflow
from tests.conftest import worker

SEEING = {"capabilities": ["streaming", "vision"]}
SIZE = ImageSize(1000, 800)


def png(width: int = SIZE.width, height: int = SIZE.height) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def with_image(data: str | None, question: str = "What is in the picture?") -> list[Any]:
    content: list[Any] = [{"type": "text", "text": question}]
    if data is not None:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        content.append({"type": "image", "source": source})
    return [{"role": "user", "content": content}]


def pool_of(*entries: dict[str, Any]) -> Any:
    configs = {w.name: w for w in parse_config({"workers": list(entries)}).workers}
    return SimpleNamespace(get=lambda name: SimpleNamespace(config=configs.get(name)))


# -- the rule each worker is billed by ------------------------------------------------------


async def test_each_worker_takes_its_providers_rule_unless_it_sets_its_own(
    gateway: Any,
) -> None:
    workers = [
        worker("claude", "anthropic", "http://127.0.0.1:9", **SEEING),
        worker("mini", "openai", "http://127.0.0.1:9", model="gpt-4.1-mini", **SEEING),
        worker("gem", "gemini", "http://127.0.0.1:9", **SEEING),
        worker("own", "gemini", "http://127.0.0.1:9", image_tokens=576, **SEEING),
        worker("local-ish", "vllm", "http://127.0.0.1:9", model="gpt-4o", **SEEING),
    ]
    async with gateway(workers) as running:
        pool = running.podium.pool

        def rule(name: str) -> Any:
            found = pool.get(name)
            assert found is not None
            return found.config.image_rule

        assert rule("claude") == CLAUDE
        assert rule("mini") == PRESETS["gpt-4.1-mini"]
        assert rule("gem") == GEMINI
        assert rule("own").tokens(SIZE, None) == 576
        assert rule("local-ish") == PRESETS["gpt-4o"]
        await pool.update("gem", {"price": {"input": 9.0}})  # repriced: the same provider
        assert rule("gem") == GEMINI
        await pool.update("gem", {"provider": "anthropic"})  # a new provider: its rule
        assert rule("gem") == CLAUDE


# -- the token counts callers ask for --------------------------------------------------------


async def test_anthropics_token_count_adds_what_the_named_worker_bills_for_the_image(
    gateway: Any,
) -> None:
    image = png()
    async with FakeAnthropic() as claude_fake, FakeGemini() as gemini_fake:
        workers = [
            worker("claude", "anthropic", claude_fake.base_url, **SEEING),
            worker("gem", "gemini", gemini_fake.base_url, **SEEING),
        ]
        async with (
            gateway(workers, default_worker="claude") as running,
            anthropic.AsyncAnthropic(base_url=running.url, api_key="x", max_retries=0) as sdk,
        ):

            async def counted(model: str, data: str | None) -> int:
                answer = await sdk.messages.count_tokens(model=model, messages=with_image(data))
                return answer.input_tokens

            async def billed(model: str, data: str | None) -> int:
                answer = await sdk.messages.create(
                    model=model, max_tokens=20, messages=with_image(data)
                )
                return answer.usage.input_tokens

            for model, rule in (("claude", CLAUDE), ("gem", GEMINI), ("podium/auto", CLAUDE)):
                image_cost = rule.tokens(SIZE, None)
                assert await counted(model, image) - await counted(model, None) == image_cost
                if model != "podium/auto":  # the vendor bills it the same
                    assert await billed(model, image) - await billed(model, None) == image_cost
    assert CLAUDE.tokens(SIZE, None) == 1067 and GEMINI.tokens(SIZE, None) == 4 * 258


async def test_a_streams_first_usage_counts_the_image_as_the_answering_worker_bills_it(
    gateway: Any,
) -> None:
    """message_start carries an estimate of the input (OpenAI-style upstreams report usage
    at the end): its image counts by the worker's rule, not as nothing."""
    image = png()
    async with (
        FakeGemini() as fake,
        gateway([worker("gem", "gemini", fake.base_url, **SEEING)]) as running,
        anthropic.AsyncAnthropic(base_url=running.url, api_key="x", max_retries=0) as sdk,
    ):

        async def first_estimate(data: str | None) -> int:
            async with sdk.messages.stream(
                model="gem", max_tokens=20, messages=with_image(data)
            ) as stream:
                async for event in stream:
                    if event.type == "message_start":
                        return event.message.usage.input_tokens
            raise AssertionError("no message_start")

        shown = await first_estimate(image)
        alone = await first_estimate(None)
    assert shown - alone == GEMINI.tokens(SIZE, None)


async def test_responses_input_token_count_adds_the_image_by_openais_rule(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    image = f"data:image/png;base64,{png()}"
    workers = [worker("gpt", "openai-responses", fake_openai.base_url, model="gpt-4o", **SEEING)]
    async with (
        gateway(workers) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as sdk,
    ):

        async def counted(detail: str | None) -> int:
            content: list[Any] = [{"type": "input_text", "text": "What is in the picture?"}]
            if detail is not None:
                content.append({"type": "input_image", "image_url": image, "detail": detail})
            answer = await sdk.responses.input_tokens.count(
                model="gpt", input=[{"role": "user", "content": content}]
            )
            return answer.input_tokens

        text = await counted(None)
        assert await counted("high") - text == 85 + 4 * 170  # 1000x800: 768x614, four tiles
        assert await counted("low") - text == 85


async def test_the_image_tokens_billed_come_back_to_the_caller(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """Through the Chat Completions wire too: OpenAI's fake bills tiles for ``gpt-4o``."""
    workers = [worker("eye", "openai", fake_openai.base_url, model="gpt-4o", **SEEING)]
    url = f"data:image/png;base64,{png()}"
    async with (
        gateway(workers) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as sdk,
    ):

        async def billed(content: list[Any]) -> int:
            answer = await sdk.chat.completions.create(
                model="eye", messages=[{"role": "user", "content": content}]
            )
            assert answer.usage is not None
            return answer.usage.prompt_tokens

        text = [{"type": "text", "text": "What is in the picture?"}]
        alone = await billed(text)
        shown = await billed([*text, {"type": "image_url", "image_url": {"url": url}}])
    assert shown - alone == 765


# -- budgets, the cost ceiling and the context-window fit -------------------------------------


def image_request(*images: ImagePart) -> ChatRequest:
    return ChatRequest("m", [Message("user", [TextPart("Compare them."), *images])])


def test_a_budget_reserves_each_workers_image_tokens_and_the_dearest_fallbacks() -> None:
    price = {"input": 1000.0, "output": 0.0}  # $0.001 a token
    pool = pool_of(
        worker("claude", "anthropic", "http://x", price=price, **SEEING),
        worker("flat", "openai", "http://x", price=price, image_tokens=100, **SEEING),
        worker("tiles", "openai", "http://x", price=price, image_tokens="gpt-4o", **SEEING),
    )
    data = png()
    request = image_request(ImagePart(data=data, media_type="image/png"), ImagePart(url="u"))

    def reserved(workflow: Workflow) -> float:
        return estimate_cost(request, Decision(workflow, "d", ""), pool, 0)

    text = reserved(Workflow.single("flat")) - 2 * 100 / 1000
    assert text > 0
    claude = CLAUDE.tokens(SIZE, None) + CLAUDE.tokens(UNKNOWN_SIZE, None)
    assert reserved(Workflow.single("claude")) == pytest.approx(text + claude / 1000)
    assert reserved(Workflow.single("flat", ["tiles", "claude"])) == pytest.approx(
        text + max(claude, 765 * 2) / 1000
    )


def test_images_of_known_size_count_against_the_context_window() -> None:
    small_window = parse_config(
        {"workers": [worker("small", "anthropic", "http://x", context_window=4500, **SEEING)]}
    ).workers[0]
    data = png(1000, 1000)  # 1,334 tokens by Claude's rule
    three = image_request(*[ImagePart(data=data, media_type="image/png")] * 3)
    four = image_request(*[ImagePart(data=data, media_type="image/png")] * 4)
    by_url = image_request(*[ImagePart(url="https://img.test/cat.png")] * 10)
    assert cannot_take(three, small_window) is None
    reason = cannot_take(four, small_window)
    assert reason is not None and "(5336 of them its images and PDF pages)" in reason
    assert cannot_take(by_url, small_window) is None  # a size not known is no certain failure


async def test_podium_auto_passes_over_a_window_the_images_overfill(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("small", "openai", fake_openai.base_url, context_window=3000, **SEEING),
        worker("large", "openai", fake_openai.base_url, context_window=128_000, **SEEING),
    ]
    url = f"data:image/png;base64,{png(2000, 2000)}"  # 765 tokens each by GPT-4o's rule
    content: list[Any] = [{"type": "text", "text": "Compare them."}]
    async with (
        gateway(workers, default_worker="small") as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as sdk,
    ):

        async def chosen(images: int) -> str:
            parts = [*content, *[{"type": "image_url", "image_url": {"url": url}}] * images]
            raw = await sdk.chat.completions.with_raw_response.create(
                model="podium/auto", messages=[{"role": "user", "content": parts}]
            )
            return raw.headers["x-podium-worker"]

        assert await chosen(2) == "small"
        assert await chosen(4) == "large"


def test_a_scan_drawn_for_a_seeing_worker_costs_it_images_not_pages() -> None:
    scan = DocumentPart(data="JVBERi0=", text=None, pages=2, page_images=[png(850, 1100)] * 2)
    request = ChatRequest("m", [Message("user", [TextPart("Read it."), scan])], attachments=True)
    configs = {
        w.name: w
        for w in parse_config(
            {
                "workers": [
                    worker("eye", "anthropic", "http://x", **SEEING),
                    worker("reader", "anthropic", "http://x", capabilities=["documents"]),
                    worker("blind", "anthropic", "http://x"),
                ]
            }
        ).workers
    }
    media = request_media(request)
    assert media.tokens(configs["eye"]) == 2 * CLAUDE.tokens(ImageSize(850, 1100), None)
    assert media.tokens(configs["reader"]) == 2 * 258  # it reads the PDF: its pages
    assert media.tokens(configs["blind"]) == 0


def test_a_calls_own_estimate_counts_its_images_as_the_worker_reads_them() -> None:
    """What a call is estimated at when its upstream reports no usage, and what it may take
    of the worker's tokens a minute."""
    configs = parse_config(
        {
            "workers": [
                worker("eye", "openai", "http://x", image_tokens="gpt-4o", **SEEING),
                worker("flat", "openai", "http://x", image_tokens=10, **SEEING),
            ]
        }
    ).workers
    request = image_request(ImagePart(data=png(), media_type="image/png"))
    text = prompt_tokens(image_request(), configs[0])
    assert prompt_tokens(request, configs[0]) == text + 765
    assert prompt_tokens(request, configs[1]) == text + 10


# -- the images an upstream refuses ---------------------------------------------------------


def test_a_vendors_image_limits_say_which_image_breaks_which() -> None:
    from podium.image_tokens import SeenImage
    from podium.upstream_profile import ANTHROPIC_IMAGES, OPENAI_IMAGES

    wide = SeenImage(ImageSize(9000, 100), bytes=40_000)
    fine = SeenImage(ImageSize(2100, 40), bytes=4_000)
    heavy = SeenImage(ImageSize(4000, 3000), bytes=6 * 1024 * 1024)
    by_url = SeenImage(None)
    assert ANTHROPIC_IMAGES.refusal([fine, by_url]) is None
    assert ANTHROPIC_IMAGES.refusal([fine, wide]) == (
        "takes images of at most 8000 pixels a side; image 2 is 9000x100"
    )
    assert ANTHROPIC_IMAGES.refusal([fine] * 20) is None
    assert ANTHROPIC_IMAGES.refusal([fine] * 21) == (
        "takes images of at most 2000 pixels a side in a request of more than 20; "
        "image 1 is 2100x40"
    )
    assert ANTHROPIC_IMAGES.refusal([heavy]) == (
        "takes images of at most 5.0 MB; image 1 has 6.0 MB"
    )
    assert ANTHROPIC_IMAGES.refusal([by_url] * 101) == (
        "takes at most 100 images a request; this one has 101"
    )
    assert OPENAI_IMAGES.refusal([wide, heavy]) is None
    assert OPENAI_IMAGES.refusal([heavy] * 9) == (
        "takes at most 50.0 MB of images a request; these have 54.0 MB"
    )


def anthropic_images(*datas: str) -> list[Any]:
    content: list[Any] = [{"type": "text", "text": "What is in the pictures?"}]
    for data in datas:
        source = {"type": "base64", "media_type": "image/png", "data": data}
        content.append({"type": "image", "source": source})
    return [{"role": "user", "content": content}]


async def test_images_a_vendor_refuses_go_to_one_that_takes_them(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """A panorama wider than Claude takes, or more than 20 images wider than 2,000 pixels:
    ``podium/auto`` passes the Claude worker over, and naming it is a 400 that says which
    image breaks which limit, before anything is sent."""
    panorama, strip = png(9000, 100), png(2100, 40)
    async with FakeAnthropic() as claude_fake:
        workers = [
            worker("claude", "anthropic", claude_fake.base_url, **SEEING),
            worker("gpt", "openai", fake_openai.base_url, model="gpt-4o", **SEEING),
        ]
        async with (
            gateway(workers, default_worker="claude") as running,
            anthropic.AsyncAnthropic(base_url=running.url, api_key="x", max_retries=0) as sdk,
        ):

            async def answered_by(messages: list[Any]) -> str:
                raw = await sdk.messages.with_raw_response.create(
                    model="podium/auto", max_tokens=20, messages=messages
                )
                return raw.headers["x-podium-worker"]

            assert await answered_by(anthropic_images(strip)) == "claude"
            assert await answered_by(anthropic_images(panorama)) == "gpt"
            assert await answered_by(anthropic_images(*[strip] * 21)) == "gpt"
            with pytest.raises(anthropic.BadRequestError) as refused:
                await sdk.messages.create(
                    model="claude", max_tokens=20, messages=anthropic_images(panorama)
                )
        # The vendor refuses them the same way when asked directly.
        async with anthropic.AsyncAnthropic(
            base_url=claude_fake.base_url, api_key="x", max_retries=0
        ) as direct:
            with pytest.raises(anthropic.BadRequestError) as vendor:
                await direct.messages.create(
                    model="claude", max_tokens=20, messages=anthropic_images(panorama)
                )
    message = str(refused.value)
    assert "worker 'claude' takes images of at most 8000 pixels a side" in message
    assert "image 1 is 9000x100" in message
    assert "at most 8000 pixels a side" in str(vendor.value)
    assert len(claude_fake.received) == 2  # the first request, and the one asked directly

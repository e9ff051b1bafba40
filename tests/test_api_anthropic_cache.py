"""The Anthropic ingress and prompt caching: breakpoints checked and passed on, and the usage
of cache writes and reads reported and priced, through the official SDKs."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from tests.conftest import worker
from tests.test_api_anthropic import CLEARED, client

MANUAL = " ".join(["clause"] * 1100)  # a long, stable system prompt: over the 1,024 minimum
PRICED = {"input": 3.0, "output": 15.0, "cached_input": 0.3}
TWO_HOURS = {"type": "ephemeral", "ttl": "2h"}  # not a lifetime Anthropic offers


def claude(base_url: str, **extra: Any) -> dict[str, Any]:
    return worker("claude", "anthropic", base_url, profile=CLEARED, price=PRICED, **extra)


def cached_system() -> list[Any]:
    return [{"type": "text", "text": MANUAL, "cache_control": {"type": "ephemeral"}}]


async def test_cache_control_reaches_anthropic_and_usage_reports_writes_then_reads(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with gateway([claude(fake_anthropic.base_url)]) as running, client(running) as sdk:
        answers = []
        for question in ("first question", "second question"):
            raw = await sdk.messages.with_raw_response.create(
                model="claude",
                max_tokens=50,
                system=cached_system(),
                messages=[{"role": "user", "content": question}],
            )
            answers.append((await raw.parse(), float(raw.headers["x-podium-cost-usd"])))
    (first, first_cost), (second, second_cost) = answers
    sent = fake_anthropic.received[0].body["system"]
    assert sent == [{"type": "text", "text": MANUAL, "cache_control": {"type": "ephemeral"}}]
    assert first.usage.cache_creation_input_tokens == 1100
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 1100
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == 1100
    assert second.usage.cache_creation_input_tokens == 0
    assert first.usage.input_tokens == second.usage.input_tokens == 2  # the question alone
    # Writes at 1.25x the input price, reads at the cached price.
    output = first.usage.output_tokens * 15.0
    assert first_cost == pytest.approx((2 * 3.0 + 1100 * 3.75 + output) / 1e6)
    output = second.usage.output_tokens * 15.0
    assert second_cost == pytest.approx((2 * 3.0 + 1100 * 0.3 + output) / 1e6)


async def test_streamed_answers_report_cache_reads(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with gateway([claude(fake_anthropic.base_url)]) as running, client(running) as sdk:
        for _ in range(2):
            async with sdk.messages.stream(
                model="claude",
                max_tokens=50,
                system=cached_system(),
                messages=[{"role": "user", "content": "stream it"}],
            ) as stream:
                final = await stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 1100
    assert final.usage.input_tokens == 2
    assert fake_anthropic.received[1].body["stream"] is True


async def test_an_hour_breakpoint_and_top_level_cache_control_pass_through(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with gateway([claude(fake_anthropic.base_url)]) as running, client(running) as sdk:
        raw = await sdk.messages.with_raw_response.create(
            model="claude",
            max_tokens=50,
            cache_control={"type": "ephemeral", "ttl": "1h"},
            messages=[{"role": "user", "content": MANUAL}],
        )
        message = await raw.parse()
    assert fake_anthropic.received[0].body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 1100
    # An hour's write costs 2x the input price.
    output = message.usage.output_tokens * 15.0
    assert float(raw.headers["x-podium-cost-usd"]) == pytest.approx((1100 * 6.0 + output) / 1e6)


async def test_cache_breakpoints_are_checked_before_anything_is_sent(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    marked = {"type": "ephemeral"}
    async with gateway([claude(fake_anthropic.base_url)]) as running, client(running) as sdk:
        with pytest.raises(anthropic.BadRequestError) as too_many:
            await sdk.messages.create(
                model="claude",
                max_tokens=50,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": f"part {i}", "cache_control": marked}
                            for i in range(5)
                        ],
                    }
                ],
            )
        with pytest.raises(anthropic.BadRequestError) as bad_ttl:
            await sdk.messages.create(
                model="claude",
                max_tokens=50,
                system=[{"type": "text", "text": "x", "cache_control": TWO_HOURS}],  # type: ignore[typeddict-item]
                messages=[{"role": "user", "content": "hi"}],
            )
    assert too_many.value.body["error"]["message"] == (  # type: ignore[index]
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )
    assert "system.0.cache_control.ttl" in bad_ttl.value.message
    assert fake_anthropic.received == []


async def test_openai_clients_get_anthropics_cache_through_the_workers_option(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    """OpenAI caches long prefixes unasked; an Anthropic worker with ``prompt_cache`` does too,
    and the OpenAI client sees the reads where OpenAI reports them."""

    pool = [claude(fake_anthropic.base_url, options={"prompt_cache": "5m"})]
    async with (
        gateway(pool) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as sdk,
    ):
        completions = [
            await sdk.chat.completions.create(
                model="claude",
                messages=[
                    {"role": "system", "content": MANUAL},
                    {"role": "user", "content": "same question"},
                ],
            )
            for _ in range(2)
        ]
        response = await sdk.responses.create(
            model="claude", instructions=MANUAL, input="same question"
        )
    assert fake_anthropic.received[0].body["cache_control"] == {"type": "ephemeral"}
    written, read = (completion.usage for completion in completions)
    assert written is not None and written.prompt_tokens_details is not None
    assert written.prompt_tokens_details.cache_write_tokens == 1102
    assert read is not None and read.prompt_tokens_details is not None
    assert read.prompt_tokens_details.cached_tokens == 1102
    assert read.prompt_tokens_details.cache_write_tokens is None  # none written this time
    assert read.prompt_tokens == 1102
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 1102
    assert response.usage.input_tokens_details.cache_write_tokens == 0


async def test_pseudonymised_prefixes_stay_cacheable(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    """Placeholders are numbered in the order values appear, so the same prefix with the same
    values is sent the same way each time and the upstream's cache still hits."""
    pool = [
        worker(
            "claude",
            "anthropic",
            fake_anthropic.base_url,
            price=PRICED,
            profile={"cleared": ["public"], "pseudonymised": ["confidential"]},
        )
    ]
    system = [
        {
            "type": "text",
            "text": f"Escalate to jane.doe@example.com. {MANUAL}",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    async with gateway(pool) as running, client(running) as sdk:
        replies = [
            await sdk.messages.create(
                model="claude",
                max_tokens=50,
                system=system,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": f"ticket {n} from bob@example.org"}],
            )
            for n in (1, 2)
        ]
    sent = json.dumps([received.body for received in fake_anthropic.received])
    assert "jane.doe@example.com" not in sent and "<EMAIL_1>" in sent
    assert replies[1].usage.cache_read_input_tokens == replies[0].usage.cache_creation_input_tokens
    assert replies[1].usage.cache_read_input_tokens > 1100

"""``truncation: "auto"``: a conversation longer than the worker's context window loses its
oldest turns, whole, instead of failing upstream."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.responses.truncation import truncate
from podium.testing.openai_fake import FakeOpenAI
from podium.types import Message, TextPart, ToolCall
from podium.workers import estimate_message_tokens
from tests.conftest import worker
from tests.test_responses_ingress import client_for
from tests.test_responses_stored import sent_messages

PARAGRAPH = "word " * 200  # about 250 tokens by Podium's estimate


def text(role: str, words: str) -> Message:
    return Message(role, [TextPart(words)])


def test_the_oldest_turns_go_and_system_messages_and_the_question_stay() -> None:
    messages = [
        text("system", "Be brief."),
        text("user", PARAGRAPH),
        text("assistant", PARAGRAPH),
        text("user", "short"),
        text("assistant", "short"),
        text("user", "the question"),
    ]
    kept, dropped = truncate(messages, budget=100)
    assert [m.text() for m in kept] == ["Be brief.", "short", "short", "the question"]
    assert dropped == 2
    # Nothing to drop when it fits; the question stays even when it alone is too long.
    assert truncate(messages, budget=10_000) == (messages, 0)
    alone, _ = truncate([text("user", PARAGRAPH)], budget=1)
    assert [m.text() for m in alone] == [PARAGRAPH]


def test_no_tool_result_is_left_without_its_call() -> None:
    call = Message("assistant", [], tool_calls=[ToolCall("c1", "lookup", "{}")])
    messages = [
        text("user", PARAGRAPH),
        call,
        Message("tool", [TextPart("result")], tool_call_id="c1"),
        text("assistant", "done"),
        text("user", "next"),
    ]
    budget = estimate_message_tokens(messages[-1]) + estimate_message_tokens(messages[-2]) + 1
    kept, dropped = truncate(messages, budget)
    assert [m.role for m in kept] == ["user"] and dropped == 4


async def test_a_kept_conversation_past_the_window_is_cut_to_fit(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    small = worker("alpha", "openai", fake_openai.base_url, context_window=2048)
    async with gateway([small]) as served, client_for(served.url) as client:
        previous: Any = openai.omit
        for turn in range(6):  # each turn adds ~500 tokens: past 2,048 by the fifth
            answer = await client.responses.create(
                model="alpha",
                input=f"turn {turn}: {PARAGRAPH}",
                previous_response_id=previous,
                max_output_tokens=100,
                truncation="auto",
            )
            previous = answer.id
        cut = await client.responses.with_raw_response.create(
            model="alpha", input="the question", previous_response_id=previous, truncation="auto"
        )
        whole = await client.responses.create(
            model="alpha", input="the question", previous_response_id=previous
        )
        await served.podium.gateway.drain_background()
        await served.podium.recorder.flush()
        trace = await served.podium.store.get_trace(cut.headers["x-podium-trace-id"])
    assert cut.parse().truncation == "auto" and whole.truncation == "disabled"
    sent = sent_messages(fake_openai, -2)
    assert sent[0][0] == "user" and sent[-1] == ("user", "the question")
    assert 1 < len(sent) < 13
    assert sum(len(words) for _, words in sent) < 2048 * 4
    # Without truncation, the whole conversation goes (and the upstream decides).
    assert len(sent_messages(fake_openai, -1)) == 13
    assert trace is not None and f"truncated:{13 - len(sent)}" in trace.policy_actions


async def test_a_budget_prices_the_conversation_as_cut(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    # Dear tokens (1,000 USD a million), so the conversation's size decides what fits.
    small = worker(
        "alpha",
        "openai",
        fake_openai.base_url,
        context_window=2048,
        price={"input": 1000.0, "output": 1000.0},
    )
    async with gateway([small], access={"auth": {"required": True}}) as served:
        keys = KeyStore(served.podium.store)
        _, unlimited = await keys.create(NewKey(owner="team"))
        _, limited = await keys.create(NewKey(owner="team", budget_usd=2.5))
        async with (
            openai.AsyncOpenAI(base_url=served.v1, api_key=unlimited, max_retries=0) as talk,
            openai.AsyncOpenAI(base_url=served.v1, api_key=limited, max_retries=0) as ask,
        ):
            previous: Any = openai.omit
            for turn in range(12):  # ~3,000 tokens in all: ~3 USD to send whole
                answer = await talk.responses.create(
                    model="alpha",
                    input=f"turn {turn}: {PARAGRAPH}",
                    previous_response_id=previous,
                    max_output_tokens=10,
                )
                previous = answer.id
            with pytest.raises(openai.APIStatusError) as whole:
                await ask.responses.create(
                    model="alpha", input="?", previous_response_id=previous, max_output_tokens=10
                )
            cut = await ask.responses.create(
                model="alpha",
                input="?",
                previous_response_id=previous,
                max_output_tokens=10,
                truncation="auto",
            )
    assert whole.value.status_code == 402
    assert cut.status == "completed"

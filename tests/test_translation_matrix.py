"""Every ingress (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages) against every
egress (OpenAI,
Anthropic, Gemini, the embedded local model): text, streaming, tool calls, stop reasons and
usage, each seen through the official SDK of the caller's format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import openai
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.fakes import FakeUpstream
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}

# Cleared for every data class, so the policy layer's reading of these prompts (a city name,
# say) never turns a translation test away: policy has its own tests.
CLEARED = {"cleared": ["public", "internal", "confidential", "restricted"]}

# Each format's stop reasons, named canonically so one assertion covers both callers.
CANONICAL_STOP = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


@dataclass
class Answer:
    text: str = ""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    stop: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    events: list[str] = field(default_factory=list)


class Caller(Protocol):
    async def ask(
        self,
        prompt: str,
        *,
        stream: bool,
        max_tokens: int = 200,
        tools: bool = False,
        history: list[Any] | None = None,
    ) -> Answer: ...

    def tool_history(self, prompt: str, answer: Answer, result: str) -> list[Any]: ...


class OpenAICaller:
    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def ask(
        self,
        prompt: str,
        *,
        stream: bool,
        max_tokens: int = 200,
        tools: bool = False,
        history: list[Any] | None = None,
    ) -> Answer:
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather",
                        "parameters": SCHEMA,
                    },
                }
            ]
        messages = history or [{"role": "user", "content": prompt}]
        if not stream:
            completion = await self.client.chat.completions.create(
                model="w", messages=messages, max_tokens=max_tokens, **extra
            )
            choice = completion.choices[0]
            assert completion.usage is not None
            return Answer(
                text=choice.message.content or "",
                calls=[
                    (c.id, c.function.name, json.loads(c.function.arguments))
                    for c in choice.message.tool_calls or []
                    if c.type == "function"
                ],
                stop=CANONICAL_STOP[choice.finish_reason],
                input_tokens=completion.usage.prompt_tokens,
                output_tokens=completion.usage.completion_tokens,
            )
        answer = Answer()
        calls: dict[int, list[str]] = {}
        chunks = await self.client.chat.completions.create(
            model="w",
            messages=messages,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            **extra,
        )
        async for chunk in chunks:
            answer.events.append("chunk")
            if chunk.usage is not None:
                answer.input_tokens = chunk.usage.prompt_tokens
                answer.output_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                answer.text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    slot = calls.setdefault(call.index, ["", "", ""])
                    slot[0] = call.id or slot[0]
                    if call.function is not None:
                        slot[1] = call.function.name or slot[1]
                        slot[2] += call.function.arguments or ""
                if choice.finish_reason:
                    answer.stop = CANONICAL_STOP[choice.finish_reason]
        answer.calls = [(i, n, json.loads(a)) for i, n, a in (calls[k] for k in sorted(calls))]
        return answer

    def tool_history(self, prompt: str, answer: Answer, result: str) -> list[Any]:
        call_id, name, arguments = answer.calls[0]
        return [
            {"role": "user", "content": prompt},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": result},
        ]


class AnthropicCaller:
    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self.client = client

    async def ask(
        self,
        prompt: str,
        *,
        stream: bool,
        max_tokens: int = 200,
        tools: bool = False,
        history: list[Any] | None = None,
    ) -> Answer:
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = [
                {"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}
            ]
        messages = history or [{"role": "user", "content": prompt}]
        answer = Answer()
        if stream:
            async with self.client.messages.stream(
                model="w", max_tokens=max_tokens, messages=messages, **extra
            ) as events:
                async for event in events:
                    answer.events.append(event.type)
                message = await events.get_final_message()
        else:
            message = await self.client.messages.create(
                model="w", max_tokens=max_tokens, messages=messages, **extra
            )
        assert message.type == "message" and message.id.startswith("msg_")
        assert message.stop_reason is not None
        for block in message.content:
            if block.type == "text":
                answer.text += block.text
            elif block.type == "tool_use":
                answer.calls.append((block.id, block.name, dict(block.input)))
        answer.stop = CANONICAL_STOP[message.stop_reason]
        answer.input_tokens = message.usage.input_tokens
        answer.output_tokens = message.usage.output_tokens
        return answer

    def tool_history(self, prompt: str, answer: Answer, result: str) -> list[Any]:
        call_id, name, arguments = answer.calls[0]
        return [
            {"role": "user", "content": prompt},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call_id, "name": name, "input": arguments}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}],
            },
        ]


class ResponsesCaller:
    """OpenAI's Responses API, as a client that keeps no state (``store=False``) sends it."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def ask(
        self,
        prompt: str,
        *,
        stream: bool,
        max_tokens: int = 200,
        tools: bool = False,
        history: list[Any] | None = None,
    ) -> Answer:
        extra: dict[str, Any] = {}
        if tools:
            extra["tools"] = [
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": SCHEMA,
                    "strict": False,
                }
            ]
        items = history or [{"role": "user", "content": prompt}]
        answer = Answer()
        if stream:
            # The raw events, not the SDK's stream helper: an answer cut short ends with
            # ``response.incomplete``, which the helper's final response does not take.
            events = await self.client.responses.create(
                model="w",
                input=items,
                max_output_tokens=max_tokens,
                store=False,
                stream=True,
                **extra,
            )
            final = None
            async for event in events:
                answer.events.append(event.type)
                if event.type in ("response.completed", "response.incomplete"):
                    final = event.response
            assert final is not None and answer.events[-1] == f"response.{final.status}"
            response = final
        else:
            response = await self.client.responses.create(
                model="w", input=items, max_output_tokens=max_tokens, store=False, **extra
            )
        assert response.id.startswith("resp_") and response.object == "response"
        answer.text = response.output_text
        answer.calls = [
            (item.call_id, item.name, json.loads(item.arguments))
            for item in response.output
            if item.type == "function_call"
        ]
        if response.status == "incomplete":
            assert response.incomplete_details is not None
            assert response.incomplete_details.reason == "max_output_tokens"
            answer.stop = "length"
        else:
            assert response.status == "completed"
            answer.stop = "tool_calls" if answer.calls else "stop"
        assert response.usage is not None
        answer.input_tokens = response.usage.input_tokens
        answer.output_tokens = response.usage.output_tokens
        return answer

    def tool_history(self, prompt: str, answer: Answer, result: str) -> list[Any]:
        call_id, name, arguments = answer.calls[0]
        return [
            {"role": "user", "content": prompt},
            {
                "type": "function_call",
                "call_id": call_id,
                "name": name,
                "arguments": json.dumps(arguments),
            },
            {"type": "function_call_output", "call_id": call_id, "output": result},
        ]


@asynccontextmanager
async def caller(ingress: str, running: Any) -> AsyncIterator[Caller]:
    if ingress == "openai":
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
            yield OpenAICaller(client)
    elif ingress == "responses":
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client:
            yield ResponsesCaller(client)
    else:
        async with anthropic.AsyncAnthropic(
            base_url=running.url, api_key="x", max_retries=0
        ) as client:
            yield AnthropicCaller(client)


FAKES: dict[str, Callable[[], FakeUpstream]] = {
    "openai": FakeOpenAI,
    "openai-responses": FakeOpenAI,  # the same fake server: it speaks both of OpenAI's APIs
    "anthropic": FakeAnthropic,
    "gemini": FakeGemini,
}


def base_url(fake: FakeUpstream) -> str:
    return fake.base_url  # type: ignore[attr-defined, no-any-return]


@asynccontextmanager
async def cell(gateway: Any, ingress: str, egress: str) -> AsyncIterator[tuple[Caller, Any]]:
    async with (
        FAKES[egress]() as fake,
        gateway([worker("w", egress, base_url(fake), profile=CLEARED)]) as running,
        caller(ingress, running) as client,
    ):
        yield client, fake


INGRESSES = ["openai", "responses", "anthropic"]
EGRESSES = ["openai", "openai-responses", "anthropic", "gemini"]
matrix = pytest.mark.parametrize(
    ("ingress", "egress"), [(i, e) for i in INGRESSES for e in EGRESSES]
)


@matrix
async def test_text(gateway: Any, ingress: str, egress: str) -> None:
    async with cell(gateway, ingress, egress) as (client, fake):
        plain = await client.ask("what is up", stream=False)
        streamed = await client.ask("what is up", stream=True)
    for answer in (plain, streamed):
        assert answer.text == "fake answer to: what is up"
        assert answer.stop == "stop" and answer.calls == []
        assert answer.input_tokens > 0 and answer.output_tokens > 0
    assert len(streamed.events) > 3  # arrived in pieces
    assert len(fake.received) == 2


@matrix
async def test_tool_call_round_trip(gateway: Any, ingress: str, egress: str) -> None:
    async with cell(gateway, ingress, egress) as (client, fake):
        fake.behaviour.tool_call = ("get_weather", '{"city": "Paris"}')
        for stream in (False, True):
            answer = await client.ask("weather in Paris?", stream=stream, tools=True)
            assert answer.stop == "tool_calls"
            assert len(answer.calls) == 1
            call_id, name, arguments = answer.calls[0]
            assert call_id and name == "get_weather" and arguments == {"city": "Paris"}
            assert answer.input_tokens > 0 and answer.output_tokens > 0
        fake.behaviour.tool_call = None
        history = client.tool_history("weather in Paris?", answer, "sunny, 21C")
        final = await client.ask("", stream=False, tools=True, history=history)
    # The fake echoes the last text it received: the tool result made it through.
    assert final.text == "fake answer to: sunny, 21C"
    assert final.stop == "stop"


@matrix
async def test_max_tokens_is_a_length_stop(gateway: Any, ingress: str, egress: str) -> None:
    story = " ".join(f"w{n}" for n in range(30))
    async with cell(gateway, ingress, egress) as (client, fake):
        # 16: the smallest limit the Responses API takes (a smaller one is sent as 16).
        fake.behaviour.reply = story
        for stream in (False, True):
            answer = await client.ask("tell me a long story", stream=stream, max_tokens=16)
            assert answer.stop == "length"
            assert answer.text == " ".join(story.split()[:16])
            assert answer.output_tokens == 16


# -- the embedded local model ----------------------------------------------------------------


def local_worker() -> dict[str, Any]:
    return {
        "name": "w",
        "provider": "local",
        "model": "SmolLM2-135M-Instruct",
        "options": {"model": "smollm2-135m", "n_ctx": 1024, "parallel": 1},
        "price": {"input": 0.0, "output": 0.0},
        "profile": CLEARED,
    }


@pytest.mark.parametrize("ingress", INGRESSES)
async def test_local_model(gateway: Any, ingress: str) -> None:
    async with gateway([local_worker()]) as running, caller(ingress, running) as client:
        plain = await client.ask("Say hello.", stream=False, max_tokens=24)
        streamed = await client.ask("Count to five.", stream=True, max_tokens=24)
        cut = await client.ask("Write a long poem about the sea.", stream=False, max_tokens=3)
        cut_streamed = await client.ask("Write a long poem about rain.", stream=True, max_tokens=3)
        with_tools = await client.ask(
            "What is the weather in Paris?", stream=False, tools=True, max_tokens=32
        )
        with_tools_streamed = await client.ask(
            "Weather in Oslo?", stream=True, tools=True, max_tokens=32
        )
    for answer in (plain, streamed):
        assert answer.text.strip()
        assert answer.stop in ("stop", "length")
        assert answer.input_tokens > 0 and answer.output_tokens > 0
    assert len(streamed.events) > 3
    for answer in (cut, cut_streamed):
        assert answer.stop == "length"
        assert 0 < answer.output_tokens <= 3
    for answer in (with_tools, with_tools_streamed):
        # A 135M model may or may not call the tool; either way the answer is well-formed.
        assert answer.stop in ("stop", "length", "tool_calls")
        assert answer.text or answer.calls
        for call_id, name, arguments in answer.calls:
            assert call_id and name and isinstance(arguments, dict)

"""``provider: openai-responses``: the canonical request sent as a Responses API call to the
fake OpenAI server (which refuses what the real API refuses), and its answers, streams and
failures read back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.config import WorkerConfig
from podium.errors import ProviderError
from podium.providers.base import ProviderContext
from podium.providers.egress import Egress
from podium.providers.openai_responses import OpenAIResponsesProvider, decode_response
from podium.secrets import EnvironmentSecrets
from podium.testing.openai_fake import FakeOpenAI
from podium.types import (
    ChatRequest,
    Finish,
    ImagePart,
    Message,
    ResponseFormat,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    UsageReport,
    collect,
)

KEY = "sk-test-responses-0123456789abcdef"
WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        server.behaviour.require_key = KEY
        yield server  # type: ignore[misc]


@pytest.fixture
async def provider(fake: FakeOpenAI, tmp_path: Path) -> AsyncIterator[OpenAIResponsesProvider]:
    http = Egress()
    yield make(fake.base_url, http, tmp_path)
    await http.aclose()


def make(base_url: str, http: Egress, tmp_path: Path, **extra: Any) -> OpenAIResponsesProvider:
    config = WorkerConfig(
        name="gpt",
        provider="openai-responses",
        model="gpt-test",
        base_url=base_url,
        api_key_env="OPENAI_KEY",
        **extra,
    )
    return OpenAIResponsesProvider(
        ProviderContext(
            worker=config,
            http=http,
            secrets=EnvironmentSecrets({"OPENAI_KEY": KEY}),
            data_dir=tmp_path,
        )
    )


def ask(text: str, **extra: Any) -> ChatRequest:
    return ChatRequest(model="gpt", messages=[Message("user", [TextPart(text)])], **extra)


async def test_an_answer_with_its_usage(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    response = await provider.complete(ask("hello"))
    assert response.text == "fake answer to: hello" and response.finish_reason == "stop"
    assert response.model == "gpt" and response.id.startswith("resp_")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    received = fake.received[0]
    assert received.path == "/v1/responses"
    assert received.headers["Authorization"] == f"Bearer {KEY}"
    assert received.body == {
        "model": "gpt-test",
        "input": [{"role": "user", "content": "hello"}],
        "store": False,  # nothing is left at OpenAI for later
    }


async def test_a_whole_conversation_is_sent_as_instructions_and_items(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    request = ChatRequest(
        model="gpt",
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look"), ImagePart(data="AAAA", media_type="image/png")]),
            Message(
                "assistant",
                [TextPart("Checking.")],
                tool_calls=[ToolCall("call_1", "get_weather", '{"city":"A"}')],
            ),
            Message("tool", [TextPart("sunny")], tool_call_id="call_1"),
            Message("system", [TextPart("answer in French")]),
            Message("user", [TextPart("and?")]),
        ],
        tools=[WEATHER],
        tool_choice=ToolChoice("tool", "get_weather"),
        parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", {"type": "object"}, "Weather", True),
        temperature=0.3,
        top_p=0.9,
        max_tokens=5,
        stop=["END"],
        seed=7,
        user="user-42",
        reasoning_effort="high",
    )
    await provider.complete(request)
    body = fake.received[0].body
    assert body["instructions"] == "be brief"
    assert body["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            ],
        },
        {"role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"A"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "developer", "content": "answer in French"},
        {"role": "user", "content": "and?"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": WEATHER.parameters,
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["parallel_tool_calls"] is False
    assert body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "Weather",
            "schema": {"type": "object"},
            "strict": True,
        }
    }
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["max_output_tokens"] == 16  # the API's smallest
    assert body["safety_identifier"] == "user-42"
    # Not in the Responses API (the fake refuses unknown parameters, as the API does), and
    # reasoning only for a worker that says it takes it.
    assert not {"stop", "seed", "user", "max_tokens", "reasoning"} & set(body)


async def test_reasoning_and_storage_follow_the_workers_options(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    http = Egress()
    try:
        provider = make(fake.base_url, http, tmp_path, options={"reasoning": True, "store": True})
        await provider.complete(ask("think", reasoning_effort="low", verbosity="high"))
    finally:
        await http.aclose()
    body = fake.received[0].body
    assert body["reasoning"] == {"effort": "low"} and body["text"] == {"verbosity": "high"}
    assert body["store"] is True


async def test_a_stream_of_text(provider: OpenAIResponsesProvider) -> None:
    events = [event async for event in provider.stream(ask("stream me", stream=True))]
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert text == "fake answer to: stream me"
    assert len([e for e in events if isinstance(e, TextDelta)]) > 3
    assert isinstance(events[-2], Finish) and events[-2].reason == "stop"
    assert isinstance(events[-1], UsageReport) and events[-1].usage.output_tokens > 0


async def test_tool_calls_whole_and_streamed(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    fake.behaviour.tool_call = ("get_weather", '{"city": "Lyon"}')
    whole = await provider.complete(ask("weather?", tools=[WEATHER]))
    streamed = await collect(
        provider.stream(ask("weather?", tools=[WEATHER], stream=True)), id="x", model="gpt"
    )
    for response in (whole, streamed):
        assert response.finish_reason == "tool_calls"
        [call] = response.tool_calls
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Lyon"}
        assert call.id.startswith("call_")
    events = [e async for e in provider.stream(ask("weather?", tools=[WEATHER], stream=True))]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].name == "get_weather" and len(deltas) > 2


async def test_an_answer_cut_short_is_a_length_stop(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    fake.behaviour.reply = " ".join(f"w{n}" for n in range(40))
    whole = await provider.complete(ask("long", max_tokens=20))
    streamed = await collect(provider.stream(ask("long", max_tokens=20)), id="x", model="gpt")
    for response in (whole, streamed):
        assert response.finish_reason == "length"
        assert response.text.split() == [f"w{n}" for n in range(20)]


async def test_a_rate_limit_keeps_its_retry_after(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    fake.behaviour.fail(429, "slow down", retry_after=2)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert caught.value.kind == "rate_limit" and caught.value.retry_after == 2
    assert caught.value.retryable


async def test_an_error_event_mid_stream_is_a_retryable_failure(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    fake.behaviour.error_stream_after = 5
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in provider.stream(ask("long answer here", stream=True))]
    assert caught.value.retryable and "The server had an error." in caught.value.message


async def test_an_error_event_that_echoes_the_key_never_carries_it(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    fake.behaviour.error_stream_after = 5
    fake.behaviour.echo_key = True
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in provider.stream(ask("long answer here", stream=True))]
    assert "The server had an error." in caught.value.message
    assert KEY[:8] not in caught.value.message and KEY[:8] not in str(caught.value)


async def test_a_failed_response_that_echoes_the_key_never_carries_it(
    provider: OpenAIResponsesProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failed(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        error = {"code": "server_error", "message": f"no access with Bearer {KEY}"}
        return {"id": "resp_1", "status": "failed", "output": [], "error": error}

    monkeypatch.setattr(provider.upstream, "post_json", failed)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert "no access with Bearer" in caught.value.message
    assert KEY[:8] not in caught.value.message and KEY[-8:] not in caught.value.message


async def test_a_stream_that_ends_early_is_an_error(
    provider: OpenAIResponsesProvider, fake: FakeOpenAI
) -> None:
    fake.behaviour.break_stream_after = 4
    with pytest.raises(ProviderError):
        _ = [e async for e in provider.stream(ask("long answer here", stream=True))]


async def test_a_wrong_key_never_leaks(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.behaviour.require_key = "something-else"
    fake.behaviour.echo_key = True
    http = Egress()
    try:
        provider = make(fake.base_url, http, tmp_path)
        with pytest.raises(ProviderError) as caught:
            await provider.complete(ask("x"))
    finally:
        await http.aclose()
    assert caught.value.status == 502 and KEY[:10] not in caught.value.message


def test_a_failed_response_and_reasoning_items_are_read_as_the_api_means_them() -> None:
    answer = decode_response(
        {
            "id": "resp_1",
            "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "message",
                    "content": [{"type": "refusal", "refusal": "I can't help with that."}],
                },
            ],
            "usage": {"input_tokens": 3, "output_tokens": 9},
        },
        "gpt",
    )
    assert answer.text == "I can't help with that." and answer.usage.output_tokens == 9
    with pytest.raises(ProviderError) as caught:
        decode_response(
            {"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "busy"}},
            "gpt",
        )
    assert caught.value.kind == "rate_limit" and "busy" in caught.value.message
    with pytest.raises(ProviderError) as shape:
        decode_response({"status": "completed"}, "gpt")
    assert "unexpected shape" in shape.value.message


async def test_the_fake_refuses_what_the_api_refuses(fake: FakeOpenAI) -> None:
    """The fake is only a check on Podium if it refuses what the API does."""
    import httpx

    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers) as client:
        unknown = await client.post("/responses", json={"model": "m", "input": "x", "stop": "."})
        small = await client.post(
            "/responses", json={"model": "m", "input": "x", "max_output_tokens": 5}
        )
        chained = await client.post(
            "/responses", json={"model": "m", "input": "x", "previous_response_id": "resp_9"}
        )
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "stop"
    assert small.status_code == 400 and small.json()["error"]["code"] == "integer_below_min_value"
    assert chained.status_code == 400 and "not found" in chained.json()["error"]["message"]

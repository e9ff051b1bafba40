from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from podium.config import WorkerConfig
from podium.errors import ProviderError
from podium.providers.base import ProviderContext
from podium.providers.egress import Egress
from podium.providers.gemini import GeminiProvider, StreamDecoder, decode_response, gemini_schema
from podium.secrets import EnvironmentSecrets
from podium.testing.gemini_fake import FakeGemini
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
)
from tests.conftest import worker

KEY = "AIzaTest-0123456789abcdefghijklmn"
WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": ["integer", "null"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as server:
        server.behaviour.require_key = KEY
        yield server  # type: ignore[misc]


@pytest.fixture
async def provider(fake: FakeGemini, tmp_path: Path) -> AsyncIterator[GeminiProvider]:
    http = Egress()
    yield make(fake.base_url, http, tmp_path)
    await http.aclose()


def make(base_url: str, http: Egress, tmp_path: Path) -> GeminiProvider:
    config = WorkerConfig(
        name="gem",
        provider="gemini",
        model="models/gemini-test",
        base_url=base_url,
        api_key_env="GEMINI_KEY",
    )
    return GeminiProvider(
        ProviderContext(
            worker=config,
            http=http,
            secrets=EnvironmentSecrets({"GEMINI_KEY": KEY}),
            data_dir=tmp_path,
        )
    )


def ask(text: str, **extra: Any) -> ChatRequest:
    return ChatRequest(model="gem", messages=[Message("user", [TextPart(text)])], **extra)


async def test_complete_sends_key_header_and_decodes(
    provider: GeminiProvider, fake: FakeGemini
) -> None:
    response = await provider.complete(ask("hello"))
    assert response.text == "fake answer to: hello"
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    received = fake.received[0]
    assert received.path == "/v1beta/models/gemini-test:generateContent"
    assert received.headers["x-goog-api-key"] == KEY


async def test_request_encoding(provider: GeminiProvider, fake: FakeGemini) -> None:
    request = ChatRequest(
        model="gem",
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look"), ImagePart(data="AAAA", media_type="image/png")]),
            Message(
                "assistant",
                [],
                tool_calls=[
                    ToolCall("c1", "get_weather", '{"city": "A"}'),
                    ToolCall("c2", "get_weather", '{"city": "B"}'),
                ],
            ),
            Message("tool", [TextPart("sunny")], tool_call_id="c1"),
            Message("tool", [TextPart("no such city")], tool_call_id="c2", is_error=True),
        ],
        tools=[WEATHER],
        tool_choice=ToolChoice("tool", "get_weather"),
        temperature=0.3,
        top_p=0.8,
        max_tokens=40,
        stop=["END"],
        seed=11,
        response_format=ResponseFormat("json_object"),
    )
    await provider.complete(request)
    body = fake.received[0].body
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": "AAAA"}
    }
    assert body["contents"][1]["parts"][0] == {
        "functionCall": {"name": "get_weather", "args": {"city": "A"}}
    }
    responses = body["contents"][2]["parts"]
    assert responses == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
        {"functionResponse": {"name": "get_weather", "response": {"error": "no such city"}}},
    ]
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "nullable": True}},
        "required": ["city"],
    }
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "maxOutputTokens": 40,
        "stopSequences": ["END"],
        "seed": 11,
        "responseMimeType": "application/json",
    }


async def test_json_schema_maps_to_response_schema(
    provider: GeminiProvider, fake: FakeGemini
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "additionalProperties": False,
    }
    response = await provider.complete(
        ask("json", response_format=ResponseFormat("json_schema", schema, "out"))
    )
    assert json.loads(response.text) == {"answer": "fake answer to: json"}
    config = fake.received[0].body["generationConfig"]
    assert config["responseSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
    }


async def test_function_call_gets_a_stable_id(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.tool_call = ("get_weather", '{"city": "Paris"}')
    response = await provider.complete(ask("weather?", tools=[WEATHER]))
    assert response.finish_reason == "tool_calls"
    call = response.tool_calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")
    raw = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "f", "args": {}}}],
                },
                "finishReason": "STOP",
            }
        ],
        "responseId": "r1",
    }
    assert decode_response(raw, "gem").tool_calls[0].id == (
        decode_response(raw, "gem").tool_calls[0].id
    )


async def test_tool_choice_none(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.tool_call = ("get_weather", "{}")
    response = await provider.complete(ask("x", tools=[WEATHER], tool_choice=ToolChoice("none")))
    assert response.tool_calls == [] and response.finish_reason == "stop"
    assert fake.received[0].body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}


async def test_max_tokens_is_length(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.reply = "one two three four"
    response = await provider.complete(ask("x", max_tokens=2))
    assert response.finish_reason == "length" and response.text == "one two"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("SAFETY", "content_filter"), ("RECITATION", "content_filter"), ("OTHER", "stop")],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    raw = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 2,
            "thoughtsTokenCount": 3,
            "cachedContentTokenCount": 4,
        },
    }
    response = decode_response(raw, "gem")
    assert response.finish_reason == expected
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, 5)
    assert response.usage.cached_input_tokens == 4


def test_blocked_prompt_is_content_filter() -> None:
    response = decode_response({"promptFeedback": {"blockReason": "SAFETY"}}, "gem")
    assert response.finish_reason == "content_filter" and response.text == ""


def test_schema_sanitising_keeps_nested_shapes() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "const": "x"}},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "$defs": {},
    }
    assert gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }


async def test_stream_text_and_usage(provider: GeminiProvider, fake: FakeGemini) -> None:
    events = [event async for event in provider.stream(ask("stream it", stream=True))]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "fake answer to: stream it"
    assert sum(isinstance(e, TextDelta) for e in events) > 2
    assert [e for e in events if isinstance(e, Finish)] == [Finish("stop")]
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert fake.received[0].path == "/v1beta/models/gemini-test:streamGenerateContent"


async def test_stream_function_call(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.tool_call = ("get_weather", '{"city": "Oslo"}')
    events = [e async for e in provider.stream(ask("weather?", tools=[WEATHER], stream=True))]
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].id
    assert json.loads(calls[0].arguments) == {"city": "Oslo"}
    assert [e for e in events if isinstance(e, Finish)] == [Finish("tool_calls")]


async def test_rate_limit_retry_delay_from_the_body(
    provider: GeminiProvider, fake: FakeGemini
) -> None:
    fake.behaviour.fail(429, "Resource has been exhausted", retry_after=12)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert caught.value.kind == "rate_limit" and caught.value.retryable
    assert caught.value.retry_after == 12
    assert "Resource has been exhausted" in caught.value.message


async def test_unavailable_is_retryable(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.fail(503, "The model is overloaded.")
    with pytest.raises(ProviderError) as caught:
        await anext(provider.stream(ask("x", stream=True)))
    assert caught.value.kind == "overloaded" and caught.value.retryable


async def test_bad_request_is_not_retryable(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.fail(400, "Invalid JSON payload received.")
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert caught.value.kind == "invalid_request" and not caught.value.retryable


async def test_error_mid_stream(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.error_stream_after = 2
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in provider.stream(ask("a long answer", stream=True))]
    assert caught.value.kind == "overloaded"


async def test_an_error_chunk_that_echoes_the_key_never_carries_it(
    provider: GeminiProvider, fake: FakeGemini
) -> None:
    fake.behaviour.error_stream_after = 2
    fake.behaviour.echo_key = True
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in provider.stream(ask("a long answer", stream=True))]
    assert "The model is overloaded." in caught.value.message
    assert KEY[:8] not in caught.value.message and KEY[:8] not in str(caught.value)


async def test_broken_stream_is_an_error(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.behaviour.break_stream_after = 2
    with pytest.raises(ProviderError):
        _ = [e async for e in provider.stream(ask("a long answer", stream=True))]


async def test_wrong_key_never_leaks(fake: FakeGemini, tmp_path: Path) -> None:
    fake.behaviour.require_key = "another-key"
    http = Egress()
    try:
        with pytest.raises(ProviderError) as caught:
            await make(fake.base_url, http, tmp_path).complete(ask("x"))
    finally:
        await http.aclose()
    assert caught.value.status == 502
    assert KEY not in caught.value.message
    assert "key=" not in fake.received[0].path  # the key travels in a header, never the URL


async def test_fake_refuses_what_gemini_refuses(fake: FakeGemini, tmp_path: Path) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake.base_url}/models/g:generateContent",
            json={"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
            headers={"x-goog-api-key": KEY},
        ) as response,
    ):
        body = await response.json()
    assert response.status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT" and body["error"]["code"] == 400


# google-genai subclasses aiohttp's session, which aiohttp warns about: theirs, not ours.
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_the_official_sdk_reads_the_fake(fake: FakeGemini) -> None:
    """The fake's wire format is the real one as far as Google's own SDK can tell."""
    genai = pytest.importorskip(
        "google.genai", reason="google-genai is optional: install it to cross-check the fake"
    )
    from google.genai import errors, types

    options = types.HttpOptions(base_url=fake.url, api_version="v1beta")
    async with genai.Client(api_key=KEY, http_options=options).aio as client:
        answer = await client.models.generate_content(model="gemini-x", contents="hello")
        pieces = [
            chunk.text
            async for chunk in await client.models.generate_content_stream(
                model="gemini-x", contents="stream me"
            )
        ]
        fake.behaviour.fail(429, "Resource has been exhausted", retry_after=5)
        with pytest.raises(errors.ClientError) as caught:
            await client.models.generate_content(model="gemini-x", contents="x")
    assert answer.text == "fake answer to: hello"
    assert answer.usage_metadata is not None and answer.usage_metadata.prompt_token_count
    assert "".join(p or "" for p in pieces) == "fake answer to: stream me" and len(pieces) > 2
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"


# -- thought signatures (Gemini 3) ---------------------------------------------------------------

ANTHROPIC_WEATHER: Any = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


async def a_tool_loop(url: str, *, stream: bool, history: list[Any] | None = None) -> Any:
    """An Anthropic client's two-step tool loop with worker ``gem``: the model calls the tool,
    the caller answers it, the model goes on. ``history``: a call made elsewhere instead."""
    import anthropic

    ask: Any = {"role": "user", "content": "Weather in Oslo?"}
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0) as sdk:
        if history is None:
            if stream:
                async with sdk.messages.stream(
                    model="gem", max_tokens=50, tools=ANTHROPIC_WEATHER, messages=[ask]
                ) as streamed:
                    first = await streamed.get_final_message()
            else:
                first = await sdk.messages.create(
                    model="gem", max_tokens=50, tools=ANTHROPIC_WEATHER, messages=[ask]
                )
            [call] = [block for block in first.content if block.type == "tool_use"]
            history = [
                ask,
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "-3C"}],
                },
            ]
        return await sdk.messages.create(
            model="gem", max_tokens=50, tools=ANTHROPIC_WEATHER, messages=history
        )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_gemini_3_tool_loop_sends_each_call_back_with_its_thought_signature(
    gateway: Any, fake_gemini: FakeGemini, stream: bool
) -> None:
    fake_gemini.behaviour.tool_call = ("get_weather", '{"city": "Oslo"}')
    gem = worker("gem", "gemini", fake_gemini.base_url, model="gemini-3-pro-preview")
    async with gateway([gem]) as running:
        await a_tool_loop(running.url, stream=stream)
    model_turn = fake_gemini.received[-1].body["contents"][1]
    assert model_turn["role"] == "model"
    # The one Gemini gave the call (the fake refuses any other, as Gemini 3 does).
    assert model_turn["parts"][0]["thoughtSignature"] in fake_gemini.signatures


async def test_a_call_gemini_never_signed_goes_back_with_googles_stand_in(
    gateway: Any, fake_gemini: FakeGemini
) -> None:
    # Made by another model, or before a restart: Gemini 3 would refuse it unsigned.
    history: Any = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_elsewhere", "name": "get_weather", "input": {}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_elsewhere", "content": "-3C"}
            ],
        },
    ]
    gem = worker("gem", "gemini", fake_gemini.base_url, model="gemini-3-pro-preview")
    older = worker("old", "gemini", fake_gemini.base_url, model="gemini-2.5-flash")
    async with gateway([gem, older]) as running:
        answer = await a_tool_loop(running.url, stream=False, history=history)
    assert answer.content
    sent = fake_gemini.received[-1].body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == "skip_thought_signature_validator"


def test_a_gemini_2_call_without_a_signature_goes_back_as_it_was() -> None:
    from podium.providers.gemini import encode_contents
    from podium.providers.gemini_signatures import ThoughtSignatures, needs_signatures

    assert not needs_signatures("gemini-2.5-flash") and needs_signatures("gemini-3-flash")
    call = ToolCall("call_1", "get_weather", "{}")
    _, contents = encode_contents(
        [Message("assistant", tool_calls=[call])], signatures=ThoughtSignatures(), sentinel=False
    )
    assert "thoughtSignature" not in contents[0]["parts"][0]


def two_calls() -> dict[str, Any]:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
    other = {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
    return {
        "responseId": "r1",
        "candidates": [
            {"content": {"role": "model", "parts": [call, other]}, "finishReason": "STOP"}
        ],
    }


@pytest.mark.parametrize("parallel", [None, False])
async def test_no_parallel_calls_keeps_the_first_call_gemini_makes(
    provider: GeminiProvider, monkeypatch: pytest.MonkeyPatch, parallel: bool | None
) -> None:
    # Gemini has no setting for it: the caller's parallel_tool_calls=false keeps the first.
    async def answered(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return two_calls()

    monkeypatch.setattr(provider.upstream, "post_json", answered)
    tools = [Tool("get_weather", parameters={"type": "object"})]
    response = await provider.complete(
        ask("Oslo and Rome?", tools=tools, parallel_tool_calls=parallel)
    )
    assert len(response.tool_calls) == (1 if parallel is False else 2)
    decoder = StreamDecoder("gem", one_call=parallel is False)
    deltas = [event for event in decoder.decode(two_calls()) if isinstance(event, ToolCallDelta)]
    assert [json.loads(d.arguments)["city"] for d in deltas] == (
        ["Oslo"] if parallel is False else ["Oslo", "Rome"]
    )

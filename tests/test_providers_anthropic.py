from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from podium.config import WorkerConfig
from podium.errors import ProviderError
from podium.providers.anthropic import AnthropicProvider, decode_citations
from podium.providers.base import ProviderContext
from podium.providers.egress import Egress
from podium.secrets import EnvironmentSecrets
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.pdf import pdf_base64
from podium.types import (
    ChatRequest,
    Citation,
    ContentPart,
    DocumentPart,
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

KEY = "sk-ant-test-0123456789abcdefghij"
WEATHER = Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        server.behaviour.require_key = KEY
        yield server  # type: ignore[misc]


@pytest.fixture
async def provider(fake: FakeAnthropic, tmp_path: Path) -> AsyncIterator[AnthropicProvider]:
    http = Egress()
    yield make(fake.base_url, http, tmp_path)
    await http.aclose()


def make(base_url: str, http: Egress, tmp_path: Path, **extra: Any) -> AnthropicProvider:
    config = WorkerConfig(
        name="claude",
        provider="anthropic",
        model="claude-test",
        base_url=base_url,
        api_key_env="ANTHROPIC_KEY",
        **extra,
    )
    return AnthropicProvider(
        ProviderContext(
            worker=config,
            http=http,
            secrets=EnvironmentSecrets({"ANTHROPIC_KEY": KEY}),
            data_dir=tmp_path,
        )
    )


def ask(text: str, **extra: Any) -> ChatRequest:
    return ChatRequest(model="claude", messages=[Message("user", [TextPart(text)])], **extra)


async def test_complete_sends_headers_and_decodes(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    response = await provider.complete(ask("hello"))
    assert response.text == "fake answer to: hello"
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    received = fake.received[0]
    assert received.headers["x-api-key"] == KEY
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert received.body["model"] == "claude-test"
    assert received.body["max_tokens"] == 4096  # Anthropic requires it; Podium's default


async def test_request_encoding(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    request = ChatRequest(
        model="claude",
        messages=[
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("look"), ImagePart(data="AAAA", media_type="image/png")]),
            Message(
                "assistant", [], tool_calls=[ToolCall("call_1", "get_weather", '{"city":"A"}')]
            ),
            Message("tool", [TextPart("sunny")], tool_call_id="call_1"),
            Message("user", [TextPart("thanks, and?")]),
        ],
        tools=[WEATHER],
        tool_choice=ToolChoice("required"),
        parallel_tool_calls=False,
        temperature=1.7,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        user="u-1",
        seed=3,
    )
    await provider.complete(request)
    body = fake.received[0].body
    assert body["system"] == "be brief"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "A"}}
    ]
    merged = body["messages"][2]["content"]
    assert merged[0] == {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": [{"type": "text", "text": "sunny"}],
    }
    assert merged[1] == {"type": "text", "text": "thanks, and?"}
    assert body["tools"][0] == {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": WEATHER.parameters,
    }
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert body["top_p"] == 0.9 and body["max_tokens"] == 50
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert "seed" not in body


async def test_several_tool_results_merge_into_one_turn(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    calls = [ToolCall("t1", "get_weather", "{}"), ToolCall("t2", "get_weather", "{}")]
    request = ChatRequest(
        model="claude",
        messages=[
            Message("user", [TextPart("two cities")]),
            Message("assistant", [TextPart("checking")], tool_calls=calls),
            Message("tool", [TextPart("rain")], tool_call_id="t1"),
            Message("tool", [TextPart("boom")], tool_call_id="t2", is_error=True),
        ],
        tools=[WEATHER],
    )
    await provider.complete(request)
    last = fake.received[0].body["messages"][-1]
    assert last["role"] == "user"
    assert [b["tool_use_id"] for b in last["content"]] == ["t1", "t2"]
    assert last["content"][1]["is_error"] is True


async def test_tool_call_decoded(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.behaviour.tool_call = ("get_weather", '{"city": "Paris"}')
    response = await provider.complete(ask("weather?", tools=[WEATHER]))
    assert response.finish_reason == "tool_calls"
    call = response.tool_calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.id.startswith("toolu_")


async def test_stop_sequence_and_max_tokens(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.reply = "one two three END four"
    stopped = await provider.complete(ask("x", stop=["END"]))
    assert stopped.finish_reason == "stop" and stopped.stop_sequence == "END"
    assert stopped.text == "one two three "
    cut = await provider.complete(ask("x", max_tokens=2))
    assert cut.finish_reason == "length" and cut.text == "one two"


async def test_stream_text_and_usage(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    events = [event async for event in provider.stream(ask("stream it", stream=True))]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "fake answer to: stream it"
    assert sum(isinstance(e, TextDelta) for e in events) > 2
    assert [e for e in events if isinstance(e, Finish)] == [Finish("stop")]
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert fake.received[0].body["stream"] is True


async def test_stream_tool_call(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.behaviour.tool_call = ("get_weather", '{"city": "Oslo"}')
    events = [e async for e in provider.stream(ask("weather?", tools=[WEATHER], stream=True))]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id and deltas[0].name == "get_weather"
    assert len(deltas) > 2
    response = await collect(_replay(events), id="x", model="claude")
    assert response.finish_reason == "tool_calls"
    assert json.loads(response.tool_calls[0].arguments) == {"city": "Oslo"}


async def _replay(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


async def test_json_schema_through_a_forced_tool(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = ask("json please", response_format=ResponseFormat("json_schema", schema, "reply"))
    response = await provider.complete(request)
    assert json.loads(response.text) == {"answer": "fake answer to: json please"}
    assert response.finish_reason == "stop" and response.tool_calls == []
    body = fake.received[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "reply"}
    assert body["tools"][0]["input_schema"] == schema
    request.stream = True
    events = [e async for e in provider.stream(request)]
    streamed = await collect(_replay(events), id="x", model="claude")
    assert json.loads(streamed.text) == {"answer": "fake answer to: json please"}
    assert streamed.finish_reason == "stop" and streamed.tool_calls == []


async def test_json_object_becomes_an_instruction(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    await provider.complete(ask("json", response_format=ResponseFormat("json_object")))
    body = fake.received[0].body
    assert "JSON" in body["system"] and "tools" not in body


async def test_rate_limit_is_retryable_with_retry_after(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.fail(429, "rate limited", retry_after=7)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert caught.value.kind == "rate_limit" and caught.value.retryable
    assert caught.value.retry_after == 7


async def test_overloaded_529_is_retryable(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.fail(529, "Overloaded")
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert caught.value.kind == "overloaded" and caught.value.retryable


async def test_bad_request_is_not_retryable(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.fail(400, "messages: bad")
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert caught.value.kind == "invalid_request" and not caught.value.retryable
    assert "messages: bad" in caught.value.message


async def test_stream_errors_before_first_event(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.fail(429, "rate limited", retry_after=3)
    with pytest.raises(ProviderError) as caught:
        await anext(provider.stream(ask("x", stream=True)))
    assert caught.value.kind == "rate_limit" and caught.value.retry_after == 3


async def test_error_event_mid_stream(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.behaviour.error_stream_after = 4
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in provider.stream(ask("long answer here", stream=True))]
    assert caught.value.kind == "overloaded" and caught.value.retryable


async def test_an_error_event_that_echoes_the_key_never_carries_it(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.error_stream_after = 4
    fake.behaviour.echo_key = True
    with pytest.raises(ProviderError) as caught:
        _ = [e async for e in provider.stream(ask("long answer here", stream=True))]
    assert "Overloaded" in caught.value.message
    assert KEY[:8] not in caught.value.message and KEY[:8] not in str(caught.value)


async def test_broken_stream_is_an_error(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.behaviour.break_stream_after = 4
    with pytest.raises(ProviderError):
        _ = [e async for e in provider.stream(ask("long answer here", stream=True))]


async def test_wrong_key_never_leaks(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.behaviour.require_key = "something-else"
    http = Egress()
    try:
        provider = make(fake.base_url, http, tmp_path)
        with pytest.raises(ProviderError) as caught:
            await provider.complete(ask("x"))
    finally:
        await http.aclose()
    assert caught.value.status == 502
    assert KEY not in caught.value.message and KEY[:8] not in caught.value.message


async def test_key_echoed_in_an_error_is_scrubbed(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    fake.behaviour.fail(400, f"bad request from key {KEY}")
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask("x"))
    assert KEY not in caught.value.message and "[redacted]" in caught.value.message


async def test_base_url_with_v1_suffix(fake: FakeAnthropic, tmp_path: Path) -> None:
    http = Egress()
    try:
        response = await make(f"{fake.base_url}/v1", http, tmp_path).complete(ask("hi"))
    finally:
        await http.aclose()
    assert response.text == "fake answer to: hi"


async def test_the_official_sdk_reads_the_fake(fake: FakeAnthropic) -> None:
    """The fake's wire format is the real one as far as Anthropic's own SDK can tell."""
    import anthropic

    fake.behaviour.tool_call = ("get_weather", '{"city": "Rome"}')
    async with anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=KEY) as sdk:
        message = await sdk.messages.create(
            model="m", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
        async with sdk.messages.stream(
            model="m",
            max_tokens=20,
            tools=[{"name": "get_weather", "input_schema": WEATHER.parameters}],
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            streamed = await stream.get_final_message()
        fake.behaviour.fail(429, "slow down", retry_after=2)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await sdk.with_options(max_retries=0).messages.create(
                model="m", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
    assert message.content[0].type == "text" and message.stop_reason == "end_turn"
    assert streamed.stop_reason == "tool_use"
    assert streamed.content[0].type == "tool_use" and streamed.content[0].input == {"city": "Rome"}
    assert caught.value.response.headers["retry-after"] == "2"


# -- prompt caching ---------------------------------------------------------------------------

LONG = " ".join(["policy"] * 1100)  # over the fake's 1,024-token minimum
EPHEMERAL = {"type": "ephemeral"}


def cached_system(*extra: Message) -> ChatRequest:
    system = Message("system", [TextPart(LONG, "5m"), TextPart("\n\n"), TextPart("today: Monday")])
    return ChatRequest(model="claude", messages=[system, *extra])


async def test_breakpoints_reach_every_block_they_were_on(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    call = ToolCall("toolu_1", "get_weather", '{"city": "Oslo"}')
    request = ChatRequest(
        model="claude",
        messages=[
            Message("user", [TextPart("look"), ImagePart(url="https://x/y.png", cache="5m")]),
            Message("assistant", [TextPart("checking")], tool_calls=[call], cache="5m"),
            Message("tool", [TextPart("sunny")], tool_call_id="toolu_1", cache="5m"),
        ],
        tools=[Tool("get_weather", None, WEATHER.parameters, "1h")],
    )
    await provider.complete(request)
    body = fake.received[0].body
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    user, assistant, result = body["messages"]
    assert "cache_control" not in user["content"][0]
    assert user["content"][1]["cache_control"] == EPHEMERAL
    assert "cache_control" not in assistant["content"][0]
    assert assistant["content"][-1]["type"] == "tool_use"
    assert assistant["content"][-1]["cache_control"] == EPHEMERAL
    assert result["content"][0]["type"] == "tool_result"
    assert result["content"][0]["cache_control"] == EPHEMERAL
    assert "cache_control" not in body


async def test_a_marked_system_prompt_is_sent_as_blocks_cut_at_the_mark(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    await provider.complete(cached_system(Message("user", [TextPart("hi")])))
    system = fake.received[0].body["system"]
    assert system == [
        {"type": "text", "text": LONG, "cache_control": EPHEMERAL},
        {"type": "text", "text": "\n\ntoday: Monday"},
    ]


async def test_an_unmarked_system_prompt_stays_a_string(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    request = ChatRequest(
        model="claude",
        messages=[
            Message("system", [TextPart("one")]),
            Message("system", [TextPart("two")]),
            Message("user", [TextPart("hi")]),
        ],
    )
    await provider.complete(request)
    assert fake.received[0].body["system"] == "one\n\ntwo"


async def test_a_json_instruction_goes_after_the_cached_system_prefix(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    request = cached_system(Message("user", [TextPart("hi")]))
    request.response_format = ResponseFormat("json_object")
    await provider.complete(request)
    system = fake.received[0].body["system"]
    assert system[0]["cache_control"] == EPHEMERAL
    assert "JSON" in system[-1]["text"] and "cache_control" not in system[-1]


async def test_usage_counts_cache_writes_then_reads(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    first = await provider.complete(cached_system(Message("user", [TextPart("hi")])))
    second = await provider.complete(cached_system(Message("user", [TextPart("and now?")])))
    assert first.usage.cache_write_tokens == 1100 and first.usage.cached_input_tokens == 0
    assert second.usage.cached_input_tokens == 1100 and second.usage.cache_written_tokens == 0
    # The canonical input count holds reads and writes; Anthropic's own leaves them out.
    assert first.usage.input_tokens > 1100 and second.usage.input_tokens > 1100


async def test_streamed_usage_counts_cache_reads(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    await provider.complete(cached_system(Message("user", [TextPart("hi")])))
    request = cached_system(Message("user", [TextPart("again")]))
    request.stream = True
    events = [event async for event in provider.stream(request)]
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert usage.cached_input_tokens == 1100 and usage.output_tokens > 1


async def test_an_hour_breakpoint_is_counted_as_an_hour_write(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    request = ChatRequest(model="claude", messages=[Message("user", [TextPart(LONG, "1h")])])
    response = await provider.complete(request)
    assert response.usage.cache_write_long_tokens == 1100
    assert response.usage.cache_write_tokens == 0


async def test_request_level_cache_is_sent_as_top_level_cache_control(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    response = await provider.complete(ask(LONG, cache="1h"))
    assert fake.received[0].body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert response.usage.cache_write_long_tokens == 1100


async def test_worker_prompt_cache_marks_requests_that_mark_nothing(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    http = Egress()
    provider = make(fake.base_url, http, tmp_path, options={"prompt_cache": "5m"})
    try:
        await provider.complete(ask(LONG))
        second = await provider.complete(ask(LONG))
        await provider.complete(cached_system(Message("user", [TextPart("hi")])))
    finally:
        await http.aclose()
    assert fake.received[0].body["cache_control"] == EPHEMERAL
    assert second.usage.cached_input_tokens == 1100
    # A request with breakpoints of its own keeps them and gets no automatic one.
    assert "cache_control" not in fake.received[2].body


async def test_without_the_option_nothing_is_cached(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    await provider.complete(ask(LONG))
    second = await provider.complete(ask(LONG))
    assert "cache_control" not in fake.received[0].body
    assert second.usage.cached_input_tokens == 0 and second.usage.cache_written_tokens == 0


async def test_more_breakpoints_than_anthropic_takes_keep_the_latest_four(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    """A client of another format may mark more (OpenAI writes the latest four and passes over
    the rest): Anthropic would refuse the request, so the earliest marks are dropped."""
    parts: list[Any] = [TextPart(f"part {index}", "5m") for index in range(6)]
    await provider.complete(ChatRequest(model="claude", messages=[Message("user", parts)]))
    blocks = fake.received[0].body["messages"][0]["content"]
    assert ["cache_control" in block for block in blocks] == [False, False] + [True] * 4


async def test_an_earlier_breakpoint_lasts_as_long_as_a_later_one(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    """Anthropic refuses an hour's breakpoint after a 5-minute one; lifetimes are minimums,
    so the earlier one is made to last the hour."""
    parts: list[Any] = [TextPart("one", "5m"), TextPart("two", "12h"), TextPart("three", "5m")]
    await provider.complete(ChatRequest(model="claude", messages=[Message("user", parts)]))
    blocks = fake.received[0].body["messages"][0]["content"]
    hour = {"type": "ephemeral", "ttl": "1h"}
    assert [block["cache_control"] for block in blocks] == [hour, hour, EPHEMERAL]


def cited_request(*, stream: bool = False) -> ChatRequest:
    """A PDF to be cited, the caller's second document, read from an upload."""
    pdf = DocumentPart(
        data=pdf_base64(["Revenue grew."]), text="Revenue grew.", pages=1, title="Q3"
    )
    pdf.citations, pdf.index, pdf.from_file = True, 1, "file_abc"
    parts: list[ContentPart] = [pdf, TextPart("What grew?")]
    return ChatRequest(
        model="claude", messages=[Message("user", parts)], attachments=True, stream=stream
    )


async def test_citations_are_asked_for_and_decoded_in_the_callers_numbering(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    response = await provider.complete(cited_request())
    (sent,) = [
        b for b in fake.received[0].body["messages"][0]["content"] if b["type"] == "document"
    ]
    assert sent["citations"] == {"enabled": True}
    assert response.text == "fake answer to: What grew? It reads: Revenue grew."
    (span,) = response.citations
    assert response.text[span.start : span.end] == " It reads: Revenue grew."
    assert span.citations == [
        Citation("Revenue grew.", 1, "page", 1, 2, document_title="Q3", file_id="file_abc")
    ]


async def test_a_streams_citations_fold_into_the_same_spans(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    whole = await provider.complete(cited_request())
    events = [event async for event in provider.stream(cited_request(stream=True))]
    assert [e for e in events if isinstance(e, TextDelta) and e.passage] == [
        TextDelta("", passage=True)
    ]
    streamed = await collect(_each(events), id="x", model="claude")
    assert (streamed.text, streamed.citations) == (whole.text, whole.citations)


async def _each(events: list[Any]) -> AsyncIterator[Any]:
    for event in events:
        yield event


def test_citations_of_no_document_or_of_no_place_are_left_out() -> None:
    web = {"type": "web_search_result_location", "cited_text": "x", "url": "https://x"}
    page = {"type": "page_location", "cited_text": "y", "document_index": 5}
    page |= {"start_page_number": 2, "end_page_number": 3}
    garbled = {**page, "document_index": "first", "end_page_number": [3]}
    (citation,) = decode_citations([web, page, "junk", garbled], [])
    assert citation == Citation("y", 5, "page", 2, 3)


async def test_what_openai_takes_and_anthropic_refuses_is_sent_so_anthropic_takes_it(
    provider: AnthropicProvider, fake: FakeAnthropic
) -> None:
    # A stop sequence of whitespace alone, and a conversation continued without its tools.
    history = [
        Message("user", [TextPart("Weather in Oslo?")]),
        Message("assistant", tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Oslo"}')]),
        Message("tool", [TextPart("-3C")], tool_call_id="call_1"),
        Message("user", [TextPart("Sum it up in one line.")]),
    ]
    response = await provider.complete(
        ChatRequest(model="claude", messages=history, stop=["\n", "END"])
    )
    sent = fake.received[0].body
    assert response.text and sent["stop_sequences"] == ["END"]
    assert sent["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}}]
    assert sent["tool_choice"] == {"type": "none"}

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

# Cleared for every data class, so the policy layer's reading of a prompt (a city name, say)
# never turns a wire-format test away: policy has its own tests.
CLEARED = {"cleared": ["public", "internal", "confidential", "restricted"]}

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(running: Any, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=running.url, api_key="x", **options)


async def test_sdk_gets_an_answer_with_podium_headers(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        raw = await sdk.messages.with_raw_response.create(
            model="alpha",
            max_tokens=100,
            system=[{"type": "text", "text": "be brief"}],
            messages=[{"role": "user", "content": "hello there"}],
            metadata={"user_id": "user-7"},
            thinking={"type": "disabled"},
            extra_body={"temperature": 0.5, "top_k": 5},
        )
    message = await raw.parse()
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "fake answer to: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-podium-worker"] == "alpha"
    assert float(raw.headers["x-podium-cost-usd"]) > 0
    sent = fake_openai.received[0].body
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["max_tokens"] == 100 and sent["temperature"] == 0.5
    assert sent["user"] == "user-7"


async def test_sdk_streams_events_in_documented_order(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        kinds: list[str] = []
        async with sdk.messages.stream(
            model="alpha", max_tokens=100, messages=[{"role": "user", "content": "stream please"}]
        ) as stream:
            async for event in stream:
                kinds.append(event.type)
            final = await stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "fake answer to: stream please"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    raw_kinds = [k for k in kinds if k not in ("text",)]
    assert raw_kinds[0] == "message_start"
    assert raw_kinds[1] == "content_block_start"
    assert raw_kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(raw_kinds[2:-3]) == {"content_block_delta"}


async def test_raw_stream_has_ping_and_usage(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            f"{running.url}/v1/messages",
            json={
                "model": "alpha",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"anthropic-version": "2023-06-01"},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        body = (await response.aread()).decode()
    events = [block.split("\n") for block in body.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[:2] == ["message_start", "ping"]
    for lines in events:
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == lines[0].removeprefix("event: ")
    start = json.loads(events[0][1][6:])
    assert start["message"]["usage"]["input_tokens"] > 0
    delta = json.loads(events[names.index("message_delta")][1][6:])
    assert delta["usage"]["output_tokens"] > 0
    assert delta["usage"]["cost_usd"] > 0


async def test_tool_use_round_trip(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.tool_call = ("get_weather", '{"city": "Paris"}')
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        first = await sdk.messages.create(
            model="alpha",
            max_tokens=100,
            tools=[WEATHER],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "weather in Paris?"}],
        )
        assert first.stop_reason == "tool_use"
        use = first.content[-1]
        assert use.type == "tool_use" and use.name == "get_weather"
        assert use.input == {"city": "Paris"}
        fake_openai.behaviour.tool_call = None
        second = await sdk.messages.create(
            model="alpha",
            max_tokens=100,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": "weather in Paris?"},
                {"role": "assistant", "content": first.content},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": use.id,
                            "content": [{"type": "text", "text": "sunny, 21C"}],
                        },
                        {"type": "text", "text": "and so?"},
                    ],
                },
            ],
        )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "fake answer to: and so?"
    sent = fake_openai.received[0].body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    history = fake_openai.received[1].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "user"]
    assert history[1]["tool_calls"][0]["id"] == use.id
    assert history[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21C"}


async def test_streamed_tool_use_arrives_as_input_json_deltas(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.tool_call = ("get_weather", '{"city": "Oslo"}')
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        deltas: list[str] = []
        async with sdk.messages.stream(
            model="alpha",
            max_tokens=100,
            tools=[WEATHER],
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    deltas.append(event.delta.partial_json)
            final = await stream.get_final_message()
    assert len(deltas) > 1
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == {"city": "Oslo"}


async def test_stop_sequences_and_max_tokens_reach_the_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        message = await sdk.messages.create(
            model="alpha",
            max_tokens=2,
            stop_sequences=["END", "STOP"],
            messages=[{"role": "user", "content": "say many words please"}],
        )
    assert message.stop_reason == "max_tokens"
    assert fake_openai.received[0].body["stop"] == ["END", "STOP"]


SEEING = {"capabilities": ["streaming", "vision"]}


async def test_image_blocks_translate(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url, profile=CLEARED, **SEEING)]
        ) as running,
        client(running) as sdk,
    ):
        await sdk.messages.create(
            model="alpha",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                        {"type": "text", "text": "what is this?"},
                    ],
                }
            ],
        )
    parts = fake_openai.received[0].body["messages"][0]["content"]
    assert parts[0]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert parts[1]["image_url"]["url"] == "https://x.test/a.png"
    assert parts[2] == {"type": "text", "text": "what is this?"}


async def test_text_documents_are_read_as_text_and_a_broken_pdf_refused(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running, max_retries=0) as sdk,
    ):
        await sdk.messages.create(
            model="alpha",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {
                                "type": "text",
                                "media_type": "text/plain",
                                "data": "The sky is green.",
                            },
                            "title": "Notes",
                            "context": "From the wiki",
                            "citations": {"enabled": True},
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "content",
                                "content": [{"type": "text", "text": "Grass is blue."}],
                            },
                        },
                        {"type": "text", "text": "What colour is the sky?"},
                    ],
                }
            ],
        )
        sent = fake_openai.received[0].body["messages"][0]["content"]
        assert sent == (
            "Document: Notes\nFrom the wiki\n\nThe sky is green.\n\n"
            "Grass is blue.\n\nWhat colour is the sky?"
        )
        with pytest.raises(anthropic.BadRequestError) as refused:
            await sdk.messages.create(
                model="alpha",
                max_tokens=10,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "document",
                                "source": {
                                    "type": "base64",
                                    "media_type": "application/pdf",
                                    "data": "JVBERi0xLjQ=",
                                },
                            },
                            {"type": "text", "text": "Summarise"},
                        ],
                    }
                ],
            )
        # "%PDF-1.4" alone: a PDF's header, and nothing a reader could use (real PDFs are
        # read: tests/test_gateway_documents.py)
        assert "cannot be read: it is not a readable PDF" in refused.value.message
        assert len(fake_openai.received) == 1


@pytest.mark.parametrize(
    ("extra", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 10_000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1_024}}, "low"),
        ({"thinking": {"type": "disabled"}}, "low"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "adaptive"}}, None),
        ({}, None),
    ],
)
async def test_thinking_sets_the_effort_of_workers_that_take_one(
    gateway: Any, fake_openai: FakeOpenAI, extra: dict[str, Any], effort: str | None
) -> None:
    thinker = worker(
        "thinker", "openai", fake_openai.base_url, profile=CLEARED, options={"reasoning": True}
    )
    async with (
        gateway(
            [thinker, worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]
        ) as running,
        httpx.AsyncClient() as http,
    ):
        for model in ("thinker", "alpha"):
            body = {
                "model": model,
                "max_tokens": 20_000,
                "messages": [{"role": "user", "content": "hi"}],
            }
            answer = await http.post(f"{running.url}/v1/messages", json={**body, **extra})
            assert answer.status_code == 200, answer.text
    to_thinker, to_alpha = (received.body for received in fake_openai.received)
    assert to_thinker.get("reasoning_effort") == effort
    assert "reasoning_effort" not in to_alpha


async def test_unknown_model_is_a_404_in_anthropic_format(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running, max_retries=0) as sdk,
    ):
        with pytest.raises(anthropic.NotFoundError) as caught:
            await sdk.messages.create(
                model="nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    body: Any = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "nope" in body["error"]["message"]
    assert fake_openai.received == []


GOOD = {"model": "alpha", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (b"{not json", {}, "not valid JSON"),
        (b"\xff\xfe\x00", {}, "UTF-8"),
        (b"[]", {}, "JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "max_tokens"}), {}, "max_tokens"),
        (json.dumps({**GOOD, "messages": []}), {}, "messages"),
        (json.dumps({**GOOD, "messages": [{"role": "system", "content": "x"}]}), {}, "role"),
        (json.dumps({**GOOD, "temperature": 1.5}), {}, "temperature"),
        (json.dumps({**GOOD, "bogus": 1}), {}, "bogus"),
        (json.dumps({**GOOD, "api_base": "http://evil.example"}), {}, "api_base"),
        (json.dumps({**GOOD, "api_key": "sk-caller"}), {}, "api_key"),
        (json.dumps(GOOD), {"x-api-base": "http://evil.example"}, "x-api-base"),
        (json.dumps(GOOD), {"anthropic-version": "yesterday"}, "anthropic-version"),
        (json.dumps(GOOD), {"anthropic-version": "2023-13-45"}, "anthropic-version"),
        (
            json.dumps(
                {**GOOD, "messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]}
            ),
            {},
            "video",
        ),
        (
            json.dumps({**GOOD, "tool_choice": {"type": "tool"}}),
            {},
            "tool_choice.name",
        ),
    ],
)
async def test_bad_input_is_a_clear_anthropic_error(
    gateway: Any,
    fake_openai: FakeOpenAI,
    body: bytes | str,
    headers: dict[str, str],
    needle: str,
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(
            f"{running.url}/v1/messages",
            content=body,
            headers={"content-type": "application/json", **headers},
        )
    assert response.status_code == 400
    data = response.json()
    assert data["type"] == "error"
    assert data["error"]["type"] == "invalid_request_error"
    assert needle in data["error"]["message"]
    assert fake_openai.received == []


async def test_missing_version_header_is_accepted(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(f"{running.url}/v1/messages", json=GOOD)
    assert response.status_code == 200
    assert response.json()["type"] == "message"


async def test_sdk_sees_provider_fields_refused(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running, max_retries=0) as sdk,
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await sdk.messages.create(
                model="alpha",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"base_url": "http://evil.example"},
            )
    assert "base_url" in str(caught.value)


async def test_rate_limit_is_anthropic_429_with_retry_after(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(429, "slow down", times=10, retry_after=30)
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(f"{running.url}/v1/messages", json=GOOD)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_overloaded_worker_is_529(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.fail(503, "busy", times=10)
    async with (
        gateway(
            [
                worker(
                    "alpha", "openai", fake_openai.base_url, retry={"attempts": 0}, profile=CLEARED
                )
            ]
        ) as running,
        client(running, max_retries=0) as sdk,
    ):
        with pytest.raises(anthropic.APIStatusError) as caught:
            await sdk.messages.create(
                model="alpha", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.status_code == 529
    body: Any = caught.value.body
    assert body["error"]["type"] == "overloaded_error"


async def test_error_mid_stream_is_an_error_event(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.break_stream_after = 3
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running, max_retries=0) as sdk,
    ):

        async def consume() -> None:
            async with sdk.messages.stream(
                model="alpha", max_tokens=100, messages=[{"role": "user", "content": "long one"}]
            ) as stream:
                async for _ in stream:
                    pass

        with pytest.raises(anthropic.APIStatusError) as caught:
            await consume()
    body: Any = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] in ("api_error", "overloaded_error")


async def test_count_tokens_estimates(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        counted = await sdk.messages.count_tokens(
            model="alpha", messages=[{"role": "user", "content": "hello " * 40}]
        )
    assert counted.input_tokens > 20


async def test_a_reply_stored_with_the_sdks_model_dump_can_be_sent_back(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.tool_call = ("get_weather", '{"city": "Oslo"}')
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    ask: Any = {"role": "user", "content": "Weather?"}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        first = await sdk.messages.create(model="alpha", max_tokens=20, tools=tools, messages=[ask])
        # Frameworks keep the history as plain JSON: the blocks with every field, None or not.
        stored = [block.model_dump() for block in first.content]
        [call] = [block for block in stored if block["type"] == "tool_use"]
        result: Any = {"type": "tool_result", "tool_use_id": call["id"], "content": "-3C"}
        second = await sdk.messages.create(
            model="alpha",
            max_tokens=20,
            tools=tools,
            messages=[
                ask,
                {"role": "assistant", "content": stored},
                {"role": "user", "content": [result]},
            ],
        )
    assert second.content


async def test_a_failed_tool_result_says_so_to_a_worker_without_is_error(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    call: Any = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    messages: Any = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [call]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "permission denied"}
            ],
        },
    ]
    workers = [
        worker("chat", "openai", fake_openai.base_url, profile=CLEARED),
        worker("responses", "openai-responses", fake_openai.base_url, profile=CLEARED),
    ]
    async with gateway(workers) as running, client(running) as sdk:
        for model in ("chat", "responses"):
            for failed in (False, True):
                messages[2]["content"][0]["is_error"] = failed
                await sdk.messages.create(
                    model=model, max_tokens=20, tools=tools, messages=messages
                )
    chat = [r.body["messages"][-1]["content"] for r in fake_openai.received[:2]]
    responses = [r.body["input"][-1]["output"] for r in fake_openai.received[2:]]
    assert chat == responses == ["permission denied", "Error: permission denied"]


async def test_count_tokens_takes_the_arguments_a_create_call_would(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    messages: Any = [{"role": "user", "content": "hello " * 40}]
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        plain = await sdk.messages.count_tokens(model="alpha", messages=messages)
        counted = await sdk.messages.count_tokens(
            model="alpha",
            messages=messages,
            thinking={"type": "enabled", "budget_tokens": 2048},
            cache_control={"type": "ephemeral"},
            output_config={"effort": "low"},
            speed="standard",
        )
    assert counted.input_tokens == plain.input_tokens


async def test_stop_sequence_reported_when_the_worker_knows_it(gateway: Any) -> None:
    async with (
        FakeAnthropic() as fake,
        gateway([worker("claude", "anthropic", fake.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        fake.behaviour.reply = "one two END three"
        message = await sdk.messages.create(
            model="claude",
            max_tokens=50,
            stop_sequences=["END"],
            messages=[{"role": "user", "content": "count"}],
        )
        async with sdk.messages.stream(
            model="claude",
            max_tokens=50,
            stop_sequences=["END"],
            messages=[{"role": "user", "content": "count"}],
        ) as stream:
            streamed = await stream.get_final_message()
    for answer in (message, streamed):
        assert answer.stop_reason == "stop_sequence"
        assert answer.stop_sequence == "END"
        assert answer.content[0].type == "text" and answer.content[0].text == "one two "


async def test_upstream_errors_reach_the_caller_in_anthropic_format(
    gateway: Any, fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "AIzaSecret-0123456789abcdefghij"
    monkeypatch.setenv("PODIUM_TEST_GEMINI_KEY", key)
    fake_gemini.behaviour.require_key = key
    gem = worker(
        "gem",
        "gemini",
        fake_gemini.base_url,
        api_key_env="PODIUM_TEST_GEMINI_KEY",
        profile=CLEARED,
    )
    async with gateway([gem]) as running, httpx.AsyncClient() as http:
        fake_gemini.behaviour.fail(400, f"Invalid argument near {key}")
        bad = await http.post(f"{running.url}/v1/messages", json={**GOOD, "model": "gem"})
        fine = await http.post(f"{running.url}/v1/messages", json={**GOOD, "model": "gem"})
        fake_gemini.behaviour.fail(429, "Resource has been exhausted", retry_after=30)
        limited = await http.post(f"{running.url}/v1/messages", json={**GOOD, "model": "gem"})
        # The pause the upstream asked for is kept here: the next call is not sent.
        resting = await http.post(f"{running.url}/v1/messages", json={**GOOD, "model": "gem"})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert fine.status_code == 200 and fine.json()["content"][0]["text"] == "fake answer to: x"
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert limited.headers["retry-after"] == "30"
    assert resting.status_code == 529
    assert resting.json()["error"]["type"] == "overloaded_error"
    assert 25 <= int(resting.headers["retry-after"]) <= 30
    assert len(fake_gemini.received) == 3
    for response in (bad, limited, fine, resting):
        assert key not in response.text and key[:8] not in response.text


def test_interleaved_parallel_calls_keep_every_argument_inside_its_own_block() -> None:
    from podium.api.anthropic import _Blocks
    from podium.types import ToolCallDelta

    # Some OpenAI-compatible servers interleave parallel calls' arguments: 0, 1, 0, 1.
    deltas = [
        ToolCallDelta(0, id="call_A", name="weather", arguments='{"city": '),
        ToolCallDelta(1, id="call_B", name="weather", arguments='{"city": '),
        ToolCallDelta(0, arguments='"Paris"}'),
        ToolCallDelta(1, arguments='"Rome"}'),
    ]
    blocks = _Blocks()
    raw = b"".join(b"".join(blocks.tool(delta)) for delta in deltas) + b"".join(blocks.close())
    events = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    open_blocks: dict[int, str] = {}
    inputs: dict[str, str] = {}
    for event in events:
        if event["type"] == "content_block_start":
            open_blocks[event["index"]] = event["content_block"]["id"]
        elif event["type"] == "content_block_delta":
            # Anthropic's rule: a block's deltas come between its start and its stop.
            call = open_blocks[event["index"]]
            inputs[call] = inputs.get(call, "") + event["delta"]["partial_json"]
        elif event["type"] == "content_block_stop":
            del open_blocks[event["index"]]
    assert not open_blocks
    assert {call: json.loads(text) for call, text in inputs.items()} == {
        "call_A": {"city": "Paris"},
        "call_B": {"city": "Rome"},
    }


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "delete_everything"}])
async def test_a_tool_choice_no_declared_tool_can_meet_is_400(
    gateway: Any, fake_openai: FakeOpenAI, choice: Any
) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, profile=CLEARED)]) as running,
        client(running) as sdk,
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            await sdk.messages.create(
                model="alpha",
                max_tokens=20,
                tools=tools if choice["type"] == "tool" else anthropic.NOT_GIVEN,
                tool_choice=choice,
                messages=[{"role": "user", "content": "hi"}],
            )
    assert "tool_choice" in str(caught.value) and fake_openai.received == []

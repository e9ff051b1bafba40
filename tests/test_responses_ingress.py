"""``POST /v1/responses`` driven by the OpenAI SDK's Responses client: answers, streams, tool
calls, structured output and errors, whichever wire format the worker behind it speaks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.prompt_cache import PromptCache
from tests.conftest import worker
from tests.contract_helpers import GOOD, ONE_STRING, fake_worker, running, write_contract
from tests.test_bad_input import INJECTION, corpus

TOOLS = ["streaming", "tools", "json"]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client_for(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


async def test_an_answer_with_podium_headers_usage_and_cost(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running_podium,
        client_for(running_podium.url) as client,
    ):
        raw = await client.responses.with_raw_response.create(
            model="alpha",
            instructions="Answer briefly.",
            input="hello there",
            metadata={"team": "search"},
        )
    response = raw.parse()
    assert response.output_text == "fake answer to: hello there"
    assert response.status == "completed" and response.model == "alpha"
    assert response.id.startswith("resp_") and response.object == "response"
    assert [item.type for item in response.output] == ["message"]
    assert response.instructions == "Answer briefly." and response.metadata == {"team": "search"}
    assert response.store is True  # kept: responses.store is on unless configured off
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens
    )
    assert (response.usage.model_extra or {})["cost_usd"] > 0
    assert raw.headers["x-podium-worker"] == "alpha" and len(raw.headers["x-podium-trace-id"]) == 32
    sent = fake_openai.received[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hello there"},
    ]


async def test_a_stream_has_every_event_in_order_and_ends_with_the_usage(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running_podium,
        client_for(running_podium.url) as client,
    ):
        stream = await client.responses.create(
            model="podium/auto",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "stream me"}]}],
            stream=True,
        )
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "fake answer to: stream me"
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == deltas
    assert done.response.usage is not None and done.response.usage.output_tokens > 0
    assert (done.response.usage.model_extra or {})["cost_usd"] > 0
    assert {e.response.id for e in events if hasattr(e, "response")} == {done.response.id}


async def test_the_sdk_stream_helper_assembles_the_final_response(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running_podium,
        client_for(running_podium.url) as client,
        client.responses.stream(model="alpha", input="helper stream") as stream,
    ):
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
        final = await stream.get_final_response()
    assert text == final.output_text == "fake answer to: helper stream"


async def test_a_tool_call_and_its_result_make_a_round_trip(gateway: Any) -> None:
    behaviour = Behaviour(tool_call=("get_weather", '{"city": "Lyon"}'))
    async with (
        FakeOpenAI(behaviour) as fake,
        gateway([worker("alpha", "openai", fake.base_url, capabilities=TOOLS)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(
            model="alpha", input="Weather in Lyon?", tools=[WEATHER], tool_choice="auto"
        )
        [call] = first.output
        assert call.type == "function_call" and call.status == "completed"
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Lyon"}
        assert first.tools[0].name == "get_weather" and first.tool_choice == "auto"
        sent = fake.received[-1].body
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        assert sent["tools"][0]["function"]["parameters"] == WEATHER["parameters"]
        # The caller runs the tool and sends the whole conversation back, as with store=false.
        fake.behaviour.tool_call = None
        fake.behaviour.reply = "Sunny in Lyon."
        second = await client.responses.create(
            model="alpha",
            input=[
                {"role": "user", "content": "Weather in Lyon?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
            tools=[WEATHER],
        )
        assert second.output_text == "Sunny in Lyon."
        messages = fake.received[-1].body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert messages[1]["tool_calls"][0]["id"] == call.call_id
        assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert messages[2] == {"role": "tool", "content": "sunny", "tool_call_id": call.call_id}


async def test_a_streamed_tool_call_arrives_as_a_function_call_item(gateway: Any) -> None:
    behaviour = Behaviour(tool_call=("get_weather", '{"city": "Oslo"}'))
    async with (
        FakeOpenAI(behaviour) as fake,
        gateway([worker("alpha", "openai", fake.base_url, capabilities=TOOLS)]) as served,
        client_for(served.url) as client,
        client.responses.stream(
            model="alpha", input="What is the weather?", tools=[WEATHER]
        ) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Oslo"}


class Answer(BaseModel):
    answer: str


async def test_structured_output_by_text_format(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        parsed = await client.responses.parse(
            model="alpha", input="reply in the requested format", text_format=Answer
        )
    assert parsed.output_parsed == Answer(answer="fake answer to: reply in the requested format")
    sent = fake_openai.received[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Answer"
    assert sent["json_schema"]["schema"]["properties"]["answer"]["type"] == "string"


async def test_an_answer_cut_by_max_output_tokens_is_incomplete(gateway: Any) -> None:
    async with (
        FakeOpenAI(Behaviour(reply="one two three four five six")) as fake,
        gateway([worker("alpha", "openai", fake.base_url)]) as served,
        client_for(served.url) as client,
    ):
        whole = await client.responses.create(model="alpha", input="count", max_output_tokens=3)
        stream = await client.responses.create(
            model="alpha", input="count", max_output_tokens=3, stream=True
        )
        events = [event async for event in stream]
    assert whole.status == "incomplete" and whole.output_text == "one two three"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.max_output_tokens == 3
    assert fake.received[0].body["max_tokens"] == 3
    last = events[-1]
    assert last.type == "response.incomplete" and last.response.status == "incomplete"
    assert last.response.incomplete_details is not None


async def test_reasoning_effort_reaches_only_workers_that_take_it(gateway: Any) -> None:
    async with (
        FakeOpenAI() as fake,
        gateway(
            [
                worker("alpha", "openai", fake.base_url),
                worker("thinker", "openai", fake.base_url, options={"reasoning": True}),
            ]
        ) as served,
        client_for(served.url) as client,
    ):
        for model in ("thinker", "alpha"):
            await client.responses.create(
                model=model, input="think", reasoning={"effort": "high"}, text={"verbosity": "low"}
            )
    to_thinker, to_alpha = (received.body for received in fake.received)
    assert to_thinker["reasoning_effort"] == "high" and to_thinker["verbosity"] == "low"
    assert "reasoning_effort" not in to_alpha and "verbosity" not in to_alpha


async def test_an_anthropic_worker_answers_a_responses_request(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url)]) as served,
        client_for(served.url) as client,
    ):
        whole = await client.responses.create(
            model="claude", instructions="Be terse.", input="hello from a tester"
        )
        async with client.responses.stream(model="claude", input="stream this one") as stream:
            final = await stream.get_final_response()
    assert "hello from a tester" in whole.output_text and whole.status == "completed"
    assert "stream this one" in final.output_text
    assert fake_anthropic.received[0].body["system"] in (
        "Be terse.",
        [{"type": "text", "text": "Be terse."}],
    )


async def test_images_reach_a_vision_worker(gateway: Any, fake_openai: FakeOpenAI) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    async with (
        gateway([worker("eye", "openai", fake_openai.base_url, capabilities=["vision"])]) as served,
        client_for(served.url) as client,
    ):
        await client.responses.create(
            model="eye",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "what is this?"},
                        {"type": "input_image", "image_url": image, "detail": "low"},
                    ],
                }
            ],
        )
    parts = fake_openai.received[0].body["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": image, "detail": "low"}}


async def test_a_stream_that_fails_midway_ends_with_response_failed(gateway: Any) -> None:
    behaviour = Behaviour(reply="one two three four five six seven eight", break_stream_after=3)
    async with (
        FakeOpenAI(behaviour) as fake,
        gateway([worker("alpha", "openai", fake.base_url, retry={"attempts": 0})]) as served,
        client_for(served.url) as client,
    ):
        stream = await client.responses.create(model="alpha", input="go", stream=True)
        events = [event async for event in stream]
    assert [event.type for event in events[-2:]] == ["error", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.message
    assert events[-2].message == failed.error.message


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"input": "x"}, "model", "Missing required parameter"),
        ({"model": "alpha"}, "input", "Missing required parameter"),
        ({"model": "alpha", "input": []}, "input", "no message"),
        ({"model": "alpha", "input": "x", "bogus": 1}, "bogus", "Unknown parameter"),
        ({"model": "alpha", "input": "x", "temperature": 9}, "temperature", "less than"),
        ({"model": "alpha", "input": "x", "max_output_tokens": 0}, "max_output_tokens", ""),
        (
            {"model": "alpha", "input": "x", "background": True, "store": False},
            "background",
            "must be stored",
        ),
        (
            {"model": "alpha", "input": "x", "previous_response_id": "resp_1"},
            "previous_response_id",
            "Previous response with id 'resp_1' not found",
        ),
        (
            {"model": "alpha", "input": "x", "conversation": "c", "previous_response_id": "r"},
            "conversation",
            "cannot be used together",
        ),
        (
            {"model": "alpha", "input": "x", "prompt": {"id": "pmpt_1"}},
            "prompt",
            "no stored prompts",
        ),
        (
            {"model": "alpha", "input": [{"type": "item_reference"}]},
            "input[0].id",
            "Missing required parameter",
        ),
        (
            {"model": "alpha", "input": "x", "tools": [{"type": "web_search"}]},
            "tools[0].type",
            "OpenAI runs on its own servers",
        ),
        (
            {"model": "alpha", "input": "x", "tools": [{"type": "function"}]},
            "tools[0].name",
            "Missing required parameter",
        ),
        (
            {"model": "alpha", "input": [{"type": "computer_call_output", "call_id": "c"}]},
            "input[0]",
            "'computer_call_output' is not supported",
        ),
        (
            {
                "model": "alpha",
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_file", "file_data": "data:image/tiff;base64,AAAA"}
                        ],
                    }
                ],
            },
            "input[0].content[0]",
            "files of type 'image/tiff' are not read",
        ),
        (
            {
                "model": "alpha",
                "input": [{"role": "user", "content": [{"type": "input_image"}]}],
            },
            "input[0].content[0]",
            "'image_url' (a URL or a data: URL) or by 'file_id'",
        ),
        (
            {
                "model": "alpha",
                "input": [
                    {
                        "role": "assistant",
                        "content": [{"type": "input_image", "image_url": "http://x/y.png"}],
                    }
                ],
            },
            "input[0].content[0]",
            "only user messages",
        ),
        ({"model": "alpha", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role", ""),
        (
            {"model": "alpha", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "text.format.name",
            "Missing required parameter",
        ),
        (
            {"model": "alpha", "input": "x", "api_key": "sk-mine"},
            "api_key",
            "provider-level fields",
        ),
    ],
)
async def test_bad_requests_are_400_in_openai_format_naming_the_field(
    gateway: Any, fake_openai: FakeOpenAI, body: dict[str, Any], param: str, needle: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        httpx.AsyncClient(base_url=served.url) as client,
    ):
        response = await client.post("/v1/responses", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert needle in error["message"]
    assert fake_openai.received == []


async def test_an_unknown_model_is_the_sdks_not_found_error(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.responses.create(model="nope", input="hi")
    assert "nope" in caught.value.message


async def test_with_storing_off_nothing_is_kept_and_the_errors_say_why(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], responses={"store": False}
        ) as served,
        client_for(served.url) as client,
    ):
        answer = await client.responses.create(model="alpha", input="hi", store=True)
        assert answer.store is False
        with pytest.raises(openai.NotFoundError) as retrieved:
            await client.responses.retrieve(answer.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(answer.id)
        with pytest.raises(openai.BadRequestError) as continued:
            await client.responses.create(
                model="alpha", input="and then?", previous_response_id=answer.id
            )
        with pytest.raises(openai.BadRequestError) as background:
            await client.responses.create(model="alpha", input="hi", background=True)
        with pytest.raises(openai.BadRequestError) as referenced:
            await client.responses.create(
                model="alpha",
                input=[{"role": "user", "content": "Hi"}, {"type": "item_reference", "id": "m"}],
            )
    assert "keeps no responses" in retrieved.value.message
    assert "keeps no responses" in background.value.message
    assert referenced.value.param == "input[1]" and "send the item itself" in str(referenced.value)
    assert "keeps no responses" in continued.value.message
    assert continued.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_input_tokens_are_counted_without_a_call(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        httpx.AsyncClient(base_url=served.url) as client,
    ):
        short = await client.post("/v1/responses/input_tokens", json={"input": "hello"})
        long = await client.post(
            "/v1/responses/input_tokens",
            json={"model": "alpha", "input": "hello " * 200, "tools": [WEATHER]},
        )
        bad = await client.post("/v1/responses/input_tokens", json={"input": 5})
    assert short.json()["object"] == "response.input_tokens"
    assert 0 < short.json()["input_tokens"] < long.json()["input_tokens"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert fake_openai.received == []


async def test_a_contract_answers_through_the_responses_api(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", ONE_STRING)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (_, url), client_for(url) as client:
            whole = await client.responses.create(
                model="contract/ticket", input="I was charged twice"
            )
            async with client.responses.stream(
                model="contract/ticket", input="The app crashes"
            ) as stream:
                final = await stream.get_final_response()
    assert json.loads(whole.output_text) == {"team": "billing", "confidence": 0.8}
    assert whole.model == "contract/ticket"
    assert json.loads(final.output_text) == {"team": "billing", "confidence": 0.8}
    assert "I was charged twice" in fake.received[0].body["messages"][-1]["content"]


async def test_hostile_text_anywhere_in_a_request_is_never_a_server_error(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    if not INJECTION.is_dir():
        pytest.skip(f"the shared security corpora are not at {INJECTION} (../shared/data)")
    payloads = list(dict.fromkeys(corpus()))
    limit = asyncio.Semaphore(8)
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        httpx.AsyncClient(base_url=served.url, timeout=30) as client,
    ):

        async def probe(text: str) -> list[int]:
            text = text[:3000]
            bodies: list[dict[str, Any]] = [
                {"model": "alpha", "input": text},
                {"model": "alpha", "instructions": text, "input": "hi"},
                {
                    "model": "alpha",
                    "input": [
                        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": text},
                        {"type": "function_call_output", "call_id": "c1", "output": text},
                    ],
                },
                {"model": text, "input": "hi"},
            ]
            async with limit:
                statuses = []
                for body in bodies:
                    response = await client.post("/v1/responses", json=body)
                    if response.status_code != 200:
                        assert set(response.json()["error"]) == {
                            "message",
                            "type",
                            "param",
                            "code",
                        }
                    statuses.append(response.status_code)
                return statuses

        outcomes = await asyncio.gather(*(probe(text) for text in payloads))
    assert all(status < 500 for statuses in outcomes for status in statuses)
    assert sum(1 for statuses in outcomes if statuses[0] == 200) > len(payloads) // 2


# -- prompt caching ---------------------------------------------------------------------------


async def test_breakpoints_and_cache_options_reach_a_responses_worker(gateway: Any) -> None:
    manual = " ".join(["clause"] * 1100)
    hours = {"mode": "explicit", "ttl": "12h"}
    async with FakeOpenAI(prompt_cache=PromptCache()) as fake:
        pool = [
            worker(
                "gpt",
                "openai-responses",
                fake.base_url,
                price={"input": 2.5, "output": 15.0, "cached_input": 0.25},
                options={"prompt_cache": True},
            )
        ]
        async with gateway(pool) as server, client_for(server.url) as client:
            responses = []
            for question in ("first", "second"):
                raw = await client.responses.with_raw_response.create(
                    model="gpt",
                    input=[
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "input_text",
                                    "text": manual,
                                    "prompt_cache_breakpoint": hours,  # type: ignore[typeddict-item]
                                },
                                {"type": "input_text", "text": question},
                            ],
                        }
                    ],
                    prompt_cache_options={"mode": "explicit", "ttl": "12h"},
                    prompt_cache_key="tenant-7",
                )
                responses.append((raw.parse(), float(raw.headers["x-podium-cost-usd"])))
            with pytest.raises(openai.BadRequestError) as prewarm:
                await client.responses.create(
                    model="gpt", input="hi", prompt_cache_options={"prewarm": True}
                )
    sent = fake.received[0].body
    assert sent["input"][0]["content"][0]["prompt_cache_breakpoint"] == hours
    assert sent["prompt_cache_options"] == {"mode": "explicit"}
    assert sent["prompt_cache_key"] == "tenant-7"
    (first, first_cost), (second, _) = responses
    assert first.usage is not None and second.usage is not None
    assert first.usage.input_tokens_details.cache_write_tokens == 1100
    assert second.usage.input_tokens_details.cached_tokens == 1100
    # A 12-hour write is a long one: 2x the input price unless the worker's price says.
    output = first.usage.output_tokens * 15.0
    assert first_cost == pytest.approx((1 * 2.5 + 1100 * 5.0 + output) / 1e6)
    assert prewarm.value.body["param"] == "prompt_cache_options.prewarm"  # type: ignore[index]


async def test_both_token_counting_endpoints_estimate_alike(gateway: Any) -> None:
    """The Responses API's input_tokens and Anthropic's count_tokens count the same way, tool
    calls included."""
    import anthropic

    arguments = {"path": "a.txt", "text": "x" * 4000}
    async with (
        FakeOpenAI() as fake,
        gateway([worker("alpha", "openai", fake.base_url)]) as served,
    ):
        async with httpx.AsyncClient(base_url=served.url) as client:
            counted = await client.post(
                "/v1/responses/input_tokens",
                json={
                    "input": [
                        {"role": "user", "content": "write the file"},
                        {
                            "type": "function_call",
                            "call_id": "c1",
                            "name": "write_file",
                            "arguments": json.dumps(arguments),
                        },
                        {"type": "function_call_output", "call_id": "c1", "output": "done"},
                    ]
                },
            )
        async with anthropic.AsyncAnthropic(base_url=served.url, api_key="x") as sdk:
            messages: Any = [
                {"role": "user", "content": "write the file"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "c1",
                            "name": "write_file",
                            "input": arguments,
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "done"}],
                },
            ]
            anthropic_count = await sdk.messages.count_tokens(model="alpha", messages=messages)
    assert counted.json()["input_tokens"] > 1000
    assert abs(counted.json()["input_tokens"] - anthropic_count.input_tokens) <= 2

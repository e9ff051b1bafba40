from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.prompt_cache import PromptCache
from tests.conftest import worker


async def test_sdk_gets_an_answer_with_podium_headers(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="alpha", messages=[{"role": "user", "content": "hello there"}]
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "fake answer to: hello there"
    assert completion.model == "alpha"
    assert raw.headers["x-podium-worker"] == "alpha"
    assert raw.headers["x-podium-route"] == "direct"
    assert float(raw.headers["x-podium-cost-usd"]) > 0
    assert len(raw.headers["x-podium-trace-id"]) == 32
    assert fake_openai.received[0].body["model"] == "alpha-model"


async def test_sdk_streams_with_usage(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        stream = await client.chat.completions.create(
            model="podium/auto",
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
    assert text == "fake answer to: stream please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_unknown_model_is_a_404_in_openai_format(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
    assert "nope" in caught.value.message
    assert fake_openai.received == []


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "alpha"}', 400, "messages"),
        (b'{"model": "alpha", "messages": "hi"}', 400, "messages"),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], "bogus": 1}',
            400,
            "bogus",
        ),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], "api_base": '
            b'"http://evil.example"}',
            400,
            "api_base",
        ),
        (b"\xff\xfe\x00", 400, "UTF-8"),
        (b"[]", 400, "JSON object"),
        # A part of a type no worker reads names the part and the types there are.
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": [{"type": '
            b'"input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}',
            400,
            "'messages[0].content[0]': Input tag 'input_audio' found using 'type' does not match "
            "any of the expected tags: 'text', 'image_url', 'file'",
        ),
        # A file part is read (tests/test_gateway_documents.py); one that is no PDF says so.
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": [{"type": "file", '
            b'"file": {"file_data": "data:application/pdf;base64,JVBE"}}]}]}',
            400,
            "is not a PDF (no %PDF- header)",
        ),
        (
            b'{"model": "alpha", "messages": [{"role": "user", "content": "x"}], '
            b'"modalities": ["text", "audio"]}',
            400,
            "modalities",
        ),
    ],
)
async def test_bad_input_is_a_clear_openai_error(
    gateway: Any, fake_openai: FakeOpenAI, body: bytes, status: int, needle: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient() as client,
    ):
        response = await client.post(
            f"{running.v1}/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == status
    error = response.json()["error"]
    assert needle in error["message"]
    assert error["type"] == "invalid_request_error"
    assert fake_openai.received == []


async def test_reasoning_knobs_reach_only_workers_that_take_them(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    thinker = worker(
        "thinker",
        "openai",
        fake_openai.base_url,
        options={"reasoning": True, "max_tokens_field": "max_completion_tokens"},
    )
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url), thinker]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        for model in ("thinker", "alpha"):
            answer = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "hi"}],
                reasoning_effort="high",
                verbosity="low",
                max_completion_tokens=50,
                # Accepted, and they change nothing here.
                modalities=["text"],
                prompt_cache_key="k",
            )
            assert answer.choices[0].message.content
    to_thinker, to_alpha = (received.body for received in fake_openai.received)
    assert to_thinker["reasoning_effort"] == "high" and to_thinker["verbosity"] == "low"
    assert to_thinker["max_completion_tokens"] == 50
    # Most models refuse these fields: a worker that does not say it takes them never sees them.
    assert "reasoning_effort" not in to_alpha and "verbosity" not in to_alpha


PLAIN_BODIES: list[dict[str, Any]] = [
    {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]},
    {
        "model": "alpha",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": "really", "name": "ops"},
            {"role": "user", "content": "", "name": "ann"},
            {"role": "assistant", "content": "yes"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 1,
        "top_p": 0.5,
        "max_tokens": 10,
        "max_completion_tokens": 7,
        "stop": ["a", "b"],
        "seed": 3,
        "user": "u-1",
    },
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "stop": "END"},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "stream": None},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "temperature": None},
]
NOT_PLAIN: list[dict[str, Any]] = [
    {"model": "alpha", "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
    {"model": "alpha", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "tools": []},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "stream": "true"},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "temperature": True},
]
REFUSED: list[dict[str, Any]] = [
    {"model": "", "messages": [{"role": "user", "content": "x"}]},
    {"model": "alpha", "messages": []},
    {"model": "alpha", "messages": [{"role": "user", "content": 5}]},
    {"model": "alpha", "messages": [{"role": "robot", "content": "x"}]},
    {"model": "alpha", "messages": [{"role": "user", "content": "x", "extra": 1}]},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "stop": list("abcde")},
    {"model": "alpha", "messages": [{"role": "user", "content": "x"}], "seed": 1.5},
    # Two fields, one unknown: the reader counts fields before it checks their names.
    {"model": "alpha", "extra": 1},
    {"model": "alpha", "messages": [{"role": "user", "extra": "x"}]},
    {"model": "alpha", "messages": [{"role": ["user"], "extra": 1}]},
]


def validated(body: dict[str, Any]) -> Any:
    from podium.api.openai import ChatCompletionIn, to_canonical

    return to_canonical(ChatCompletionIn.model_validate(body))


@pytest.mark.parametrize("body", PLAIN_BODIES + NOT_PLAIN)
def test_plain_bodies_are_read_exactly_as_the_validated_path_reads_them(
    body: dict[str, Any],
) -> None:
    from podium.api.openai import OpenAIIngress

    assert OpenAIIngress().parse(body, {}) == validated(body)


@pytest.mark.parametrize("body", REFUSED)
def test_the_plain_reader_leaves_every_bad_body_to_the_validated_path(
    body: dict[str, Any],
) -> None:
    from podium.api.openai import OpenAIIngress, plain_request
    from podium.errors import PodiumError

    assert plain_request(body) is None
    with pytest.raises(PodiumError) as refused:
        OpenAIIngress().parse(body, {})
    assert refused.value.status == 400


async def test_a_reasoning_effort_reaches_anthropic_and_gemini_reasoning_workers(
    gateway: Any, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini
) -> None:
    reasoning = {"reasoning": True}
    workers = [
        worker("claude", "anthropic", fake_anthropic.base_url, options=reasoning),
        worker("claude-plain", "anthropic", fake_anthropic.base_url),
        worker("gemini", "gemini", fake_gemini.base_url, options=reasoning),
        worker("gemini-plain", "gemini", fake_gemini.base_url),
    ]
    async with (
        gateway(workers) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        for model, effort in [
            ("claude", "minimal"),
            ("claude", "high"),
            ("claude-plain", "high"),
            ("gemini", "minimal"),
            ("gemini", "xhigh"),
            ("gemini-plain", "high"),
        ]:
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], reasoning_effort=effort
            )
    to_claude = [received.body.get("output_config") for received in fake_anthropic.received]
    # Anthropic has no "minimal": the least effort it knows.
    assert to_claude == [{"effort": "low"}, {"effort": "high"}, None]
    to_gemini = [
        (received.body.get("generationConfig") or {}).get("thinkingConfig")
        for received in fake_gemini.received
    ]
    assert to_gemini == [{"thinkingLevel": "MINIMAL"}, {"thinkingLevel": "XHIGH"}, None]


async def test_cache_control_on_content_parts_reaches_an_anthropic_worker(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    """OpenAI-compatible gateways take Anthropic's ``cache_control`` on content parts; so does
    Podium, and the reads come back where OpenAI reports cached tokens."""
    manual = " ".join(["clause"] * 1100)
    messages: Any = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Answer briefly."},
            ],
        },
        {"role": "user", "content": "what applies?"},
    ]
    pool = [worker("claude", "anthropic", fake_anthropic.base_url)]
    async with (
        gateway(pool) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        first = await client.chat.completions.create(model="claude", messages=messages)
        second = await client.chat.completions.create(model="claude", messages=messages)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="claude",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "hi", "cache_control": {"type": "forever"}}  # type: ignore[typeddict-unknown-key]
                        ],
                    }
                ],
            )
    system = fake_anthropic.received[0].body["system"]
    assert system[0] == {"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cache_write_tokens == 1100
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == 1100
    assert bad.value.body["param"] == "messages[0].content[0].cache_control.type"  # type: ignore[index]


# -- OpenAI's own prompt-cache fields ---------------------------------------------------------

MANUAL = " ".join(["clause"] * 1100)
BREAKPOINT = {"mode": "explicit"}


@pytest.fixture
async def caching_openai() -> AsyncIterator[FakeOpenAI]:
    """An OpenAI server with GPT-5.6's prompt cache: breakpoints taken, writes reported."""
    async with FakeOpenAI(prompt_cache=PromptCache()) as fake:
        yield fake  # type: ignore[misc]


def gpt(server: FakeOpenAI) -> dict[str, Any]:
    """A worker on OpenAI's own API (its cache fields sent), at GPT-4o's prices."""
    return worker(
        "gpt",
        "openai",
        server.base_url,
        price={"input": 2.5, "output": 15.0, "cached_input": 0.25},
        options={"prompt_cache": True},
    )


def cached_messages(question: str) -> Any:
    return [
        {
            "role": "system",
            "content": [{"type": "text", "text": MANUAL, "prompt_cache_breakpoint": BREAKPOINT}],
        },
        {"role": "user", "content": question},
    ]


async def test_openai_breakpoints_options_key_and_retention_reach_openai(
    gateway: Any, caching_openai: FakeOpenAI
) -> None:
    pool = [gpt(caching_openai)]
    async with (
        gateway(pool) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        answers = []
        for question in ("first question", "second question"):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt",
                messages=cached_messages(question),
                prompt_cache_options={"mode": "explicit"},
                prompt_cache_key="tenant-7",
                prompt_cache_retention="24h",
            )
            answers.append((raw.parse(), float(raw.headers["x-podium-cost-usd"])))
    sent = caching_openai.received[0].body
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": MANUAL, "prompt_cache_breakpoint": BREAKPOINT}
    ]
    assert sent["prompt_cache_options"] == {"mode": "explicit"}
    assert sent["prompt_cache_key"] == "tenant-7" and sent["prompt_cache_retention"] == "24h"
    (first, first_cost), (second, second_cost) = answers
    assert first.usage is not None and first.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cache_write_tokens == 1100
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens == 1100
    output = first.usage.completion_tokens * 15.0
    assert first_cost == pytest.approx((2 * 2.5 + 1100 * 2.5 * 1.25 + output) / 1e6)
    output = second.usage.completion_tokens * 15.0
    assert second_cost == pytest.approx((2 * 2.5 + 1100 * 0.25 + output) / 1e6)


@pytest.mark.parametrize("relayed", [True, False])
async def test_twelve_hour_writes_are_priced_as_long_ones(
    gateway: Any, caching_openai: FakeOpenAI, relayed: bool
) -> None:
    """Chat Completions reports its cache writes as one total. When every breakpoint the
    request marks lasts 12 hours (explicit mode: no 30-minute one at the end), they are all
    long writes, and priced so (``cache_write_long``, 2x input unless set)."""
    pool = [gpt(caching_openai)]
    long_mark = {"mode": "explicit", "ttl": "12h"}

    def asking(question: str) -> Any:
        system = [{"type": "text", "text": MANUAL, "prompt_cache_breakpoint": long_mark}]
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    # Content kept for traces: the stream is decoded, not relayed as the upstream sent it.
    observe = {} if relayed else {"observe": {"capture_content": True}}
    async with (
        gateway(pool, **observe) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt", messages=asking("first"), prompt_cache_options={"mode": "explicit"}
        )
        answer, cost = raw.parse(), float(raw.headers["x-podium-cost-usd"])
        caching_openai.prompt_cache = PromptCache()  # a fresh cache: the stream writes too
        stream = await client.chat.completions.create(
            model="gpt",
            messages=asking("second"),
            prompt_cache_options={"mode": "explicit"},
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        await running.podium.recorder.flush()
        traces = await running.podium.store.list_traces(limit=2)
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cache_write_tokens == 1100
    fresh = answer.usage.prompt_tokens - 1100  # the question: input at the plain rate
    output = answer.usage.completion_tokens * 15.0
    assert cost == pytest.approx((fresh * 2.5 + 1100 * 2.5 * 2.0 + output) / 1e6)
    streamed = chunks[-1].usage
    assert streamed is not None and streamed.prompt_tokens_details is not None
    assert streamed.prompt_tokens_details.cache_write_tokens == 1100
    fresh, output = streamed.prompt_tokens - 1100, streamed.completion_tokens * 15.0
    assert traces[0].cost_usd == pytest.approx((fresh * 2.5 + 1100 * 2.5 * 2.0 + output) / 1e6)


async def test_compatible_servers_get_no_cache_fields(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """vLLM, Ollama and llama.cpp know none of OpenAI's cache fields: a worker that is not
    OpenAI's own API is sent none unless its options say it takes them."""
    async with (
        gateway([worker("local", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        await client.chat.completions.create(
            model="local",
            messages=cached_messages("hi"),
            prompt_cache_options={"mode": "implicit"},
            prompt_cache_key="tenant-7",
        )
    sent = fake_openai.received[0].body
    assert sent["messages"][0] == {"role": "system", "content": MANUAL}
    assert not {"prompt_cache_options", "prompt_cache_key", "prompt_cache_retention"} & set(sent)


async def test_an_openai_breakpoint_reaches_anthropic_at_the_nearest_lifetime(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        completion = await client.chat.completions.create(
            model="claude", messages=cached_messages("hi")
        )
    # 30 minutes at least: Anthropic's hour, its shortest lifetime that lasts that long.
    system = fake_anthropic.received[0].body["system"]
    assert system[0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cache_write_tokens == 1100


async def test_an_anthropic_breakpoint_reaches_openai_as_its_own(
    gateway: Any, caching_openai: FakeOpenAI
) -> None:
    import anthropic

    pool = [worker("gpt", "openai", caching_openai.base_url, options={"prompt_cache": True})]
    system: Any = [{"type": "text", "text": MANUAL, "cache_control": {"type": "ephemeral"}}]
    async with (
        gateway(pool) as running,
        anthropic.AsyncAnthropic(base_url=running.url, api_key="x") as client,
    ):
        replies = [
            await client.messages.create(
                model="gpt",
                max_tokens=50,
                system=system,
                messages=[{"role": "user", "content": "hi"}],
            )
            for _ in range(2)
        ]
    sent = caching_openai.received[0].body["messages"][0]
    assert sent["content"] == [
        {"type": "text", "text": MANUAL, "prompt_cache_breakpoint": BREAKPOINT}
    ]
    assert replies[0].usage.cache_creation_input_tokens == 1101  # implicit: the whole prompt
    assert replies[1].usage.cache_read_input_tokens == 1101


async def test_malformed_cache_fields_are_refused_by_name(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        with pytest.raises(openai.BadRequestError) as bad_mode:
            await client.chat.completions.create(
                model="alpha",
                messages=[{"role": "user", "content": "hi"}],
                prompt_cache_options={"mode": "sometimes"},  # type: ignore[typeddict-item]
            )
        with pytest.raises(openai.BadRequestError) as bad_ttl:
            await client.chat.completions.create(
                model="alpha",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": "hi",
                                "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "2d"},  # type: ignore[typeddict-item]
                            }
                        ],
                    }
                ],
            )
    assert bad_mode.value.body["param"] == "prompt_cache_options.mode"  # type: ignore[index]
    assert bad_ttl.value.body["param"] == (  # type: ignore[index]
        "messages[0].content[0].prompt_cache_breakpoint.ttl"
    )
    assert fake_openai.received == []


async def test_openai_breakpoints_beyond_anthropics_limit_do_not_fail_the_request(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    parts: Any = [
        {"type": "text", "text": f"section {n}", "prompt_cache_breakpoint": BREAKPOINT}
        for n in range(6)
    ]
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        completion = await client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": parts}]
        )
    assert completion.choices[0].message.content
    blocks = fake_anthropic.received[0].body["messages"][0]["content"]
    assert sum("cache_control" in block for block in blocks) == 4


async def test_a_strict_function_tool_stays_strict_on_every_worker_that_offers_it(
    gateway: Any, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    strict: Any = [
        {"type": "function", "function": {"name": "weather", "parameters": schema, "strict": True}}
    ]
    loose: Any = [{"type": "function", "function": {"name": "weather", "parameters": schema}}]
    workers = [
        worker("chat", "openai", fake_openai.base_url),
        worker("responses", "openai-responses", fake_openai.base_url),
        worker("claude", "anthropic", fake_anthropic.base_url),
    ]
    async with (
        gateway(workers) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        for model in ("chat", "responses", "claude"):
            for tools in (strict, loose):
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "weather?"}], tools=tools
                )
    sent = [r.body["tools"][0] for r in fake_openai.received]
    assert sent[0]["function"]["strict"] is True and "strict" not in sent[1]["function"]
    assert sent[2]["strict"] is True and sent[3]["strict"] is False
    claude = [r.body["tools"][0] for r in fake_anthropic.received]
    assert claude[0]["strict"] is True and "strict" not in claude[1]

"""Gemini's explicit context caching: the fake's ``cachedContents``, checked against Google's own
SDK, and Podium keeping one resource per prefix for the breakpoints its clients mark."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import openai
import pytest

from podium.config import Price
from podium.providers.gemini import GeminiOptions, GeminiProvider, encode_request
from podium.providers.gemini_cache import (
    MINIMUM_FLASH,
    MINIMUM_PRO,
    CachePlan,
    Mark,
    default_minimum,
    plan_prefix,
)
from podium.shared_notes import MemoryNotes
from podium.testing.gemini_fake import FakeGemini
from podium.types import ChatRequest, Message, TextPart, Tool, ToolCall, Usage
from podium.workers import price_usage
from tests.conftest import worker
from tests.shared_servers import REDIS_URL, drop_redis_prefix, needs_redis, unique

KEY = "AIzaTest-0123456789abcdefghijklmn"
MANUAL = " ".join(["clause"] * 1100)  # 1,100 words (the fake's tokens): past both minimums
SHORT = " ".join(["clause"] * 200)  # under them
PRICE = {"input": 0.3, "output": 2.5, "cached_input": 0.03, "cache_storage_per_hour": 1.0}
CLEARED = {"cleared": ["public", "internal", "confidential", "restricted"]}
CREATE = "/v1beta/cachedContents"


class Clock:
    """One clock for the fake (epoch seconds) and Podium's registry: tests move both."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeGemini]:
    async with FakeGemini(clock=clock) as server:
        yield server  # type: ignore[misc]


def gem(base_url: str, **options: Any) -> dict[str, Any]:
    options = {"explicit_cache": True, **options}
    return worker("gem", "gemini", base_url, price=PRICE, profile=CLEARED, options=options)


def creates(fake: FakeGemini) -> int:
    return sum(1 for received in fake.received if received.path == CREATE)


def generations(fake: FakeGemini) -> list[dict[str, Any]]:
    return [r.body for r in fake.received if r.path.startswith("/v1beta/models/")]


def provider_of(running: Any) -> GeminiProvider:
    provider = running.podium.pool.get("gem").provider
    assert isinstance(provider, GeminiProvider)
    return provider


def cached_system(ttl: str | None = None) -> list[Any]:
    control: dict[str, str] = {"type": "ephemeral"}
    if ttl is not None:
        control["ttl"] = ttl
    return [{"type": "text", "text": MANUAL, "cache_control": control}]


async def ask_anthropic(
    running: Any, question: str, system: list[Any] | None = None
) -> tuple[Any, float, str]:
    """One Anthropic SDK request behind the cached system prompt: the message, its cost and its
    trace id."""
    async with anthropic.AsyncAnthropic(base_url=running.url, api_key="x") as client:
        raw = await client.messages.with_raw_response.create(
            model="gem",
            max_tokens=50,
            system=system if system is not None else cached_system(),
            messages=[{"role": "user", "content": question}],
        )
    return (
        await raw.parse(),
        float(raw.headers["x-podium-cost-usd"]),
        raw.headers["x-podium-trace-id"],
    )


def storage(tokens: int, seconds: int) -> float:
    return tokens * seconds / 3600 * PRICE["cache_storage_per_hour"] / 1e6


def tokens_cost(uncached: int, cached: int, output: int) -> float:
    return (uncached * PRICE["input"] + cached * PRICE["cached_input"] + output * 2.5) / 1e6


# -- through Podium ---------------------------------------------------------------------------


async def test_a_breakpoint_makes_one_resource_the_next_request_reuses(
    gateway: Any, fake: FakeGemini
) -> None:
    async with gateway([gem(fake.base_url)]) as running:
        first, first_cost, first_trace = await ask_anthropic(running, "first question")
        second, second_cost, second_trace = await ask_anthropic(running, "second question")
        await running.podium.gateway.drain_background()
        await running.podium.recorder.flush()
        traces = [await running.podium.store.get_trace(t) for t in (first_trace, second_trace)]
    assert creates(fake) == 1
    created = next(r.body for r in fake.received if r.path == CREATE)
    assert created == {
        "model": "models/gem-model",
        "systemInstruction": {"parts": [{"text": MANUAL}]},
        "ttl": "300s",  # Anthropic's default 5 minutes
    }
    sent = generations(fake)
    assert len(sent) == 2 and sent[0]["cachedContent"] == sent[1]["cachedContent"]
    for body, question in zip(sent, ("first question", "second question"), strict=True):
        assert "systemInstruction" not in body and "tools" not in body
        assert body["contents"] == [{"role": "user", "parts": [{"text": question}]}]
    assert first.content[0].text == "fake answer to: first question"
    for message in (first, second):
        assert message.usage.cache_read_input_tokens == 1100
        assert message.usage.input_tokens == 2  # the question alone
    # The storage (1,100 tokens for 5 minutes) is the first request's, and only its.
    expected = [
        tokens_cost(2, 1100, first.usage.output_tokens) + storage(1100, 300),
        tokens_cost(2, 1100, second.usage.output_tokens),
    ]
    assert [first_cost, second_cost] == pytest.approx(expected, abs=1e-8)  # the header's digits
    assert [trace.cost_usd for trace in traces if trace is not None] == pytest.approx(expected)


async def test_openai_breakpoints_and_streams(gateway: Any, fake: FakeGemini) -> None:
    """``prompt_cache_breakpoint`` on a part in the middle of a message: the prefix ends there,
    and a streamed answer reports the cached tokens too."""
    mark = {"mode": "explicit", "ttl": "12h"}
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": MANUAL, "prompt_cache_breakpoint": mark},
                {"type": "text", "text": "what does it say?"},
            ],
        }
    ]
    async with (
        gateway([gem(fake.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        usages = []
        for _ in range(2):
            stream = await client.chat.completions.create(
                model="gem",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            text, usage = "", None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                usage = chunk.usage or usage
            assert text == "fake answer to: what does it say?"
            usages.append(usage)
    assert creates(fake) == 1
    created = next(r.body for r in fake.received if r.path == CREATE)
    assert created["contents"] == [{"role": "user", "parts": [{"text": MANUAL}]}]
    assert created["ttl"] == "43200s"
    for body in generations(fake):
        assert body["contents"] == [{"role": "user", "parts": [{"text": "what does it say?"}]}]
    for usage in usages:
        assert usage is not None and usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 1100
        assert usage.prompt_tokens == 1104


async def test_expiry_makes_a_new_resource(gateway: Any, fake: FakeGemini, clock: Clock) -> None:
    async with gateway([gem(fake.base_url)]) as running:
        provider_of(running).caches.clock = clock  # type: ignore[union-attr]
        await ask_anthropic(running, "before")
        clock.now += 301  # past the 5 minutes, for Gemini and for Podium
        _, cost, _ = await ask_anthropic(running, "after")
    assert creates(fake) == 2
    first, second = generations(fake)
    assert first["cachedContent"] != second["cachedContent"]
    live = [name for name in list(fake.caches) if fake.live_cache(name) is not None]
    assert live == [second["cachedContent"]]  # the first one is gone
    assert cost > storage(1100, 300)  # the new resource's storage is the new request's


async def test_a_resource_gemini_lost_is_made_again_and_the_request_answered(
    gateway: Any, fake: FakeGemini
) -> None:
    async with gateway([gem(fake.base_url)]) as running:
        await ask_anthropic(running, "first")
        fake.caches.clear()  # deleted elsewhere, or expired early: Gemini answers 404
        second, _, _ = await ask_anthropic(running, "second")
        fake.caches.clear()
        async with (
            anthropic.AsyncAnthropic(base_url=running.url, api_key="x") as client,
            client.messages.stream(
                model="gem",
                max_tokens=50,
                system=cached_system(),
                messages=[{"role": "user", "content": "third"}],
            ) as stream,
        ):
            third = await stream.get_final_message()
    assert second.content[0].text == "fake answer to: second"
    assert second.usage.cache_read_input_tokens == 1100
    assert third.content[0].text == "fake answer to: third"  # type: ignore[union-attr]
    assert third.usage.cache_read_input_tokens == 1100
    assert creates(fake) == 3
    names = [body["cachedContent"] for body in generations(fake)]
    # first, second (404), second again, third (404), third again
    assert len(names) == 5 and names[1] == names[0] and names[3] == names[2]
    assert len(set(names)) == 3


async def test_concurrent_requests_with_one_prefix_make_one_resource(
    gateway: Any, fake: FakeGemini
) -> None:
    fake.behaviour.latency = 0.2  # the create is slow: the others arrive while it runs
    async with gateway([gem(fake.base_url)]) as running:
        answers = await asyncio.gather(
            *(ask_anthropic(running, f"question {index}") for index in range(5))
        )
    assert creates(fake) == 1
    assert len({body["cachedContent"] for body in generations(fake)}) == 1
    assert all(message.usage.cache_read_input_tokens == 1100 for message, _, _ in answers)
    # The storage is charged once, to whichever answer came first.
    charged = [
        cost - tokens_cost(message.usage.input_tokens, 1100, message.usage.output_tokens)
        for message, cost, _ in answers
    ]
    assert sorted(charged) == pytest.approx([0, 0, 0, 0, storage(1100, 300)], abs=1e-8)


async def test_a_prefix_under_the_minimum_is_sent_as_before(gateway: Any, fake: FakeGemini) -> None:
    system = [{"type": "text", "text": SHORT, "cache_control": {"type": "ephemeral"}}]
    async with gateway([gem(fake.base_url)]) as running:
        for question in ("one", "two"):
            message, _, _ = await ask_anthropic(running, question, system)
            assert message.content[0].text == f"fake answer to: {question}"
    assert creates(fake) == 0
    for body in generations(fake):
        assert "cachedContent" not in body
        assert body["systemInstruction"] == {"parts": [{"text": SHORT}]}


@pytest.mark.parametrize("refusal", ["failure", "too small"])
async def test_a_failed_create_sends_the_request_uncached_and_logs_once(
    gateway: Any, fake: FakeGemini, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    if refusal == "failure":
        fake.behaviour.fail(500, "Internal error encountered.")
    else:
        fake.cache_minimum_tokens = 4096  # Gemini counts more than Podium estimated
    caplog.set_level(logging.DEBUG, logger="podium.gemini")
    async with gateway([gem(fake.base_url)]) as running:
        answers = [await ask_anthropic(running, q) for q in ("one", "two")]
    for (message, _, _), question in zip(answers, ("one", "two"), strict=True):
        assert message.content[0].text == f"fake answer to: {question}"
        assert message.usage.cache_read_input_tokens == 0
        assert message.usage.input_tokens == 1101
    assert creates(fake) == 1  # not tried again for the same prefix straight away
    assert all("cachedContent" not in body for body in generations(fake))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "uncached" in warnings[0].getMessage()
    assert KEY not in warnings[0].getMessage()


async def test_auto_creates_at_the_second_sight(gateway: Any, fake: FakeGemini) -> None:
    async with gateway([gem(fake.base_url, explicit_cache="auto")]) as running:
        usages = [(await ask_anthropic(running, q))[0].usage for q in ("a", "b", "c")]
    assert creates(fake) == 1
    sent = generations(fake)
    assert "cachedContent" not in sent[0]
    assert sent[1]["cachedContent"] == sent[2]["cachedContent"]
    assert [u.cache_read_input_tokens for u in usages] == [0, 1100, 1100]


async def test_auto_is_the_default_and_false_turns_it_off(gateway: Any, fake: FakeGemini) -> None:
    assert GeminiOptions().explicit_cache == "auto"
    async with gateway([gem(fake.base_url, explicit_cache=False)]) as running:
        for question in ("a", "b", "c"):
            await ask_anthropic(running, question)
        assert provider_of(running).caches is None
    assert creates(fake) == 0


async def test_tools_and_the_tool_config_go_in_the_resource(gateway: Any, fake: FakeGemini) -> None:
    tool: Any = {
        "name": "lookup",
        "description": "Find a clause",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
    async with (
        gateway([gem(fake.base_url)]) as running,
        anthropic.AsyncAnthropic(base_url=running.url, api_key="x") as client,
    ):
        for question in ("one", "two"):
            await client.messages.create(
                model="gem",
                max_tokens=50,
                system=MANUAL,
                tools=[tool],
                tool_choice={"type": "auto"},
                messages=[{"role": "user", "content": question}],
            )
    assert creates(fake) == 1
    created = next(r.body for r in fake.received if r.path == CREATE)
    assert created["ttl"] == "3600s"
    assert created["tools"][0]["functionDeclarations"][0]["name"] == "lookup"
    assert created["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert "contents" not in created
    for body in generations(fake):
        assert not {"tools", "toolConfig", "systemInstruction"} & set(body)


# -- where the prefix ends --------------------------------------------------------------------


def plan(request: ChatRequest) -> CachePlan | None:
    marks: list[Mark] = []
    payload = encode_request(request, GeminiOptions(), max_output_tokens=None, marks=marks)
    return plan_prefix(payload, marks, request.cache, "gemini-x")


def user(*parts: TextPart) -> Message:
    return Message("user", list(parts))


def test_a_breakpoint_on_a_part_splits_its_turn() -> None:
    planned = plan(
        ChatRequest("m", [user(TextPart("manual", cache="1h"), TextPart("the question"))])
    )
    assert planned is not None and planned.ttl == "1h"
    assert planned.body == {
        "model": "models/gemini-x",
        "contents": [{"role": "user", "parts": [{"text": "manual"}]}],
    }
    assert planned.rest == [{"role": "user", "parts": [{"text": "the question"}]}]


def test_a_breakpoint_at_the_end_leaves_the_last_turn_to_send() -> None:
    conversation = [
        Message("system", [TextPart("be brief")]),
        user(TextPart("q1")),
        Message("assistant", [TextPart("a1")]),
        user(TextPart("q2")),
    ]
    planned = plan(ChatRequest("m", conversation, cache="5m"))
    assert planned is not None
    assert [c["parts"][0]["text"] for c in planned.body["contents"]] == ["q1", "a1"]
    assert planned.body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert planned.rest == [{"role": "user", "parts": [{"text": "q2"}]}]
    # A last turn of two parts keeps its last part to send.
    planned = plan(ChatRequest("m", [user(TextPart("doc"), TextPart("q", cache="5m"))]))
    assert planned is not None and planned.rest == [{"role": "user", "parts": [{"text": "q"}]}]


def test_function_turns_are_never_split() -> None:
    calls = [ToolCall("c1", "f", "{}"), ToolCall("c2", "f", "{}")]
    conversation = [
        Message("system", [TextPart("sys")]),
        user(TextPart("go")),
        Message("assistant", [], tool_calls=calls),
        Message("tool", [TextPart("r1")], tool_call_id="c1", cache="5m"),
        Message("tool", [TextPart("r2")], tool_call_id="c2"),
        Message("assistant", [TextPart("done")]),
        user(TextPart("next")),
    ]
    planned = plan(ChatRequest("m", conversation, tools=[Tool("f")]))
    assert planned is not None
    assert [c["role"] for c in planned.body["contents"]] == ["user", "model"]
    assert [len(c["parts"]) for c in planned.rest] == [2, 1, 1]  # both responses sent together


def test_no_prefix_without_system_tools_or_earlier_turns() -> None:
    assert plan(ChatRequest("m", [user(TextPart("only", cache="5m"))])) is None
    assert plan(ChatRequest("m", [user(TextPart("no breakpoint"))])) is None
    planned = plan(
        ChatRequest("m", [Message("system", [TextPart("s", cache="30m")]), user(TextPart("q"))])
    )
    assert planned is not None and "contents" not in planned.body and planned.ttl == "30m"


def test_the_same_prefix_has_the_same_key_whatever_follows() -> None:
    one = plan(ChatRequest("m", [user(TextPart("manual", cache="5m"), TextPart("a"))]))
    two = plan(ChatRequest("m", [user(TextPart("manual", cache="1h"), TextPart("b"))]))
    other = plan(ChatRequest("m", [user(TextPart("manuals", cache="5m"), TextPart("a"))]))
    assert one is not None and two is not None and other is not None
    assert one.key == two.key != other.key


def test_minimums_and_storage_prices() -> None:
    assert default_minimum("gemini-2.5-flash") == MINIMUM_FLASH == 1024
    assert default_minimum("gemini-2.5-pro") == default_minimum("gemini-3-pro-preview")
    assert default_minimum("gemini-2.5-pro") == MINIMUM_PRO == 4096
    price = Price(input=1.25, output=10.0, cached_input=0.125, cache_storage_per_hour=4.5)
    plain = Usage(12_000, 100, cached_input_tokens=10_000)
    stored = Usage(12_000, 100, 10_000, cache_storage_token_hours=10_000 * 0.5)
    assert price_usage(price, stored) == pytest.approx(
        price_usage(price, plain) + 10_000 * 0.5 * 4.5 / 1e6
    )
    assert price_usage(Price(input=1.0), stored) == price_usage(Price(input=1.0), plain)


# -- the fake, as Google's SDK sees it --------------------------------------------------------


# google-genai subclasses aiohttp's session, which aiohttp warns about: theirs, not ours.
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_the_official_sdk_manages_the_fakes_caches(fake: FakeGemini, clock: Clock) -> None:
    genai = pytest.importorskip(
        "google.genai", reason="google-genai is optional: install it to cross-check the fake"
    )
    from google.genai import errors, types

    fake.behaviour.require_key = KEY
    options = types.HttpOptions(base_url=fake.url, api_version="v1beta")
    async with genai.Client(api_key=KEY, http_options=options).aio as client:
        cache = await client.caches.create(
            model="gemini-x",
            config=types.CreateCachedContentConfig(
                system_instruction="You answer from the manual.",
                contents=[types.Content(role="user", parts=[types.Part(text=MANUAL)])],
                ttl="300s",
                display_name="manual",
            ),
        )
        assert cache.name and cache.name.startswith("cachedContents/")
        assert cache.model == "models/gemini-x" and cache.display_name == "manual"
        assert cache.usage_metadata is not None
        assert cache.usage_metadata.total_token_count == 1100 + 5
        assert cache.expire_time is not None and cache.create_time is not None
        assert (cache.expire_time - cache.create_time).total_seconds() == pytest.approx(300)

        answer = await client.models.generate_content(
            model="gemini-x",
            contents="what does clause 3 say?",
            config=types.GenerateContentConfig(cached_content=cache.name),
        )
        assert answer.text == "fake answer to: what does clause 3 say?"
        assert answer.usage_metadata is not None
        assert answer.usage_metadata.cached_content_token_count == 1105
        assert answer.usage_metadata.prompt_token_count == 1105 + 5
        pieces = [
            chunk.text
            async for chunk in await client.models.generate_content_stream(
                model="gemini-x",
                contents="stream it",
                config=types.GenerateContentConfig(cached_content=cache.name),
            )
        ]
        assert "".join(p or "" for p in pieces) == "fake answer to: stream it"

        got = await client.caches.get(name=cache.name)
        assert got.name == cache.name and got.expire_time == cache.expire_time
        listed = [item.name async for item in await client.caches.list()]
        assert listed == [cache.name]
        updated = await client.caches.update(
            name=cache.name, config=types.UpdateCachedContentConfig(ttl="7200s")
        )
        assert updated.expire_time is not None and updated.expire_time > cache.expire_time

        with pytest.raises(errors.ClientError) as beside:
            await client.models.generate_content(
                model="gemini-x",
                contents="x",
                config=types.GenerateContentConfig(
                    cached_content=cache.name, system_instruction="another"
                ),
            )
        with pytest.raises(errors.ClientError) as other_model:
            await client.models.generate_content(
                model="gemini-y",
                contents="x",
                config=types.GenerateContentConfig(cached_content=cache.name),
            )
        with pytest.raises(errors.ClientError) as small:
            await client.caches.create(
                model="gemini-x",
                config=types.CreateCachedContentConfig(system_instruction="too short"),
            )

        await client.caches.delete(name=cache.name)
        with pytest.raises(errors.ClientError) as deleted:
            await client.caches.get(name=cache.name)

        second = await client.caches.create(
            model="gemini-x", config=types.CreateCachedContentConfig(system_instruction=MANUAL)
        )
        assert second.expire_time is not None and second.create_time is not None
        assert (second.expire_time - second.create_time).total_seconds() == pytest.approx(3600)
        clock.now += 3601
        with pytest.raises(errors.ClientError) as expired:
            await client.models.generate_content(
                model="gemini-x",
                contents="x",
                config=types.GenerateContentConfig(cached_content=second.name),
            )
        assert [item async for item in await client.caches.list()] == []
    assert beside.value.code == 400 and beside.value.status == "INVALID_ARGUMENT"
    assert "system_instruction, tools or tool_config" in str(beside.value.message)
    assert other_model.value.code == 400
    assert small.value.code == 400 and "too small" in str(small.value.message)
    assert deleted.value.code == 404 and deleted.value.status == "NOT_FOUND"
    assert expired.value.code == 404 and expired.value.status == "NOT_FOUND"


# -- across replicas --------------------------------------------------------------------------


@asynccontextmanager
async def two_replicas(
    gateway: Any, fake: FakeGemini, notes: MemoryNotes
) -> AsyncIterator[tuple[Any, Any]]:
    """Two Podiums over one Gemini whose providers share ``notes``, as replicas sharing Redis
    do."""
    async with gateway([gem(fake.base_url)]) as one, gateway([gem(fake.base_url)]) as two:
        for running in (one, two):
            running.podium.pool.set_shared_notes(notes)
        yield one, two


async def test_replicas_sharing_notes_use_one_resource_and_pay_its_storage_once(
    gateway: Any, fake: FakeGemini
) -> None:
    notes = MemoryNotes()
    async with two_replicas(gateway, fake, notes) as (one, two):
        _, first_cost, _ = await ask_anthropic(one, "first")
        second, second_cost, _ = await ask_anthropic(two, "second")
    assert creates(fake) == 1
    first_sent, second_sent = generations(fake)
    assert first_sent["cachedContent"] == second_sent["cachedContent"]
    assert second.usage.cache_read_input_tokens == 1100
    # The replica that made the resource charged its storage; the other did not.
    assert first_cost - second_cost == pytest.approx(storage(1100, 300), abs=1e-8)


async def test_a_note_naming_a_resource_gemini_lost_is_passed_over(
    gateway: Any, fake: FakeGemini
) -> None:
    notes = MemoryNotes()
    async with two_replicas(gateway, fake, notes) as (one, two):
        await ask_anthropic(one, "first")
        fake.caches.clear()  # lost: the note still names it
        await ask_anthropic(two, "second")  # reads the note, is told 404, makes a new one
        await ask_anthropic(one, "third")  # its own is lost too: takes the new one's note
    assert creates(fake) == 2
    lost, made = (body["cachedContent"] for body in generations(fake)[1:3])
    # first; second (404), second again; third on its own (404), third again on the note
    assert [body["cachedContent"] for body in generations(fake)] == [lost, lost, made, lost, made]


async def test_a_note_that_names_no_resource_is_passed_over(gateway: Any, fake: FakeGemini) -> None:
    notes = MemoryNotes()
    async with two_replicas(gateway, fake, notes) as (one, two):
        await ask_anthropic(one, "first")
        for key, (until, _) in list(notes.notes.items()):
            notes.notes[key] = (until, "not a note")
        second, _, _ = await ask_anthropic(two, "second")
    assert creates(fake) == 2  # the second replica made its own
    assert second.usage.cache_read_input_tokens == 1100


async def replicas_asking_at_once(one: Any, two: Any, fake: FakeGemini) -> list[Any]:
    """Both replicas send the prefix while the first create is still running, then the
    second asks again once it is made."""
    fake.behaviour.latency = 0.2
    first, second = await asyncio.gather(ask_anthropic(one, "first"), ask_anthropic(two, "2nd"))
    third, _, _ = await ask_anthropic(two, "third")
    return [first[0], second[0], third]


async def test_replicas_asking_at_once_make_one_resource(gateway: Any, fake: FakeGemini) -> None:
    """The first to claim the prefix makes its resource; the other sends the request uncached
    meanwhile, rather than make and pay to keep a second one, and then uses the first's."""
    notes = MemoryNotes()
    async with two_replicas(gateway, fake, notes) as (one, two):
        answers = await replicas_asking_at_once(one, two, fake)
    assert creates(fake) == 1
    assert sorted(message.usage.cache_read_input_tokens for message in answers[:2]) == [0, 1100]
    assert answers[2].usage.cache_read_input_tokens == 1100
    assert len({body.get("cachedContent") for body in generations(fake)} - {None}) == 1


@needs_redis
async def test_replicas_on_one_redis_asking_at_once_make_one_resource(
    gateway: Any, fake: FakeGemini
) -> None:
    redis = {"url": REDIS_URL, "prefix": unique("podium_notes") + ":"}
    try:
        async with (
            gateway([gem(fake.base_url)], redis=redis) as one,
            gateway([gem(fake.base_url)], redis=redis) as two,
        ):
            answers = await replicas_asking_at_once(one, two, fake)
    finally:
        await drop_redis_prefix(redis["prefix"])
    assert creates(fake) == 1
    assert answers[2].usage.cache_read_input_tokens == 1100


@needs_redis
async def test_replicas_on_one_redis_use_one_resource(gateway: Any, fake: FakeGemini) -> None:
    redis = {"url": REDIS_URL, "prefix": unique("podium_notes") + ":"}
    try:
        async with (
            gateway([gem(fake.base_url)], redis=redis) as one,
            gateway([gem(fake.base_url)], redis=redis) as two,
        ):
            await ask_anthropic(one, "first")
            await ask_anthropic(two, "second")
    finally:
        await drop_redis_prefix(redis["prefix"])
    assert creates(fake) == 1
    assert len({body["cachedContent"] for body in generations(fake)}) == 1


def test_an_image_in_a_prefix_counts_by_geminis_rule_for_its_size() -> None:
    """A large picture is worth caching beside a short instruction: 1600x900 is six tiles."""
    import base64
    import io

    from PIL import Image

    from podium.providers.gemini_cache import BLOB_TOKENS, estimate_tokens

    buffer = io.BytesIO()
    Image.new("RGB", (1600, 900)).save(buffer, "PNG")
    picture = base64.b64encode(buffer.getvalue()).decode()

    def prefix(part: dict[str, Any]) -> dict[str, Any]:
        return {"contents": [{"role": "user", "parts": [{"text": "Describe it."}, part]}]}

    inline = {"inlineData": {"mimeType": "image/png", "data": picture}}
    by_uri = {"fileData": {"mimeType": "image/png", "fileUri": "files/abc"}}
    assert estimate_tokens(prefix(inline)) == 3 + 6 * 258  # over Flash's 1,024
    assert estimate_tokens(prefix(by_uri)) == 3 + BLOB_TOKENS

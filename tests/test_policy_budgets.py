"""Budgets and rate limits: refused before any upstream call, and holding under races, in one
process and across replicas sharing Redis."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest

from podium.app import Podium
from podium.config import WorkerConfig, parse_config
from podium.context import Caller, RequestContext
from podium.errors import PodiumError
from podium.policy.budgets import LimitsHook, estimate_cost
from podium.policy.keys import KeyCache, KeyRecord, KeyStore, NewKey, Snapshot
from podium.policy.limits import (
    Closing,
    LimitBackend,
    MemoryLimits,
    Periods,
    period_of,
    to_nano,
    usd,
)
from podium.policy.settings import LimitSettings
from podium.routing.base import Decision
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.types import ChatRequest, Message, TextPart
from podium.workflow import Workflow
from tests.conftest import worker

# $0.1 a token either way, so the numbers are easy to follow. The prompt "hi" is estimated at
# 5 input tokens (1 + 4 of message overhead) and max_tokens=5 caps the output: each request
# reserves $1.00; the fake then reports 1 input + 4 output tokens: $0.50 real cost.
PRICE = {"input": 100_000.0, "output": 100_000.0}
CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
RESERVATION = 1.0
REAL_COST = 0.5


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(
    not redis_available() and os.environ.get("CI") != "true",
    reason="no Redis on 127.0.0.1:6379 (these tests always run when CI=true)",
)


async def new_key(podium: Podium, **spec: Any) -> tuple[str, str]:
    cache = podium.extras["keys"]
    assert isinstance(cache, KeyCache)
    record, key = await cache.store.create(NewKey(**{"owner": "team-a", **spec}))
    cache.invalidate()
    return record.key_id, key


def backend_of(podium: Podium) -> LimitBackend:
    backend: LimitBackend = podium.extras["limits"]
    return backend


async def spent(podium: Podium, key_id: str, period: str = "month") -> float:
    label, _ = period_of(period, __import__("time").time())
    settled, held = await backend_of(podium).usage(key_id, label)
    assert held == 0, "every reservation should be settled by now"
    return usd(settled)


# -- units -----------------------------------------------------------------------------------------


def test_periods_and_money() -> None:
    label, left = period_of("day", 1_700_000_000)  # 2023-11-14 22:13:20 UTC
    assert label == "2023-11-14" and 0 < left <= 86_400
    assert period_of("month", 1_700_000_000)[0] == "2023-11"
    assert period_of("week", 1_700_000_000)[0] == "2023-W46"
    assert to_nano(0.1) + to_nano(0.2) == to_nano(0.3)  # exact, unlike floats


def test_remembered_periods_roll_over_like_period_of() -> None:
    periods = Periods()
    end_of_day = 1_700_006_400  # 2023-11-15 00:00:00 UTC
    # Across a day's end, a month's, and a clock that steps back.
    for now in (end_of_day - 5, end_of_day - 0.5, end_of_day, end_of_day + 7, end_of_day - 5):
        for period in ("day", "week", "month"):
            label, left = periods.of(period, now)
            expected_label, expected_left = period_of(period, now)
            assert label == expected_label
            assert abs(left - expected_left) < 1e-3
    assert periods.of("month", 1_701_388_800)[0] == "2023-12"  # 2023-12-01 00:00 UTC


async def test_memory_buckets_refill_over_a_minute() -> None:
    now = [0.0]
    limits = MemoryLimits(clock=lambda: now[0])
    assert (await limits.take_rate("k", rpm=2, tpm=None, tokens=0)).wait == 0
    assert (await limits.take_rate("k", rpm=2, tpm=None, tokens=0)).wait == 0
    wait = (await limits.take_rate("k", rpm=2, tpm=None, tokens=0)).wait
    assert wait == pytest.approx(30.0)
    now[0] = 30.0
    assert (await limits.take_rate("k", rpm=2, tpm=None, tokens=0)).wait == 0
    # Tokens: a request takes its estimate, and the real count corrects it afterwards.
    assert (await limits.take_rate("t", rpm=None, tpm=100, tokens=80)).wait == 0
    assert (await limits.take_rate("t", rpm=None, tpm=100, tokens=80)).wait > 0
    await limits.adjust_tokens("t", tpm=100, delta=-70)  # it used only 10
    assert (await limits.take_rate("t", rpm=None, tpm=100, tokens=80)).wait == 0


async def test_memory_rate_takes_from_both_buckets_or_neither() -> None:
    now = [0.0]
    limits = MemoryLimits(clock=lambda: now[0])
    assert (await limits.take_rate("k", rpm=3, tpm=100, tokens=60)).wait == 0
    # The tokens run short (40 left, 60 wanted): refused with the token bucket's wait, and
    # the request bucket keeps its two requests.
    assert (await limits.take_rate("k", rpm=3, tpm=100, tokens=60)).wait == pytest.approx(12.0)
    assert (await limits.take_rate("k", rpm=3, tpm=100, tokens=10)).wait == 0
    assert (await limits.take_rate("k", rpm=3, tpm=100, tokens=10)).wait == 0
    # Now the requests run short (0 left) and the tokens do not (20 left): the request wait.
    assert (await limits.take_rate("k", rpm=3, tpm=100, tokens=10)).wait == pytest.approx(20.0)
    # Both short: the longer wait of the two.
    assert (await limits.take_rate("k", rpm=3, tpm=100, tokens=90)).wait == pytest.approx(42.0)
    # A request larger than the whole limit waits for a full bucket, not forever.
    assert (await limits.take_rate("big", rpm=None, tpm=100, tokens=500)).wait == 0
    assert (await limits.take_rate("big", rpm=None, tpm=100, tokens=500)).wait == pytest.approx(
        60.0
    )


async def test_memory_close_settles_and_corrects_tokens() -> None:
    limits = MemoryLimits(clock=lambda: 0.0)
    args = {"budget": 100, "hold_seconds": 5.0, "period_seconds": 100.0}
    assert (await limits.reserve("k", "p", amount=30, reservation="a", **args)).allowed
    assert await limits.usage("k", "p") == (0, 30)
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=90)).wait == 0
    await limits.close(
        Closing("k", period="p", reservation="a", actual=12, tpm=100, token_delta=-80)
    )
    assert await limits.usage("k", "p") == (12, 0)
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=90)).wait == 0  # 10 used, not 90
    await limits.close(Closing("k", period="old", reservation="a", actual=50))
    assert await limits.usage("k", "p") == (12, 0)  # a past period's spend no longer counts


async def test_memory_reservations_expire() -> None:
    now = [0.0]
    limits = MemoryLimits(clock=lambda: now[0])
    args = {"budget": 10, "hold_seconds": 5.0, "period_seconds": 100.0}
    assert (await limits.reserve("k", "p", amount=8, reservation="a", **args)).allowed
    assert not (await limits.reserve("k", "p", amount=8, reservation="b", **args)).allowed
    now[0] = 6.0  # "a" never settled (a crashed request): released after hold_seconds
    assert (await limits.reserve("k", "p", amount=8, reservation="c", **args)).allowed


def test_a_lone_workers_estimate_is_the_general_loops() -> None:
    # estimate_cost answers a one-worker plan without its loop over steps and fallbacks; an
    # unknown fallback sends the same plan through the loop, where it adds nothing.
    rng = random.Random(3)
    for _ in range(300):
        price = {"input": rng.choice([0.0, rng.uniform(0, 50)]), "output": rng.uniform(0, 80)}
        extra: dict[str, Any] = {"price": price}
        if rng.random() < 0.5:
            extra["max_output_tokens"] = rng.randrange(1, 5000)
        config = parse_config({"workers": [worker("alpha", "openai", "http://x", **extra)]})
        pool: Any = OnePool(config.workers[0])
        text = "x" * rng.randrange(0, 3000)
        request = ChatRequest(
            "alpha", [Message("user", [TextPart(text)])], max_tokens=rng.choice([None, 700])
        )
        for name in ("alpha", "gone"):
            alone = estimate_cost(request, Decision(Workflow.single(name), "d", ""), pool, 1024)
            looped = Decision(Workflow.single(name, ["unknown"]), "d", "")
            assert repr(alone) == repr(estimate_cost(request, looped, pool, 1024))


def test_a_worker_that_reads_pdfs_is_reserved_their_pages_images_too() -> None:
    from podium.types import DocumentPart

    workers = [
        worker("plain", "openai", "http://x", price={"input": 1000.0, "output": 0.0}),
        worker("reader", "gemini", "http://x", price={"input": 1000.0, "output": 0.0},
               capabilities=["documents"]),
        worker("dear", "anthropic", "http://x", price={"input": 1000.0, "output": 0.0},
               capabilities=["documents"], document_page_tokens=1500),
    ]  # fmt: skip
    configs = {w.name: w for w in parse_config({"workers": workers}).workers}
    pool: Any = SimpleNamespace(get=lambda name: SimpleNamespace(config=configs[name]))
    document = DocumentPart(data="JVBERi0=", text="The board met. " * 200, pages=50)
    request = ChatRequest(
        "m", [Message("user", [TextPart("Summarise it."), document])], attachments=True
    )

    def reserved(workflow: Workflow) -> float:
        return estimate_cost(request, Decision(workflow, "d", ""), pool, 0)

    text = reserved(Workflow.single("plain"))
    assert text > 0.7  # ~3,000 characters of text at $0.001 a token
    assert reserved(Workflow.single("reader")) == pytest.approx(text + 50 * 258 / 1000)
    # the dearest fallback is reserved: the one that bills 1,500 tokens a page
    assert reserved(Workflow.single("plain", ["reader", "dear"])) == pytest.approx(
        text + 50 * 1500 / 1000
    )


class AwaitedLimits(MemoryLimits):
    """MemoryLimits reached only through its async methods: the limits hook calls exactly
    MemoryLimits through its plain methods, and any other backend through awaits."""


class OnePool:
    """The one worker ``estimate_cost`` looks up."""

    def __init__(self, config: WorkerConfig) -> None:
        self.worker = SimpleNamespace(config=config)

    def get(self, name: str) -> Any:
        return self.worker if name == self.worker.config.name else None


async def limited(limits_type: type[MemoryLimits]) -> list[Any]:
    """What the limits hook says to 300 random requests of one key with a tight budget and
    tight rates, some never finishing (their holds expire), and the usage after each."""
    config = parse_config({"workers": [worker("alpha", "openai", "http://127.0.0.1:9")]})
    record = KeyRecord("k1", "h", "team", budget_usd=0.05, rpm=30, tpm=3000)
    rng = random.Random(7)
    now = [1_700_000_000.0]
    backend = limits_type(clock=lambda: now[0])
    keys = KeyCache(KeyStore(None), ttl=1e12, clock=lambda: 0.0)  # type: ignore[arg-type]
    keys._snapshot = Snapshot({}, {"k1": record}, 1, 0, 0.0)
    pool: Any = OnePool(config.workers[0])
    hook = LimitsHook(keys, backend, pool, LimitSettings(hold_seconds=30.0), clock=lambda: now[0])
    said: list[Any] = []
    for _ in range(300):
        now[0] += rng.choice([0.0, 0.5, 2.0, 9.0])
        text = "word " * rng.randrange(1, 400)
        request = ChatRequest(
            "alpha", [Message("user", [TextPart(text)])], max_tokens=rng.choice([None, 5, 200])
        )
        context = RequestContext("openai", {}, caller=Caller("k1"))
        try:
            await hook.admit(request, context)
            await hook.decided(request, Decision(Workflow.single("alpha"), "direct", ""), context)
        except PodiumError as refusal:
            said.append((refusal.code, refusal.message.split(" ")[:4], refusal.retry_after))
            continue
        said.append(list(context.policy_actions))
        if rng.random() < 0.9:  # else it never finishes
            used = rng.randrange(0, 600)
            trace: Any = SimpleNamespace(cost_usd=used * 3e-6, input_tokens=used, output_tokens=3)
            await hook.finish(trace, context)
        said.append(await backend.usage("k1", period_of("month", now[0])[0]))
    return said


async def test_the_hook_limits_the_same_through_plain_calls_as_through_awaits() -> None:
    plain, awaited = await limited(MemoryLimits), await limited(AwaitedLimits)
    assert plain == awaited
    refused = {entry[0] for entry in plain if isinstance(entry, tuple) and len(entry) == 3}
    assert refused == {"budget_exceeded", "rate_limit_exceeded"}


def test_rate_headers_say_each_limit_what_is_left_and_when_it_is_full() -> None:
    from podium.policy.budgets import rate_headers
    from podium.policy.limits import RateTake

    headers: dict[str, str] = {}
    rate_headers(headers, 10, 100_000, RateTake(0.0, 4.6, 1000.0))
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "32.4s",
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "1000",
        "x-ratelimit-reset-tokens": "59.4s",
    }
    headers.clear()
    rate_headers(headers, 1, None, RateTake(0.0, -0.5, None))  # overdrawn: nothing left
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1m30s"
    assert "x-ratelimit-limit-tokens" not in headers


def test_anthropic_callers_hear_anthropics_rate_limit_headers() -> None:
    from podium.policy.budgets import rate_headers
    from podium.policy.limits import RateTake

    headers: dict[str, str] = {}
    now = 1_796_601_600.0  # 2026-12-07T00:00:00Z
    rate_headers(headers, 10, 100_000, RateTake(0.0, 4.6, 1000.0), ingress="anthropic", now=now)
    assert headers == {
        "anthropic-ratelimit-requests-limit": "10",
        "anthropic-ratelimit-requests-remaining": "4",
        "anthropic-ratelimit-requests-reset": "2026-12-07T00:00:33Z",  # full in 32.4 s
        "anthropic-ratelimit-tokens-limit": "100000",
        "anthropic-ratelimit-tokens-remaining": "1000",
        "anthropic-ratelimit-tokens-reset": "2026-12-07T00:01:00Z",
    }


async def test_the_anthropic_sdk_reads_the_limits_on_answers_and_on_its_429(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    import anthropic

    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        _, key = await new_key(running.podium, rpm=1)
        async with anthropic.AsyncAnthropic(
            base_url=running.url, api_key=key, max_retries=0
        ) as client:
            message = {"role": "user", "content": "hello"}
            raw = await client.messages.with_raw_response.create(
                model="alpha", max_tokens=20, messages=[message]
            )
            with pytest.raises(anthropic.RateLimitError) as refused:
                await client.messages.create(model="alpha", max_tokens=20, messages=[message])
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert "x-ratelimit-limit-requests" not in raw.headers  # OpenAI's names are for OpenAI's
    denied = refused.value.response.headers
    assert denied["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(denied["retry-after"]) >= 1


# -- through the gateway ---------------------------------------------------------------------------


async def test_rpm_limit_is_429_with_retry_after_before_any_upstream_call(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        _, key = await new_key(running.podium, rpm=2)
        async with httpx.AsyncClient(base_url=running.v1) as http:
            headers = {"authorization": f"Bearer {key}"}
            left = []
            for _ in range(2):
                ok = await http.post("/chat/completions", json=CHAT, headers=headers)
                assert ok.status_code == 200
                assert ok.headers["x-ratelimit-limit-requests"] == "2"
                left.append(ok.headers["x-ratelimit-remaining-requests"])
                assert "x-ratelimit-limit-tokens" not in ok.headers  # no tokens limit
            refused = await http.post("/chat/completions", json=CHAT, headers=headers)
    # What the key's bucket holds after each request, and how long until it is full again.
    assert left == ["1", "0"]
    assert ok.headers["x-ratelimit-reset-requests"].startswith("59.")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"  # as OpenAI's 429s say
    assert "2 requests per minute" in refused.json()["error"]["message"]
    assert len(fake_openai.received) == 2


async def test_tpm_limit_counts_tokens(gateway: Any, fake_openai: FakeOpenAI) -> None:
    # 20 words: estimated at 25 + 4 input tokens, plus max_tokens=5: 34 taken from 40 a minute.
    # The real count (20 + 4) gives back 10, which still leaves no room for a second one.
    long = {**CHAT, "messages": [{"role": "user", "content": "word " * 20}]}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        _, key = await new_key(running.podium, tpm=40)
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=key, max_retries=0) as client:
            await client.chat.completions.create(**long)
            await running.podium.gateway.drain_background()
            with pytest.raises(openai.RateLimitError, match="40 tokens per minute"):
                await client.chat.completions.create(**long)
            await client.chat.completions.create(**CHAT)  # a small one still fits
    assert len(fake_openai.received) == 2


async def test_budget_reserves_then_settles_and_refuses_with_402(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url, price=PRICE)]) as running:
        key_id, key = await new_key(running.podium, budget_usd=1.6, budget_period="day")
        async with httpx.AsyncClient(base_url=running.v1) as http:
            headers = {"authorization": f"Bearer {key}"}
            first = await http.post("/chat/completions", json=CHAT, headers=headers)
            assert first.status_code == 200
            assert float(first.headers["x-podium-cost-usd"]) == pytest.approx(REAL_COST)
            # Left should the request have cost its whole $1.00 reservation.
            assert first.headers["x-podium-budget-remaining-usd"] == "0.600000"
            await running.podium.gateway.drain_background()
            assert await spent(running.podium, key_id, "day") == pytest.approx(REAL_COST)
            # $0.50 spent, $1.10 left: the next $1.00 reservation fits, the one after does not.
            second = await http.post("/chat/completions", json=CHAT, headers=headers)
            assert second.status_code == 200
            assert second.headers["x-podium-budget-remaining-usd"] == "0.100000"
            await running.podium.gateway.drain_background()
            third = await http.post("/chat/completions", json=CHAT, headers=headers)
    assert third.status_code == 402
    error = third.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "budget exhausted" in error["message"] and "$1.60" in error["message"]
    assert int(third.headers["retry-after"]) > 0
    assert len(fake_openai.received) == 2


async def test_a_budget_reserves_a_pdfs_pages_for_a_worker_that_reads_pdfs(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """A 50-page PDF to a worker that reads PDFs itself reserves its 50 page images too
    (258 tokens each by default), enough for what the upstream then bills; a worker sent the
    text reserves the text alone."""
    from podium.testing.pdf import pdf_base64

    price = {"input": 1000.0, "output": 0.0}  # $0.001 an input token
    workers = [
        worker("plain", "openai", fake_openai.base_url, price=price),
        worker("reader", "openai", fake_openai.base_url, price=price,
               capabilities=["streaming", "documents"]),
    ]  # fmt: skip
    pdf = pdf_base64(["The committee approved the budget."] * 50)
    content = [
        {"type": "text", "text": "Summarise it."},
        {"type": "file", "file": {"filename": "minutes.pdf", "file_data": pdf}},
    ]
    reserved: dict[str, float] = {}
    cost: dict[str, float] = {}
    async with gateway(workers) as running:
        for model in ("plain", "reader"):
            _, key = await new_key(running.podium, budget_usd=100.0)
            async with httpx.AsyncClient(base_url=running.v1) as http:
                answer = await http.post(
                    "/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": content}],
                          "max_tokens": 5},
                    headers={"authorization": f"Bearer {key}"},
                )  # fmt: skip
            assert answer.status_code == 200, answer.text
            reserved[model] = 100.0 - float(answer.headers["x-podium-budget-remaining-usd"])
            cost[model] = float(answer.headers["x-podium-cost-usd"])
    assert reserved["reader"] - reserved["plain"] == pytest.approx(50 * 258 / 1000, abs=1e-5)
    # the upstream billed the pages' images beside the text: the reservation covered them
    assert cost["reader"] > 50 * 258 / 1000
    assert cost["reader"] <= reserved["reader"] and cost["plain"] <= reserved["plain"]


async def test_streams_are_settled_when_they_end(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url, price=PRICE)]) as running:
        key_id, key = await new_key(running.podium, budget_usd=1.2)
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=key, max_retries=0) as client:
            stream = await client.chat.completions.create(
                **CHAT, stream=True, stream_options={"include_usage": True}
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text
            await running.podium.gateway.drain_background()
            assert await spent(running.podium, key_id) == pytest.approx(REAL_COST)
            with pytest.raises(openai.APIStatusError) as refused:  # $0.70 left < $1.00
                await client.chat.completions.create(**CHAT, stream=True)
    assert refused.value.status_code == 402
    assert len(fake_openai.received) == 1


async def test_anonymous_and_unlimited_keys_are_not_metered(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url, price=PRICE)]) as running:
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client:
            for _ in range(3):
                await client.chat.completions.create(**CHAT)
        key_id, key = await new_key(running.podium)
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=key) as client:
            await client.chat.completions.create(**CHAT)
        await running.podium.gateway.drain_background()
        assert await backend_of(running.podium).usage(key_id, period_of("month", 0)[0]) == (0, 0)


async def race(podiums: list[Podium], urls: list[str], key: str, requests: int) -> list[int]:
    """``requests`` concurrent chats spread over the gateways; their status codes."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=100))
            )
            for url in urls
        ]
        headers = {"authorization": f"Bearer {key}"}
        responses = await asyncio.gather(
            *(
                clients[i % len(clients)].post("/v1/chat/completions", json=CHAT, headers=headers)
                for i in range(requests)
            )
        )
        for podium in podiums:
            await podium.gateway.drain_background()
    return [response.status_code for response in responses]


def check_race(statuses: list[int], fake: FakeOpenAI, total: float, budget: float) -> None:
    answered = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert statuses.count(402) > 0, "the race should reach the edge of the budget"
    assert len(fake.received) == answered, "a refused request must never reach the upstream"
    assert total == pytest.approx(answered * REAL_COST)
    assert total <= budget + RESERVATION
    # Reservations bound the spend: at most budget / reservation requests ran at once.
    assert answered >= int(budget / RESERVATION)


async def test_budget_race_in_one_process(gateway: Any) -> None:
    async with FakeOpenAI(Behaviour(latency=0.05)) as fake:
        async with gateway([worker("alpha", "openai", fake.base_url, price=PRICE)]) as running:
            key_id, key = await new_key(running.podium, budget_usd=5.0)
            statuses = await race([running.podium], [running.url], key, 40)
            total = await spent(running.podium, key_id)
        check_race(statuses, fake, total, 5.0)


# -- Redis -----------------------------------------------------------------------------------------


@pytest.fixture
def redis_access() -> dict[str, Any]:
    """A ``limits`` section on the shared Redis with a prefix of this test's own."""
    return {
        "limits": {
            "backend": "redis",
            "url": "redis://127.0.0.1:6379/0",
            "prefix": f"podium-test:{uuid.uuid4().hex[:12]}:",
        }
    }


@pytest.fixture
async def redis_cleanup(redis_access: dict[str, Any]) -> AsyncIterator[None]:
    yield
    from redis.asyncio import Redis

    client = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = [k async for k in client.scan_iter(match=redis_access["limits"]["prefix"] + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@needs_redis
async def test_redis_budget_race_across_two_replicas(
    gateway: Any, redis_access: dict[str, Any], redis_cleanup: None
) -> None:
    async with FakeOpenAI(Behaviour(latency=0.05)) as fake:
        workers = [worker("alpha", "openai", fake.base_url, price=PRICE)]
        # Two gateways: one data directory (their shared key store) and one Redis.
        async with (
            gateway(workers, access=redis_access) as first,
            gateway(workers, access=redis_access) as second,
        ):
            key_id, key = await new_key(first.podium, budget_usd=5.0)
            second.podium.extras["keys"].invalidate()
            statuses = await race([first.podium, second.podium], [first.url, second.url], key, 40)
            total = await spent(first.podium, key_id)
            assert await spent(second.podium, key_id) == total  # one ledger, not two
        check_race(statuses, fake, total, 5.0)


@needs_redis
async def test_redis_rate_limit_holds_across_replicas(
    gateway: Any, fake_openai: FakeOpenAI, redis_access: dict[str, Any], redis_cleanup: None
) -> None:
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    async with (
        gateway(workers, access=redis_access) as first,
        gateway(workers, access=redis_access) as second,
    ):
        _, key = await new_key(first.podium, rpm=3, tpm=1000)
        second.podium.extras["keys"].invalidate()
        statuses = await race([first.podium, second.podium], [first.url, second.url], key, 8)
        # The rate-limit headers read the shared buckets (the script returns their levels):
        # a request through each replica leaves 4, then 3, of another key's 5.
        _, other = await new_key(first.podium, rpm=5, tpm=1000)
        second.podium.extras["keys"].invalidate()
        left = []
        async with httpx.AsyncClient() as http:
            for replica in (first, second):
                ok = await http.post(
                    f"{replica.url}/v1/chat/completions",
                    json=CHAT,
                    headers={"authorization": f"Bearer {other}"},
                )
                left.append(ok.headers["x-ratelimit-remaining-requests"])
        assert left == ["4", "3"]
        assert ok.headers["x-ratelimit-limit-tokens"] == "1000"
        assert 900 < int(ok.headers["x-ratelimit-remaining-tokens"]) < 1000
    assert statuses.count(200) == 3 and statuses.count(429) == 5
    assert len(fake_openai.received) == 5  # the race's three and the other key's two


@pytest.mark.parametrize(("mode", "status"), [("closed", 503), ("open", 200)])
async def test_unreachable_redis_fails_closed_by_default(
    gateway: Any, fake_openai: FakeOpenAI, mode: str, status: int
) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    access = {
        "limits": {
            "backend": "redis",
            "url": f"redis://127.0.0.1:{port}/0",
            "fail_mode": mode,
            "timeout": 0.2,
        }
    }
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], access=access) as running:
        _, limited = await new_key(running.podium, rpm=100, budget_usd=10)
        _, free = await new_key(running.podium)
        async with httpx.AsyncClient(base_url=running.v1) as http:
            refused = await http.post(
                "/chat/completions", json=CHAT, headers={"authorization": f"Bearer {limited}"}
            )
            unlimited = await http.post(
                "/chat/completions", json=CHAT, headers={"authorization": f"Bearer {free}"}
            )
    assert refused.status_code == status, refused.text
    if status == 503:
        assert refused.json()["error"]["code"] == "limits_unavailable"
        assert len(fake_openai.received) == 1  # only the key without limits went through
    assert unlimited.status_code == 200

"""A worker's ``limits`` through the gateway and the official SDKs: a full worker's call goes to
the next worker the decision allows, or is a 503 with Retry-After; an upstream's 429 pause is
kept by the calls that follow; batches and background callers leave interactive calls their
share; the limits change at run time and show in /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anthropic
import httpx
import openai
import pytest

from podium.app import Podium, create_podium
from podium.config import PodiumConfig
from podium.policy.keys import KeyStore, NewKey
from podium.providers.http import UNSTATED_ANSWERS
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.fakes import Quota
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve
from tests.conftest import worker
from tests.shared_servers import REDIS_URL, drop_redis_prefix, needs_redis, unique

HELD = 10.0  # seconds a held upstream is given to be asked, before a test fails


def sdk(url: str, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0, default_headers=headers
    )


async def asked(fake: FakeOpenAI, count: int) -> None:
    """Wait until the upstream has received ``count`` requests."""
    for _ in range(int(HELD / 0.01)):
        if len(fake.received) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the upstream was asked {len(fake.received)} times, not {count}")


def ask(client: openai.AsyncOpenAI, model: str = "alpha") -> asyncio.Future[Any]:
    return asyncio.ensure_future(
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    )


async def test_a_full_worker_turns_the_next_call_away_with_503_and_retry_after(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    limits = {"concurrency": 1, "queue_seconds": 0}
    limited = worker("alpha", "openai", fake_openai.base_url, limits=limits)
    async with gateway([limited]) as served, sdk(served.url) as client:
        first = ask(client)
        await asked(fake_openai, 1)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
        assert caught.value.status_code == 503
        body: Any = caught.value.body
        assert body["code"] == "workers_at_capacity"
        assert "all 1 slots busy" in body["message"]
        assert caught.value.response.headers["retry-after"] == "1"
        assert len(fake_openai.received) == 1  # the upstream was never asked
        fake_openai.behaviour.hold.set()
        assert (await first).choices[0].message.content


async def test_a_call_waits_for_room_within_queue_seconds(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    limits = {"concurrency": 1, "queue_seconds": 30}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, limits=limits)]) as served,
        sdk(served.url) as client,
    ):
        first = ask(client)
        await asked(fake_openai, 1)
        second = asyncio.ensure_future(
            client.chat.completions.with_raw_response.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
        )
        await asyncio.sleep(0.2)
        assert len(fake_openai.received) == 1 and not second.done()
        fake_openai.behaviour.hold.set()
        await first
        raw = await second
        assert len(fake_openai.received) == 2
        await served.podium.recorder.flush()
        trace = await served.podium.store.get_trace(raw.headers["x-podium-trace-id"])
    # The trace says how long it waited: a first look, passed over, then its turn.
    assert trace is not None
    [looked, sent] = trace.steps
    assert looked["status"] == "skipped" and looked["error_kind"] == "at_capacity"
    assert sent["status"] == "ok" and sent["queued_ms"] >= 150


async def test_a_full_worker_hands_the_call_to_the_next_one_routing_allows(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    async with FakeOpenAI() as other:
        workers = [
            worker("alpha", "openai", fake_openai.base_url, limits={"concurrency": 1}),
            worker("beta", "openai", other.base_url),
        ]
        async with (
            gateway(workers, default_worker="alpha") as served,
            sdk(served.url) as client,
        ):
            first = ask(client, "podium/auto")
            await asked(fake_openai, 1)
            second = await client.chat.completions.with_raw_response.create(
                model="podium/auto", messages=[{"role": "user", "content": "Hi"}]
            )
            assert second.headers["x-podium-worker"] == "beta"
            fake_openai.behaviour.hold.set()
            await first
    assert len(fake_openai.received) == 1 and len(other.received) == 1


async def test_an_upstream_429_pause_is_kept_by_the_calls_that_follow(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(429, "Rate limit reached", retry_after=60)
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
        async with httpx.AsyncClient(base_url=served.url) as admin:
            health = (await admin.get("/admin/workers/alpha")).json()["health"]
            # The operator knows better: undrain ends the pause, and the worker is asked again.
            resumed = (await admin.post("/admin/workers/alpha/undrain")).json()["health"]
        again = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi"}]
        )
    assert resumed["resting_seconds"] == 0 and again.choices[0].message.content
    assert 50 < health["resting_seconds"] <= 60
    assert caught.value.status_code == 503
    assert "asked for a pause" in str(caught.value)
    assert 55 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert len(fake_openai.received) == 2  # the 429 and the call after undrain, not the one between


async def test_a_batch_leaves_interactive_calls_their_share_of_the_slots(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    limits = {"concurrency": 2, "background_share": 0.5}
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url, limits=limits)],
            batches={"poll_seconds": 0.02},
        ) as served,
        anthropic.AsyncAnthropic(base_url=served.url, api_key="unused", max_retries=0) as batches,
        sdk(served.url) as client,
    ):
        params = {
            "model": "alpha",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "x"}],
        }
        batch = await batches.messages.batches.create(
            requests=[{"custom_id": f"r{i}", "params": params} for i in range(4)]
        )
        await asked(fake_openai, 1)
        await asyncio.sleep(0.2)
        assert len(fake_openai.received) == 1  # the batch holds its one slot of two
        person = ask(client)
        await asked(fake_openai, 2)  # the interactive call has the other at once
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{served.url}/metrics")).text
        assert 'podium_worker_slots_in_use{worker="alpha",priority="background"} 1' in metrics
        assert 'podium_worker_slots_in_use{worker="alpha",priority="interactive"} 1' in metrics
        fake_openai.behaviour.hold.set()
        await person
        for _ in range(500):
            status = await batches.messages.batches.retrieve(batch.id)
            if status.processing_status == "ended":
                break
            await asyncio.sleep(0.02)
        assert status.request_counts.succeeded == 4


# Two slots, background work's share one of them, and no wait for background work.
SHARED_BY_TWO = {"concurrency": 2, "background_queue_seconds": 0}


def chat(client: openai.AsyncOpenAI, **params: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: client.chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "Hi"}], **params
    )


async def background_holds_its_share(
    fake: FakeOpenAI,
    background: Callable[[], Awaitable[Any]],
    interactive: Callable[[], Awaitable[Any]],
) -> Any:
    """On a worker of SHARED_BY_TWO with its upstream held: a first background call takes
    background work's one slot, a second is turned away (503), and an interactive call has the
    other slot at once. The first background call's answer."""
    first = asyncio.ensure_future(background())
    await asked(fake, 1)
    with pytest.raises(openai.APIStatusError) as caught:
        await background()
    assert caught.value.status_code == 503
    person = asyncio.ensure_future(interactive())
    await asked(fake, 2)
    assert fake.behaviour.hold is not None
    fake.behaviour.hold.set()
    await person
    return await first


async def test_a_caller_may_mark_its_own_calls_as_background(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    alpha = worker("alpha", "openai", fake_openai.base_url, limits=SHARED_BY_TWO)
    async with (
        gateway([alpha]) as served,
        sdk(served.url, **{"x-podium-priority": "background"}) as background,
        sdk(served.url) as client,
    ):
        await background_holds_its_share(fake_openai, chat(background), chat(client))


async def test_openai_flex_processing_is_background_work(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    alpha = worker("alpha", "openai", fake_openai.base_url, limits=SHARED_BY_TWO)
    async with gateway([alpha]) as served, sdk(served.url) as client:
        flexible = iter(
            [
                lambda: client.responses.create(model="alpha", input="Hi", service_tier="flex"),
                chat(client, service_tier="flex"),
            ]
        )
        first = await background_holds_its_share(
            fake_openai, lambda: next(flexible)(), chat(client)
        )
    assert first.service_tier == "flex"


async def test_a_key_may_be_marked_for_background_work(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    alpha = worker("alpha", "openai", fake_openai.base_url, limits=SHARED_BY_TWO)
    async with gateway([alpha]) as served:
        keys = KeyStore(served.podium.store)
        _, nightly = await keys.create(NewKey(owner="etl", metadata={"priority": "background"}))
        _, person = await keys.create(NewKey(owner="app"))
        async with (
            openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=nightly, max_retries=0) as etl,
            openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=person, max_retries=0) as app,
        ):
            await background_holds_its_share(fake_openai, chat(etl), chat(app))


async def test_an_unknown_priority_is_a_400_naming_the_header(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url, **{"x-podium-priority": "urgent"}) as client,
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
    assert "x-podium-priority" in str(caught.value)
    assert not fake_openai.received


async def test_limits_change_at_run_time_through_the_admin_api(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    limited = worker("alpha", "openai", fake_openai.base_url, limits={"concurrency": 1})
    async with gateway([limited]) as served, sdk(served.url) as client:
        first = ask(client)
        await asked(fake_openai, 1)
        async with httpx.AsyncClient(base_url=served.url) as admin:
            changed = await admin.patch("/admin/workers/alpha", json={"limits": {"concurrency": 2}})
            assert changed.status_code == 200, changed.text
        second = ask(client)
        await asked(fake_openai, 2)
        fake_openai.behaviour.hold.set()
        await first
        await second


async def test_streams_hold_their_slot_until_they_end(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    # Held after its first words: Podium passes a stream on from its first content.
    fake_openai.behaviour.gate, fake_openai.behaviour.gate_after = asyncio.Event(), 3
    limits = {"concurrency": 1, "queue_seconds": 0}
    limited = worker("alpha", "openai", fake_openai.base_url, limits=limits)
    async with gateway([limited]) as served, sdk(served.url) as client:
        stream = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi there"}], stream=True
        )
        chunks = aiter(stream)
        await anext(chunks)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
        assert caught.value.status_code == 503
        fake_openai.behaviour.gate.set()
        async for _ in chunks:
            pass
        answer = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi"}]
        )
        assert answer.choices[0].message.content


async def looking_for_room(podium: Podium, worker_name: str = "alpha") -> None:
    """Wait until a call on ``podium`` waits for room on the worker."""
    capacity = podium.pool.get(worker_name).capacity  # type: ignore[union-attr]
    for _ in range(int(HELD / 0.01)):
        if capacity.waited:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no call waited for room")


@asynccontextmanager
async def replicas(
    make_config: Callable[..., PodiumConfig],
    fake: FakeOpenAI,
    limits: dict[str, Any],
    count: int = 2,
) -> AsyncIterator[tuple[list[Podium], list[openai.AsyncOpenAI]]]:
    """``count`` gateways whose limits are kept in Redis (a prefix of their own), one
    worker with ``limits``, and an SDK client for each."""
    prefix = unique("podium-test-worker-limits") + ":"
    config = make_config(
        [worker("alpha", "openai", fake.base_url, limits=limits)],
        access={"limits": {"backend": "redis", "url": REDIS_URL, "prefix": prefix}},
    )
    podiums = [create_podium(config) for _ in range(count)]
    try:
        async with AsyncExitStack() as stack:
            clients = []
            for podium in podiums:
                url = await stack.enter_async_context(serve(podium.app))
                clients.append(await stack.enter_async_context(sdk(url)))
            yield podiums, clients
    finally:
        await drop_redis_prefix(prefix)


@needs_redis
async def test_requests_a_minute_are_counted_across_replicas_sharing_redis(
    make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    async with replicas(make_config, fake_openai, {"rpm": 1}) as (_, (first, second)):
        await first.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi"}]
        )
        with pytest.raises(openai.APIStatusError) as caught:
            await second.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
    assert caught.value.status_code == 503
    assert "rpm 1 reached" in str(caught.value)
    assert len(fake_openai.received) == 1


async def test_a_full_worker_is_waited_for_only_when_no_other_has_room(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    limits = {"concurrency": 1, "queue_seconds": 30}
    async with FakeOpenAI() as other:
        other.behaviour.hold = fake_openai.behaviour.hold
        workers = [
            worker("alpha", "openai", fake_openai.base_url, limits=limits),
            worker("beta", "openai", other.base_url, limits=limits),
        ]
        async with (
            gateway(workers, default_worker="alpha") as served,
            sdk(served.url) as client,
        ):
            first = ask(client, "podium/auto")
            await asked(fake_openai, 1)
            second = ask(client, "podium/auto")  # alpha is full: beta, at once
            await asked(other, 1)
            third = ask(client, "podium/auto")  # both full: it waits for alpha, the first
            alpha = served.podium.pool.get("alpha")
            assert alpha is not None
            for _ in range(int(HELD / 0.01)):  # until it waits (a loaded machine is slow)
                if alpha.capacity.waited:
                    break
                await asyncio.sleep(0.01)
            assert alpha.capacity.waited == 1
            assert len(fake_openai.received) + len(other.received) == 2
            fake_openai.behaviour.hold.set()
            answers = await asyncio.gather(first, second, third)
    assert [answer.model for answer in answers] == ["alpha", "beta", "alpha"]


async def test_no_slot_is_lost_to_clients_that_leave_at_any_moment(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.latency = 0.02
    fake_openai.behaviour.chunk_delay = 0.005
    limits = {"concurrency": 3, "queue_seconds": 5}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, limits=limits)]) as served,
        sdk(served.url) as client,
    ):

        async def one(stream: bool) -> None:
            messages = [{"role": "user", "content": "Tell me a long story " * 5}]
            if stream:
                chunks = await client.chat.completions.create(
                    model="alpha", messages=messages, stream=True
                )
                async for _ in chunks:
                    pass
            else:
                await client.chat.completions.create(model="alpha", messages=messages)

        calls = [asyncio.ensure_future(one(stream=n % 2 == 0)) for n in range(40)]
        for n, call in enumerate(calls):  # every third client leaves, at a different moment
            if n % 3 == 0:
                asyncio.get_running_loop().call_later(0.01 * n, call.cancel)
        await asyncio.gather(*calls, return_exceptions=True)
        alpha = served.podium.pool.get("alpha")
        for _ in range(200):  # the server notices the last departures
            if alpha.capacity.in_use == 0 and alpha.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert alpha.capacity.in_use == 0 and alpha.in_flight == 0
        assert alpha.capacity.refused == 0
        await one(stream=True)
        await one(stream=False)


@needs_redis
async def test_a_workers_slots_are_counted_across_replicas_sharing_redis(
    make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    limits = {"concurrency": 1}
    async with replicas(make_config, fake_openai, limits) as (podiums, (first, second)):
        for podium in podiums:  # leases short enough to lapse unless renewed
            podium.pool.get("alpha").capacity.lease = 0.3  # type: ignore[union-attr]
        held = ask(first)
        await asked(fake_openai, 1)
        await asyncio.sleep(0.6)  # two leases: only renewal keeps the slot held
        started = time.perf_counter()
        with pytest.raises(openai.APIStatusError) as caught:
            await second.chat.completions.create(
                model="alpha",
                messages=[{"role": "user", "content": "Hi"}],
                extra_headers={"x-podium-timeout": "1"},
            )
        waited = time.perf_counter() - started
        fake_openai.behaviour.hold.set()
        await held
        answered = await second.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 503
    assert "all 1 slots busy across replicas" in str(caught.value)
    assert waited >= 0.5  # it waited its turn (queue_seconds, within its deadline)
    assert answered.choices[0].message.content
    assert len(fake_openai.received) == 2


@needs_redis
async def test_a_person_waiting_on_one_replica_is_served_before_a_batch_on_another(
    make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.hold = asyncio.Event()
    async with replicas(make_config, fake_openai, {"concurrency": 1}, count=3) as (
        podiums,
        (first, second, third),
    ):
        held = ask(first)
        await asked(fake_openai, 1)
        batch = asyncio.ensure_future(
            second.chat.completions.create(
                model="alpha",
                messages=[{"role": "user", "content": "the batch's"}],
                extra_headers={"x-podium-priority": "background"},
            )
        )
        person = asyncio.ensure_future(
            third.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "the person's"}]
            )
        )
        # Both look for the slot, again and again, before it is given back.
        await looking_for_room(podiums[1])
        await looking_for_room(podiums[2])
        fake_openai.behaviour.hold.set()
        await asyncio.gather(held, batch, person)
    asked_in_order = [r.body["messages"][-1]["content"] for r in fake_openai.received]  # type: ignore[index]
    assert asked_in_order[1:] == ["the person's", "the batch's"]


async def test_a_quota_the_vendor_says_is_used_up_pauses_the_worker_until_it_resets(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> None:
    for fake in (fake_openai, fake_anthropic):
        # An account of one request a minute: the one left is back when the minute is over.
        fake.behaviour.quota = Quota(requests_limit=1, requests_remaining=0, requests_reset=30)
    workers = [
        worker("gpt", "openai", fake_openai.base_url),
        worker("claude", "anthropic", fake_anthropic.base_url),
    ]
    async with (
        gateway(workers) as served,
        sdk(served.url) as client,
        httpx.AsyncClient(base_url=served.url) as admin,
    ):
        for model, fake in (("gpt", fake_openai), ("claude", fake_anthropic)):
            # The answer that used the last request says so: the next call is not sent.
            await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hi"}]
            )
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "Hi"}]
                )
            assert caught.value.status_code == 503
            assert "the vendor says its quota is used up for now" in str(caught.value)
            assert 25 <= int(caught.value.response.headers["retry-after"]) <= 30
            assert len(fake.received) == 1
            health = (await admin.get(f"/admin/workers/{model}")).json()["health"]
            assert health["vendor_quota"]["requests_remaining"] == 0
            assert health["vendor_quota"]["tokens_remaining"] == 29_000
            assert 25 < health["resting_seconds"] <= 30


async def test_a_server_that_never_states_a_quota_is_no_longer_read_for_one(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
        httpx.AsyncClient(base_url=served.url) as admin,
    ):
        for _ in range(UNSTATED_ANSWERS):  # a vLLM server, say: no rate-limit headers
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )
        fake_openai.behaviour.quota = Quota()
        await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi"}]
        )
        health = (await admin.get("/admin/workers/alpha")).json()["health"]
    assert health["vendor_quota"] is None

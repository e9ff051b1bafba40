from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from podium.config import ConfigError
from podium.routing.affinity import AffinityHook, LocalSessions, session_id, session_key
from podium.state.redis_sessions import RedisSessions
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.routing_helpers import POOL, ask, routing_for
from tests.shared_servers import REDIS_URL, drop_redis_prefix, free_port, needs_redis, unique

# A pool where the semantic router sends code to the 1.5B and chat to the 135M worker, so a
# conversation that starts with code and turns to chat shows whether affinity holds it.
ROUTING = {
    "chain": ["rules", "affinity", "semantic", "direct"],
    "semantic": {"use_default_routes": True},
    "rules": [
        {"name": "escalate", "match": {"headers": {"x-escalate": "*"}}, "worker": POOL[1]},
    ],
}


def pool_workers(fake: FakeOpenAI, **extra: Any) -> list[dict[str, Any]]:
    """The pool behind one fake upstream, cleared for every data class so that what the
    policy layer thinks of a prompt does not change where these tests route it."""
    cleared = {"cleared": ["public", "internal", "confidential", "restricted"]}
    return [worker(name, "openai", fake.base_url, profile=cleared, **extra) for name in POOL]


async def test_the_session_map_is_bounded_and_forgets_the_least_recent() -> None:
    sessions = LocalSessions(max_sessions=3, ttl=60)
    for index in range(5):
        await sessions.put(f"s{index}", "w")
    assert len(sessions) == 3
    assert await sessions.get("s0") is None and await sessions.get("s4") == "w"
    await sessions.get("s2")  # touched: now the most recent
    await sessions.put("s5", "w")
    assert await sessions.get("s2") == "w" and await sessions.get("s3") is None


async def test_sessions_expire() -> None:
    now = [0.0]
    sessions = LocalSessions(max_sessions=10, ttl=5, clock=lambda: now[0])
    await sessions.put("s", "w")
    now[0] = 4.0
    assert await sessions.get("s") == "w"
    now[0] = 10.0
    assert await sessions.get("s") is None and len(sessions) == 0


def test_every_turn_of_a_conversation_has_the_same_session() -> None:
    first = ask("write code", system="be brief", user="u1")
    later = ask(
        "now tell me a joke",
        system="be brief",
        user="u1",
        history=[("user", "write code"), ("assistant", "def f(): pass")],
    )
    assert session_id(first, {}, "x-podium-session") == session_id(later, {}, "x-podium-session")
    other_user = ask("write code", system="be brief", user="u2")
    assert session_id(other_user, {}, "x-podium-session") != session_id(first, {}, "x")
    assert session_id(first, {"x-podium-session": "abc"}, "x-podium-session") == "abc"
    assert session_id(ask(metadata={"conversation_id": "c9"}), {}, "x") == "c9"


def test_a_prompt_cache_key_names_the_session() -> None:
    """Requests sharing OpenAI's prompt_cache_key share a prefix, whatever their openings'
    hashes say: kept on one worker, they share its cache."""
    first, second = ask("question one"), ask("question two")
    first.cache_key = second.cache_key = "tenant-7"
    assert session_id(first, {}, "x") == session_id(second, {}, "x") == "c-tenant-7"
    assert session_id(first, {"x": "explicit"}, "x") == "explicit"  # the header still wins


async def _turn(
    client: openai.AsyncOpenAI, messages: list[dict[str, str]], **extra: Any
) -> tuple[str, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model="podium/auto", messages=messages, **extra
    )
    completion = raw.parse()
    messages.append({"role": "assistant", "content": completion.choices[0].message.content or ""})
    await raw.http_response.aclose()
    return raw.headers["x-podium-worker"], raw.headers["x-podium-route"]


async def test_a_conversation_stays_on_its_first_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = pool_workers(fake_openai)
    async with (
        gateway(workers, routing=ROUTING) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        talk = [{"role": "user", "content": "Write a Python function that parses JSON"}]
        first = await _turn(client, talk)
        await running.podium.gateway.drain_background()
        talk.append({"role": "user", "content": "hey, how are you today?"})
        second = await _turn(client, talk)
        fresh = [{"role": "user", "content": "hey, how are you today?"}]
        alone = await _turn(client, fresh)
    assert first == ("qwen2.5-coder-1.5b", "semantic:code")
    assert second == ("qwen2.5-coder-1.5b", "affinity")  # chat, but the session holds
    assert alone == ("smollm2-135m", "semantic:chat")  # a new conversation routes afresh


async def test_a_responses_conversation_continued_by_id_stays_on_its_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """The stored turns are put back before routing, so the conversation opens as it did."""
    async with (
        gateway(pool_workers(fake_openai), routing=ROUTING) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        first = await client.responses.with_raw_response.create(
            model="podium/auto",
            instructions="Be brief.",
            input="Write a Python function that parses JSON",
        )
        await running.podium.gateway.drain_background()
        second = await client.responses.with_raw_response.create(
            model="podium/auto",
            instructions="Be brief.",
            input="hey, how are you today?",
            previous_response_id=first.parse().id,
        )
    assert first.headers["x-podium-route"] == "semantic:code"
    assert second.headers["x-podium-route"] == "affinity"
    assert second.headers["x-podium-worker"] == first.headers["x-podium-worker"]


async def test_the_turns_of_a_conversation_object_stay_on_one_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """The conversation names the session, so turns with other instructions stay too."""
    async with (
        gateway(pool_workers(fake_openai), routing=ROUTING) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        conversation = await client.conversations.create()
        routes = []
        for instructions, text in (
            ("Be brief.", "Write a Python function that parses JSON"),
            ("Be chatty.", "hey, how are you today?"),
        ):
            raw = await client.responses.with_raw_response.create(
                model="podium/auto",
                instructions=instructions,
                input=text,
                conversation=conversation.id,
            )
            await running.podium.gateway.drain_background()
            routes.append((raw.headers["x-podium-worker"], raw.headers["x-podium-route"]))
    assert routes == [("qwen2.5-coder-1.5b", "semantic:code"), ("qwen2.5-coder-1.5b", "affinity")]


async def test_policy_failure_and_rules_move_a_session(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = pool_workers(fake_openai)
    async with gateway(workers, routing=ROUTING) as running:
        podium = running.podium
        session = {"x-podium-session": "conv-1"}
        async with openai.AsyncOpenAI(
            base_url=running.v1, api_key="unused", default_headers=session, max_retries=0
        ) as client:
            talk = [{"role": "user", "content": "Write a Python function that parses JSON"}]
            assert (await _turn(client, talk))[0] == POOL[2]
            await podium.gateway.drain_background()

            # An explicit rule moves the session, and later turns follow it.
            talk.append({"role": "user", "content": "continue"})
            moved = await _turn(client, talk, extra_headers={"x-escalate": "1"})
            await podium.gateway.drain_background()
            talk.append({"role": "user", "content": "and then?"})
            after = await _turn(client, talk)
            assert moved == (POOL[1], "rules:escalate") and after == (POOL[1], "affinity")
            await podium.gateway.drain_background()

            # Policy: a draining worker is no longer eligible, so the session moves.
            podium.pool.drain(POOL[1])
            talk.append({"role": "user", "content": "hello again, how are you?"})
            drained = await _turn(client, talk)
            assert drained[0] != POOL[1] and drained[1] != "affinity"
            await podium.gateway.drain_background()
            podium.pool.drain(POOL[1], draining=False)


async def test_a_conversation_that_outgrows_its_worker_moves(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    cleared = {"cleared": ["public", "internal", "confidential", "restricted"]}
    workers = [
        worker(POOL[0], "openai", fake_openai.base_url, profile=cleared, context_window=2048),
        worker(POOL[2], "openai", fake_openai.base_url, profile=cleared, context_window=32768),
    ]
    routing = {"chain": ["affinity", "direct"]}
    async with gateway(workers, routing=routing, default_worker=POOL[0]) as running:
        session = {"x-podium-session": "long-talk"}
        async with openai.AsyncOpenAI(
            base_url=running.v1, api_key="unused", default_headers=session, max_retries=0
        ) as client:
            talk = [{"role": "user", "content": "Let us talk about the sea."}]
            assert await _turn(client, talk) == (POOL[0], "direct")
            await running.podium.gateway.drain_background()
            talk.append({"role": "user", "content": "Go on."})
            assert await _turn(client, talk) == (POOL[0], "affinity")
            await running.podium.gateway.drain_background()
            # a pasted document: the conversation no longer fits the small worker's window
            talk.append({"role": "user", "content": "Summarise this: " + "waves " * 4000})
            moved = await _turn(client, talk)
            await running.podium.gateway.drain_background()
            talk.append({"role": "user", "content": "Shorter, please."})
            after = await _turn(client, talk)
    assert moved == (POOL[2], "direct") and after == (POOL[2], "affinity")


async def test_a_failing_worker_does_not_hold_its_session(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = pool_workers(fake_openai, retry={"attempts": 0})
    headers = {"x-podium-session": "conv-2"}
    async with gateway(workers, routing=ROUTING) as running:
        podium = running.podium
        hook = next(h for h in podium.hooks if isinstance(h, AffinityHook))
        key = session_key("anonymous", "conv-2")
        async with openai.AsyncOpenAI(
            base_url=running.v1, api_key="unused", default_headers=headers, max_retries=0
        ) as client:
            talk = [{"role": "user", "content": "Write a Python function that parses JSON"}]
            await _turn(client, talk)
            await podium.gateway.drain_background()
            assert await hook.sessions.get(key) == POOL[2]

            # The sticky worker fails; a fallback answers and the session follows it.
            fake_openai.behaviour.fail(503, "overloaded", times=1)
            talk.append({"role": "user", "content": "more please"})
            worker_name, route = await _turn(client, talk)
            await podium.gateway.drain_background()
            assert route == "affinity" and worker_name != POOL[2]
            assert await hook.sessions.get(key) == worker_name

            # Every worker fails: the turn fails and the session is forgotten.
            fake_openai.behaviour.fail(503, "overloaded", times=len(POOL))
            talk.append({"role": "user", "content": "and more"})
            with pytest.raises(openai.APIStatusError):
                await client.chat.completions.create(model="podium/auto", messages=talk)  # type: ignore[arg-type]
            await podium.gateway.drain_background()
            assert await hook.sessions.get(key) is None


# -- shared through Redis: several gateways (processes, replicas) keep one map ----------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = unique("podium_sessions") + ":"
    yield prefix
    await drop_redis_prefix(prefix)


def shared(prefix: str, url: str = REDIS_URL, **extra: Any) -> dict[str, Any]:
    return {"url": url, "prefix": prefix, **extra}


@needs_redis
async def test_two_gateways_sharing_redis_keep_a_conversation_on_one_worker(
    gateway: Any, fake_openai: FakeOpenAI, redis_prefix: str
) -> None:
    workers = pool_workers(fake_openai)
    redis = shared(redis_prefix)
    async with (
        gateway(workers, routing=ROUTING, redis=redis) as first,
        gateway(workers, routing=ROUTING, redis=redis) as second,
        openai.AsyncOpenAI(base_url=first.v1, api_key="unused") as one,
        openai.AsyncOpenAI(base_url=second.v1, api_key="unused") as other,
    ):
        talk = [{"role": "user", "content": "Write a Python function that parses JSON"}]
        assert await _turn(one, talk) == (POOL[2], "semantic:code")
        await first.podium.gateway.drain_background()
        # The next turn lands on the other gateway: chat, but the session holds there too.
        talk.append({"role": "user", "content": "hey, how are you today?"})
        assert await _turn(other, talk) == (POOL[2], "affinity")
        await second.podium.gateway.drain_background()
        # A rule on the second moves the session; the first follows the move.
        talk.append({"role": "user", "content": "continue"})
        assert await _turn(other, talk, extra_headers={"x-escalate": "1"}) == (
            POOL[1],
            "rules:escalate",
        )
        await second.podium.gateway.drain_background()
        talk.append({"role": "user", "content": "and then?"})
        assert await _turn(one, talk) == (POOL[1], "affinity")
        # A new conversation on either routes afresh.
        fresh = [{"role": "user", "content": "hey, how are you today?"}]
        assert await _turn(other, fresh) == (POOL[0], "semantic:chat")


@needs_redis
async def test_shared_sessions_expire_and_stay_bounded(redis_prefix: str) -> None:
    from redis.asyncio import Redis

    # A TTL long enough that a loaded machine reads the sessions back before they expire.
    sessions = RedisSessions(REDIS_URL, max_sessions=3, ttl=3.0, prefix=redis_prefix)
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for index in range(5):
            await sessions.put(f"caller\x1fs{index}", "w")
        # Bounded: the two least recent were evicted, the rest are kept.
        assert [await sessions.get(f"caller\x1fs{i}") for i in range(5)] == [
            None, None, "w", "w", "w",
        ]  # fmt: skip
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
        assert len(keys) == 4  # three sessions and the index, all under the deployment's prefix
        assert await client.zcard(sessions.index) == 3
        # Each session key carries the TTL, and disappears after it.
        ttl_ms = await client.pttl(sessions.base + sessions._member("caller\x1fs4"))
        assert 0 < ttl_ms <= 3000
        for _ in range(200):
            if await sessions.get("caller\x1fs4") is None:
                break
            await asyncio.sleep(0.05)
        assert await sessions.get("caller\x1fs4") is None
        # A forgotten session is gone at once.
        await sessions.put("caller\x1fs9", "w")
        await sessions.forget("caller\x1fs9")
        assert await sessions.get("caller\x1fs9") is None
    finally:
        await client.aclose()
        await sessions.aclose()


async def test_redis_down_routes_without_affinity_and_says_why(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    workers = pool_workers(fake_openai)
    redis = shared("podium-down:", closed, timeout=0.1)
    async with (
        gateway(workers, routing=ROUTING, redis=redis) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
        httpx.AsyncClient(base_url=running.v1) as http,
    ):
        talk = [{"role": "user", "content": "Write a Python function that parses JSON"}]
        assert await _turn(client, talk) == (POOL[2], "semantic:code")
        await running.podium.gateway.drain_background()
        talk.append({"role": "user", "content": "hey, how are you today?"})
        assert await _turn(client, talk) == (POOL[0], "semantic:chat")  # served, not held
        response = await http.post("/route", json={"model": "podium/auto", "messages": talk})
    decision = response.json()["decision"]
    assert response.status_code == 200 and decision["route"] == "semantic:chat"
    assert "router 'affinity' failed" in decision["reason"]
    assert "Redis unreachable" in decision["reason"]
    assert "routing without affinity" in decision["reason"]


def test_a_bad_affinity_section_is_a_config_error_naming_the_field() -> None:
    # Under routing.routers it was pydantic's own ValidationError, with its long-form text.
    routing = {
        "chain": ["sticky", "direct"],
        "routers": {"sticky": {"type": "affinity", "ttl_seconds": -1}},
    }
    with pytest.raises(ConfigError, match="routing: affinity: ttl_seconds: Input should be"):
        routing_for(routing)

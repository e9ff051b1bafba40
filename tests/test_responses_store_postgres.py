"""Stored responses on PostgreSQL: two gateways sharing one database answer one conversation,
each turn on either, and the expiry sweep runs there as on SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest

from podium.app import Podium, create_podium
from podium.config import PodiumConfig
from podium.responses.store import ResponseStore
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve
from tests.conftest import worker
from tests.shared_servers import PG_URL, drop_schema, needs_postgres, unique

pytestmark = needs_postgres


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = unique("responses")
    yield name
    await drop_schema(name)


@asynccontextmanager
async def two_gateways(
    schema: str, make_config: Callable[..., PodiumConfig], fake: FakeOpenAI, **settings: Any
) -> AsyncIterator[tuple[list[Podium], list[openai.AsyncOpenAI]]]:
    """Two gateways on one PostgreSQL schema, and an SDK client for each."""
    config = make_config(
        [worker("alpha", "openai", fake.base_url)],
        store={"kind": "postgres", "url": PG_URL, "pg_schema": schema},
        **settings,
    )
    podiums = [create_podium(config), create_podium(config)]
    async with serve(podiums[0].app) as one, serve(podiums[1].app) as two:
        sdk = [
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            for url in (one, two)
        ]
        try:
            yield podiums, sdk
        finally:
            for client in sdk:
                await client.close()


async def test_a_conversation_crosses_gateways_that_share_postgres(
    schema: str, make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    async with two_gateways(schema, make_config, fake_openai) as (podiums, sdk):
        previous: Any = openai.omit
        answers = []
        for turn in range(4):  # one, two, one, two
            answer = await sdk[turn % 2].responses.create(
                model="alpha", input=f"turn {turn}", previous_response_id=previous
            )
            answers.append(answer)
            previous = answer.id
        items = [item async for item in sdk[0].responses.input_items.list(previous, order="asc")]
        await sdk[1].responses.delete(answers[0].id)
        with pytest.raises(openai.BadRequestError) as broken:
            await sdk[0].responses.create(
                model="alpha", input="again", previous_response_id=previous
            )
        store = podiums[0].extras["responses"]
        assert isinstance(store, ResponseStore)
        store._clock = lambda: 4e9  # long past every response's 30 days
        swept = await store.sweep(batch=2)
    texts = [item.content[0].text for item in items]  # type: ignore[union-attr]
    assert texts == [
        "turn 0", "fake answer to: turn 0", "turn 1", "fake answer to: turn 1",
        "turn 2", "fake answer to: turn 2", "turn 3",
    ]  # fmt: skip
    assert [m["content"] for m in fake_openai.received[3].body["messages"]] == texts
    assert "deleted or has expired" in broken.value.message
    assert swept == 3


async def test_an_item_kept_by_one_gateway_is_named_through_the_other_on_postgres(
    schema: str, make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    async with two_gateways(schema, make_config, fake_openai) as (podiums, sdk):
        first = await sdk[0].responses.create(model="alpha", input="the sky is green")
        reference = {"type": "item_reference", "id": first.output[0].id}
        await sdk[1].responses.create(model="alpha", input=[reference])
        await sdk[1].responses.create(model="alpha", input=[reference])  # indexed twice now
        store = podiums[0].extras["responses"]
        assert isinstance(store, ResponseStore)
        await sdk[1].responses.delete(first.id)
        store._clock = lambda: 4e9  # long past every response's 30 days
        await store.sweep()
        left = await podiums[0].store.execute("SELECT count(*) FROM response_items")
    sent = fake_openai.received[2].body["messages"]
    assert sent == [{"role": "assistant", "content": first.output_text}]
    assert left[0][0] == 0


async def test_a_conversation_object_is_shared_by_gateways_on_postgres(
    schema: str, make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    async with two_gateways(schema, make_config, fake_openai) as (_, sdk):
        conversation = await sdk[0].conversations.create(metadata={"team": "a"})
        for turn in range(3):
            await sdk[turn % 2].responses.create(
                model="alpha", input=f"turn {turn}", conversation=conversation.id
            )
        items = [
            item async for item in sdk[1].conversations.items.list(conversation.id, order="asc")
        ]
        await sdk[1].conversations.items.delete(items[0].id, conversation_id=conversation.id)
        left = [item async for item in sdk[0].conversations.items.list(conversation.id)]
        deleted = await sdk[0].conversations.delete(conversation.id)
    assert [item.content[0].text for item in items] == [  # type: ignore[union-attr]
        "turn 0", "fake answer to: turn 0", "turn 1", "fake answer to: turn 1",
        "turn 2", "fake answer to: turn 2",
    ]  # fmt: skip
    assert len(left) == 5 and deleted.deleted is True


async def test_a_background_response_is_followed_and_cancelled_from_the_other_gateway(
    schema: str, make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    gate = fake_openai.behaviour.gate = asyncio.Event()
    fake_openai.behaviour.gate_after = 3
    fake_openai.behaviour.reply = "one two three four five six"
    quick = {"background_poll_seconds": 0.01, "background_stale_seconds": 1}
    async with two_gateways(schema, make_config, fake_openai, responses=quick) as (_, sdk):
        stream = await sdk[0].responses.create(
            model="alpha", input="Count.", background=True, stream=True
        )
        seen = []
        async for event in stream:
            seen.append(event)
            if event.type == "response.in_progress":
                break
        await stream.close()  # the client leaves the first gateway ...
        response_id = seen[0].response.id
        # ... and picks its stream up on the second, which reads the events the first writes.
        follower = await sdk[1].responses.retrieve(
            response_id, stream=True, starting_after=seen[-1].sequence_number
        )
        gate.set()
        rest = [event async for event in follower]
        assert rest[0].sequence_number == seen[-1].sequence_number + 1
        assert [event.sequence_number for event in rest] == list(
            range(rest[0].sequence_number, rest[-1].sequence_number + 1)
        )
        assert rest[-1].type == "response.completed"
        assert rest[-1].response.output_text == "one two three four five six"

        fake_openai.behaviour.gate = asyncio.Event()  # the next one runs until cancelled
        running = await sdk[0].responses.create(
            model="alpha", input="Count on.", background=True, stream=True
        )
        async for event in running:
            if event.type == "response.in_progress":
                break
        await running.close()
        cancelled = await asyncio.wait_for(sdk[1].responses.cancel(event.response.id), 10)
        assert cancelled.status == "cancelled"
        assert (await sdk[0].responses.retrieve(event.response.id)).status == "cancelled"
        fake_openai.behaviour.gate.set()

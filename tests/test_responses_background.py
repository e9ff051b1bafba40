"""Background responses through the OpenAI SDK: ``background=True`` answers at once, the answer
is polled, cancelled, and a streamed one is picked up again by ``starting_after``; a refusal is
still the request's own error, and a replica that stops leaves a failed response, not a hung
one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest

from podium.responses.background import BackgroundRuns
from podium.responses.store import ResponseStore
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_gateway_images import PIXEL
from tests.test_responses_ingress import client_for
from tests.test_responses_stored import clients_of_two_owners, kept


def runs_of(served: Any) -> BackgroundRuns:
    runs = served.podium.extras["responses_runs"]
    assert isinstance(runs, BackgroundRuns)
    return runs


async def finished(client: openai.AsyncOpenAI, response_id: str) -> Any:
    """Poll as the OpenAI guide does, until the response leaves queued / in_progress."""
    for _ in range(500):
        response = await client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        await asyncio.sleep(0.01)
    raise AssertionError(f"{response_id} still running")


async def test_a_background_response_answers_at_once_and_is_polled_to_its_answer(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        started = await client.responses.create(
            model="alpha", input="Write a long story.", background=True
        )
        assert started.status == "in_progress"
        assert started.background is True and started.store is True
        assert started.output == []
        polled = await client.responses.retrieve(started.id)
        assert polled.status == "in_progress"
        hold.set()
        done = await finished(client, started.id)
        assert done.status == "completed"
        assert done.background is True
        assert done.output_text
        assert done.usage is not None and done.usage.output_tokens > 0
        assert not runs_of(served).runs


async def test_a_refused_background_request_is_its_own_error_and_nothing_is_kept(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            await client.responses.create(model="no-such-model", input="Hi", background=True)
        assert refused.value.status_code == 404
        # Found after routing, before a worker is asked: still this request's own error.
        with pytest.raises(openai.BadRequestError) as blind:
            await client.responses.create(
                model="alpha",
                input=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}"}
                        ],
                    }
                ],
                background=True,
            )
        assert blind.value.code == "unsupported_input"
        rows = await served.podium.store.execute("SELECT count(*) FROM responses")
        assert rows[0][0] == 0
        assert not runs_of(served).runs


async def test_background_needs_store(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="alpha", input="Hi", background=True, store=False)
        assert refused.value.body["param"] == "background"  # type: ignore[index]


async def test_cancel_stops_a_running_response_and_a_second_cancel_changes_nothing(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gate = fake_openai.behaviour.gate = asyncio.Event()  # opened only once it is cancelled
    fake_openai.behaviour.gate_after = 3
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        started = await client.responses.create(
            model="alpha", input="Count to a million.", background=True, stream=True
        )
        async for event in started:
            if event.type == "response.in_progress":
                break
        response_id = event.response.id
        cancelled = await client.responses.cancel(response_id)
        assert cancelled.status == "cancelled"
        assert (await client.responses.retrieve(response_id)).status == "cancelled"
        again = await client.responses.cancel(response_id)
        assert again.status == "cancelled"
        assert not runs_of(served).runs
        await served.podium.gateway.drain_background()
        await served.podium.recorder.flush()
        trace = await served.podium.store.get_trace(response_id.removeprefix("resp_"))
        assert trace is not None and trace.status == "error"  # its upstream call was closed
        gate.set()


async def test_a_response_answered_as_it_came_cannot_be_cancelled(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        answered = await client.responses.create(model="alpha", input="Hi")
        with pytest.raises(openai.BadRequestError, match="background=true"):
            await client.responses.cancel(answered.id)


async def test_a_streamed_background_response_is_picked_up_again_after_a_sequence_number(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.reply = "one two three four five six seven eight"
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        stream = await client.responses.create(
            model="alpha", input="Count.", background=True, stream=True
        )
        first = [event async for event in stream]
        assert first[-1].type == "response.completed"
        assert [event.sequence_number for event in first] == list(range(len(first)))
        response_id = first[-1].response.id
        again = await client.responses.retrieve(response_id, stream=True, starting_after=3)
        rest = [event async for event in again]
        assert [event.sequence_number for event in rest] == list(range(4, len(first)))
        assert [event.type for event in rest] == [event.type for event in first[4:]]
        whole = await client.responses.retrieve(response_id, stream=True)
        assert len([event async for event in whole]) == len(first)


async def test_a_streamed_responses_events_go_a_while_after_it_ends_and_it_stays(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            responses={"background_events_hours": 2},
        ) as served,
        client_for(served.url) as client,
    ):
        stream = await client.responses.create(
            model="alpha", input="Count.", background=True, stream=True
        )
        events = [event async for event in stream]
        response_id = events[-1].response.id
        store = served.podium.extras["responses"]
        ended = time.time()
        store._clock = lambda: ended + 1.9 * 3600  # still kept: the stream is picked up again
        again = [event async for event in await client.responses.retrieve(response_id, stream=True)]
        store._clock = lambda: ended + 2.1 * 3600
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.retrieve(response_id, stream=True)
        await store.sweep()
        left = await served.podium.store.execute("SELECT count(*) FROM response_events")
        whole = await client.responses.retrieve(response_id)
    assert len(again) == len(events)
    assert caught.value.code == "stream_expired" and "2 hours after it ends" in str(caught.value)
    assert left[0][0] == 0
    assert whole.status == "completed" and whole.output_text == events[-1].response.output_text


async def test_following_a_running_stream_gets_its_events_as_they_come(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gate = fake_openai.behaviour.gate = asyncio.Event()
    fake_openai.behaviour.gate_after = 2
    fake_openai.behaviour.reply = "alpha beta gamma delta"
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        stream = await client.responses.create(
            model="alpha", input="Go.", background=True, stream=True
        )
        seen = []
        async for event in stream:
            seen.append(event)
            if event.type == "response.output_text.delta":
                break
        await stream.close()  # the client leaves: the response runs on
        response_id = seen[0].response.id
        follower = await client.responses.retrieve(
            response_id, stream=True, starting_after=seen[-1].sequence_number
        )
        gate.set()
        rest = [event async for event in follower]
        assert rest[0].sequence_number == seen[-1].sequence_number + 1
        assert rest[-1].type == "response.completed"
        text = "".join(
            event.delta for event in [*seen, *rest] if event.type == "response.output_text.delta"
        )
        assert text == rest[-1].response.output_text


async def test_a_response_made_without_stream_cannot_be_streamed_again(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        started = await client.responses.create(model="alpha", input="Hi", background=True)
        await finished(client, started.id)
        with pytest.raises(openai.BadRequestError, match="stream=true"):
            await client.responses.retrieve(started.id, stream=True)
        with pytest.raises(openai.BadRequestError, match="starting_after"):
            await client.responses.retrieve(started.id, stream=True, starting_after=-5)


async def test_another_owner_can_neither_read_nor_cancel_it(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        mine, theirs = await clients_of_two_owners(served)
        async with mine, theirs:
            started = await mine.responses.create(model="alpha", input="Hi", background=True)
            with pytest.raises(openai.NotFoundError):
                await theirs.responses.retrieve(started.id)
            with pytest.raises(openai.NotFoundError):
                await theirs.responses.cancel(started.id)
            assert (await mine.responses.cancel(started.id)).status == "cancelled"
    hold.set()


async def test_a_running_response_cannot_be_continued_until_it_ends(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    gate = fake_openai.behaviour.hold = asyncio.Event()
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        started = await client.responses.create(model="alpha", input="Hi", background=True)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="alpha", input="And then?", previous_response_id=started.id
            )
        assert refused.value.code == "previous_response_in_progress"
        gate.set()
        await finished(client, started.id)
        fake_openai.behaviour.hold = None
        after = await client.responses.create(
            model="alpha", input="And then?", previous_response_id=started.id
        )
        assert after.status == "completed"


async def test_a_response_whose_replica_went_silent_is_settled_as_failed(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        store: ResponseStore = kept(served)
        # A row as a replica that died mid-answer leaves it: running, its last word long ago.
        answered = await client.responses.create(model="alpha", input="Hi")
        await served.podium.store.execute(
            "UPDATE responses SET heartbeat_at = ?, response = ? WHERE response_id = ?",
            (
                time.time() - 3600,
                store.sealer.seal(
                    b'{"id": "%s", "object": "response", "status": "in_progress", '
                    b'"background": true, "output": []}' % answered.id.encode(),
                    answered.id,
                ),
                answered.id,
            ),
        )
        settled = await client.responses.retrieve(answered.id)
        assert settled.status == "failed"
        assert settled.error is not None and "stopped" in settled.error.message
        assert (await client.responses.cancel(answered.id)).status == "failed"


async def test_too_many_running_is_a_429(gateway: Any, fake_openai: FakeOpenAI) -> None:
    gate = fake_openai.behaviour.hold = asyncio.Event()
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], responses={"max_background": 1}
        ) as served,
        client_for(served.url) as client,
    ):
        await client.responses.create(model="alpha", input="Hi", background=True)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(model="alpha", input="Hi", background=True)
        assert refused.value.code == "too_many_background_responses"
        gate.set()


async def test_shutdown_lets_running_responses_finish_then_stops_the_rest(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()  # opened only once it is stopped
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            responses={"background_shutdown_seconds": 0.1},
        ) as served,
        client_for(served.url) as client,
    ):
        started = await client.responses.create(model="alpha", input="Hi", background=True)
        await runs_of(served).close()
        stopped = await client.responses.retrieve(started.id)
        assert stopped.status == "failed"
        assert stopped.error is not None and stopped.error.code == "server_shutdown"
        hold.set()


async def test_deleting_a_running_response_stops_it(gateway: Any, fake_openai: FakeOpenAI) -> None:
    gate = fake_openai.behaviour.gate = asyncio.Event()
    fake_openai.behaviour.gate_after = 3
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            responses={"background_poll_seconds": 0.01, "background_stale_seconds": 1},
        ) as served,
        client_for(served.url) as client,
    ):
        stream = await client.responses.create(
            model="alpha", input="Go.", background=True, stream=True
        )
        async for event in stream:
            if event.type == "response.in_progress":
                break
        await stream.close()
        await client.responses.delete(event.response.id)
        runs = runs_of(served)
        for _ in range(200):
            if not runs.runs:
                break
            await asyncio.sleep(0.01)
        assert not runs.runs  # stopped at its next word with the store
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(event.response.id)
        gate.set()


async def test_metrics_count_background_responses(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        started = await client.responses.create(model="alpha", input="Hi", background=True)
        await finished(client, started.id)
        async with httpx.AsyncClient(base_url=served.url) as plain:
            metrics = (await plain.get("/metrics")).text
    assert "podium_responses_background_total 1\n" in metrics
    assert "podium_responses_background_running 0\n" in metrics

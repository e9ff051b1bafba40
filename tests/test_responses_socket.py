"""The Responses API over a WebSocket, driven by the OpenAI SDK's ``client.responses.connect()``
and its lane session: the same events as a streamed answer, lanes side by side, continuation,
``generate: false``, the handshake's key check, and bad messages answered, not fatal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai.lib.responses_websocket import (
    AsyncResponsesWebSocketSession,
    ResponsesWebSocketLimits,
)
from websockets.exceptions import InvalidStatus

from podium.policy.keys import KeyStore, NewKey
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_responses_ingress import client_for
from tests.test_responses_stored import sent_messages

TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}
LIMITS = ResponsesWebSocketLimits(
    max_lanes=8,
    max_events_per_lane=256,
    max_events=1024,
    max_bytes_per_lane=1 << 20,
    max_bytes=1 << 22,
)


async def until_done(connection: Any) -> list[Any]:
    events = []
    async for event in connection:
        events.append(event)
        if event.type in TERMINAL:
            return events
    raise AssertionError("the connection closed before the answer ended")


async def test_an_answer_comes_as_the_events_of_a_stream_and_continues_by_id(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        streamed = await client.responses.create(model="alpha", input="hello", stream=True)
        over_http = [event.type async for event in streamed]
        async with client.responses.connect() as connection:
            await connection.send({"type": "response.create", "model": "alpha", "input": "hello"})
            first = await until_done(connection)
            await connection.send(
                {
                    "type": "response.create",
                    "model": "alpha",
                    "input": "and again",
                    "previous_response_id": first[-1].response.id,
                }
            )
            second = await until_done(connection)
    assert [event.type for event in first] == over_http
    assert [event.sequence_number for event in first] == list(range(len(first)))
    assert first[-1].response.output_text == "fake answer to: hello"
    assert second[-1].response.previous_response_id == first[-1].response.id
    assert sent_messages(fake_openai) == [
        ("user", "hello"),
        ("assistant", "fake answer to: hello"),
        ("user", "and again"),
    ]


async def test_lanes_run_side_by_side_and_each_keeps_its_order(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.chunk_delay = 0.005
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        client.responses.connect() as connection,
        AsyncResponsesWebSocketSession(connection, limits=LIMITS) as session,
    ):
        lanes = {name: session.lane(name) for name in ("left", "right")}
        default = session.default

        async def ask(name: str) -> list[str]:
            lane = lanes[name]
            answers = []
            for turn in range(3):
                await lane.send(
                    {"type": "response.create", "model": "alpha", "input": f"{name} {turn}"}
                )
                answers.append((await lane.get_final_response()).output_text)
            return answers

        left, right = await asyncio.gather(ask("left"), ask("right"))
        assert default is not None
    assert left == [f"fake answer to: left {turn}" for turn in range(3)]
    assert right == [f"fake answer to: right {turn}" for turn in range(3)]


async def test_a_lane_answers_queued_requests_in_order(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        client.responses.connect() as connection,
    ):
        for turn in range(3):  # all sent before the first answer arrives
            await connection.send(
                {
                    "type": "response.create",
                    "model": "alpha",
                    "input": f"turn {turn}",
                    "stream_id": "only",
                }
            )
        finished = [(await until_done(connection))[-1] for _ in range(3)]
    assert [event.response.output_text for event in finished] == [
        f"fake answer to: turn {turn}" for turn in range(3)
    ]
    assert {event.to_dict()["stream_id"] for event in finished} == {"only"}


async def test_generate_false_keeps_the_input_without_asking_a_model(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        client.responses.connect() as connection,
    ):
        await connection.send(
            {
                "type": "response.create",
                "model": "alpha",
                "input": "Context: the meeting is on Tuesday.",
                "generate": False,
            }
        )
        prepared = await until_done(connection)
        await connection.send(
            {
                "type": "response.create",
                "model": "alpha",
                "input": "When is the meeting?",
                "previous_response_id": prepared[-1].response.id,
            }
        )
        answered = await until_done(connection)
        kept = await client.responses.retrieve(prepared[-1].response.id)
    assert [event.type for event in prepared] == ["response.created", "response.completed"]
    assert kept.output == [] and kept.status == "completed"
    assert answered[-1].type == "response.completed"
    assert len(fake_openai.received) == 1
    assert sent_messages(fake_openai) == [
        ("user", "Context: the meeting is on Tuesday."),
        ("user", "When is the meeting?"),
    ]


async def test_bad_messages_get_error_events_and_the_connection_goes_on(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        client.responses.connect() as connection,
    ):
        raw = connection._connection  # the SDK validates what it sends; a raw socket does not
        errors = []
        for message in (
            "{not json",
            "[1, 2]",
            json.dumps({"type": "session.update"}),
            json.dumps(
                {
                    "type": "response.create",
                    "model": "alpha",
                    "input": "x",
                    "stream_id": "no spaces",
                }
            ),
            json.dumps({"type": "response.create", "input": "no model"}),
            json.dumps({"type": "response.create", "model": "nope", "input": "x"}),
            json.dumps(
                {
                    "type": "response.create",
                    "model": "alpha",
                    "input": "x",
                    "api_base": "http://evil",
                }
            ),
            json.dumps(
                {
                    "type": "response.create",
                    "model": "alpha",
                    "input": "x",
                    "previous_response_id": "resp_gone",
                }
            ),
            json.dumps(
                {"type": "response.create", "model": "alpha", "input": "x", "background": True}
            ),
        ):
            await raw.send(message)
            errors.append(json.loads(await raw.recv()))
        await connection.send({"type": "response.create", "model": "alpha", "input": "still here"})
        after = await until_done(connection)
    assert [error["type"] for error in errors] == ["error"] * len(errors)
    assert [error["param"] for error in errors] == [
        None,
        None,
        "type",
        "stream_id",
        "model",
        "model",
        "api_base",
        "previous_response_id",
        "background",
    ]
    assert all("Traceback" not in error["message"] for error in errors)
    assert after[-1].response.output_text == "fake answer to: still here"


async def test_steering_is_refused_with_its_own_event(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        client.responses.connect() as connection,
    ):
        await connection.send(
            {
                "type": "response.steer",
                "previous_response_id": "resp_1",
                "input": "faster, please",
            }
        )
        refused = await connection.recv()
    assert refused.type == "response.steer.failed"
    assert refused.error.code == "steering_not_supported"
    assert refused.steer.input == "faster, please"


async def test_the_handshake_checks_the_key(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        _, key = await KeyStore(served.podium.store).create(NewKey(owner="team-a"))
        stranger = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="pk-nope")
        member = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=key)
        async with stranger, member:
            refused = stranger.responses.connect(max_retries=0)
            with pytest.raises(InvalidStatus, match="HTTP 403"):
                await refused.__aenter__()
            async with member.responses.connect() as connection:
                await connection.send({"type": "response.create", "model": "alpha", "input": "hi"})
                answered = await until_done(connection)
    assert answered[-1].response.output_text == "fake answer to: hi"
    assert len(fake_openai.received) == 1


async def test_a_client_that_leaves_stops_its_answer(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.reply = "word " * 400
    fake_openai.behaviour.chunk_delay = 0.02
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        async with client.responses.connect() as connection:
            await connection.send({"type": "response.create", "model": "alpha", "input": "go"})
            async for event in connection:
                if event.type == "response.output_text.delta":
                    break  # leave mid-answer
        for _ in range(500):
            if fake_openai.cancelled_streams:
                break
            await asyncio.sleep(0.01)
        alpha = served.podium.pool.get("alpha")
        assert alpha is not None and alpha.in_flight == 0
    assert fake_openai.cancelled_streams == 1 and fake_openai.completed_streams == 0


async def test_a_connection_is_bounded_in_lanes_and_message_size(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            server={"max_body_bytes": 4096},
        ) as served,
        client_for(served.url) as client,
        client.responses.connect() as connection,
    ):
        raw = connection._connection
        await raw.send(
            json.dumps({"type": "response.create", "model": "alpha", "input": "x" * 5000})
        )
        too_big = json.loads(await raw.recv())
        for lane in range(65):
            await raw.send(
                json.dumps(
                    {
                        "type": "response.create",
                        "model": "alpha",
                        "input": "note",
                        "generate": False,
                        "stream_id": f"lane-{lane}",
                    }
                )
            )
        replies = [json.loads(await raw.recv()) for _ in range(64 * 2 + 1)]
    assert too_big["type"] == "error" and too_big["code"] == "request_too_large"
    refused = [reply for reply in replies if reply["type"] == "error"]
    assert [reply["stream_id"] for reply in refused] == ["lane-64"]
    assert "at most 64 lanes" in refused[0]["message"]
    assert fake_openai.received == []

"""Anthropic's Message Batches API through the official SDK: a batch's requests are answered in
the background under the key that created it, each one's problems its own ``errored`` result;
batches are listed, cancelled, expire, belong to their owner, and are read back in order."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.shared_servers import drop_schema, needs_postgres, unique
from tests.test_responses_store_postgres import two_gateways

QUICK = {"poll_seconds": 0.02, "lease_seconds": 1}


def ask(text: str, model: str = "alpha", **params: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **params,
    }


def sdk(url: str, key: str = "unused") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0)


async def until_asked(fake: FakeOpenAI) -> None:
    """Wait until the upstream has received a request (the batch is running)."""
    for _ in range(500):
        if fake.received:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the upstream was never asked")


async def ended(client: anthropic.AsyncAnthropic, batch_id: str) -> Any:
    for _ in range(500):
        batch = await client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"{batch_id} still {batch.processing_status}")


async def results(client: anthropic.AsyncAnthropic, batch_id: str) -> dict[str, Any]:
    return {
        row.custom_id: row.result async for row in await client.messages.batches.results(batch_id)
    }


async def test_a_batch_is_answered_in_the_background_and_read_back_in_order(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], batches=QUICK) as served,
        sdk(served.url) as client,
    ):
        created = await client.messages.batches.create(
            requests=[
                {"custom_id": "greet", "params": ask("Hello")},
                {"custom_id": "unknown-model", "params": ask("Hello", model="nope")},
                {
                    "custom_id": "no-messages",
                    "params": {"model": "alpha", "max_tokens": 9, "messages": []},
                },
                {"custom_id": "streamed", "params": ask("Hi", stream=True)},
            ]
        )
        assert created.processing_status == "in_progress"
        assert created.request_counts.processing == 4 and created.results_url is None
        batch = await ended(client, created.id)
        rows = [row async for row in await client.messages.batches.results(created.id)]
        listed = await client.messages.batches.list(limit=10)
        async with httpx.AsyncClient(base_url=served.url) as http:
            metrics = (await http.get("/metrics")).text
        await served.podium.recorder.flush()
        traces = await served.podium.store.execute("SELECT ingress, status FROM traces")
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (1, 3, 0)
    assert batch.results_url.endswith(f"/v1/messages/batches/{created.id}/results")
    assert [row.custom_id for row in rows] == ["greet", "unknown-model", "no-messages", "streamed"]
    greet = rows[0].result
    assert greet.type == "succeeded" and greet.message.content[0].text == "fake answer to: Hello"
    assert rows[1].result.error.error.type == "not_found_error"
    assert rows[2].result.error.error.type == "invalid_request_error"
    assert "stream" in rows[3].result.error.error.message
    assert [item.id for item in listed.data] == [created.id]
    assert "podium_batch_requests_answered_total 4\n" in metrics
    # Each request went the way of POST /v1/messages: those that could be read left a trace.
    assert sorted(tuple(row) for row in traces) == [("anthropic", "error"), ("anthropic", "ok")]


async def test_requests_run_under_the_creating_key_and_stop_when_it_is_revoked(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)],
        access={"auth": {"required": True, "cache_ttl": 0.01}},
        batches={**QUICK, "concurrency": 1},
    ) as served:
        keys = KeyStore(served.podium.store)
        record, key = await keys.create(NewKey(owner="team-a"))
        async with sdk(served.url, key) as client:
            created = await client.messages.batches.create(
                requests=[{"custom_id": f"q{n}", "params": ask(f"question {n}")} for n in range(3)]
            )
            await until_asked(fake_openai)
            await keys.revoke(record.key_id)
            await asyncio.sleep(0.05)  # past the key cache's lifetime
            hold.set()
            with pytest.raises(anthropic.AuthenticationError):
                await client.messages.batches.retrieve(created.id)
        store = served.podium.extras["batches"]
        for _ in range(500):
            batch = await store.get("team-a", created.id)
            if batch.status == "ended":
                break
            await asyncio.sleep(0.02)
        await served.podium.recorder.flush()
        callers = await served.podium.store.execute(
            "SELECT caller, status FROM traces ORDER BY created_at"
        )
        rows = await served.podium.store.execute(
            "SELECT result_type, count(*) FROM batch_requests GROUP BY result_type"
        )
        kept = await store.results(created.id)
    # The first ran as the key; the rest were refused as a revoked key's would be.
    assert [tuple(row) for row in callers] == [
        (record.key_id, "ok"),
        ("anonymous", "error"),
        ("anonymous", "error"),
    ]
    assert dict((row[0], row[1]) for row in rows) == {"succeeded": 1, "errored": 2}
    refused = kept[-1][2]
    assert refused is not None and refused["error"]["error"]["type"] == "authentication_error"
    assert "can no longer be used (revoked key)" in refused["error"]["error"]["message"]


async def test_cancel_stops_a_batch_and_what_was_not_answered_is_canceled(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            batches={**QUICK, "concurrency": 1},
        ) as served,
        sdk(served.url) as client,
    ):
        created = await client.messages.batches.create(
            requests=[{"custom_id": f"q{n}", "params": ask(f"question {n}")} for n in range(5)]
        )
        await until_asked(fake_openai)
        canceling = await client.messages.batches.cancel(created.id)
        assert canceling.processing_status == "canceling"
        assert canceling.cancel_initiated_at is not None
        batch = await ended(client, created.id)
        got = await results(client, created.id)
        hold.set()
        await client.messages.batches.delete(created.id)
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.batches.retrieve(created.id)
    assert batch.request_counts.canceled == 5
    assert {result.type for result in got.values()} == {"canceled"}


async def test_what_is_not_answered_within_the_window_expires(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            batches={**QUICK, "window_hours": 1e-9},
        ) as served,
        sdk(served.url) as client,
    ):
        created = await client.messages.batches.create(
            requests=[{"custom_id": "late", "params": ask("Hello")}]
        )
        batch = await ended(client, created.id)
        got = await results(client, created.id)
    assert batch.request_counts.expired == 1
    assert got["late"].type == "expired"
    assert fake_openai.received == []


async def test_a_batch_is_its_owners_alone(gateway: Any, fake_openai: FakeOpenAI) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)],
        access={"auth": {"required": True}},
        batches=QUICK,
    ) as served:
        keys = KeyStore(served.podium.store)
        _, mine = await keys.create(NewKey(owner="team-a"))
        _, theirs = await keys.create(NewKey(owner="team-b"))
        async with sdk(served.url, mine) as alice, sdk(served.url, theirs) as bob:
            created = await alice.messages.batches.create(
                requests=[{"custom_id": "q", "params": ask("Hello")}]
            )
            for attempt in (
                bob.messages.batches.retrieve(created.id),
                bob.messages.batches.cancel(created.id),
                bob.messages.batches.delete(created.id),
            ):
                with pytest.raises(anthropic.NotFoundError):
                    await attempt
            assert (await bob.messages.batches.list()).data == []
            # Not ended yet: no results, and it cannot be deleted.
            async with httpx.AsyncClient(base_url=served.url) as http:
                early = await http.get(
                    f"/v1/messages/batches/{created.id}/results",
                    headers={"x-api-key": mine},
                )
            with pytest.raises(anthropic.BadRequestError, match="cancel it"):
                await alice.messages.batches.delete(created.id)
            hold.set()
            await ended(alice, created.id)
    assert early.status_code == 400
    assert early.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "requests"),
        ({"requests": []}, "at least one"),
        ({"requests": [{"custom_id": "a b", "params": {}}]}, "custom_id"),
        ({"requests": [{"custom_id": "a", "params": {}}] * 2}, "used twice"),
        ({"requests": [{"custom_id": "a"}]}, "'custom_id' and 'params'"),
        ({"requests": [{"custom_id": "a", "params": []}]}, "params"),
        ({"requests": [], "model": "x"}, "model"),
    ],
)
async def test_a_bad_batch_is_refused_whole_naming_what_is_wrong(
    gateway: Any, fake_openai: FakeOpenAI, body: dict[str, Any], needle: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], batches=QUICK) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        response = await http.post("/v1/messages/batches", json=body)
        rows = await served.podium.store.execute("SELECT count(*) FROM batches")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert needle in response.json()["error"]["message"]
    assert rows[0][0] == 0


async def test_too_many_requests_is_413(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            batches={**QUICK, "max_requests": 2},
        ) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(anthropic.APIStatusError) as refused:
            await client.messages.batches.create(
                requests=[{"custom_id": f"q{n}", "params": ask("x")} for n in range(3)]
            )
    assert refused.value.status_code == 413


@needs_postgres
async def test_a_batch_whose_replica_stopped_is_taken_over_by_another(
    make_config: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    schema = unique("batches")
    try:
        async with two_gateways(
            schema, make_config, fake_openai, batches={**QUICK, "concurrency": 1}
        ) as (podiums, _):
            first, second = (podium.extras["batch_runner"] for podium in podiums)
            await second.close()  # only the first runs batches, to begin with
            store = podiums[0].extras["batches"]
            batch = await store.create(
                "msgbatch_takeover",
                "anonymous",
                "anonymous",
                [(f"q{n}", ask(f"question {n}")) for n in range(3)],
            )
            first.wake()
            await until_asked(fake_openai)
            await first.close()  # the first replica stops mid-batch, holding it
            second.start()
            hold.set()
            for _ in range(500):
                done = await store.get("anonymous", batch.batch_id)
                if done.status == "ended":
                    break
                await asyncio.sleep(0.02)
    finally:
        await drop_schema(schema)
    assert done.counts["succeeded"] == 3
    assert second.answered == 3 and first.answered == 0


async def test_a_request_that_finds_every_worker_busy_is_asked_again_not_failed(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(503, "Engine overloaded")
    alpha = worker("alpha", "openai", fake_openai.base_url, retry={"attempts": 0})
    async with gateway([alpha], batches=QUICK) as served, sdk(served.url) as client:
        created = await client.messages.batches.create(
            requests=[{"custom_id": "patient", "params": ask("Hello")}]
        )
        batch = await ended(client, created.id)
        answered = await results(client, created.id)
    assert batch.request_counts.succeeded == 1
    assert answered["patient"].type == "succeeded"
    assert len(fake_openai.received) == 2  # busy once, then answered

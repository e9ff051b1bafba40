"""OpenAI's Batch API through the official SDK: a batch made from an uploaded file of JSON lines
is answered in the background under the key that created it, each request as its endpoint
would answer it; what succeeded is read from the output file, in order, and what did not from
the error file. Batches are listed apart from Anthropic's, cancelled, expire, belong to their
owner, and a bad file is refused naming its line."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.shared_servers import drop_schema, needs_postgres, unique
from tests.test_anthropic_batches import until_asked
from tests.test_api_embeddings import embedder
from tests.test_responses_store_postgres import two_gateways

QUICK = {"poll_seconds": 0.02, "lease_seconds": 1}
CHAT = "/v1/chat/completions"


def sdk(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def chat(text: str, model: str = "alpha", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


def jsonl(*lines: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def line(custom_id: str, body: dict[str, Any], url: str = CHAT, **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra}


async def submit(
    client: openai.AsyncOpenAI, content: bytes, endpoint: str = CHAT, **params: Any
) -> Any:
    uploaded = await client.files.create(file=("batch.jsonl", content), purpose="batch")
    return await client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **params,
    )


async def ended(client: openai.AsyncOpenAI, batch_id: str) -> Any:
    for _ in range(500):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "cancelled", "expired", "failed"):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"{batch_id} still {batch.status}")


async def read_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [orjson.loads(row) for row in content.content.splitlines()]


async def test_a_batch_is_answered_and_its_output_and_errors_read_back_in_order(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], batches=QUICK) as served,
        sdk(served.url) as client,
    ):
        created = await submit(
            client,
            jsonl(
                line("greet", chat("Hello")),
                line("unknown-model", chat("Hello", model="nope")),
                line("streamed", chat("Hi", stream=True)),
                line("again", chat("Hello again")),
            ),
            metadata={"project": "podium"},
        )
        assert created.status == "in_progress" and created.object == "batch"
        assert created.request_counts is not None and created.request_counts.total == 4
        assert created.output_file_id is None and created.metadata == {"project": "podium"}
        batch = await ended(client, created.id)
        output = await read_lines(client, batch.output_file_id)
        errors = await read_lines(client, batch.error_file_id)
        listed = [item.id async for item in client.batches.list()]
        files = {item.purpose async for item in client.files.list()}
        await served.podium.recorder.flush()
        traces = await served.podium.store.execute("SELECT ingress, status FROM traces")
        async with openai.AsyncOpenAI(base_url=served.url, api_key="unused") as raw:
            messages = await raw.get("/v1/messages/batches", cast_to=object)
    assert batch.status == "completed" and batch.completed_at is not None
    assert batch.endpoint == CHAT and batch.input_file_id == created.input_file_id
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (4, 2, 2)
    assert batch.metadata == {"project": "podium"}
    assert [row["custom_id"] for row in output] == ["greet", "again"]
    greet = output[0]
    assert greet["error"] is None and greet["response"]["status_code"] == 200
    assert greet["response"]["body"]["object"] == "chat.completion"
    assert greet["response"]["body"]["choices"][0]["message"]["content"] == (
        "fake answer to: Hello"
    )
    assert greet["response"]["request_id"] and greet["id"].startswith("batch_req_")
    assert [row["custom_id"] for row in errors] == ["unknown-model", "streamed"]
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == errors[0]["error"]["code"]
    assert errors[1]["response"]["status_code"] == 400
    assert "stream" in errors[1]["error"]["message"]
    assert listed == [created.id]
    assert files == {"batch", "batch_output"}
    # Each request went the way of POST /v1/chat/completions, and left its trace.
    assert sorted(tuple(row) for row in traces) == [
        ("openai", "error"),
        ("openai", "ok"),
        ("openai", "ok"),
    ]
    # Anthropic's batches are listed apart.
    assert messages == {"data": [], "has_more": False, "first_id": None, "last_id": None}


async def test_responses_and_embeddings_are_answered_as_their_endpoints_answer(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        embedder("small", fake_openai.base_url),
    ]
    async with gateway(workers, batches=QUICK) as served, sdk(served.url) as client:
        responses = await submit(
            client,
            jsonl(line("r", {"model": "alpha", "input": "Hello"}, url="/v1/responses")),
            endpoint="/v1/responses",
        )
        embeddings = await submit(
            client,
            jsonl(line("e", {"model": "small", "input": ["one", "two"]}, url="/v1/embeddings")),
            endpoint="/v1/embeddings",
        )
        answered = await read_lines(client, (await ended(client, responses.id)).output_file_id)
        vectors = await read_lines(client, (await ended(client, embeddings.id)).output_file_id)
    response = answered[0]["response"]["body"]
    assert response["object"] == "response" and response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == "fake answer to: Hello"
    body = vectors[0]["response"]["body"]
    assert body["object"] == "list" and [row["index"] for row in body["data"]] == [0, 1]


async def test_requests_run_under_the_creating_key(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)],
        access={"auth": {"required": True}},
        batches=QUICK,
    ) as served:
        record, key = await KeyStore(served.podium.store).create(NewKey(owner="team-a"))
        async with sdk(served.url, key) as client:
            created = await submit(client, jsonl(line("q", chat("Hello"))))
            batch = await ended(client, created.id)
        await served.podium.recorder.flush()
        callers = await served.podium.store.execute("SELECT caller, owner FROM traces")
    assert batch.request_counts is not None and batch.request_counts.completed == 1
    assert [tuple(row) for row in callers] == [(record.key_id, "team-a")]


async def test_cancel_stops_a_batch_and_what_was_not_answered_is_in_the_error_file(
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
        created = await submit(client, jsonl(*(line(f"q{n}", chat(f"q {n}")) for n in range(4))))
        await until_asked(fake_openai)
        cancelling = await client.batches.cancel(created.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        batch = await ended(client, created.id)
        hold.set()
        errors = await read_lines(client, batch.error_file_id)
        with pytest.raises(openai.ConflictError):
            await client.batches.cancel(created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.output_file_id is None
    assert [row["custom_id"] for row in errors] == ["q0", "q1", "q2", "q3"]
    assert {row["error"]["code"] for row in errors} == {"batch_cancelled"}
    assert {row["response"] is None for row in errors} == {True}


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
        created = await submit(client, jsonl(line("late", chat("Hello"))))
        batch = await ended(client, created.id)
        errors = await read_lines(client, batch.error_file_id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert errors[0]["custom_id"] == "late" and errors[0]["error"]["code"] == "batch_expired"
    assert fake_openai.received == []


async def test_a_batch_and_its_files_are_their_owners_alone(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)],
        access={"auth": {"required": True}},
        batches=QUICK,
    ) as served:
        keys = KeyStore(served.podium.store)
        _, mine = await keys.create(NewKey(owner="team-a"))
        _, theirs = await keys.create(NewKey(owner="team-b"))
        async with sdk(served.url, mine) as alice, sdk(served.url, theirs) as bob:
            created = await submit(alice, jsonl(line("q", chat("Hello"))))
            for attempt in (bob.batches.retrieve(created.id), bob.batches.cancel(created.id)):
                with pytest.raises(openai.NotFoundError):
                    await attempt
            with pytest.raises(openai.NotFoundError):
                await bob.batches.create(
                    input_file_id=created.input_file_id,
                    endpoint=CHAT,
                    completion_window="24h",
                )
            assert [item async for item in bob.batches.list()] == []
            batch = await ended(alice, created.id)
            assert batch.output_file_id is not None
            with pytest.raises(openai.NotFoundError):
                await bob.files.content(batch.output_file_id)
            assert (await alice.files.content(batch.output_file_id)).content


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not json at all\n", "line 1 of the file is not JSON"),
        (jsonl(line("a", chat("x")), line("a", chat("y"))), "line 2 of the file repeats"),
        (jsonl(line("a", chat("x")), line("b", {}, url="/v1/embeddings")), "line 2"),
        (jsonl(line("a", chat("x"), method="GET")), "method"),
        (jsonl(line("a", chat("x"), model="m")), "'model'"),
        (jsonl({"custom_id": "a", "method": "POST", "url": CHAT}), "body"),
        (b"\n\n", "no requests"),
    ],
)
async def test_a_bad_file_is_refused_naming_its_line(
    gateway: Any, fake_openai: FakeOpenAI, content: bytes, needle: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], batches=QUICK) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            await submit(client, content)
        rows = await served.podium.store.execute("SELECT count(*) FROM batches")
    assert refused.value.status_code == 400 and refused.value.param == "input_file_id"
    assert needle in refused.value.message
    assert rows[0][0] == 0


async def test_an_endpoint_podium_does_not_batch_is_refused_naming_those_it_does(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], batches=QUICK) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            await submit(client, jsonl(line("a", {}, url="/v1/moderations")), "/v1/moderations")
        with pytest.raises(openai.NotFoundError):
            await client.batches.create(
                input_file_id="file-missing", endpoint=CHAT, completion_window="24h"
            )
    assert refused.value.param == "endpoint"
    assert "/v1/chat/completions" in refused.value.message
    assert "/v1/embeddings" in refused.value.message


async def test_too_many_requests_is_413(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            batches={**QUICK, "max_requests": 2},
        ) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.APIStatusError) as refused:
            await submit(client, jsonl(*(line(f"q{n}", chat("x")) for n in range(3))))
    assert refused.value.status_code == 413


@needs_postgres
async def test_a_batch_whose_replica_stopped_is_taken_over_by_another(
    make_config: Any, fake_openai: FakeOpenAI
) -> None:
    hold = fake_openai.behaviour.hold = asyncio.Event()
    schema = unique("openai_batches")
    try:
        async with two_gateways(
            schema, make_config, fake_openai, batches={**QUICK, "concurrency": 1}
        ) as (podiums, clients):
            first, second = (podium.extras["batch_runner"] for podium in podiums)
            await second.close()  # only the first runs batches, to begin with
            created = await submit(
                clients[0], jsonl(*(line(f"q{n}", chat(f"q {n}")) for n in range(3)))
            )
            await until_asked(fake_openai)
            await first.close()  # the first replica stops mid-batch, holding it
            second.start()
            hold.set()
            batch = await ended(clients[1], created.id)
            output = await read_lines(clients[0], batch.output_file_id)
    finally:
        await drop_schema(schema)
    assert batch.status == "completed"
    assert [row["custom_id"] for row in output] == ["q0", "q1", "q2"]
    assert second.answered == 3 and first.answered == 0


async def test_output_expires_after_keeps_the_output_and_error_files_for_that_long(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(400, "a bad request")
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)], batches=QUICK) as served,
        sdk(served.url) as client,
    ):
        created = await submit(
            client,
            jsonl(line("bad", chat("one")), line("good", chat("two"))),
            output_expires_after={"anchor": "created_at", "seconds": 7200},
        )
        done = await ended(client, created.id)
        output = await client.files.retrieve(done.output_file_id)
        errors = await client.files.retrieve(done.error_file_id)
        plain = await ended(client, (await submit(client, jsonl(line("x", chat("three"))))).id)
        kept = await client.files.retrieve(plain.output_file_id)
        with pytest.raises(openai.BadRequestError) as caught:
            await submit(
                client,
                jsonl(line("y", chat("four"))),
                output_expires_after={"anchor": "created_at", "seconds": 60},
            )
    assert output.expires_at == output.created_at + 7200
    assert errors.expires_at == errors.created_at + 7200
    assert kept.expires_at is not None and kept.expires_at - kept.created_at > 28 * 86400
    assert "output_expires_after.seconds" in str(caught.value)


async def test_an_ended_batch_says_its_model_and_the_tokens_its_answers_used(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker("beta", "openai", fake_openai.base_url),
    ]
    async with gateway(workers, batches=QUICK) as served, sdk(served.url) as client:
        one_model = await submit(client, jsonl(line("a", chat("one")), line("b", chat("two"))))
        done = await ended(client, one_model.id)
        answers = await read_lines(client, done.output_file_id)
        mixed = await submit(
            client, jsonl(line("c", chat("three")), line("d", chat("four", model="beta")))
        )
        mixed_done = await ended(client, mixed.id)
    assert one_model.model == "alpha"
    usages = [answer["response"]["body"]["usage"] for answer in answers]
    assert done.usage is not None
    assert done.usage.input_tokens == sum(u["prompt_tokens"] for u in usages) > 0
    assert done.usage.output_tokens == sum(u["completion_tokens"] for u in usages) > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.usage.input_tokens_details.cached_tokens == 0
    assert mixed_done.model is None and mixed_done.usage is not None

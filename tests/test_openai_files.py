"""OpenAI's Files API through the official SDK, only what batches need: a batch's JSON lines are
uploaded, listed, read back and deleted; they belong to their owner; other purposes and files
over ``batches.max_body_bytes`` are refused."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

LINES = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'


def sdk(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def test_a_file_is_uploaded_listed_read_back_and_deleted(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        created = await client.files.create(file=("requests.jsonl", LINES), purpose="batch")
        again = await client.files.retrieve(created.id)
        content = await client.files.content(created.id)
        listed = [item.id async for item in client.files.list()]
        deleted = await client.files.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(created.id)
        rows = await served.podium.store.execute("SELECT content FROM files")
    assert created.object == "file" and created.purpose == "batch"
    assert created.filename == "requests.jsonl" and created.bytes == len(LINES)
    assert created.expires_at is not None and created.expires_at > created.created_at
    assert again.id == created.id
    assert content.content == LINES
    assert listed == [created.id]
    assert deleted.deleted is True and deleted.id == created.id
    assert rows == []


async def test_a_file_is_sealed_at_rest_with_the_master_key(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_MASTER_KEY", "a master key for the tests")
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        created = await client.files.create(file=("requests.jsonl", LINES), purpose="batch")
        content = await client.files.content(created.id)
        rows = await served.podium.store.execute("SELECT content FROM files")
    assert content.content == LINES
    assert rows[0][0].startswith("sealed1:") and b"custom_id" not in rows[0][0].encode()


async def test_a_file_is_its_owners_alone(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        keys = KeyStore(served.podium.store)
        _, mine = await keys.create(NewKey(owner="team-a"))
        _, theirs = await keys.create(NewKey(owner="team-b"))
        async with sdk(served.url, mine) as alice, sdk(served.url, theirs) as bob:
            created = await alice.files.create(file=("mine.jsonl", LINES), purpose="batch")
            for attempt in (
                bob.files.retrieve(created.id),
                bob.files.content(created.id),
                bob.files.delete(created.id),
            ):
                with pytest.raises(openai.NotFoundError):
                    await attempt
            assert [item.id async for item in bob.files.list()] == []
            assert (await alice.files.retrieve(created.id)).id == created.id
        async with sdk(served.url, "no key of ours") as stranger:
            with pytest.raises(openai.AuthenticationError):
                await stranger.files.list()


async def test_a_purpose_other_than_batch_is_refused_saying_what_is_accepted(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            await client.files.create(file=("notes.txt", b"hello"), purpose="assistants")
    assert refused.value.status_code == 400
    assert "'batch'" in refused.value.message and "assistants" in refused.value.message
    assert refused.value.param == "purpose"


async def test_a_file_over_the_limit_is_413(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            batches={"max_body_bytes": 2048},
        ) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.APIStatusError) as refused:
            await client.files.create(file=("big.jsonl", LINES * 40), purpose="batch")
        listed = [item async for item in client.files.list()]
    assert refused.value.status_code == 413
    assert listed == []


async def test_a_file_that_is_not_text_is_refused(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(openai.BadRequestError, match="UTF-8"):
            await client.files.create(file=("x.jsonl", b"\xff\xfe\x00"), purpose="batch")


async def test_expires_after_keeps_a_file_for_less_than_the_retention_and_never_more(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], batches={"retention_days": 7}
        ) as served,
        sdk(served.url) as client,
    ):
        hour = await client.files.create(
            file=("a.jsonl", LINES),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600},
        )
        month = await client.files.create(
            file=("b.jsonl", LINES),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 2_592_000},
        )
        refused = []
        for expiry in (
            {"anchor": "created_at", "seconds": 60},
            {"anchor": "last_active_at", "seconds": 3600},
        ):
            with pytest.raises(openai.BadRequestError) as caught:
                await client.files.create(
                    file=("c.jsonl", LINES),
                    purpose="batch",
                    expires_after=expiry,  # type: ignore[arg-type]
                )
            refused.append(caught.value)
    assert hour.expires_at == hour.created_at + 3600
    assert month.expires_at == month.created_at + 7 * 86400  # the deployment keeps files 7 days
    assert [error.param for error in refused] == ["expires_after.seconds", "expires_after.anchor"]
    assert "from 3600 (an hour) to 2592000 (30 days)" in refused[0].message

"""Images named by an uploaded file's id, through the official SDKs: ``client.files.create(
purpose="vision")``, then ``input_image.file_id`` in a Responses request, or Anthropic's
``client.files.upload`` and an image block's ``file`` source; the worker receives the image
inline. Files are their owner's alone, must be images, and are read again when a stored
conversation that named one is continued."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import openai
import pytest

from podium.batches.files import image_type
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_responses_ingress import client_for
from tests.test_responses_stored import clients_of_two_owners

PNG = base64.b64decode(  # a real 1x1 PNG: its header's size is read (and checked)
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def looking_at(file_id: str, text: str = "What is this?") -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": text},
                {"type": "input_image", "file_id": file_id, "detail": "low"},
            ],
        }
    ]


def eye(fake: FakeOpenAI) -> dict[str, Any]:
    return worker("eye", "openai", fake.base_url, capabilities=["vision", "streaming"])


def test_image_types_are_read_from_their_first_bytes() -> None:
    assert image_type(PNG) == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert image_type(b"GIF89a...") == "image/gif"
    assert image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_type(b"%PDF-1.7") is None and image_type(b"") is None


async def test_an_uploaded_image_reaches_the_worker_inline(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([eye(fake_openai)]) as served, client_for(served.url) as client:
        uploaded = await client.files.create(file=("cat.png", PNG), purpose="vision")
        first = await client.responses.create(model="eye", input=looking_at(uploaded.id))
        # Continued later: the stored turn keeps the file's id, and the image is read again.
        await client.responses.create(
            model="eye", input="And its colour?", previous_response_id=first.id
        )
        listed = [item async for item in client.files.list(purpose="vision")]
    expected = {
        "type": "image_url",
        "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
            "detail": "low",
        },
    }
    assert fake_openai.received[0].body["messages"][0]["content"][1] == expected
    assert fake_openai.received[1].body["messages"][0]["content"][1] == expected
    assert uploaded.purpose == "vision" and [f.id for f in listed] == [uploaded.id]


async def test_a_file_that_is_not_an_image_is_refused_on_upload_or_when_named(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([eye(fake_openai)]) as served, client_for(served.url) as client:
        with pytest.raises(openai.BadRequestError) as on_upload:
            await client.files.create(file=("notes.txt", b"just words"), purpose="vision")
        notes = await client.files.create(file=("notes.txt", b"just words"), purpose="user_data")
        with pytest.raises(openai.BadRequestError) as when_named:
            await client.responses.create(model="eye", input=looking_at(notes.id))
        with pytest.raises(openai.BadRequestError) as other_purpose:
            await client.files.create(file=("x.bin", b"x"), purpose="fine-tune")
    assert "PNG, JPEG, GIF or WebP" in on_upload.value.message
    assert when_named.value.param == "file_id" and "is not a PNG" in when_named.value.message
    assert "'vision', 'user_data'" in other_purpose.value.message
    assert fake_openai.received == []


async def test_an_unknown_or_another_owners_file_is_404(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([eye(fake_openai)]) as served:
        alice, bob = await clients_of_two_owners(served)
        async with alice, bob:
            mine = await alice.files.create(file=("cat.png", PNG), purpose="vision")
            refused = []
            for file_id in ("file-nobody-made", mine.id):
                with pytest.raises(openai.NotFoundError) as caught:
                    await bob.responses.create(model="eye", input=looking_at(file_id))
                refused.append(caught.value)
    assert [error.param for error in refused] == ["file_id", "file_id"]
    assert "No such File object" in refused[1].message
    assert fake_openai.received == []


async def test_without_files_a_file_id_is_400_saying_so(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([eye(fake_openai)], batches={"enabled": False}) as served,
        client_for(served.url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="eye", input=looking_at("file-abc"))
    assert "keeps no files" in caught.value.message and "image_url" in caught.value.message


async def test_an_image_is_sealed_at_rest_and_read_back_whole(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_MASTER_KEY", "a master key for the tests")
    async with gateway([eye(fake_openai)]) as served, client_for(served.url) as client:
        uploaded = await client.files.create(file=("cat.png", PNG), purpose="vision")
        await client.responses.create(model="eye", input=looking_at(uploaded.id))
        downloaded = await client.files.content(uploaded.id)
        rows = await served.podium.store.execute("SELECT content FROM files")
    assert rows[0][0].startswith("sealed1:")
    assert downloaded.content == PNG
    sent = fake_openai.received[0].body["messages"][0]["content"][1]["image_url"]["url"]
    assert sent == "data:image/png;base64," + base64.b64encode(PNG).decode()


async def test_an_image_uploaded_through_anthropics_files_api_is_named_by_its_id(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    seeing = worker("eye", "anthropic", fake_anthropic.base_url, capabilities=["vision"])
    async with (
        gateway([seeing]) as served,
        anthropic.AsyncAnthropic(base_url=served.url, api_key="x", max_retries=0) as client,
    ):
        uploaded = await client.files.upload(file=("cat.png", PNG, "image/png"))
        notes = await client.files.upload(file=("notes.txt", b"just words", "text/plain"))

        async def ask(file_id: str) -> Any:
            source = {"type": "file", "file_id": file_id}
            return await client.messages.create(
                model="eye",
                max_tokens=20,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": source},
                            {"type": "text", "text": "What is this?"},
                        ],
                    }
                ],
            )

        await ask(uploaded.id)
        with pytest.raises(anthropic.BadRequestError) as not_an_image:
            await ask(notes.id)
        with pytest.raises(anthropic.NotFoundError):
            await ask("file_nobody_made")
    sent = fake_anthropic.received[-1].body["messages"][0]["content"][0]
    assert sent == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
    }
    assert "is not a PNG, JPEG, GIF or WebP image" in not_an_image.value.message
    assert len(fake_anthropic.received) == 1

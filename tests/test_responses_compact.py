"""``client.responses.compact``: a conversation made short by a worker's summary, returned as
its user messages and a compaction item that stands for the rest in later requests, sealed and
bound to its owner."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_responses_ingress import client_for
from tests.test_responses_stored import clients_of_two_owners, sent_messages


def as_input(output: list[Any]) -> list[dict[str, Any]]:
    """A compacted conversation's items, sent back as they came (as a client keeps JSON)."""
    return [json.loads(item.model_dump_json(exclude_none=True, warnings=False)) for item in output]


async def test_a_conversation_is_compacted_and_goes_on_from_its_summary(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(model="alpha", input="I like green tea.")
        raw = await client.responses.with_raw_response.compact(
            model="alpha", previous_response_id=first.id, input="And coffee."
        )
        compacted = raw.parse()
        asked = sent_messages(fake_openai)
        later = await client.responses.create(
            model="alpha",
            input=[*as_input(compacted.output), {"role": "user", "content": "What do I like?"}],
        )
        sent = sent_messages(fake_openai)
    assert compacted.object == "response.compaction"
    assert [item.type for item in compacted.output] == ["message", "message", "compaction"]
    assert [item.role for item in compacted.output[:2]] == ["user", "user"]
    assert compacted.usage.total_tokens > 0
    assert raw.headers["x-podium-worker"] == "alpha"
    # The worker saw the whole conversation, its answer included, then the request to summarise.
    assert [role for role, _ in asked] == ["user", "assistant", "user", "user"]
    assert asked[-1][1].startswith("Write a summary of the conversation so far")
    # Later, the summary stands in for everything but the user messages.
    assert [role for role, _ in sent] == ["user", "user", "assistant", "user"]
    assert sent[2][1].startswith("Summary of the conversation so far:\nfake answer to: Write")
    assert later.status == "completed"


async def test_with_a_master_key_the_summary_is_sealed_and_a_changed_one_is_refused(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_MASTER_KEY", "m" * 43)
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        compacted = await client.responses.compact(model="alpha", input="I like green tea.")
        sealed = compacted.output[-1].encrypted_content
        changed = sealed[:-6] + ("AAAA==" if not sealed.endswith("AAAA==") else "BBBB==")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="alpha",
                input=[
                    {"type": "compaction", "encrypted_content": changed},
                    {"role": "user", "content": "?"},
                ],
            )
    assert "green tea" not in sealed and sealed.startswith("sealed1:")
    assert refused.value.code == "invalid_compaction"
    assert refused.value.body["param"] == "input[0].encrypted_content"  # type: ignore[index]


async def test_a_compaction_item_is_refused_from_another_owner(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        mine, theirs = await clients_of_two_owners(served)
        async with mine, theirs:
            compacted = await mine.responses.compact(model="alpha", input="I like green tea.")
            items = [*as_input(compacted.output), {"role": "user", "content": "What do I like?"}]
            assert (await mine.responses.create(model="alpha", input=items)).status == "completed"
            with pytest.raises(openai.BadRequestError) as refused:
                await theirs.responses.create(model="alpha", input=items)
    assert refused.value.code == "invalid_compaction"


async def test_bad_compaction_requests_say_what_is_wrong(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        httpx.AsyncClient(base_url=served.url) as client,
    ):
        tools = await client.post(
            "/v1/responses/compact",
            json={"model": "alpha", "input": "x", "tools": []},
        )
        forged = await client.post(
            "/v1/responses",
            json={
                "model": "alpha",
                "input": [
                    {"type": "compaction", "encrypted_content": "not json"},
                    {"role": "user", "content": "?"},
                ],
            },
        )
        unknown = await client.post(
            "/v1/responses/compact",
            json={"model": "alpha", "input": "x", "previous_response_id": "resp_gone"},
        )
        empty = await client.post("/v1/responses/compact", content=b"[]")
    assert tools.status_code == 400 and tools.json()["error"]["param"] == "tools"
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == "invalid_compaction"
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "previous_response_not_found"
    assert empty.status_code == 400
    assert fake_openai.received == []


async def test_with_storing_off_a_conversation_sent_whole_is_compacted(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], responses={"store": False}
        ) as served,
        client_for(served.url) as client,
    ):
        compacted = await client.responses.compact(
            model="alpha",
            input=[
                {"role": "user", "content": "I like green tea."},
                {"role": "assistant", "content": "Noted."},
            ],
        )
        later = await client.responses.create(
            model="alpha", input=[*as_input(compacted.output), {"role": "user", "content": "?"}]
        )
    assert [item.type for item in compacted.output] == ["message", "compaction"]
    assert later.status == "completed"


def test_documents_are_kept_as_input_items_a_compacted_conversation_can_send_again() -> None:
    from podium.api.responses_compact import user_items
    from podium.types import DocumentPart, Message, TextPart

    pdf = DocumentPart(data="JVBERi0=", filename="q3.pdf", text="read text")
    by_url = DocumentPart(url="https://docs.test/a.pdf")
    notes = DocumentPart(text="notes", media_type="text/plain", filename="n.txt")
    (item,) = user_items([Message("user", [TextPart("compare"), pdf, by_url, notes])])
    assert item["content"] == [
        {"type": "input_text", "text": "compare"},
        {
            "type": "input_file",
            "filename": "q3.pdf",
            "file_data": "data:application/pdf;base64,JVBERi0=",
        },
        {"type": "input_file", "filename": "document.pdf", "file_url": "https://docs.test/a.pdf"},
        {"type": "input_text", "text": "Document: n.txt\n\nnotes\n\n"},
    ]

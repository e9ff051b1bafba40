"""Citations of the caller's documents, through Anthropic's SDK: a worker that cites is asked
to when the caller asks, and its citations come back on the passages they support, streamed
or not, numbered as the caller numbered its documents and naming the upload a document was
read from; a worker that does not cite is sent the text and answers without them."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.pdf import make_pdf, pdf_base64
from tests.conftest import Running, worker

CITING = {"capabilities": ["streaming", "documents", "citations"]}
REPORT = pdf_base64(["Revenue grew 12 percent.", "Costs fell."])
QUOTE = " It reads: Revenue grew 12 percent."


def pdf_document(data: str = REPORT, **extra: Any) -> dict[str, Any]:
    return {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": data},
        "title": "Q3 report",
        "citations": {"enabled": True},
        **extra,
    }


def text_document(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
        "title": "Launch notes",
        "citations": {"enabled": True},
        **extra,
    }


def asking(*documents: dict[str, Any]) -> list[dict[str, Any]]:
    content = [*documents, {"type": "text", "text": "What happened?"}]
    return [{"role": "user", "content": content}]


def client_for(running: Running) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=running.url, api_key="x", max_retries=0)


def documents_sent(fake: FakeAnthropic) -> list[dict[str, Any]]:
    content = fake.received[-1].body["messages"][-1]["content"]
    return [block for block in content if block["type"] == "document"]


async def test_a_pdfs_citations_come_back_on_the_passage_they_support(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url, **CITING)]) as running,
        client_for(running) as client,
    ):
        message = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(pdf_document())
        )
    (sent,) = documents_sent(fake_anthropic)
    assert sent["citations"] == {"enabled": True}
    answer, cited = message.content
    assert answer.type == "text" and answer.text.startswith("fake answer to:")
    assert answer.citations is None
    assert cited.type == "text" and cited.text == QUOTE
    (citation,) = cited.citations or []
    assert citation.type == "page_location"
    assert citation.cited_text == "Revenue grew 12 percent."
    assert (citation.start_page_number, citation.end_page_number) == (1, 2)
    assert citation.document_index == 0
    assert citation.document_title == "Q3 report"
    assert citation.file_id is None


async def test_a_streamed_answer_carries_its_citations(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url, **CITING)]) as running,
        client_for(running) as client,
        client.messages.stream(
            model="claude", max_tokens=100, messages=asking(pdf_document())
        ) as stream,
    ):
        events = [event async for event in stream]
        message = await stream.get_final_message()
    cited_events = [event for event in events if event.type == "citation"]
    assert [event.citation.cited_text for event in cited_events] == ["Revenue grew 12 percent."]
    answer, cited = message.content
    assert answer.type == "text" and not answer.citations
    assert cited.type == "text" and cited.text == QUOTE
    (citation,) = cited.citations or []
    assert citation.type == "page_location" and citation.document_title == "Q3 report"


async def test_a_plain_text_document_is_cited_by_character(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    memo = "The launch moved to spring.\nEveryone agreed."
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url, **CITING)]) as running,
        client_for(running) as client,
    ):
        message = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(text_document(memo))
        )
    (sent,) = documents_sent(fake_anthropic)
    assert sent["source"] == {"type": "text", "media_type": "text/plain", "data": memo}
    assert sent["title"] == "Launch notes"
    (citation,) = message.content[-1].citations or []  # type: ignore[union-attr]
    assert citation.type == "char_location"
    assert citation.cited_text == "The launch moved to spring."
    assert (citation.start_char_index, citation.end_char_index) == (0, 27)


async def test_citations_number_the_documents_as_the_caller_did(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    # The first document is not to be cited, so the worker is sent it as text and counts the
    # PDF as its first document; the caller counts it as its second.
    glossary = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": "Q3: July-Sept."}]},
        "title": "Glossary",
    }
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url, **CITING)]) as running,
        client_for(running) as client,
    ):
        message = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(glossary, pdf_document())
        )
    assert len(documents_sent(fake_anthropic)) == 1
    (citation,) = message.content[-1].citations or []  # type: ignore[union-attr]
    assert citation.document_index == 1


async def test_a_citation_names_the_upload_the_document_was_read_from(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    pdf = make_pdf(["Minutes of the board."])
    async with (
        gateway([worker("claude", "anthropic", fake_anthropic.base_url, **CITING)]) as running,
        client_for(running) as client,
    ):
        uploaded = await client.files.upload(file=("minutes.pdf", pdf, "application/pdf"))
        by_id = {
            "type": "document",
            "source": {"type": "file", "file_id": uploaded.id},
            "citations": {"enabled": True},
        }
        message = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(by_id)
        )
    (sent,) = documents_sent(fake_anthropic)
    assert sent["source"]["type"] == "base64"  # the upstream never sees Podium's file ids
    (citation,) = message.content[-1].citations or []  # type: ignore[union-attr]
    assert citation.file_id == uploaded.id
    assert citation.cited_text == "Minutes of the board."


@pytest.mark.parametrize("capabilities", [["streaming"], ["streaming", "documents"]])
async def test_a_worker_that_does_not_cite_is_sent_the_text_and_answers_without(
    gateway: Any, fake_anthropic: FakeAnthropic, capabilities: list[str]
) -> None:
    memo = "The launch moved to spring."
    plain = worker("claude", "anthropic", fake_anthropic.base_url, capabilities=capabilities)
    async with gateway([plain]) as running, client_for(running) as client:
        message = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(text_document(memo))
        )
    assert documents_sent(fake_anthropic) == []
    content = fake_anthropic.received[-1].body["messages"][-1]["content"]
    assert any(memo in block.get("text", "") for block in content)
    assert [block.type for block in message.content] == ["text"]
    assert not message.content[0].citations  # type: ignore[union-attr]


async def test_a_cached_answer_keeps_its_citations(
    gateway: Any, fake_anthropic: FakeAnthropic
) -> None:
    cited = worker("claude", "anthropic", fake_anthropic.base_url, **CITING)
    async with (
        gateway([cited], cache={"enabled": True}) as running,
        client_for(running) as client,
    ):
        first = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(pdf_document())
        )
        again = await client.messages.create(
            model="claude", max_tokens=100, messages=asking(pdf_document())
        )
        async with client.messages.stream(
            model="claude", max_tokens=100, messages=asking(pdf_document())
        ) as stream:
            streamed = await stream.get_final_message()
    assert len(fake_anthropic.received) == 1

    def blocks(message: Any) -> list[dict[str, Any]]:
        return [
            block.model_dump(include={"type", "text", "citations"}) for block in message.content
        ]

    assert blocks(first)[-1]["citations"]
    assert blocks(again) == blocks(first)
    assert blocks(streamed) == blocks(first)

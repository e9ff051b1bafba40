"""Reading attached documents: the fields each API gives a file, a PDF's text layer and its
limits, and the form each worker is sent."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pytest

from podium.config import DocumentSettings, WorkerConfig
from podium.documents import (
    PDF,
    TEXT,
    PdfRead,
    PdfReaders,
    as_pages,
    as_text,
    as_utf8_text,
    attached,
    for_worker,
    is_pdf,
)
from podium.errors import PodiumError
from podium.pdf_text import UnreadableDocument, read_pdf
from podium.testing.pdf import make_pdf, pdf_base64
from podium.types import ChatRequest, DocumentPart, ImagePart, Message, TextPart


def test_a_pdfs_text_is_read_page_by_page() -> None:
    text, pages = read_pdf(make_pdf(["Invoice 42 (paid)", "Second page"]), max_pages=10)
    assert text == "Invoice 42 (paid)\n\nSecond page"
    assert pages == 2


def test_a_scan_has_no_text() -> None:
    assert read_pdf(make_pdf([None, None]), max_pages=10) == (None, 2)


def test_too_many_pages_and_broken_files_are_unreadable() -> None:
    with pytest.raises(UnreadableDocument, match="3 pages; at most 2"):
        read_pdf(make_pdf(["a", "b", "c"]), max_pages=2)
    with pytest.raises(UnreadableDocument, match="not a readable PDF"):
        read_pdf(b"%PDF-1.4\nnothing else", max_pages=10)
    with pytest.raises(UnreadableDocument, match="not a readable PDF"):
        read_pdf(make_pdf(["cut short"])[:150], max_pages=10)


def test_pdfs_are_known_by_their_header() -> None:
    assert is_pdf(make_pdf(["x"]))
    assert is_pdf(b"\xef\xbb\xbfjunk%PDF-1.7")  # after a few stray bytes, as readers allow
    assert not is_pdf(b"just text")


def test_text_files_must_be_utf8_without_control_characters() -> None:
    assert as_utf8_text("Grüße\n\tok".encode()) == "Grüße\n\tok"
    assert as_utf8_text(b"\xff\xfe") is None
    assert as_utf8_text(b"binary\x00data") is None


def test_a_data_url_pdf_bare_base64_an_id_and_a_url_each_become_a_document() -> None:
    data = pdf_base64(["x"])
    assert attached(f"data:application/pdf;base64,{data}", where="f") == DocumentPart(data=data)
    named = attached(f"data:application/pdf;name=a.pdf;base64,{data}", where="f")
    assert named == DocumentPart(data=data)
    assert attached(data, filename="a.pdf", where="f") == DocumentPart(data=data, filename="a.pdf")
    assert attached(None, file_id="file-1", where="f") == DocumentPart(file_id="file-1")
    assert attached(None, url="https://x.test/a.pdf", where="f").url == "https://x.test/a.pdf"


def test_a_text_file_is_read_at_once_and_other_kinds_are_refused() -> None:
    notes = base64.b64encode(b"meeting notes").decode()
    part = attached(f"data:text/markdown;base64,{notes}", filename="n.md", where="f")
    assert (part.text, part.media_type, part.data) == ("meeting notes", TEXT, None)
    with pytest.raises(PodiumError) as refused:
        attached("data:image/tiff;base64,AAAA", where="messages.content.file")
    assert refused.value.code == "unsupported_input"
    assert "'image/tiff'" in refused.value.message
    assert refused.value.param == "messages.content.file"
    with pytest.raises(PodiumError, match="must be UTF-8"):
        attached("data:text/plain;base64,//79", where="f")
    with pytest.raises(PodiumError, match="must be base64"):
        attached("data:application/pdf,%PDF-1.4", where="f")
    with pytest.raises(PodiumError, match="file_data or file_id"):
        attached(None, where="f")


def test_as_text_names_the_document_and_keeps_its_breakpoint() -> None:
    part = DocumentPart(data="x", filename="q3.pdf", text="Revenue grew.", cache="5m")
    assert as_text(part) == [
        TextPart("Document: q3.pdf\n\n"),
        TextPart("Revenue grew."),
        TextPart("\n\n", "5m"),
    ]
    titled = DocumentPart(text="t", title="Q3", context="from finance", filename="q3.pdf")
    assert as_text(titled)[0] == TextPart("Document: Q3\nfrom finance\n\n")


def _request(*parts: DocumentPart | TextPart) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message("user", list(parts))], attachments=True)


def _worker(*capabilities: str) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {"name": "w", "provider": "openai", "model": "m", "capabilities": list(capabilities)}
    )


def test_a_worker_that_reads_pdfs_gets_the_file_and_others_its_text() -> None:
    pdf = DocumentPart(data="AAAA", filename="a.pdf", text="the text")
    request = _request(TextPart("summarise"), pdf)
    assert for_worker(request, _worker("documents")) is request
    sent = for_worker(request, _worker("streaming"))
    assert sent.messages[0].content == [
        TextPart("summarise"),
        TextPart("Document: a.pdf\n\n"),
        TextPart("the text"),
        TextPart("\n\n"),
    ]
    assert request.messages[0].content[1] is pdf  # the caller's request is left as it was


def test_a_text_file_goes_as_text_even_to_a_worker_that_reads_pdfs() -> None:
    notes = DocumentPart(text="notes", media_type=TEXT, filename="n.txt")
    sent = for_worker(_request(notes), _worker("documents"))
    assert [part.text for part in sent.messages[0].content if isinstance(part, TextPart)] == [
        "Document: n.txt\n\n",
        "notes",
        "\n\n",
    ]


def test_a_scan_cannot_be_sent_to_a_worker_that_reads_no_pdfs() -> None:
    scan = DocumentPart(data="AAAA", filename="scan.pdf", media_type=PDF)
    with pytest.raises(PodiumError) as refused:
        for_worker(_request(scan), _worker("streaming"))
    assert refused.value.code == "unsupported_input"
    assert "'scan.pdf' has no text" in refused.value.message


async def test_each_pdf_is_read_by_a_process_of_its_own_started_ahead() -> None:
    readers = PdfReaders(DocumentSettings())
    first = await readers.read(make_pdf(["one"]))
    spare = readers._spare
    assert spare is not None  # the next PDF's reader is already starting
    second = await readers.read(make_pdf(["two", None]))
    assert (first, second) == (PdfRead("one", 1), PdfRead("two", 2))
    assert readers._spare is not spare
    with pytest.raises(UnreadableDocument, match="not a readable PDF"):
        await readers.read(b"%PDF-1.4\nnothing else")
    await readers.aclose()
    assert readers._spare is None


def counting(readers: PdfReaders) -> list[Any]:
    """The reader processes ``readers`` starts from now on."""
    started: list[Any] = []
    original = readers._start

    async def noted() -> Any:
        process = await original()
        started.append(process)
        return process

    readers._start = noted  # type: ignore[method-assign]
    return started


async def test_a_reader_past_its_time_is_killed_and_the_pdf_refused_again_at_once() -> None:
    readers = PdfReaders(DocumentSettings(read_timeout_seconds=0.001))
    started = counting(readers)
    slow = make_pdf(["slow enough"])
    with pytest.raises(UnreadableDocument, match=r"took longer than 0\.001 s"):
        await readers.read(slow)
    assert started[0].returncode is not None  # killed, and reaped
    reads = len(started)  # the one killed, and the one started ahead
    with pytest.raises(UnreadableDocument, match="took longer"):
        await readers.read(slow)  # remembered: no process this time
    await readers.aclose()
    assert len(started) == reads == 2


async def test_a_pdf_sent_again_or_at_once_by_many_is_read_once() -> None:
    readers = PdfReaders(DocumentSettings())
    started = counting(readers)
    pdf = make_pdf(["the same report"])
    together = await asyncio.gather(*(readers.read(pdf) for _ in range(5)))
    again = await readers.read(pdf)
    await readers.aclose()
    assert together == [PdfRead("the same report", 1)] * 5
    assert again == PdfRead("the same report", 1)
    assert len(started) == 2  # the one that read it, and the one started ahead


async def test_what_is_remembered_is_bounded() -> None:
    readers = PdfReaders(DocumentSettings(cache_mb=0))
    started = counting(readers)
    pdf = make_pdf(["not kept"])
    assert await readers.read(pdf) == await readers.read(pdf)
    await readers.aclose()
    assert len(started) == 3 and not readers._known  # read twice (and one started ahead)


async def test_the_reader_gets_none_of_the_gateways_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PODIUM_MASTER_KEY", "secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    seen: list[dict[str, str]] = []
    original = asyncio.create_subprocess_exec

    async def noted(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["env"])
        return await original(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", noted)
    readers = PdfReaders(DocumentSettings())
    assert await readers.read(make_pdf(["fine"])) == PdfRead("fine", 1)
    await readers.aclose()
    assert seen and all(set(env) <= {"PYTHONPATH"} for env in seen)


def _proc(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/{name}") as file:  # a tiny kernel file: no wait to speak of
        return file.read()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
async def test_the_reader_is_bounded_and_confined_before_the_pdf_arrives() -> None:
    from podium.confinement import seccomp_offered

    readers = PdfReaders(DocumentSettings(reader_memory_mb=512))
    process = await readers._start()
    try:
        for _ in range(100):  # until it has imported pypdf and bounded itself
            limits = _proc(process.pid, "limits")
            if "536870912" in limits:
                break
            await asyncio.sleep(0.05)
        status = _proc(process.pid, "status")
    finally:
        process.kill()
        await process.wait()
    address = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert address.split()[3:5] == ["536870912", "536870912"]
    if seccomp_offered():
        assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status


async def test_what_a_pdf_gave_is_remembered_per_owner() -> None:
    readers = PdfReaders(DocumentSettings())
    started = counting(readers)
    pdf = make_pdf(["shared by two callers"])
    await readers.read(pdf, "alice")
    await readers.read(pdf, "alice")
    await readers.read(pdf, "bob")  # read for bob too: no timing tells him alice sent it
    await readers.aclose()
    assert len(started) == 3  # alice's, bob's, and the one started ahead


async def test_a_scans_first_pages_are_drawn_and_a_text_pdfs_are_not() -> None:
    readers = PdfReaders(DocumentSettings(scan_pages=2, scan_dpi=50))
    scan = await readers.read(make_pdf([None, None, None]))
    typed = await readers.read(make_pdf(["typed"]))
    await readers.aclose()
    assert scan.text is None and scan.pages == 3 and len(scan.page_images) == 2
    from PIL import Image  # matplotlib's dependency: an independent PNG reader

    with Image.open(io.BytesIO(base64.b64decode(scan.page_images[0]))) as first:
        first.load()  # every row decoded, every checksum checked
        assert (first.format, first.mode, first.size) == ("PNG", "L", (425, 550))  # 50 dpi
    assert typed == PdfRead("typed", 1)


def test_as_pages_says_how_many_pages_were_drawn() -> None:
    scan = DocumentPart(data="x", filename="s.pdf", pages=3, page_images=["AAAA", "BBBB"])
    parts = as_pages(scan)
    assert parts[0] == TextPart("Document: s.pdf\n(Scanned: the first 2 of its 3 pages.)\n\n")
    assert [part.data for part in parts if isinstance(part, ImagePart)] == ["AAAA", "BBBB"]


def test_a_page_of_poster_size_is_drawn_no_larger_than_a_letter_page_at_300_dpi() -> None:
    from PIL import Image

    from podium.pdf_text import MAX_PIXELS, page_images

    poster = make_pdf([None]).replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 14400 14400]")
    (drawn,) = page_images(poster, pages=1, dpi=100)
    with Image.open(io.BytesIO(base64.b64decode(drawn))) as image:
        width, height = image.size
    assert width * height <= MAX_PIXELS * 1.01  # at 100 dpi it would be 20,000 pixels a side

"""Documents callers attach (PDFs, and text files): read once the caller is known, so the
detectors, the injection screen and the token estimates see their text; sent to each worker
in the form it reads. Images named by an upload's id are read here too.

- The ingresses parse each API's document part into a :class:`DocumentPart` (Chat Completions'
  ``file``, the Responses API's ``input_file``, Anthropic's ``document``).
- :class:`AttachmentsHook` acts right after the caller's key is checked, before any screen:
  a ``file_id`` becomes the file's content (the caller's own uploads only: an image's is sent
  inline, as a data: URL would be), a text file becomes its text, and a PDF's text layer is
  extracted by a bounded process of its own (:class:`PdfReaders`, podium/pdf_text.py). Nothing
  is read for a caller who is not allowed in.
- :func:`for_worker` is applied per attempt: a worker that declares ``documents`` is sent the
  PDF itself; any other worker is sent the PDF's text, after a heading naming it. A PDF with no
  text (a scan) or known only by URL (Podium fetches nothing) can go only to the first kind:
  the router's fit check (podium/routing/fit.py) sees to that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import os
import sys
from asyncio.subprocess import Process
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from podium.batches.files import image_type
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.hooks import Hook
from podium.pdf_text import UnreadableDocument
from podium.single_flight import SingleFlight
from podium.types import (
    CacheTTL,
    ChatRequest,
    ContentPart,
    DocumentPart,
    ImagePart,
    Message,
    TextPart,
)

if TYPE_CHECKING:
    from podium.app import Podium
    from podium.batches.files import FileStore
    from podium.config import DocumentSettings, WorkerConfig

PDF = "application/pdf"
TEXT = "text/plain"


@dataclass(frozen=True, slots=True)
class PdfRead:
    """What a PDF gave: its text (None: it has none), its pages, and for one without text its
    first pages drawn as PNG (base64)."""

    text: str | None
    pages: int
    page_images: tuple[str, ...] = ()


# What reading a PDF gave, or why it cannot be read.
Reading = PdfRead | str


def is_pdf(content: bytes) -> bool:
    # The header may follow up to 1 KB of other bytes (ISO 32000-1, 7.5.2, as readers allow).
    return b"%PDF-" in content[:1024]


def as_utf8_text(content: bytes) -> str | None:
    """The file as text when it is UTF-8 with no control characters but whitespace; else None."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text[:65536]):
        return None
    return text


def attached(
    file_data: str | None,
    *,
    file_id: str | None = None,
    url: str | None = None,
    filename: str | None = None,
    cache: CacheTTL | None = None,
    where: str,
) -> DocumentPart:
    """A document part from the fields the OpenAI APIs give a file: a data: URL (or bare
    base64, taken for a PDF), an uploaded file's id, or (Responses only) a URL. A text file
    is decoded here; any other kind than PDF or text is refused, naming ``where``."""
    if file_id is not None:
        return DocumentPart(file_id=file_id, filename=filename, cache=cache)
    if url is not None:
        return DocumentPart(url=url, filename=filename, cache=cache)
    if file_data is None:
        raise PodiumError(
            "invalid_request",
            f"Missing required parameter: '{where}': one of file_data or file_id.",
            param=where,
        )
    media_type, data = PDF, file_data
    if file_data.startswith("data:"):
        head, comma, data = file_data[5:].partition(",")
        if not comma or not head.endswith(";base64"):
            raise PodiumError(
                "invalid_request",
                f"Invalid value for '{where}': a data URL must be base64 "
                "(data:<media type>;base64,<data>).",
                param=where,
            )
        # Parameters (``;name=a.pdf``, ``;charset=utf-8``) say nothing of the kind of file.
        media_type = head.partition(";")[0].strip().lower() or PDF
    if media_type == PDF:
        return DocumentPart(data=data, filename=filename, cache=cache)
    if media_type.startswith("text/") or media_type in _TEXT_TYPES:
        try:
            text = as_utf8_text(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            text = None
        if text is None:
            raise PodiumError(
                "invalid_request",
                f"Invalid value for '{where}': a {media_type} file must be UTF-8 text, "
                "base64-encoded.",
                param=where,
            )
        return DocumentPart(text=text, media_type=TEXT, filename=filename, cache=cache)
    raise PodiumError(
        "invalid_request",
        f"Invalid value for '{where}': files of type {media_type[:64]!r} are not read; "
        "send a PDF or a text file.",
        param=where,
        code="unsupported_input",
    )


# Text files that do not say so in their media type.
_TEXT_TYPES = frozenset(
    ("application/json", "application/xml", "application/x-yaml", "application/yaml")
)


def heading(part: DocumentPart) -> str:
    """What a document says of itself beside its text: its title (or file name) and
    Anthropic's ``context``. Every worker is sent it, a PDF's reader as the vendor's fields."""
    name = part.title or part.filename
    return "\n".join(line for line in (name and f"Document: {name}", part.context) if line)


def readable(part: DocumentPart) -> str:
    """All of a document the detectors and the screen can read: its heading and its text."""
    said = heading(part)
    if part.text is None:
        return said
    return f"{said}\n\n{part.text}" if said else part.text


def as_text(part: DocumentPart) -> list[TextPart]:
    """The document as text parts: its heading, its text, and a blank line keeping it apart
    from the parts around it. The part's breakpoint goes on the last."""
    said = heading(part)
    before = [TextPart(f"{said}\n\n")] if said else []
    return [*before, TextPart(part.text or ""), TextPart("\n\n", part.cache)]


def as_pages(part: DocumentPart) -> list[ContentPart]:
    """A scanned document as what a worker that reads images sees: its heading, then its first
    pages as images."""
    said = heading(part)
    pages: list[ContentPart] = [
        ImagePart(data=image, media_type="image/png") for image in part.page_images
    ]
    shown = f"the first {len(pages)} of its {part.pages} pages" if len(pages) < part.pages else ""
    note = "\n".join(line for line in (said, shown and f"(Scanned: {shown}.)") if line)
    before: list[ContentPart] = [TextPart(f"{note}\n\n")] if note else []
    return [*before, *pages, TextPart("\n\n", part.cache)]


def sent_as_is(part: DocumentPart, worker: WorkerConfig) -> bool:
    """Whether ``worker`` is sent the document itself: a PDF if it reads PDFs (one known only
    by URL if its upstream fetches URLs), a text file only to be cited, by a worker that
    cites."""
    if part.media_type == PDF:
        return "documents" in worker.capabilities and (
            part.data is not None or part.url is None or worker.upstream.document_urls
        )
    return part.citations and "citations" in worker.capabilities


def for_worker(request: ChatRequest, worker: WorkerConfig) -> ChatRequest:
    """The request as ``worker`` is sent it: documents as text unless it reads them itself
    (:func:`sent_as_is`). Unchanged when there is nothing to change."""
    messages: list[Message] = []
    changed = False
    for message in request.messages:
        if not message.has_documents():
            messages.append(message)
            continue
        parts: list[ContentPart] = []
        for part in message.content:
            if type(part) is DocumentPart and not sent_as_is(part, worker):
                if part.text is not None:
                    parts.extend(as_text(part))
                elif part.page_images and "vision" in worker.capabilities:
                    parts.extend(as_pages(part))
                elif "documents" in worker.capabilities:  # a URL its upstream cannot fetch
                    raise PodiumError(
                        "invalid_request",
                        f"worker {worker.name!r} takes PDFs inline only, and document "
                        f"{_name(part)} is known only by its URL; send the document's bytes",
                        param="messages",
                        code="unsupported_input",
                    )
                else:
                    raise PodiumError(
                        "invalid_request",
                        f"worker {worker.name!r} reads no PDFs, and document "
                        f"{_name(part)} has no text to send it instead (a scan, or known "
                        "only by URL); send it to a worker with 'documents'",
                        param="messages",
                        code="unsupported_input",
                    )
                changed = True
            else:
                parts.append(part)
        messages.append(replace(message, content=parts))
    return replace(request, messages=messages) if changed else request


def _size(outcome: Reading) -> int:
    """About what remembering an outcome costs, in characters."""
    if isinstance(outcome, str):
        return len(outcome) + 100
    return len(outcome.text or "") + sum(map(len, outcome.page_images)) + 100


def _name(part: DocumentPart) -> str:
    name = part.title or part.filename or part.file_id or part.url
    return repr(name[:128]) if name else "(unnamed)"


@dataclass(slots=True)
class ReaderCounts:
    """What :class:`PdfReaders` did, for ``/metrics``."""

    read: int = 0  # PDFs a reader process was given
    remembered: int = 0  # PDFs answered from what was read before
    unreadable: int = 0  # PDFs refused (read or remembered), timeouts included
    killed: int = 0  # readers past their time
    pages: int = 0  # pages read


class PdfReaders:
    """Processes that read one PDF each (podium/pdf_text.py: bounded in memory and CPU time,
    no sockets, no programs), one kept started ahead once PDFs arrive, so a PDF does not wait
    for an interpreter and pypdf to start. One whose time is up is killed."""

    def __init__(self, settings: DocumentSettings) -> None:
        self.settings = settings
        self._spare: asyncio.Task[Process] | None = None
        self._closed = False
        self._known: OrderedDict[bytes, Reading] = OrderedDict()  # by the PDF's sha256
        self._known_size = 0  # characters of text (and reasons) remembered
        self._reading: SingleFlight[bytes, Reading] = SingleFlight()
        self.counts = ReaderCounts()

    async def _start(self) -> Process:
        settings = self.settings
        limits = (
            settings.max_pages,
            math.ceil(settings.read_timeout_seconds),
            settings.reader_memory_mb << 20,
            settings.scan_pages,
            settings.scan_dpi,
        )
        # Nothing of the gateway's environment (its secrets) goes to a process reading a
        # stranger's file: only where to import from.
        env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "podium.pdf_text",
            *(str(limit) for limit in limits),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )

    async def read(self, content: bytes, owner: str = "") -> PdfRead:
        """The PDF's text (None: it has none) and pages; raises UnreadableDocument (past
        ``read_timeout_seconds`` too). What a PDF gave is remembered by its sha256, a bounded
        amount (``cache_mb``): a conversation that sends the same PDF every turn, or several
        requests sending it at once, have it read once, and a PDF that could not be read is
        refused again at once. Per ``owner``: how fast a PDF is read must not tell a caller
        that another sent it."""
        key = hashlib.sha256(content).digest() + owner.encode()
        outcome = self._known.get(key)
        if outcome is not None:
            self._known.move_to_end(key)
            self.counts.remembered += 1
        else:
            outcome = await self._reading.run(key, lambda: self._outcome(key, content))
        if isinstance(outcome, str):
            self.counts.unreadable += 1
            raise UnreadableDocument(outcome)
        return outcome

    async def _outcome(self, key: bytes, content: bytes) -> Reading:
        outcome = await self._read(content)
        self._remember(key, outcome)
        return outcome

    def _remember(self, key: bytes, outcome: Reading) -> None:
        size = _size(outcome)
        budget = self.settings.cache_mb << 20
        if size > budget:
            return
        self._known[key] = outcome
        self._known_size += size
        while self._known_size > budget:
            _, dropped = self._known.popitem(last=False)
            self._known_size -= _size(dropped)

    async def _read(self, content: bytes) -> Reading:
        spare, self._spare = self._spare, None
        process = await (spare if spare is not None else self._start())
        if not self._closed:
            self._spare = asyncio.create_task(self._start())
        self.counts.read += 1
        try:
            async with asyncio.timeout(self.settings.read_timeout_seconds):
                out, _ = await process.communicate(content)
        except TimeoutError:
            self.counts.killed += 1
            return f"it took longer than {self.settings.read_timeout_seconds:g} s to read"
        finally:
            if process.returncode is None:  # the time is up, or the reading was cancelled
                process.kill()
                await process.wait()
        if process.returncode != 0 or not out:
            return "reading it was stopped: it needed more CPU time or memory than a PDF is allowed"
        answer = json.loads(out)
        if "unreadable" in answer:
            return str(answer["unreadable"])
        self.counts.pages += int(answer["pages"])
        return PdfRead(answer["text"], int(answer["pages"]), tuple(answer.get("images") or ()))

    async def aclose(self) -> None:
        self._closed = True
        spare, self._spare = self._spare, None
        if spare is not None:
            process = await spare
            process.kill()
            await process.wait()


class AttachmentsHook(Hook):
    """Reads what a request attaches, once the caller is known: documents, and images named
    by the id of an upload (sent inline, as a data: URL would have been)."""

    def __init__(self, settings: DocumentSettings, files: Callable[[], FileStore | None]) -> None:
        self.settings = settings
        self.files = files  # None: this gateway keeps no files (batches are off)
        self.readers = PdfReaders(settings)

    async def admit(self, request: ChatRequest, context: RequestContext) -> None:
        if not request.attachments:
            return
        owner = context.caller.owner
        read: dict[str, bytes] = {}  # file id -> content: a file named twice is read once
        for message in request.messages:
            for part in message.content:
                if type(part) is ImagePart and part.file_id is not None:
                    if part.file_id not in read:
                        read[part.file_id] = await self._file(part.file_id, owner, "image")
                    _take_image(part, read[part.file_id])
                elif type(part) is DocumentPart:
                    if part.file_id is not None:
                        if part.file_id not in read:
                            read[part.file_id] = await self._file(part.file_id, owner, "document")
                        self._take(part, read[part.file_id])
                        part.from_file, part.file_id = part.file_id, None
                    if part.media_type == PDF and part.data is not None and part.text is None:
                        await self._read(part, owner)

    def _take(self, part: DocumentPart, content: bytes) -> None:
        """A file's content as the part's: a PDF's bytes, or a text file's text."""
        name = (part.file_id or "")[:128]
        if is_pdf(content):
            part.data, part.media_type = base64.b64encode(content).decode("ascii"), PDF
            return
        text = as_utf8_text(content)
        if text is None:
            raise PodiumError(
                "invalid_request",
                f"file {name!r} is neither a PDF nor UTF-8 text; "
                "documents are read as PDFs or as text",
                param="file_id",
                code="unsupported_input",
            )
        part.text, part.media_type, part.data = text, TEXT, None

    async def _read(self, part: DocumentPart, owner: str) -> None:
        content = _decoded(part)
        if not is_pdf(content):
            raise PodiumError(
                "invalid_request",
                f"document {_name(part)} is not a PDF (no %PDF- header)",
                param="messages",
                code="unreadable_document",
            )
        if not self.settings.extract_text:
            return
        try:
            read = await self.readers.read(content, owner)
            part.text, part.pages, part.page_images = read.text, read.pages, [*read.page_images]
        except UnreadableDocument as error:
            raise PodiumError(
                "invalid_request",
                f"document {_name(part)} cannot be read: {error}",
                param="messages",
                code="unreadable_document",
            ) from None

    async def _file(self, file_id: str, owner: str, kind: str) -> bytes:
        files = self.files()
        name = file_id[:128]
        if files is None:
            instead = "by 'image_url' or inline" if kind == "image" else "inline"
            raise PodiumError(
                "invalid_request",
                f"{kind} file {name!r}: this gateway keeps no files (batches.enabled is off); "
                f"give the {kind} {instead}",
                param="file_id",
            )
        content = await files.content(owner, file_id)
        if content is None:
            raise PodiumError("not_found", f"No such File object: {name}", param="file_id")
        return content


def _take_image(part: ImagePart, content: bytes) -> None:
    media_type = image_type(content)
    if media_type is None:
        raise PodiumError(
            "invalid_request",
            f"image file {(part.file_id or '')[:128]!r} is not a PNG, JPEG, GIF or WebP image",
            param="file_id",
        )
    part.data, part.media_type = base64.b64encode(content).decode("ascii"), media_type
    part.file_id = None


def _decoded(part: DocumentPart) -> bytes:
    try:
        return base64.b64decode(part.data or "", validate=True)
    except (binascii.Error, ValueError):
        raise PodiumError(
            "invalid_request",
            f"document {_name(part)}: its data is not valid base64",
            param="messages",
            code="unreadable_document",
        ) from None


async def read_attachments(podium: Podium, request: ChatRequest, context: RequestContext) -> None:
    """Read a request's attachments as answering it would, for an endpoint that only counts
    its tokens (a PDF's text counts). ``context`` must know the caller."""
    reader = podium.extras.get("documents")
    if request.attachments and isinstance(reader, AttachmentsHook):
        await reader.admit(request, context)


def register_app(podium: Podium) -> None:
    from podium.batches.service import batch_service

    def files() -> FileStore | None:
        service = batch_service(podium)
        return None if service is None else service.files

    reader = AttachmentsHook(podium.config.documents, files)
    # Before the content policy's hooks (registered later): the screens read the text.
    podium.gateway.hooks.append(reader)
    podium.extras["documents"] = reader  # Anthropic's count_tokens reads documents too
    podium.app.on_shutdown.append(reader.readers.aclose)

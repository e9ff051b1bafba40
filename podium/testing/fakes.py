"""The machinery every fake upstream shares: a loopback aiohttp server, behaviour knobs and
a record of what it received. Each vendor module adds only its wire format."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from aiohttp import web

from podium.image_tokens import ImageRule, seen
from podium.upstream_profile import ImageLimits

Json = dict[str, Any]


@dataclass
class Failure:
    """One scripted failure: an HTTP status with the vendor's error body, optionally a
    Retry-After header."""

    status: int
    message: str = "scripted failure"
    retry_after: float | None = None


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes its resets: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass
class Quota:
    """A vendor's rate limits as its answers state them (each fake in its own headers)."""

    requests_limit: int = 500
    requests_remaining: int = 499
    requests_reset: float = 0.12  # seconds until the requests bucket is full again
    tokens_limit: int = 30_000
    tokens_remaining: int = 29_000
    tokens_reset: float = 2.0


@dataclass
class Behaviour:
    """Knobs a test turns. ``failures`` are served first, one per request, in order."""

    latency: float = 0.0  # before the response head
    # When given, the server works on this many requests at once and queues the rest, as
    # llama.cpp's slots or vLLM's batch do: ``latency`` is then each request's own work.
    parallel: int | None = None
    chunk_delay: float = 0.0  # between stream events
    failures: deque[Failure] = field(default_factory=deque)
    reply: str | None = None  # fixed answer text; default: a deterministic echo
    tool_call: tuple[str, str] | None = None  # (name, JSON arguments) to call when tools exist
    break_stream_after: int | None = None  # drop the connection after N stream events
    stall_stream_after: int | None = None  # stop sending (but keep open) after N events
    chunk_size: int = 4  # characters per streamed text delta
    error_stream_after: int | None = None  # send the vendor's in-stream error after N events
    require_key: str | None = None  # the credential the fake accepts
    echo_key: bool = False  # put the credential it received into its error messages, as some do
    gate: asyncio.Event | None = None  # when given, streams wait for it before event gate_after
    gate_after: int = 1
    hold: asyncio.Event | None = None  # when given, every request waits for it before its head
    quota: Quota | None = None  # when given, every answer states it, as the vendor's headers do

    def fail(
        self,
        status: int,
        message: str = "scripted failure",
        *,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        for _ in range(times):
            self.failures.append(Failure(status, message, retry_after))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Json


def words(text: str) -> int:
    return max(1, len(re.findall(r"\S+", text)))


# What a fake charges a PDF page beside its text: the page's image, which the vendors read too
# (Gemini documents 258 tokens a page; Anthropic and OpenAI charge by the page's size).
PAGE_TOKENS = 258
MAX_PDF_PAGES = 100  # Anthropic's limit; the fakes all keep it


class BadPdf(ValueError):
    """An attached file the vendor would refuse as no PDF; the message says so, its way."""


def pdf_text(data: str | None) -> tuple[str, int]:
    """An attached PDF as a vendor reads it: its text and its pages. ``data`` is base64; None
    is a PDF given by URL, which the fakes do not fetch (no text, one page)."""
    from podium.documents import is_pdf
    from podium.pdf_text import UnreadableDocument, read_pdf

    if data is None:
        return "", 1
    try:
        content = base64.b64decode(data, validate=True)
    except ValueError:
        raise BadPdf("The PDF specified was not valid base64.") from None
    if not is_pdf(content):
        raise BadPdf("The PDF specified was not valid.")
    try:
        text, pages = read_pdf(content, max_pages=MAX_PDF_PAGES)
    except UnreadableDocument as error:
        raise BadPdf(f"The PDF specified could not be read: {error}.") from None
    return text or "", pages


def pdf_tokens(documents: list[str | None]) -> tuple[str, int]:
    """Every attached PDF's text, joined, and what their pages cost beside it."""
    read = [pdf_text(data) for data in documents]
    return "\n".join(text for text, _ in read), PAGE_TOKENS * sum(pages for _, pages in read)


# An image as a vendor sees it: its base64 (or a ``data:`` URL), None for one given by URL,
# and OpenAI's ``detail``.
SentImage = tuple[str | None, str | None]


def image_tokens(images: Iterable[SentImage], rule: ImageRule) -> int:
    """What the vendor bills for ``images``, by its ``rule`` (podium/image_tokens.py); one
    given by URL, which the fakes do not fetch, or whose size cannot be read, as an image of
    ``UNKNOWN_SIZE``."""
    return sum(seen(data, detail).tokens(rule) for data, detail in images)


def images_refused(images: Iterable[SentImage], limits: ImageLimits) -> str | None:
    """Why the vendor refuses ``images`` (its documented ``limits``), or None."""
    why = limits.refusal([seen(data) for data, _ in images])
    return None if why is None else f"the request's images exceed this API's limits: it {why}"


def data_url_payload(url: str) -> str:
    """The base64 payload of a ``data:<type>;base64,<payload>`` URL (bare base64 as it is)."""
    return url.partition(",")[2] if url.startswith("data:") else url


def echo(prompt: str) -> str:
    tail = prompt.strip().splitlines()[-1] if prompt.strip() else ""
    return f"fake answer to: {tail[:200]}"


class FakeUpstream:
    """Subclasses add routes in :meth:`routes`. Start with ``await fake.start()`` (or as an
    async context manager); ``fake.url`` is then the base URL to configure a worker with."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.received: list[Received] = []
        self.open_streams = 0
        self.cancelled_streams = 0
        self.completed_streams = 0
        self.gated_streams = 0  # streams that reached the gate (see Behaviour.gate)
        self.waiting = 0  # requests queued inside the server (see Behaviour.parallel)
        self.most_waiting = 0
        self._working: asyncio.Semaphore | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def quota_headers(self, quota: Quota) -> dict[str, str]:
        """The vendor's rate-limit headers stating ``quota`` (none for a vendor without)."""
        return {}

    async def _state_quota(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.behaviour.quota is not None:
            response.headers.update(self.quota_headers(self.behaviour.quota))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        app.on_response_prepare.append(self._state_quota)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = cast(asyncio.Server, site._server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def admit(self, request: web.Request) -> tuple[Json | None, web.Response | None]:
        """Record the request, apply latency and scripted failures. Returns the parsed body,
        or the error response to send instead."""
        try:
            body = await request.json()
        except ValueError:
            return None, self.error_response(400, "invalid JSON body")
        self.received.append(Received(request.path, dict(request.headers), body))
        if self.behaviour.latency:
            await self._work(self.behaviour.latency)
        if self.behaviour.hold is not None:
            await self.behaviour.hold.wait()
        if self.behaviour.require_key is not None and not self.key_ok(request):
            return body, self.error_response(401, self.with_key("invalid credential", request))
        if self.behaviour.failures:
            return body, self.failure_response(self.behaviour.failures.popleft())
        return body, None

    async def _work(self, seconds: float) -> None:
        parallel = self.behaviour.parallel
        if parallel is None:
            await asyncio.sleep(seconds)
            return
        if self._working is None:
            self._working = asyncio.Semaphore(parallel)
        if self._working.locked():
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            try:
                await self._working.acquire()
            finally:
                self.waiting -= 1
        else:
            await self._working.acquire()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._working.release()

    def failure_response(self, failure: Failure) -> web.Response:
        """A scripted failure in the vendor's shape; by default Retry-After is a header."""
        response = self.error_response(failure.status, failure.message)
        if failure.retry_after is not None:
            response.headers["retry-after"] = str(failure.retry_after)
        return response

    def stream_error_event(self, request: web.BaseRequest | None) -> bytes:
        """The vendor's error event inside an already started stream (with the credential
        ``request`` came with when the behaviour echoes it)."""
        raise NotImplementedError

    def with_key(self, message: str, request: web.BaseRequest | None) -> str:
        if not self.behaviour.echo_key or request is None:
            return message
        received = (
            request.headers.get("authorization")
            or request.headers.get("x-api-key")
            or request.headers.get("x-goog-api-key")
            or request.query.get("key")
            or ""
        )
        return f"{message}; incorrect API key provided: {received}"

    def key_ok(self, request: web.Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.behaviour.require_key}"

    def error_response(self, status: int, message: str) -> web.Response:
        raise NotImplementedError

    async def paced(
        self,
        response: web.StreamResponse,
        events: list[bytes],
        *,
        error_event: bytes | None = None,
    ) -> None:
        """Write ``events`` with the configured pacing, breaking or stalling when told to.
        ``error_event`` is the in-stream error, when this endpoint's differs from the fake's."""
        self.open_streams += 1
        try:
            for index, event in enumerate(events):
                if self.behaviour.break_stream_after is not None and (
                    index >= self.behaviour.break_stream_after
                ):
                    transport = response._req.transport if response._req else None
                    if transport is not None:
                        transport.abort()
                    return
                if self.behaviour.stall_stream_after is not None and (
                    index >= self.behaviour.stall_stream_after
                ):
                    await self._until_closed(response)
                if self.behaviour.gate is not None and index == self.behaviour.gate_after:
                    self.gated_streams += 1
                    await self.behaviour.gate.wait()
                if self.behaviour.error_stream_after is not None and (
                    index >= self.behaviour.error_stream_after
                ):
                    await response.write(error_event or self.stream_error_event(response._req))
                    return
                await response.write(event)
                if self.behaviour.chunk_delay:
                    await asyncio.sleep(self.behaviour.chunk_delay)
            self.completed_streams += 1
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled_streams += 1
            raise
        finally:
            self.open_streams -= 1

    @staticmethod
    async def _until_closed(response: web.StreamResponse, limit: float = 3600.0) -> None:
        """Send nothing, but notice when the client leaves (so the fake can stop promptly)."""
        for _ in range(int(limit * 20)):
            transport = response._req.transport if response._req else None
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client closed a stalled stream")
            await asyncio.sleep(0.05)

    def pieces(self, text: str) -> list[str]:
        size = max(1, self.behaviour.chunk_size)
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def fake_vector(text: str, size: int) -> list[float]:
    """A unit vector that depends only on ``text``: the same text, the same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(size)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [value / norm for value in raw]

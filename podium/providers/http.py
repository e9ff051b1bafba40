"""A worker's upstream over Podium's egress: POST JSON with the worker's timeouts, read the
answer whole or as server-sent events, and turn every failure into a :class:`ProviderError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from podium.config import Timeouts
from podium.errors import ProviderError, provider_error_from_status
from podium.providers.egress import Egress, EgressError, Origin, Response, request_head
from podium.providers.quota import QuotaObserver, quota_from_headers
from podium.secrets import scrub

# Upstream statuses that mean Podium's own credential or model name is wrong for a worker.
SAME_ANSWER_CODES = {
    401: "upstream_credential_refused",
    403: "upstream_credential_refused",
    404: "upstream_model_not_found",
}


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_message(body: bytes) -> str:
    """The human message in a vendor's error body, whatever its shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip() or "no error message"
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or error.get("status")
            if message:
                return str(message)
        elif isinstance(error, str):
            return error
    return body[:500].decode("utf-8", "replace")


# Answers without a word on the quota after which a worker's are no longer read for one.
UNSTATED_ANSWERS = 16


class Upstream:
    """POSTs JSON to one worker's upstream with its timeouts, mapping every failure to a
    :class:`ProviderError` whose message names the worker and never carries its key."""

    def __init__(
        self,
        http: Egress,
        *,
        worker: str,
        base_url: str,
        headers: dict[str, str],
        timeouts: Timeouts,
        secrets: Iterable[str | None] = (),
        retry_after_in_body: Callable[[bytes], float | None] | None = None,
        quota: QuotaObserver | None = None,
    ) -> None:
        self._http = http
        self._quota = quota
        self._unstated = 0  # answers in a row that stated no quota, while none ever has
        # Some vendors (Gemini) say when to retry in the error body rather than a header.
        self._retry_after_in_body = retry_after_in_body
        self.worker = worker
        self.base_url = base_url
        self._origin = Origin.parse(base_url)
        self._headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "podium",
            **headers,
        }
        self._heads: dict[str, bytes] = {}  # request heads per path, built once
        self._timeouts = timeouts
        self._secrets = [secret for secret in secrets if secret]
        request_head(self._origin, "POST", "/", self._headers)  # refuses a header that splits

    def _fail(self, status: int, body: bytes, retry_after: float | None) -> ProviderError:
        if status in (401, 403):
            message = f"worker {self.worker!r} refused Podium's credential (upstream {status})"
        else:
            detail = scrub(error_message(body), self._secrets)
            message = f"worker {self.worker!r} failed (upstream {status}): {detail}"
        if retry_after is None and self._retry_after_in_body is not None:
            retry_after = self._retry_after_in_body(body)
        error = provider_error_from_status(
            status, message, retry_after=retry_after, worker=self.worker
        )
        # Another worker may well succeed, but asking this one again cannot (see the engine).
        error.code = SAME_ANSWER_CODES.get(status, error.code)
        return error

    def scrubbed(self, error: ProviderError) -> ProviderError:
        """``error`` with this worker's key taken out of its message: for errors its provider
        read from an answer that came with status 200 (a stream's error event, a failed
        response body)."""
        message = scrub(error.message, self._secrets)
        if message != error.message:
            error.message = message
            error.args = (message,)
        return error

    def _observe(self, headers: dict[str, str]) -> None:
        """Pass on what the vendor says is left of the quota, if it says. A server that has
        not said in its first answers never will (vLLM, llama.cpp): it is not asked again."""
        assert self._quota is not None
        quota = quota_from_headers(headers)
        if quota is not None:
            self._unstated = -1  # this vendor states its quota: always read it
            self._quota(quota)
        elif self._unstated >= 0:
            self._unstated += 1
            if self._unstated >= UNSTATED_ANSWERS:
                self._quota = None

    def _unreachable(self, error: BaseException) -> ProviderError:
        detail = scrub(type(error).__name__ + (f": {error}" if str(error) else ""), self._secrets)
        return ProviderError(
            "upstream",
            f"worker {self.worker!r} is unreachable ({detail})",
            retryable=True,
            worker=self.worker,
        )

    def _timed_out(self, what: str) -> ProviderError:
        return ProviderError(
            "timeout",
            f"worker {self.worker!r} timed out ({what})",
            retryable=True,
            worker=self.worker,
        )

    def _send(self, path: str, payload: dict[str, Any]) -> Awaitable[Response]:
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = request_head(self._origin, "POST", path, self._headers)
        pool = self._http.pool_for(self._origin)
        return pool.request(head, orjson.dumps(payload), connect_timeout=self._timeouts.connect)

    async def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        timer = CallTimer(self._timeouts)
        try:
            try:
                response = await self._send(path, payload)
                timer.head_in = True
                try:
                    body = await response.read()
                finally:
                    response.close()
            finally:
                expired = timer.stop()
        except asyncio.CancelledError:
            if expired:
                raise self._timed_out(timer.bound) from None
            raise
        except TimeoutError:
            raise self._timed_out(timer.bound) from None
        except (EgressError, OSError) as error:
            raise self._unreachable(error) from None
        if self._quota is not None:
            self._observe(response.headers)
        if response.status >= 400:
            raise self._fail(
                response.status, body, parse_retry_after(response.headers.get("retry-after"))
            )
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderError(
                "upstream",
                f"worker {self.worker!r} answered with invalid JSON",
                retryable=True,
                worker=self.worker,
            ) from None

    @asynccontextmanager
    async def open_stream(self, path: str, payload: dict[str, Any]) -> AsyncIterator[StreamBody]:
        """Open a streaming POST; yields its body. Errors before the body are
        :class:`ProviderError`; the body's reads are bounded by ``first_byte`` (the longest
        silence) and ``total``."""
        try:
            async with asyncio.timeout(self._timeouts.first_byte):
                response = await self._send(path, payload)
        except TimeoutError:
            raise self._timed_out("no response head") from None
        except (EgressError, OSError) as error:
            raise self._unreachable(error) from None
        if self._quota is not None:
            self._observe(response.headers)
        try:
            if response.status >= 400:
                try:
                    async with asyncio.timeout(self._timeouts.first_byte):
                        body = await response.read()
                except (TimeoutError, EgressError):
                    body = b""
                raise self._fail(
                    response.status, body, parse_retry_after(response.headers.get("retry-after"))
                )
            stream = StreamBody(response, self, self._timeouts)
            try:
                yield stream
                await stream.drain()
            except ProviderError as error:
                # A decoder's error quotes the vendor's own words (an error event mid-stream),
                # and a vendor may echo the credential it was sent.
                raise self.scrubbed(error) from None
            finally:
                stream.close()
        finally:
            response.close()


class CallTimer:
    """Bounds one whole-answer call as ``asyncio.timeout_at`` would (the calling task is
    cancelled; the caller turns that cancellation into its timeout error), with one timer for
    both bounds: the response head's (``first_byte``) and the whole call's (``total``). The
    timer is set for the nearer; when it fires after the head came in, it moves to the whole
    call's. ``asyncio.timeout_at`` and its reschedule cost ~30k instructions a call (two
    timers, two coroutines); this one timer ~7k."""

    __slots__ = (
        "_expired",
        "_handle",
        "_head_deadline",
        "_loop",
        "_task",
        "_total_deadline",
        "head_in",
    )

    def __init__(self, timeouts: Timeouts) -> None:
        loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("an upstream call must run in a task")
        self._task = task
        now = loop.time()
        self._head_deadline = now + timeouts.first_byte
        self._total_deadline = now + timeouts.total
        self.head_in = False  # set by the caller once the response head is in
        self._expired = False
        self._handle: asyncio.TimerHandle | None = loop.call_at(
            min(self._head_deadline, self._total_deadline), self._fire
        )

    def _fire(self) -> None:
        if self.head_in and self._loop.time() < self._total_deadline:
            self._handle = self._loop.call_at(self._total_deadline, self._fire)
            return
        self._handle = None
        self._expired = True
        self._task.cancel()

    @property
    def bound(self) -> str:
        """Which bound was running: the response head's while it was the nearer and the head
        had not come in, else the whole call's."""
        if not self.head_in and self._head_deadline < self._total_deadline:
            return "no response head"
        return "total"

    def stop(self) -> bool:
        """Stop the timer. True when it fired and its cancellation is the only one pending
        (as ``asyncio.timeout`` decides): a CancelledError the call ended with is then the
        timeout's."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        return self._expired and self._task.uncancel() == 0


class StreamBody:
    """A streaming response body, read a block at a time (whatever has arrived).

    One watchdog timer per stream bounds the silence while a read waits (``first_byte``) and
    the whole call (``total``): a timer per read would cost more than the read on a busy
    stream. A stalled read fails with the worker's timeout error."""

    def __init__(self, response: Response, upstream: Upstream, timeouts: Timeouts) -> None:
        self._response = response
        self._upstream = upstream
        self._gap = timeouts.first_byte
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._deadline = now + timeouts.total
        self._waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            min(now + self._gap, self._deadline), self._check
        )

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._deadline:
            self._timer = None
            self._response.fail(self._upstream._timed_out("total"))
            return
        since = self._waiting_since
        if since is not None and now - since >= self._gap:
            self._timer = None
            self._response.fail(self._upstream._timed_out("stream stalled"))
            return
        wake = (since if since is not None else now) + self._gap
        self._timer = self._loop.call_at(min(wake, self._deadline), self._check)

    async def read(self) -> bytes:
        """The next block of the body (b"" at its end)."""
        self._waiting_since = self._loop.time()
        try:
            return await self._response.read_any()
        except EgressError as error:
            raise self._upstream._unreachable(error) from None
        finally:
            self._waiting_since = None

    async def drain(self, limit: float = 1.0) -> None:
        """Read the body to its end when a reader stopped at its end marker ([DONE]): the end
        is usually there already, and a connection whose body was not read to the end cannot
        go back to the pool (the next call would open a new one). Gives up after ``limit``."""
        response = self._response
        if response.at_eof():
            return
        try:
            async with asyncio.timeout(limit):
                while await response.read_any():
                    pass
        except (TimeoutError, EgressError, ProviderError):
            pass

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def data_of(event: bytes) -> bytes | None:
    """The ``data`` of one server-sent event (its ``data:`` lines joined), None if it has none."""
    if event.startswith(b"data:") and b"\n" not in event:  # the usual one-line event
        return event[5:].lstrip(b" ")
    data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(data) if data else None


class EventSplitter:
    """Cuts a body that arrives in arbitrary blocks into whole server-sent events."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, block: bytes) -> bytes:
        """The whole events so far, each ending in a blank line (``\\n\\n``); b"" if none yet."""
        if self._pending:
            block = self._pending + block
            self._pending = b""
        if b"\r" in block:  # CRLF or CR line ends: keep a trailing CR until its LF arrives
            held = block.endswith(b"\r")
            if held:
                block = block[:-1]
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                self._pending = b"\r"
        if block.endswith(b"\n\n"):
            return block
        cut = block.rfind(b"\n\n")
        if cut < 0:
            self._pending = block + self._pending
            return b""
        self._pending = block[cut + 2 :] + self._pending
        return block[: cut + 2]

    def rest(self) -> bytes:
        """What is left at the end of the body (an event without its closing blank line)."""
        rest, self._pending = self._pending.rstrip(b"\r\n"), b""
        return rest


async def sse_data(body: StreamBody) -> AsyncIterator[bytes]:
    """The ``data`` payloads of a server-sent event stream, in order."""
    splitter = EventSplitter()
    while block := await body.read():
        events = splitter.feed(block)
        if events:
            for event in events[:-2].split(b"\n\n"):
                data = data_of(event.lstrip(b"\n"))
                if data is not None:
                    yield data
    rest = data_of(splitter.rest().lstrip(b"\n"))
    if rest is not None:
        yield rest


async def sse_json(body: StreamBody, worker: str) -> AsyncIterator[Any]:
    """The JSON payloads of a server-sent event stream. ``[DONE]`` (OpenAI's end marker) ends
    it; a payload that is not JSON is the upstream's failure, and may succeed elsewhere."""
    async for data in sse_data(body):
        if data == b"[DONE]":
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise malformed_event(worker) from None
        yield payload


def malformed_event(worker: str) -> ProviderError:
    return ProviderError(
        "upstream",
        f"worker {worker!r} sent a malformed stream event",
        retryable=True,
        worker=worker,
    )

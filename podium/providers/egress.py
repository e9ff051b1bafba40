"""HTTP/1.1 egress on asyncio protocols: keep-alive connections pooled per origin, answers
parsed by httptools (the parser uvicorn serves with).

Podium's egress is narrow: POST a body to a configured worker and read the answer, whole or
as it arrives. A general-purpose client spends most of a gateway's per-request CPU on what
this path never uses (cookies, redirects, proxies, middlewares): on the benchmark machine
aiohttp's client took ~150 us per small exchange, this one ~20 us. Everything a worker can
do to the connection is handled: Content-Length, chunked and read-until-close bodies, gzip
and deflate, keep-alive or not, informational (1xx) answers, a connection lost at any byte, a
malformed answer, a slow reader (reading from the socket pauses) and a caller that gives up
(the connection is closed, never reused mid-answer).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, urlsplit

import httptools

# Bytes an answer may buffer before reading from its socket pauses (it resumes when the
# reader takes them). Small: a client that stops reading its stream must cost little, and
# model output arrives far slower than any reader takes it.
HIGH_WATER = 64 * 1024


class EgressError(Exception):
    """The exchange failed below HTTP: no connection, the connection lost, a malformed
    answer. The message says which, without the request's headers."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int
    path: str  # the base URL's path, prefixed to every request's

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def key(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def request_head(origin: Origin, method: str, path: str, headers: dict[str, str]) -> bytes:
    """A request's head up to (not including) its Content-Length value: fixed per worker and
    path, so it is built once. Refuses header names or values that could split the head."""
    target = quote(origin.path + path, safe="/:?=&%@!$'()*+,;~-._")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}"]
    for name, value in headers.items():
        if any(c in name for c in "\r\n:") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: a line break in it would split the request")
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    return "\r\n".join(lines).encode("latin-1")


class Response:
    """An answer whose head has arrived; its body arrives behind it, a block at a time."""

    __slots__ = (
        "_blocks",
        "_buffered",
        "_complete",
        "_connection",
        "_decoder",
        "_error",
        "_waiter",
        "headers",
        "status",
        "until_close",
    )

    def __init__(self, connection: Connection, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers  # names in lower case; repeated headers joined with ", "
        self._connection: Connection | None = connection
        self._blocks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder = _decoder(headers.get("content-encoding"))
        # Neither a length nor chunks: the body ends when the server closes the connection.
        self.until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    # -- fed by the connection -------------------------------------------------------------

    def _feed(self, block: bytes) -> None:
        if self._decoder is not None:
            try:
                block = self._decoder.decompress(block)
            except zlib.error as error:
                self.fail(EgressError(f"undecodable compressed answer ({error})"))
                return
            if not block:
                return
        self._blocks.append(block)
        self._buffered += len(block)
        if self._buffered > HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def _end(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._blocks.append(tail)
        self._complete = True
        self._connection = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller ----------------------------------------------------------------

    def fail(self, error: BaseException) -> None:
        """Make the reader's next read raise ``error`` (the connection lost, a watchdog's
        timeout); the connection is closed when the response is."""
        if not self._complete and self._error is None:
            self._error = error
            self._wake()

    def at_eof(self) -> bool:
        return self._complete and not self._blocks

    async def read_any(self) -> bytes:
        """What has arrived since the last read, waiting for something; b"" at the end. Data
        that arrived before a failure is returned before the failure is raised."""
        while not self._blocks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        blocks = self._blocks
        block = blocks.popleft() if len(blocks) == 1 else b"".join(blocks)
        blocks.clear()
        self._buffered = 0
        if self._connection is not None:
            self._connection.resume()
        return block

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while block := await self.read_any():
            parts.append(block)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Done with the answer: a connection still carrying part of it cannot be reused."""
        connection, self._connection = self._connection, None
        if connection is not None and not self._complete:
            connection.abort()


def _decoder(encoding: str | None) -> zlib._Decompress | None:
    if encoding is None:
        return None
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib framing, whichever
    raise EgressError(f"answer in an encoding Podium did not ask for ({name})")


class Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time (the pool sees to it)."""

    def __init__(self, pool: OriginPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._headers: dict[str, str] = {}
        self._informational = False
        self._paused = False
        self._serial = 0  # exchanges begun: a late cancellation must not abort a later one
        self._busy = False  # an exchange is under way: its answer has not all arrived
        self.lost = False
        self.idle_since = 0.0

    # -- transport events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            # Bytes on an idle connection answer nothing we asked (a server's "408 Request
            # Timeout" before it closes, say): the connection is not fit for another request.
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            raise  # a bug of ours, not the server's: let the loop report it
        except httptools.HttpParserError as error:
            self._broken(EgressError(f"malformed HTTP answer ({error})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(EgressError("connection closed before the answer"))
        response, self._response = self._response, None
        if response is not None:
            if response.until_close and not self._informational:
                response._end()
            else:
                response.fail(EgressError("connection closed in the middle of the answer"))
        self._pool.forget(self)

    # -- parser callbacks (httptools calls these by name) ----------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # ASCII (nearly every header) reads the same as UTF-8, and decode() without a codec
        # name costs ~0.3k instructions less.
        key = (name.decode() if name.isascii() else name.decode("latin-1")).lower()
        text = value.decode() if value.isascii() else value.decode("latin-1")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        headers, self._headers = self._headers, {}
        self._informational = status < 200  # 100 Continue and friends: the answer follows
        if self._informational:
            return
        try:
            response = Response(self, status, headers)
        except EgressError as error:
            self._broken(error)
            return
        self._response = response
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        response, self._response = self._response, None
        if response is None:
            return
        response._end()
        self.resume()
        self._busy = False
        self._pool.release(self, reusable=self._parser.should_keep_alive())

    # -- used by the pool and the response -------------------------------------------------

    async def exchange(self, head: bytes, body: bytes) -> Response:
        assert self._transport is not None
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._head = waiter
        self._busy = True
        self._serial += 1
        mine = self._serial
        self._transport.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                if waiter.exception() is None:
                    waiter.result().close()  # cancelled just as the head came in
            elif self._serial == mine:
                # Gave up (a timeout, a cancellation) before the head: what is left of the
                # answer would be read as the next exchange's.
                self.abort()
            raise

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def abort(self) -> None:
        self._head = None
        if self._transport is not None and not self.lost:
            self._transport.abort()  # connection_lost follows, and the pool forgets it

    def close(self) -> None:
        if self._transport is not None and not self.lost:
            self._transport.close()

    def _broken(self, error: EgressError) -> None:
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        response, self._response = self._response, None
        if response is not None:
            response.fail(error)
        self.abort()


class OriginPool:
    """Keep-alive connections to one origin, at most ``limit`` open at once; a caller beyond
    the limit waits for one to come free."""

    def __init__(
        self,
        origin: Origin,
        *,
        limit: int,
        keep_idle: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.origin = origin
        self._limit = limit
        self._keep_idle = keep_idle
        self._tls = tls
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def open_connections(self) -> int:
        return len(self._open) + self._opening

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def request(self, head: bytes, body: bytes, *, connect_timeout: float) -> Awaitable[Response]:
        """Send ``head`` (from :func:`request_head`) and ``body``; the answer once its head is
        in. Raises :class:`EgressError` (or an ``OSError`` from connecting)."""
        # A fresh idle connection is the usual case: the exchange is then awaited directly,
        # without the two coroutines of waiting for a connection (~3k instructions a call).
        if not self._closed and self._idle:
            connection = self._idle[-1]
            if not connection.lost and time.monotonic() - connection.idle_since < self._keep_idle:
                self._idle.pop()
                return connection.exchange(head, body)
        return self._request(head, body, connect_timeout)

    async def _request(self, head: bytes, body: bytes, connect_timeout: float) -> Response:
        connection = await self._acquire(connect_timeout)
        return await connection.exchange(head, body)

    async def _acquire(self, connect_timeout: float) -> Connection:
        while True:
            if self._closed:
                raise EgressError("the egress pool is closed")
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()  # the most recently used: least likely stale
                if not connection.lost and now - connection.idle_since < self._keep_idle:
                    return connection
                connection.close()
            if self.open_connections < self._limit:
                return await self._connect(connect_timeout)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # it was woken for a connection it will not take
                else:
                    self._waiters.remove(waiter)
                raise

    async def _connect(self, connect_timeout: float) -> Connection:
        origin = self.origin
        self._opening += 1
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await asyncio.get_running_loop().create_connection(
                    lambda: Connection(self),
                    origin.host,
                    origin.port,
                    ssl=self._tls,
                    server_hostname=origin.host if self._tls is not None else None,
                )
        except TimeoutError:
            raise EgressError(f"no connection within {connect_timeout:g} s") from None
        finally:
            self._opening -= 1
            self._wake_one()  # a failed attempt frees its place
        self._open.add(connection)
        return connection

    def release(self, connection: Connection, *, reusable: bool) -> None:
        if reusable and not connection.lost and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
            self._wake_one()
        else:
            connection.close()

    def forget(self, connection: Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # wakes to find the pool closed


class Egress:
    """The pools of one Podium process, one per origin, created on first use."""

    def __init__(
        self,
        *,
        limit_per_origin: int = 1024,
        keep_idle: float = 15.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._pools: dict[tuple[str, str, int], OriginPool] = {}
        self._limit = limit_per_origin
        # Below the usual servers' keep-alive timeouts (uvicorn 5 s is the shortest common
        # one, and its close usually arrives first): a stale connection costs a retry.
        self._keep_idle = keep_idle
        self._tls = tls  # None: the system's certificate authorities, loaded on first use

    def pool_for(self, origin: Origin) -> OriginPool:
        pool = self._pools.get(origin.key)
        if pool is None:
            tls = None
            if origin.scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()  # loading the CAs takes ms: once
                tls = self._tls
            pool = OriginPool(origin, limit=self._limit, keep_idle=self._keep_idle, tls=tls)
            self._pools[origin.key] = pool
        return pool

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
        await asyncio.sleep(0)  # let the transports run their close callbacks

"""A small ASGI layer: requests, responses, streams that stop when the client goes, routes.

Kept deliberately thin (no framework) because it sits on every request's hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import orjson

from podium.api.websocket import SocketHandler, WebSocket
from podium.errors import PodiumError

log = logging.getLogger("podium.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_HEADER_BYTES = 64 * 1024


class Request:
    __slots__ = ("_body", "headers", "method", "params", "path", "query_string", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        self.headers: dict[str, str] = {}
        size = 0
        headers = self.headers
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            # ASCII (nearly every header) reads the same as UTF-8, and decode() without a
            # codec name costs ~0.3k instructions less.
            key = name.decode() if name.isascii() else name.decode("latin-1")
            headers[key.lower()] = value.decode() if value.isascii() else value.decode("latin-1")
        if size > MAX_HEADER_BYTES:
            raise PodiumError("request_too_large", "request headers are too large", status=431)
        self.params: dict[str, str] = {}
        self._body: bytes | None = None

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.query_string.decode("latin-1")))

    async def body(self, limit: int) -> bytes:
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                raise PodiumError("invalid_request", "content-length is not a number") from None
            if too_big:
                raise PodiumError(
                    "request_too_large", f"request body is over the limit of {limit} bytes"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PodiumError(
                    "request_too_large", f"request body is over the limit of {limit} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def json(self, limit: int) -> Any:
        return parse_json(await self.body(limit))


def parse_json(body: bytes) -> Any:
    """A request body's JSON (what :meth:`Request.json` reads), or the error that says why not."""
    if not body.strip():
        raise PodiumError("invalid_request", "request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        reason = "not valid UTF-8" if "utf-8" in str(error).lower() else "not valid JSON"
        raise PodiumError("invalid_request", f"request body is {reason}: {error}") from None


@dataclass(slots=True)
class Response:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(orjson.dumps(data), status, headers or {})


@dataclass(slots=True)
class StreamResponse:
    chunks: AsyncIterator[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "text/event-stream"


AnyResponse = Response | StreamResponse


def list_page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """One page of a list, as OpenAI's and Anthropic's list routes answer: the items, the ids
    of the first and last, and whether more follow (OpenAI's also say ``object: list``)."""
    return {
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


Handler = Callable[[Request], Awaitable[AnyResponse]]


class ErrorRenderer(Protocol):
    def render_error(self, error: PodiumError) -> Response: ...


class PlainErrors:
    """Podium's own error shape, for admin and contract endpoints."""

    def render_error(self, error: PodiumError) -> Response:
        body: dict[str, Any] = {"error": {"type": error.kind, "message": error.message}}
        if error.param:
            body["error"]["param"] = error.param
        if error.code:
            body["error"]["code"] = error.code
        return Response.json(body, error.status, _retry_headers(error))


def _retry_headers(error: PodiumError) -> dict[str, str]:
    """``Retry-After``, and any headers the error carries for the caller."""
    headers = dict(error.headers) if error.headers else {}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, round(error.retry_after)))
    return headers


def retry_headers(error: PodiumError) -> dict[str, str]:
    return _retry_headers(error)


def _head(status: int, media_type: str, headers: dict[str, str]) -> Message:
    raw = [(b"content-type", media_type.encode())]
    # A loop: a generator here cost ~1k instructions. ASCII text (nearly every header) is the
    # same in UTF-8, and encode() without a codec name costs ~0.3k instructions less.
    for name, value in headers.items():
        raw.append(
            (
                name.encode() if name.isascii() else name.encode("latin-1"),
                value.encode() if value.isascii() else value.encode("latin-1"),
            )
        )
    return {"type": "http.response.start", "status": status, "headers": raw}


@dataclass(slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    errors: ErrorRenderer
    parts: tuple[str, ...] = ()


class App:
    """Routes by method and path (``{name}`` segments capture), renders errors with the route's
    own renderer, runs start-up and shutdown hooks on the ASGI lifespan."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        self._patterns: list[Route] = []
        self._paths: set[str] = set()
        # The error format of each exact path's routes, for a method it does not take: an
        # OpenAI client's wrong method on /v1/chat/completions hears it in OpenAI's words.
        self._path_errors: dict[str, ErrorRenderer] = {}
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.fallback_errors: ErrorRenderer = PlainErrors()
        self.state: dict[str, Any] = {}
        self._sockets: dict[str, SocketHandler] = {}

    def websocket(self, path: str, handler: SocketHandler) -> None:
        """Serve WebSocket connections to ``path`` (an exact path)."""
        self._sockets[path] = handler

    def route(self, method: str, path: str, handler: Handler, errors: ErrorRenderer) -> None:
        route = Route(method, path, handler, errors, tuple(path.strip("/").split("/")))
        self._paths.add(path)
        self._path_errors.setdefault(path, errors)
        if "{" in path:
            self._patterns.append(route)
        else:
            self._exact[(method, path)] = route

    def handler(self, method: str, path: str) -> Handler | None:
        """The handler of an exact route, so a plugin can wrap it (and call it)."""
        route = self._exact.get((method, path))
        return route.handler if route is not None else None

    def _match(
        self, method: str, path: str, raw_path: bytes | None = None
    ) -> tuple[Route | None, dict[str, str], bool]:
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}, True
        # Segments come from the undecoded path when the server gives it, so a captured
        # segment may hold an escaped '/' (worker names such as "openai/gpt-4o").
        if raw_path:
            parts = [unquote(part) for part in raw_path.decode("latin-1").strip("/").split("/")]
        else:
            parts = path.strip("/").split("/")
        path_known = path in self._paths
        for candidate in self._patterns:
            if len(candidate.parts) != len(parts):
                continue
            params: dict[str, str] = {}
            for pattern, part in zip(candidate.parts, parts, strict=True):
                if pattern.startswith("{") and pattern.endswith("}"):
                    if not part:
                        break
                    params[pattern[1:-1]] = part
                elif pattern != part:
                    break
            else:
                path_known = True
                if candidate.method == method:
                    return candidate, params, True
        return None, {}, path_known

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self.on_startup:
                        await hook()
                except Exception as error:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in reversed(self.on_shutdown):
                    try:
                        await hook()
                    except Exception:
                        log.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            elif scope["type"] == "websocket":
                await self._socket(scope, receive, send)
            return
        # A request is served in this coroutine, not one of its own: ~1k instructions fewer.
        route, params, path_known = self._match(
            scope["method"], scope["path"], scope.get("raw_path")
        )
        if route is not None:
            errors = route.errors
        else:
            errors = self._path_errors.get(scope["path"], self.fallback_errors)
        try:
            if route is None:
                if path_known:
                    raise PodiumError(
                        "invalid_request",
                        f"method {scope['method']} is not allowed on {scope['path']}",
                        status=405,
                    )
                raise PodiumError("not_found", f"no such endpoint: {scope['path']}")
            request = Request(scope, receive)
            request.params = params
            response = await route.handler(request)
        except PodiumError as error:
            response = errors.render_error(error)
        except asyncio.CancelledError:
            return  # the client went away while we read its request
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = errors.render_error(
                PodiumError("api_error", "Podium failed to handle the request; see its log")
            )
        if isinstance(response, Response):
            head = _head(response.status, response.media_type, response.headers)
            if response.status not in (204, 304):  # which carry no body and no length
                # A whole body states its length: otherwise the server frames it as chunks.
                head["headers"].append((b"content-length", str(len(response.body)).encode()))
            await send(head)
            await send({"type": "http.response.body", "body": response.body})
        else:
            await self._stream(response, receive, send)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        socket = WebSocket(scope, receive, send)
        handler = self._sockets.get(scope["path"])
        if handler is None:
            await socket.refuse(f"no WebSocket endpoint at {scope['path']}")
            return
        try:
            await handler(socket)
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            pass  # the client left during the handshake, or the connection broke
        except Exception:
            log.exception("WebSocket handler failed on %s", scope["path"])
            await socket.close(1011, "Podium failed to handle the connection; see its log")

    async def _stream(self, response: StreamResponse, receive: Receive, send: Send) -> None:
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **response.headers}
        # The chunks are pumped in this task; one watcher task waits for the client to leave
        # and then cancels the pump, which closes the upstream stream: the worker stops
        # generating. (A second task for the pump and a wait on both cost more per stream.)
        pumping = asyncio.current_task()
        assert pumping is not None
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            pumping.cancel()

        watching = asyncio.get_running_loop().create_task(watch())
        try:
            async with contextlib.aclosing(response.chunks) as chunks:  # type: ignore[type-var]
                await send(_head(response.status, response.media_type, headers))
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except asyncio.CancelledError:
            if not left:
                raise  # cancelled from outside (shutdown): not ours to swallow
            pumping.uncancel()
        except OSError:
            pass  # the connection broke under the send
        except Exception as error:
            log.warning("stream ended with %s", type(error).__name__)
        finally:
            watching.cancel()

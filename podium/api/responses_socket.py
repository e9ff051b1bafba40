"""The Responses API over a WebSocket: ``client.responses.connect()``, as agents and coding tools
keep one connection open for a whole session.

The connection is authenticated once, at the handshake, by the same key as ``POST
/v1/responses`` (a refused key turns the handshake down). Each ``response.create`` message
is a ``POST /v1/responses`` body, answered with the same events a streamed answer sends, one
message each: the same admission, policy, routing and recording per response. Messages with
the same ``stream_id`` (a lane) are answered one after another, in order; lanes run side by
side, and every event of a lane's response carries its ``stream_id``. ``generate: false``
keeps a response that holds the input alone, to be continued by ``previous_response_id``.
Steering (``response.steer``) is refused with ``response.steer.failed``: Podium's workers
cannot take input in the middle of an answer. A client that leaves stops its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson

from podium.api.ingress import refuse_provider_fields
from podium.api.openai import error_body
from podium.api.responses import Frame, ResponsesIngress, StreamWriter, usage_object
from podium.api.responses_request import NO_STORE, ResponsesRequest
from podium.api.responses_stored import StoringResponsesIngress
from podium.api.websocket import WebSocket
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.gateway import ExtraHooks, Gateway
from podium.types import JSONObject, Usage

log = logging.getLogger("podium.responses")

STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,256}")
MAX_WAITING = 64  # responses a lane may have queued behind the one it is answering
MAX_LANES = 64  # lanes one connection may open
SOCKET_ONLY = ("type", "stream_id", "generate")


@dataclass(slots=True)
class Lane:
    queue: asyncio.Queue[JSONObject]
    task: asyncio.Task[None]


def framing(stream_id: str | None) -> Frame:
    """One event as one message, carrying the lane's ``stream_id``."""
    if stream_id is None:
        return lambda kind, data: orjson.dumps(data)
    return lambda kind, data: orjson.dumps({**data, "stream_id": stream_id})


class ResponsesSocket:
    def __init__(
        self,
        gateway: Gateway,
        ingress: ResponsesIngress,
        max_message_bytes: int,
        extra: ExtraHooks | None = None,
    ) -> None:
        self.gateway = gateway
        self.ingress = ingress
        self.max_message_bytes = max_message_bytes
        self.extra = extra
        self.keeper = ingress if isinstance(ingress, StoringResponsesIngress) else None

    async def serve(self, socket: WebSocket) -> None:
        try:
            await self.gateway.authenticate(RequestContext(self.ingress.name, socket.headers))
        except PodiumError as refused:
            await socket.refuse(refused.message)
            return
        await socket.accept()
        lanes: dict[str | None, Lane] = {}
        try:
            while (text := await socket.receive_text()) is not None:
                await self.dispatch(socket, text, lanes)
        finally:
            for lane in lanes.values():
                lane.task.cancel()  # the client left: its answers stop, upstream calls close
            await asyncio.gather(*(lane.task for lane in lanes.values()), return_exceptions=True)

    async def dispatch(self, socket: WebSocket, text: str, lanes: dict[str | None, Lane]) -> None:
        if len(text) > self.max_message_bytes:  # characters: at least as many bytes
            message = f"message larger than this gateway takes ({self.max_message_bytes} bytes)"
            await self.error(socket, None, PodiumError("request_too_large", message))
            return
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.error(socket, None, PodiumError("invalid_request", "message is not JSON"))
            return
        if not isinstance(event, dict):
            await self.error(socket, None, PodiumError("invalid_request", "send a JSON object"))
            return
        stream_id = event.get("stream_id")
        if stream_id is not None and (
            not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id)
        ):
            message = "'stream_id' is 1 to 256 letters, digits, '_', '-' or '.'"
            await self.error(
                socket, None, PodiumError("invalid_request", message, param="stream_id")
            )
            return
        kind = event.get("type")
        if kind == "response.steer":
            await self.steer_refused(socket, stream_id, event)
        elif kind != "response.create":
            shown = str(kind)[:64]
            message = f"unknown event type {shown!r}; send 'response.create'"
            await self.error(
                socket, stream_id, PodiumError("invalid_request", message, param="type")
            )
        else:
            lane = lanes.get(stream_id)
            if lane is None and len(lanes) >= MAX_LANES:
                message = f"a connection may open at most {MAX_LANES} lanes"
                await self.error(socket, stream_id, PodiumError("rate_limit", message))
                return
            if lane is None:
                queue: asyncio.Queue[JSONObject] = asyncio.Queue(MAX_WAITING)
                task = asyncio.get_running_loop().create_task(self.lane(socket, stream_id, queue))
                lane = lanes[stream_id] = Lane(queue, task)
            try:
                lane.queue.put_nowait(event)
            except asyncio.QueueFull:
                message = f"lane {stream_id!r} already has {MAX_WAITING} responses waiting"
                await self.error(socket, stream_id, PodiumError("rate_limit", message))

    async def lane(
        self, socket: WebSocket, stream_id: str | None, queue: asyncio.Queue[JSONObject]
    ) -> None:
        while True:
            event = await queue.get()
            try:
                await self.answer(socket, stream_id, event)
            except Exception:
                # The lane lives on for the requests behind this one.
                log.exception("WebSocket answer failed")
                failed = PodiumError("api_error", "Podium failed to answer; see its log")
                await self.error(socket, stream_id, failed)

    async def answer(self, socket: WebSocket, stream_id: str | None, event: JSONObject) -> None:
        body = {key: value for key, value in event.items() if key not in SOCKET_ONLY}
        body["stream"] = True  # implicit over a WebSocket
        headers = socket.headers
        context = RequestContext(self.ingress.name, headers)
        frame = framing(stream_id)
        try:
            refuse_provider_fields(body, headers)
            request = self.ingress.parse(body, headers)
            if self.keeper is not None and self.keeper.detaches(request):
                raise PodiumError(
                    "invalid_request",
                    "'background' responses are not run over a WebSocket: its answer is the "
                    "connection's. Send it to POST /v1/responses instead.",
                    param="background",
                    code="unsupported_parameter",
                )
            if self.keeper is not None:
                request = await self.keeper.resolve(request, context)
            if event.get("generate") is False:
                for message in await self.prepare(request, context, frame):
                    await socket.send_text(message.decode())
                return
            outcome = await self.gateway.handle(request, context, extra=self.extra)
        except PodiumError as error:
            await self.error(socket, stream_id, error)
            return
        assert outcome.stream is not None  # asked as a stream
        events = self.ingress.stream_events(outcome.stream, request, outcome, context, frame)
        async with contextlib.aclosing(events) as messages:  # type: ignore[type-var]
            async for message in messages:
                await socket.send_text(message.decode())

    async def prepare(self, request: Any, context: RequestContext, frame: Frame) -> list[bytes]:
        """``generate: false``: a kept response holding the input alone, no model called."""
        if self.keeper is None:
            raise PodiumError(
                "invalid_request",
                f"'generate: false' keeps a response without an answer, but {NO_STORE}.",
                param="generate",
            )
        assert isinstance(request, ResponsesRequest) and request.response_id is not None
        await self.gateway.authenticate(context, request.model)
        writer = StreamWriter(request, request.response_id, request.model, frame)
        created = writer.lifecycle("response.created", "in_progress")
        body = writer.body("completed", usage=usage_object(Usage(), 0.0))
        await self.keeper.completed(body, request, context)
        return [created, writer.event("response.completed", response=body)]

    async def error(self, socket: WebSocket, stream_id: str | None, error: PodiumError) -> None:
        wire = error_body(error)["error"]
        event: JSONObject = {
            "type": "error",
            "code": wire["code"] or wire["type"],
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
        }
        if stream_id is not None:
            event["stream_id"] = stream_id
        await socket.send_text(orjson.dumps(event).decode())

    async def steer_refused(
        self, socket: WebSocket, stream_id: str | None, event: JSONObject
    ) -> None:
        event_out: JSONObject = {
            "type": "response.steer.failed",
            "error": {
                "type": "invalid_request_error",
                "code": "steering_not_supported",
                "message": "Podium's workers cannot take input in the middle of an answer; "
                "send it in the next 'response.create' instead.",
            },
            "steer": {
                "input": event.get("input", ""),
                "previous_response_id": str(event.get("previous_response_id", "")),
            },
            "sequence_number": 0,
        }
        if stream_id is not None:
            event_out["stream_id"] = stream_id
        await socket.send_text(orjson.dumps(event_out).decode())

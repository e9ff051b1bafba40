"""The Responses ingress that keeps responses: ``store`` (true unless a request says false, as at
OpenAI), ``previous_response_id``, ``conversation`` (podium/api/conversations.py), and ``GET`` /
``DELETE /v1/responses/{id}`` with ``/input_items``.

A request that continues a response or a conversation is expanded here, once its caller is
known and before the gateway admits it: every earlier item comes first, then its own input. Rate
limits, budgets, the data policy and routing then see the whole conversation, as they would
had the client sent it in ``input``. ``instructions`` are not carried over (OpenAI's rule): a
request states its own. What is kept is what the client sent and received, never a worker's
pseudonymised view; it belongs to the key's owner, whose keys alone can read or continue it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from podium.api.admin import admin_route
from podium.api.http import AnyResponse, Request, Response, StreamResponse, list_page
from podium.api.responses import ResponsesIngress, response_object
from podium.api.responses_request import ResponsesRequest, history_messages, parse
from podium.context import RequestContext
from podium.deadline import DEADLINE_HEADERS
from podium.errors import PodiumError
from podium.gateway import ExtraHooks, Gateway, Outcome
from podium.policy.access import admin_actor
from podium.responses.background import BackgroundRun, BackgroundRuns
from podium.responses.conversations import ConversationStore
from podium.responses.store import (
    Event,
    KeptCounts,
    ResponseStore,
    StoredResponse,
    conversation_items,
)
from podium.types import ChatRequest, ChatResponse, JSONObject, any_attachments

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.responses")

_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def input_items(raw: str | list[Any], response_id: str | None = None) -> list[JSONObject]:
    """``input`` as the items a stored response lists: every item with an id and a status, and a
    message's text as content parts (``input_text``, or ``output_text`` for the assistant). An
    id Podium gives names the response (``msg_<its id>_<n>``), so a reference to the item finds
    it without an index (:func:`podium.responses.store.holder_of`); a conversation's own
    items (no response) get random ones."""
    tail = uuid.uuid4().hex if response_id is None else response_id.removeprefix("resp_")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    items: list[JSONObject] = []
    for index, given in enumerate(raw):
        item = dict(given)
        kind = item.setdefault("type", "message")
        if kind == "message" and isinstance(item.get("content"), str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": part, "text": item["content"]}]
        if kind != "reasoning":
            item.setdefault("status", "completed")
        if not item.get("id"):
            item["id"] = f"{_ID_PREFIXES.get(kind, 'item')}_{tail}_{index}"
        items.append(item)
    return items


def conversation_not_found(conversation_id: str, *, param: str) -> PodiumError:
    return PodiumError(
        "not_found",
        f"Conversation with id '{conversation_id[:128]}' not found.",
        param=param,
        code="conversation_not_found",
    )


def _missing(response_id: str) -> PodiumError:
    return PodiumError(
        "not_found",
        f"Response with id '{response_id[:128]}' not found.",  # an id from the path: any size
        param="response_id",
        code="response_not_found",
    )


async def sse_events(events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    async for kind, data in events:
        yield b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


class StoringResponsesIngress(ResponsesIngress):
    def __init__(
        self,
        gateway: Gateway,
        responses: ResponseStore,
        conversations: ConversationStore,
        runs: BackgroundRuns | None = None,
    ) -> None:
        self.gateway = gateway
        self.responses = responses
        self.conversations = conversations
        self.runs = runs or BackgroundRuns(responses, responses.settings)
        self.counts = KeptCounts()

    def parse(self, body: Any, headers: dict[str, str]) -> ChatRequest:
        return parse(body, self.compactions)

    async def resolve(self, request: ChatRequest, context: RequestContext) -> ChatRequest:
        assert isinstance(request, ResponsesRequest)
        # The owner decides whose items may be named and whose responses continued: ask who
        # is calling first.
        known = False
        if request.references:
            await self.gateway.authenticate(context, request.model)
            known = True
            request = await self.dereference(request, context.caller.owner)
        request.response_id = f"resp_{context.trace_id}"
        previous, conversation = request.previous_response_id, request.conversation_id
        if previous is None and conversation is None:
            return request
        if not known:
            await self.gateway.authenticate(context, request.model)
        owner = context.caller.owner
        if previous is not None:
            history = await self.history(previous, owner)
        else:
            assert conversation is not None
            if await self.conversations.get(owner, conversation) is None:
                raise conversation_not_found(conversation, param="conversation")
            history = await self.conversations.items(conversation)
            # Its turns stay on one worker (session affinity), whatever each one's instructions.
            context.session_id = context.session_id or f"conv-{conversation}"
        self.counts.continued += 1
        messages = request.messages
        system = 1 if messages and request.echo.get("instructions") else 0
        earlier = history_messages(history, self.compactions)
        request.messages = [*messages[:system], *earlier, *messages[system:]]
        request.attachments = request.attachments or any_attachments(earlier)
        return request

    async def dereference(self, request: ResponsesRequest, owner: str) -> ResponsesRequest:
        """The request read again with each ``item_reference`` in its input replaced by the
        item it names, from ``owner``'s stored responses or conversations (an unknown id, or
        another owner's, is 404 naming the input item)."""
        assert request.body is not None and isinstance(request.raw_input, list)
        wanted = list(dict.fromkeys(request.references))
        found = await self.conversations.items_by_id(owner, wanted)
        found.update(await self.responses.items_by_id(owner, wanted))
        items: list[Any] = []
        for index, item in enumerate(request.raw_input):
            if not (isinstance(item, dict) and item.get("type") == "item_reference"):
                items.append(item)
                continue
            named = str(item.get("id"))
            if named not in found:
                raise PodiumError(
                    "not_found",
                    f"Item with id '{named[:128]}' not found.",
                    param=f"input[{index}]",
                    code="item_not_found",
                )
            items.append(found[named])
        return parse({**request.body, "input": items}, self.compactions)

    async def history(self, previous: str, owner: str) -> list[JSONObject]:
        """The items of the stored conversation ``previous`` ends, oldest first."""
        chain = await self.responses.chain(owner, previous)
        if not chain:
            raise PodiumError(
                "invalid_request",
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if (await self.runs.current(owner, chain[0])).running:
            raise PodiumError(
                "invalid_request",
                f"Previous response with id '{previous}' is still running in the background; "
                "continue it once it has finished (poll GET /v1/responses/{id}) or cancel it.",
                param="previous_response_id",
                code="previous_response_in_progress",
            )
        limit = self.responses.settings.max_chain
        if len(chain) > limit:
            raise PodiumError(
                "invalid_request",
                f"Previous response with id '{previous}' ends a conversation of more than "
                f"{limit} responses, the most this gateway continues (responses.max_chain); "
                "start a new one, sending what it needs in 'input'.",
                param="previous_response_id",
                code="conversation_too_long",
            )
        gone = chain[-1].previous_response_id
        if gone is not None:
            raise PodiumError(
                "invalid_request",
                f"Previous response with id '{previous}' continues response '{gone}', which "
                "was deleted or has expired, so its conversation cannot be continued.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return conversation_items(chain)

    async def encode_kept(
        self,
        response: ChatResponse,
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> bytes:
        assert isinstance(request, ResponsesRequest) and request.response_id is not None
        body = self.body(response, request, outcome, request.response_id)
        await self.completed(body, request, context)
        return orjson.dumps(body)

    async def completed(
        self, body: JSONObject, request: ChatRequest, context: RequestContext
    ) -> None:
        """Keep the answer the client is about to receive, and add it to its conversation,
        before it receives it, so the next request can continue it at once (on any replica
        sharing the store)."""
        assert isinstance(request, ResponsesRequest)
        conversation = request.conversation_id
        if body.get("status") == "failed" or not (request.store or conversation):
            return
        given = input_items(request.raw_input, str(body["id"]))
        if conversation is not None:
            try:
                await self.conversations.append(conversation, [*given, *body["output"]])
            except Exception:
                # The answer is paid for: send it; the conversation misses this turn.
                self.counts.keep_failures += 1
                log.exception("could not add response %s to %s", body["id"], conversation)
        if not request.store:
            return
        body["store"] = True
        if request.background:
            return  # kept as it started; BackgroundRuns keeps how it ends
        stored = StoredResponse(body["id"], request.previous_response_id, given, body)
        try:
            await self.responses.save(context.caller.owner, context.trace_id, stored)
        except Exception:
            # The answer is paid for: send it, saying it was not kept, rather than lose it.
            self.counts.keep_failures += 1
            log.exception("could not keep response %s", body["id"])
            body["store"] = False
        else:
            self.counts.kept += 1

    # -- background responses --------------------------------------------------------------------

    def detaches(self, request: ChatRequest) -> bool:
        return isinstance(request, ResponsesRequest) and request.background

    async def detach(
        self, request: ChatRequest, context: RequestContext, extra: ExtraHooks | None
    ) -> AnyResponse:
        assert isinstance(request, ResponsesRequest) and request.response_id is not None
        self.runs.ensure_room()
        # The client's timeout bounds its own request, not the answer it leaves running, and
        # nobody waits on it as it runs: it yields the workers to interactive calls.
        for name in DEADLINE_HEADERS:
            context.headers.pop(name, None)
        context.priority = "background"
        routed = asyncio.Event()
        handling = asyncio.ensure_future(
            self.gateway.handle(request, context, extra=extra, routed=routed.set)
        )
        decided = asyncio.ensure_future(routed.wait())
        try:
            await asyncio.wait((decided, handling), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            handling.cancel()  # the caller left before its request was routed
            raise
        finally:
            decided.cancel()
        if not routed.is_set():
            # Its refusal, raised here; or an answer that needed no routing (a cached one),
            # which the run below hands on as it is.
            handling.result()
        owner = context.caller.owner
        body = response_object(
            request,
            response_id=request.response_id,
            model=request.model,
            created_at=int(time.time()),
            status="in_progress",
            output=[],
        )
        body["store"] = True
        run = self.runs.open(request.response_id, owner, body)
        stored = StoredResponse(
            run.response_id,
            request.previous_response_id,
            input_items(request.raw_input, run.response_id),
            body,
            heartbeat_at=time.time(),
            streamed=request.stream,
        )
        # Once routed it runs, whether or not its caller stays to hear so.
        await asyncio.shield(self._start(run, stored, handling, request, context))
        headers = {"x-podium-trace-id": context.trace_id}
        if request.stream:
            events = self.runs.follow(owner, run.response_id, -1)
            return StreamResponse(sse_events(events), 200, headers)
        return Response(orjson.dumps(body), 200, headers)

    async def _start(
        self,
        run: BackgroundRun,
        stored: StoredResponse,
        handling: asyncio.Future[Outcome],
        request: ResponsesRequest,
        context: RequestContext,
    ) -> None:
        """Keep the response as it starts, then let it run; if it cannot be kept, stop it."""
        try:
            await self.responses.save(run.owner, context.trace_id, stored)
        except Exception as error:
            handling.cancel()
            self.runs.discard(run)
            self.counts.keep_failures += 1
            log.exception("could not keep background response %s", run.response_id)
            raise PodiumError(
                "overloaded",
                "The background response could not be kept, so it was not started; try again, "
                "or ask without 'background'.",
                code="store_unavailable",
            ) from error
        self.runs.launch(run, self._answer(handling, request, context, run))

    async def _answer(
        self,
        handling: asyncio.Future[Outcome],
        request: ResponsesRequest,
        context: RequestContext,
        run: BackgroundRun,
    ) -> JSONObject | None:
        outcome = await handling
        if outcome.response is not None:
            body = self.body(outcome.response, request, outcome, run.response_id)
            await self.completed(body, request, context)
            return body
        assert outcome.stream is not None
        events = self.stream_events(outcome.stream, request, outcome, context, run.frame)
        async with contextlib.aclosing(events) as frames:  # type: ignore[type-var]
            async for _ in frames:
                pass  # each event went to the run as it was framed
        return run.final


def register_routes(podium: Podium, ingress: StoringResponsesIngress) -> None:
    """``GET`` / ``DELETE /v1/responses/{id}``, its ``/input_items`` and ``/cancel``."""
    gateway, responses, runs = podium.gateway, ingress.responses, ingress.runs

    async def owner_of(http: Request) -> str:
        return (await gateway.caller(ingress.name, http.headers)).owner

    async def kept(http: Request) -> tuple[str, StoredResponse]:
        owner = await owner_of(http)
        response_id = http.params["response_id"]
        stored = await responses.get(owner, response_id)
        if stored is None:
            raise _missing(response_id)
        return owner, stored

    async def kept_now(http: Request) -> tuple[str, StoredResponse]:
        owner, stored = await kept(http)
        return owner, await runs.current(owner, stored)

    async def retrieve(http: Request) -> AnyResponse:
        owner, stored = await kept_now(http)
        if http.query.get("stream") not in ("true", "1"):
            return Response.json(stored.response)
        after = starting_after(http.query.get("starting_after"))
        if not stored.streamed:
            raise PodiumError(
                "invalid_request",
                "Only a response created with background=true and stream=true can be streamed "
                "again; read this one whole (stream=false).",
                param="stream",
            )
        if responses.events_gone(stored):
            hours = responses.settings.background_events_hours
            raise PodiumError(
                "invalid_request",
                f"The events of this response are kept {hours:g} hours after it ends "
                "(responses.background_events_hours) and are gone; read it whole "
                "(stream=false).",
                param="stream",
                code="stream_expired",
            )
        events = runs.follow(owner, stored.response_id, after)
        return StreamResponse(sse_events(events), 200, {})

    async def delete(http: Request) -> Response:
        owner = await owner_of(http)
        response_id = http.params["response_id"]
        if not await responses.delete(owner, response_id):
            raise _missing(response_id)
        return Response.json({"id": response_id, "object": "response", "deleted": True})

    async def cancel(http: Request) -> Response:
        owner, stored = await kept_now(http)
        if not stored.response.get("background"):
            raise PodiumError(
                "invalid_request",
                "Only a response created with background=true can be cancelled; this one "
                "finished as it was answered.",
                param="response_id",
            )
        if not stored.running:
            return Response.json(stored.response)  # as OpenAI: cancelling again changes nothing
        return Response.json(await runs.cancel(owner, stored))

    async def list_input_items(http: Request) -> Response:
        owner, stored = await kept(http)
        items = stored.input_items
        if stored.previous_response_id is not None:
            chain = await responses.chain(owner, stored.previous_response_id)
            items = [*conversation_items(chain), *items]
        return Response.json(page(items, http.query))

    async def erase(http: Request) -> Response:
        """Everything kept for one owner, gone: their responses, conversations and items."""
        owner = http.params["owner"]
        responses_deleted = await responses.erase(owner)
        conversations, items = await ingress.conversations.erase(owner)
        erased = {"responses": responses_deleted, "conversations": conversations, "items": items}
        if podium.audit is not None:
            podium.audit.record(admin_actor(http), "stored.erase", f"owner:{owner}", erased)
        return Response.json({"owner": owner, "deleted": erased})

    admin_route(podium, "DELETE", "/admin/stored/{owner}", erase)
    podium.app.route("GET", "/v1/responses/{response_id}", retrieve, ingress)
    podium.app.route("DELETE", "/v1/responses/{response_id}", delete, ingress)
    podium.app.route("GET", "/v1/responses/{response_id}/input_items", list_input_items, ingress)
    podium.app.route("POST", "/v1/responses/{response_id}/cancel", cancel, ingress)


def starting_after(raw: str | None) -> int:
    """The ``starting_after`` of a stream picked up again: a sequence number (-1: from the
    start, the default)."""
    if raw is None:
        return -1
    try:
        value = int(raw)
    except ValueError:
        value = -2
    if value < -1:
        raise PodiumError(
            "invalid_request",
            f"Invalid value for 'starting_after': {raw[:32]!r}; give the sequence number of the "
            "last event received (a whole number, 0 or more).",
            param="starting_after",
        )
    return value


def page(items: list[JSONObject], query: dict[str, str]) -> JSONObject:
    """One page of a list, as OpenAI's cursor pages are: ``order`` (``desc`` by default: the
    newest item first), ``limit`` (1 to 100, default 20), and ``after`` / ``before`` item ids."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise PodiumError(
            "invalid_request", "Invalid value for 'order': use 'asc' or 'desc'.", param="order"
        )
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise PodiumError(
            "invalid_request",
            f"Invalid value for 'limit': {raw_limit[:32]!r}; give a whole number from 1 to 100.",
            param="limit",
        )
    ordered = items if order == "asc" else items[::-1]
    ids = [item.get("id") for item in ordered]
    start, end = 0, len(ordered)
    for cursor, move in (("after", 1), ("before", 0)):
        value = query.get(cursor)
        if value is None:
            continue
        if value not in ids:
            raise PodiumError(
                "invalid_request",
                f"Invalid value for '{cursor}': no item with id {value[:64]!r} in this list.",
                param=cursor,
            )
        if move:
            start = ids.index(value) + 1
        else:
            end = ids.index(value)
    window = ordered[start:end]
    data = window[:limit] if "before" not in query else window[-limit:]
    return {"object": "list", **list_page(data, len(window) > len(data))}

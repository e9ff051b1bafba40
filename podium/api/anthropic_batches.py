"""Anthropic's Message Batches API (``client.messages.batches``): ``POST /v1/messages/batches``
takes up to ``batches.max_requests`` Messages requests; Podium answers them in the background,
each through the same admission, policy, routing and recording as ``POST /v1/messages``, under
the key that created the batch (podium/batches/runner.py); the results are read, in order, as
JSON lines once the batch has ended.

As at Anthropic, a request's own problems (a bad ``params``, a refusal, a failed worker) are its
``errored`` result, not the batch's: only the batch's shape is checked when it is created.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from podium.api.anthropic import AnthropicIngress
from podium.api.http import Request, Response, StreamResponse, list_page, parse_json
from podium.batches.endpoints import BatchEndpoints, batch_endpoints
from podium.batches.service import batch_service
from podium.batches.store import Batch, BatchRequest, ResultType
from podium.errors import PodiumError
from podium.types import JSONObject

if TYPE_CHECKING:
    from podium.app import Podium


MESSAGES = "/v1/messages"  # the endpoint a batch's requests are answered by
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def batch_object(batch: Batch, base_url: str) -> JSONObject:
    ended = batch.status == "ended"
    return {
        "id": batch.batch_id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": {
            name: batch.counts[name]
            for name in ("processing", "succeeded", "errored", "canceled", "expired")
        },
        "ended_at": _time(batch.ended_at),
        "created_at": _time(batch.created_at),
        "expires_at": _time(batch.expires_at),
        "archived_at": None,
        "cancel_initiated_at": _time(batch.cancel_initiated_at),
        "results_url": f"{base_url}/v1/messages/batches/{batch.batch_id}/results"
        if ended
        else None,
    }


def base_url(http: Request) -> str:
    """Where the client reached this gateway: results_url is an absolute URL (the SDK fetches
    it as given). A proxy in front says its own scheme in ``x-forwarded-proto``."""
    scheme = http.headers.get("x-forwarded-proto") or http.scope.get("scheme", "http")
    host = http.headers.get("host") or "localhost"
    return f"{scheme}://{host}"


def requests_of(body: Any, limit: int) -> list[tuple[str, JSONObject]]:
    """The batch's requests, its shape checked: each a unique ``custom_id`` and a ``params``
    object. What ``params`` say is checked when each is answered."""
    if not isinstance(body, dict):
        raise PodiumError("invalid_request", "request body must be a JSON object")
    extra = sorted(set(body) - {"requests"})
    if extra:
        raise PodiumError("invalid_request", f"{extra[0]}: Extra inputs are not permitted")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise PodiumError("invalid_request", "requests: give a list of at least one request")
    if len(requests) > limit:
        raise PodiumError(
            "request_too_large",
            f"requests: {len(requests)} requests; a batch holds at most {limit} here "
            "(batches.max_requests).",
        )
    seen: set[str] = set()
    out: list[tuple[str, JSONObject]] = []
    for index, item in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(item, dict) or set(item) != {"custom_id", "params"}:
            raise PodiumError("invalid_request", f"{where}: give exactly 'custom_id' and 'params'")
        custom_id, params = item["custom_id"], item["params"]
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise PodiumError(
                "invalid_request",
                f"{where}.custom_id: 1 to 64 letters, digits, '-' or '_'",
            )
        if custom_id in seen:
            raise PodiumError(
                "invalid_request", f"{where}.custom_id: {custom_id!r} is used twice in this batch"
            )
        if not isinstance(params, dict):
            raise PodiumError("invalid_request", f"{where}.params: give a Messages request")
        seen.add(custom_id)
        out.append((custom_id, params))
    return out


class BatchAnswers:
    """Answers one request of a batch by the handler of ``POST /v1/messages`` (so a contract
    model is answered as there too), under the batch's key."""

    def __init__(self, endpoints: BatchEndpoints, ingress: AnthropicIngress) -> None:
        self.endpoints = endpoints
        self.ingress = ingress

    async def __call__(self, batch: Batch, item: BatchRequest) -> tuple[ResultType, JSONObject]:
        response = await self.endpoints.answer(
            MESSAGES,
            item.params,
            key_id=batch.key_id,
            batch_id=batch.batch_id,
            refuse=("stream",),
            render=self.ingress.render_error,
            until=batch.expires_at,
        )
        body = orjson.loads(response.body)
        if response.status < 300:
            return "succeeded", {"type": "succeeded", "message": body}
        return "errored", {"type": "errored", "error": body}


def register_batches(podium: Podium, ingress: AnthropicIngress) -> None:
    service = batch_service(podium)
    if service is None:
        return
    settings = podium.config.batches
    store, runner = service.store, service.runner
    runner.answers["message"] = BatchAnswers(batch_endpoints(podium), ingress)
    gateway = podium.gateway

    async def owner_of(http: Request) -> str:
        return (await gateway.caller(ingress.name, http.headers)).owner

    async def found(http: Request) -> tuple[str, Batch]:
        owner = await owner_of(http)
        batch_id = http.params["batch_id"]
        batch = await store.get(owner, batch_id)
        if batch is None:
            raise PodiumError("not_found", f"No batch with id '{batch_id[:128]}'.")
        return owner, batch

    async def create(http: Request) -> Response:
        caller = await gateway.caller(ingress.name, http.headers)
        body = parse_json(await http.body(settings.max_body_bytes))
        requests = requests_of(body, settings.max_requests)
        batch_id = f"msgbatch_{uuid.uuid4().hex}"
        batch = await store.create(batch_id, caller.owner, caller.key_id, requests)
        runner.wake()
        return Response.json(batch_object(batch, base_url(http)))

    async def listing(http: Request) -> Response:
        owner = await owner_of(http)
        raw = http.query.get("limit", "20")
        limit = int(raw) if raw.isdigit() else 0
        if not 1 <= limit <= 1000:
            raise PodiumError("invalid_request", "limit: give a whole number from 1 to 1000")
        after, before = http.query.get("after_id"), http.query.get("before_id")
        batches = await store.page(owner, limit + 1, after=after, before=before)
        more = len(batches) > limit
        batches = batches[:limit] if before is None else batches[-limit:]
        data = [batch_object(batch, base_url(http)) for batch in batches]
        return Response.json(list_page(data, more))

    async def retrieve(http: Request) -> Response:
        _, batch = await found(http)
        return Response.json(batch_object(batch, base_url(http)))

    async def cancel(http: Request) -> Response:
        owner, batch = await found(http)
        if await store.cancel(owner, batch.batch_id):
            runner.wake()
            batch = await store.get(owner, batch.batch_id) or batch
        return Response.json(batch_object(batch, base_url(http)))

    async def delete(http: Request) -> Response:
        owner, batch = await found(http)
        deleted = await store.delete(owner, batch.batch_id)
        if deleted is None:
            raise PodiumError(
                "invalid_request",
                f"Batch '{batch.batch_id}' is still {batch.status}; cancel it and delete it "
                "once it has ended.",
            )
        return Response.json({"id": batch.batch_id, "type": "message_batch_deleted"})

    async def results(http: Request) -> StreamResponse:
        _, batch = await found(http)
        if batch.status != "ended":
            raise PodiumError(
                "invalid_request",
                f"Batch '{batch.batch_id}' is still {batch.status}: its results can be read "
                "once it has ended.",
            )
        rows = await store.results(batch.batch_id)

        async def lines() -> AsyncIterator[bytes]:
            for custom_id, result_type, result in rows:
                line = {"custom_id": custom_id, "result": result or {"type": result_type}}
                yield orjson.dumps(line) + b"\n"

        return StreamResponse(lines(), 200, {}, "application/x-jsonl")

    route = podium.app.route
    route("POST", "/v1/messages/batches", create, ingress)
    route("GET", "/v1/messages/batches", listing, ingress)
    route("GET", "/v1/messages/batches/{batch_id}", retrieve, ingress)
    route("DELETE", "/v1/messages/batches/{batch_id}", delete, ingress)
    route("POST", "/v1/messages/batches/{batch_id}/cancel", cancel, ingress)
    route("GET", "/v1/messages/batches/{batch_id}/results", results, ingress)

"""OpenAI's Batch API (``client.batches``) on Podium's batches (podium/batches/): a batch is
made from a file of JSON lines uploaded with ``purpose: batch`` (podium/api/openai_files.py),
each line a request to the batch's ``endpoint``. Podium answers them in the background, each by
the handler that answers that endpoint (podium/batches/endpoints.py: the same admission,
budgets, policy, routing and trace), under the key that created the batch; once it has ended,
what succeeded is in its output file and what did not in its error file.

The file is checked whole when the batch is created (a bad line is a 400 naming it), so a batch
is never ``validating`` or ``failed`` here: it starts ``in_progress``. A request's own problems
(a bad body, a refusal, a failed worker) are its line in the error file, as at OpenAI.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import Field, ValidationError

from podium.api.files import register_files
from podium.api.http import Request, Response, list_page, parse_json
from podium.api.openai import OpenAIIngress, Wire, validation_error
from podium.api.openai_files import ExpiresAfter
from podium.batches.endpoints import BatchEndpoints, batch_endpoints
from podium.batches.files import FileStore
from podium.batches.service import batch_service
from podium.batches.store import Batch, BatchRequest, BatchStore, ResultType
from podium.errors import PodiumError
from podium.types import JSONObject

if TYPE_CHECKING:
    from podium.app import Podium


KIND = "openai"  # Batch.kind of the batches this API makes
# Why a request that was never answered is in the error file.
UNANSWERED: dict[str, tuple[str, str]] = {
    "canceled": ("batch_cancelled", "The batch was cancelled before this request was answered."),
    "expired": ("batch_expired", "The batch expired before this request was answered."),
}


class BatchIn(Wire):
    input_file_id: str = Field(min_length=1, max_length=256)
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(None, max_length=16)
    output_expires_after: ExpiresAfter | None = None  # how long the output and error files last


def _seconds(moment: float | None) -> int | None:
    return None if moment is None else int(moment)


def status_of(batch: Batch) -> str:
    if batch.ended_at is None:
        return "cancelling" if batch.cancel_initiated_at is not None else "in_progress"
    if batch.cancel_initiated_at is not None:
        return "cancelled"
    return "expired" if batch.counts["expired"] else "completed"


def file_ids(batch_id: str) -> tuple[str, str]:
    """The ids of a batch's output and error files: the same on every replica, so two that
    make them at once make one of each."""
    tail = batch_id.removeprefix("batch_")
    return f"file-{tail}-output", f"file-{tail}-errors"


def batch_object(batch: Batch) -> JSONObject:
    counts = batch.counts
    completed = counts["succeeded"]
    failed = counts["errored"] + counts["canceled"] + counts["expired"]
    details = batch.details or {}
    status = status_of(batch)
    ended = batch.ended_at
    output_id, error_id = file_ids(batch.batch_id)
    made = batch.files_at is not None
    return {
        "id": batch.batch_id,
        "object": "batch",
        "endpoint": details.get("endpoint"),
        "errors": None,
        "input_file_id": details.get("input_file_id"),
        "completion_window": details.get("completion_window", "24h"),
        "status": status,
        "output_file_id": output_id if made and completed else None,
        "error_file_id": error_id if made and failed else None,
        "created_at": int(batch.created_at),
        # Checked whole when created: in progress from the start.
        "in_progress_at": int(batch.created_at),
        "expires_at": int(batch.expires_at),
        "finalizing_at": _seconds(ended),
        "completed_at": _seconds(ended) if status == "completed" else None,
        "failed_at": None,
        "expired_at": _seconds(ended) if status == "expired" else None,
        "cancelling_at": _seconds(batch.cancel_initiated_at),
        "cancelled_at": _seconds(ended) if status == "cancelled" else None,
        "request_counts": {"total": sum(counts.values()), "completed": completed, "failed": failed},
        "metadata": details.get("metadata"),
        "model": details.get("model"),
        "usage": details.get("usage"),  # once ended: the tokens of its answered requests
    }


def usage_of(bodies: list[JSONObject]) -> JSONObject:
    """The tokens of a batch's answers, in the shape of OpenAI's batch ``usage``: each answer's
    usage read in its endpoint's own names (Chat Completions' and embeddings' ``prompt_`` and
    ``completion_tokens``, the Responses API's ``input_`` and ``output_tokens``)."""
    prompt = completion = cached = reasoning = 0
    for body in bodies:
        usage = body.get("usage")
        if not isinstance(usage, dict):
            continue
        prompt += _count(usage, "prompt_tokens", "input_tokens")
        completion += _count(usage, "completion_tokens", "output_tokens")
        cached += _count(
            usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {},
            "cached_tokens",
        )
        reasoning += _count(
            usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {},
            "reasoning_tokens",
        )
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _count(usage: Any, *names: str) -> int:
    for name in names:
        value = usage.get(name) if isinstance(usage, dict) else None
        if isinstance(value, int):
            return value
    return 0


def _bad_line(number: int, why: str) -> PodiumError:
    return PodiumError(
        "invalid_request",
        f"input_file_id: line {number} of the file {why}",
        param="input_file_id",
        code="invalid_input_file",
    )


def requests_in(content: bytes, endpoint: str, limit: int) -> list[tuple[str, JSONObject]]:
    """A batch's requests from its file: each line a JSON object with a unique ``custom_id``,
    ``method`` POST, ``url`` the batch's endpoint and a ``body``. What a body says is checked
    when it is answered, as the endpoint would."""
    out: list[tuple[str, JSONObject]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(content.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue  # a blank line (the last, often) holds no request
        try:
            item: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise _bad_line(number, "is not JSON: the file must be JSON lines") from None
        if not isinstance(item, dict):
            raise _bad_line(number, "is not a JSON object")
        extra = sorted(set(item) - {"custom_id", "method", "url", "body"})
        if extra:
            raise _bad_line(number, f"has a field {extra[0]!r}: give custom_id, method, url, body")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise _bad_line(number, "has no custom_id (a non-empty string)")
        if custom_id in seen:
            raise _bad_line(
                number, f"repeats the custom_id {custom_id!r} of line {seen[custom_id]}"
            )
        if item.get("method") != "POST":
            raise _bad_line(number, "has a method other than 'POST'")
        if item.get("url") != endpoint:
            raise _bad_line(
                number, f"has the url {item.get('url')!r}, not the batch's endpoint {endpoint!r}"
            )
        body = item.get("body")
        if not isinstance(body, dict):
            raise _bad_line(number, "has no body (a JSON object)")
        seen[custom_id] = number
        out.append((custom_id, body))
        if len(out) > limit:
            raise PodiumError(
                "request_too_large",
                f"input_file_id: the file holds more than {limit} requests, the most a batch "
                "holds here (batches.max_requests)",
                param="input_file_id",
            )
    if not out:
        raise PodiumError(
            "invalid_request",
            "input_file_id: the file holds no requests",
            param="input_file_id",
            code="invalid_input_file",
        )
    return out


class OpenAIBatchAnswers:
    """Answers one request of a batch by the handler of its endpoint, under the batch's key,
    and keeps what the endpoint answered (its status, trace id and body)."""

    def __init__(self, endpoints: BatchEndpoints) -> None:
        self.endpoints = endpoints
        self.errors = OpenAIIngress()

    async def __call__(self, batch: Batch, item: BatchRequest) -> tuple[ResultType, JSONObject]:
        response = await self.endpoints.answer(
            str((batch.details or {}).get("endpoint")),
            item.params,
            key_id=batch.key_id,
            batch_id=batch.batch_id,
            refuse=("stream", "background"),
            render=self.errors.render_error,
            until=batch.expires_at,
        )
        result = {
            "status_code": response.status,
            "request_id": response.headers.get("x-podium-trace-id") or f"req_{uuid.uuid4().hex}",
            "body": orjson.loads(response.body),
        }
        return ("succeeded" if response.status < 300 else "errored"), result


async def with_files(batch: Batch, store: BatchStore, files: FileStore) -> Batch:
    """The batch, with its output and error files made if it has ended and they are not yet.

    They are made when the ended batch is first read rather than by the runner as it ends it:
    the runner then has one job on every kind of batch, and a replica that stops between
    ending a batch and writing its files leaves nothing half done (the next read makes them;
    ids that replicas agree on keep one of each)."""
    if batch.ended_at is None or batch.files_at is not None:
        return batch
    output: list[bytes] = []
    errors: list[bytes] = []
    answered: list[JSONObject] = []  # the bodies of the answers, for the batch's usage
    tail = batch.batch_id.removeprefix("batch_")
    for seq, (custom_id, result_type, result) in enumerate(await store.results(batch.batch_id)):
        line: JSONObject = {"id": f"batch_req_{tail}_{seq}", "custom_id": custom_id}
        if result_type == "succeeded":
            output.append(orjson.dumps({**line, "response": result, "error": None}))
            if result is not None and isinstance(result.get("body"), dict):
                answered.append(result["body"])
            continue
        if result is None:
            code, message = UNANSWERED[result_type]
        else:
            error = result["body"].get("error") or {}
            code = str(error.get("code") or error.get("type") or "error")
            message = str(error.get("message") or "")
        line.update(response=result, error={"code": code, "message": message})
        errors.append(orjson.dumps(line))
    output_id, error_id = file_ids(batch.batch_id)
    seconds = (batch.details or {}).get("output_seconds")  # the batch's output_expires_after
    for file_id, lines, name in ((output_id, output, "output"), (error_id, errors, "errors")):
        if lines:
            await files.create(
                file_id,
                batch.owner,
                "batch_output",
                f"{batch.batch_id}_{name}.jsonl",
                b"\n".join(lines) + b"\n",
                batch_id=batch.batch_id,
                expires_in=None if seconds is None else float(seconds),
            )
    details = {**(batch.details or {}), "usage": usage_of(answered)}
    await store.files_made(batch.batch_id, details)
    return await store.get(batch.owner, batch.batch_id, KIND) or batch


def register_app(podium: Podium) -> None:
    service = batch_service(podium)
    if service is None:
        return
    store, runner, files = service.store, service.runner, service.files
    endpoints = batch_endpoints(podium)
    runner.answers[KIND] = OpenAIBatchAnswers(endpoints)
    register_files(podium, files)
    gateway, errors = podium.gateway, OpenAIIngress()
    settings = podium.config.batches
    limit = podium.config.server.max_body_bytes

    async def found(http: Request) -> Batch:
        owner = (await gateway.caller(errors.name, http.headers)).owner
        batch_id = http.params["batch_id"]
        batch = await store.get(owner, batch_id, KIND)
        if batch is None:
            raise PodiumError("not_found", f"No batch found with id '{batch_id[:128]}'.")
        return await with_files(batch, store, files)

    async def create(http: Request) -> Response:
        caller = await gateway.caller(errors.name, http.headers)
        body = parse_json(await http.body(limit))
        try:
            wire = BatchIn.model_validate(body)
        except ValidationError as error:
            raise validation_error(error) from None
        if wire.endpoint not in endpoints.urls():
            raise PodiumError(
                "invalid_request",
                f"endpoint: {wire.endpoint!r} is not answered in batches here; Podium answers "
                f"batches for {', '.join(endpoints.urls())}",
                param="endpoint",
            )
        stored = await files.get(caller.owner, wire.input_file_id)
        content = await files.content(caller.owner, wire.input_file_id)
        if stored is None or content is None:
            raise PodiumError(
                "not_found",
                f"No such File object: {wire.input_file_id}",
                param="input_file_id",
            )
        if stored.purpose != "batch":
            raise PodiumError(
                "invalid_request",
                f"input_file_id: the file's purpose is {stored.purpose!r}, not 'batch'",
                param="input_file_id",
            )
        requests = requests_in(content, wire.endpoint, settings.max_requests)
        details: JSONObject = {
            "endpoint": wire.endpoint,
            "input_file_id": wire.input_file_id,
            "completion_window": wire.completion_window,
            "metadata": wire.metadata,
        }
        if wire.output_expires_after is not None:
            details["output_seconds"] = wire.output_expires_after.seconds
        named = {body.get("model") for _, body in requests}
        if len(named) == 1 and isinstance(model := named.pop(), str):
            details["model"] = model  # one model for the whole batch, as OpenAI's batches have
        batch_id = f"batch_{uuid.uuid4().hex}"
        batch = await store.create(
            batch_id, caller.owner, caller.key_id, requests, kind=KIND, details=details
        )
        runner.wake()
        return Response.json(batch_object(batch))

    async def listing(http: Request) -> Response:
        owner = (await gateway.caller(errors.name, http.headers)).owner
        raw = http.query.get("limit", "20")
        limit_of_page = int(raw) if raw.isdigit() else 0
        if not 1 <= limit_of_page <= 100:
            raise PodiumError(
                "invalid_request", "limit: give a whole number from 1 to 100", param="limit"
            )
        page = await store.page(owner, limit_of_page + 1, after=http.query.get("after"), kind=KIND)
        batches = [await with_files(batch, store, files) for batch in page[:limit_of_page]]
        data = [batch_object(batch) for batch in batches]
        return Response.json({"object": "list", **list_page(data, len(page) > limit_of_page)})

    async def retrieve(http: Request) -> Response:
        return Response.json(batch_object(await found(http)))

    async def cancel(http: Request) -> Response:
        batch = await found(http)
        if await store.cancel(batch.owner, batch.batch_id, KIND):
            runner.wake()
            batch = await store.get(batch.owner, batch.batch_id, KIND) or batch
        elif batch.ended_at is not None:
            raise PodiumError(
                "invalid_request",
                f"Batch '{batch.batch_id}' has already ended ({status_of(batch)}): it cannot "
                "be cancelled.",
                code="batch_not_cancellable",
                status=409,
            )
        return Response.json(batch_object(batch))

    route = podium.app.route
    route("POST", "/v1/batches", create, errors)
    route("GET", "/v1/batches", listing, errors)
    route("GET", "/v1/batches/{batch_id}", retrieve, errors)
    route("POST", "/v1/batches/{batch_id}/cancel", cancel, errors)

"""``POST /v1/feedback``: a quality signal from an application or a person, stored against a
trace.

    {"trace_id": "...", "score": true | 0.8 | "good", "comment": "...", "source": "human",
     "name": "thumbs"}

The caller is checked like any API call: the ``admit`` of every hook that ``authenticates``
(API keys) runs with a stand-in request. Answers: 201 stored; 400 bad body or score type; 401/403
from the key check; 404 unknown trace; 429 too much feedback (per caller) or too many writes in
flight, with Retry-After.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from podium.api.http import PlainErrors, Request, Response
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.observe.feedback import MAX_NAME_CHARS, Feedback, make_signal
from podium.types import ChatRequest

if TYPE_CHECKING:
    from podium.app import Podium

MAX_BODY = 64 * 1024
FIELDS = frozenset({"trace_id", "score", "comment", "source", "name", "scale"})
RESERVED_SOURCES = frozenset({"contract", "verifier", "judge"})  # Podium's own signals
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


def _text(body: dict[str, Any], field: str, default: str, limit: int) -> str:
    value = body.get(field, default)
    if not isinstance(value, str) or not _TOKEN.match(value) or len(value) > limit:
        raise PodiumError(
            "invalid_request",
            f"'{field}' must be a short name (letters, digits, . _ : -, at most {limit})",
            param=field,
        )
    return value


def _scale(body: dict[str, Any]) -> tuple[float, float] | None:
    value = body.get("scale")
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or value[0] >= value[1]
    ):
        raise PodiumError(
            "invalid_request", "'scale' must be [low, high] with low < high", param="scale"
        )
    return float(value[0]), float(value[1])


def parse(body: Any, caller: str, max_comment: int) -> Any:
    if not isinstance(body, dict):
        raise PodiumError("invalid_request", "request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise PodiumError(
            "invalid_request",
            f"unknown field {unknown[0]!r}; accepted: {', '.join(sorted(FIELDS))}",
            param=unknown[0],
        )
    trace_id = body.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id or len(trace_id) > 64:
        raise PodiumError(
            "invalid_request",
            "'trace_id' is required: the x-podium-trace-id header of the answer",
            param="trace_id",
        )
    if "score" not in body:
        raise PodiumError(
            "invalid_request", "'score' is required (boolean, number or label)", param="score"
        )
    source = _text(body, "source", "app", 32)
    if source in RESERVED_SOURCES:
        raise PodiumError(
            "invalid_request",
            f"source {source!r} is reserved for Podium's own signals; use app, human or another",
            param="source",
        )
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > max_comment):
        raise PodiumError(
            "invalid_request",
            f"'comment' must be a string of at most {max_comment} characters",
            param="comment",
        )
    return make_signal(
        trace_id,
        _text(body, "name", "user", MAX_NAME_CHARS),
        body["score"],
        source=source,
        comment=comment,
        caller=caller,
        scale=_scale(body),
    )


async def authenticate(podium: Podium, request: Request) -> RequestContext:
    """The caller, checked by the hooks that check API keys on chat requests."""
    context = RequestContext(ingress="feedback", headers=request.headers)
    stand_in = ChatRequest(model="podium/feedback", messages=[])
    for hook in podium.hooks:
        if hook.authenticates:
            await hook.admit(stand_in, context)
    return context


def register(podium: Podium, feedback: Feedback) -> None:
    config = podium.config.observe.feedback

    async def submit(request: Request) -> Response:
        context = await authenticate(podium, request)
        caller = context.caller.key_id
        feedback.admit(caller)
        signal = parse(await request.json(MAX_BODY), caller, config.max_comment_chars)
        stored = await feedback.submit(signal)
        if not stored:
            # The trace may still sit in the trace writer's buffer: write it out, look again.
            await podium.recorder.flush()
            stored = await feedback.submit(signal)
        if not stored:
            raise PodiumError(
                "not_found",
                f"no trace {signal.trace_id!r}: send the x-podium-trace-id of an answer "
                "(traces older than the retention period are gone)",
                param="trace_id",
                code="trace_not_found",
            )
        return Response.json({"stored": True, **signal.describe()}, status=201)

    podium.app.route("POST", "/v1/feedback", submit, PlainErrors())

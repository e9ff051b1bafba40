"""``POST /v1/responses/compact`` (the OpenAI SDK's ``client.responses.compact``): a long
conversation made short. A worker, chosen and governed as for any request (keys, limits,
budgets, the data policy, routing, the trace), summarises everything before; the answer is the
conversation's user messages and one compaction item holding that summary
(podium/responses/compaction.py). A client sends those items back in place of the conversation.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import orjson

from podium.api.http import Request, Response, parse_json
from podium.api.ingress import refuse_provider_fields
from podium.api.responses import ResponsesIngress, usage_object
from podium.api.responses_request import ResponsesRequest
from podium.context import RequestContext
from podium.documents import TEXT, as_text
from podium.errors import PodiumError
from podium.gateway import ExtraHooks, total_cost
from podium.hooks import Hook
from podium.responses.compaction import INSTRUCTION, Compactions
from podium.types import ChatRequest, DocumentPart, ImagePart, JSONObject, Message, TextPart

if TYPE_CHECKING:
    from podium.api.responses_stored import StoringResponsesIngress
    from podium.app import Podium

# What a compaction request may say; it asks for a summary, so nothing shapes an answer.
FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "prompt_cache_key",
        "safety_identifier",
        "service_tier",
    }
)
SUMMARY_TOKENS = 4096  # the most a summary may take


class CompactionOwners(Hook):
    """Compaction items are accepted only from their owner's keys: a summary is its owner's."""

    async def admit(self, request: ChatRequest, context: RequestContext) -> None:
        if not isinstance(request, ResponsesRequest) or not request.compaction_owners:
            return
        if request.compaction_owners != {context.caller.owner}:
            raise PodiumError(
                "invalid_request",
                "A compaction item in 'input' was made for another owner's keys; send the "
                "conversation itself, or compact it with your own key.",
                param="input",
                code="invalid_compaction",
            )


def _file_item(part: DocumentPart) -> JSONObject:
    """A document as an input item: a text file as its text, a PDF as it came (by then read
    from its file, if it was named by one)."""
    if part.media_type == TEXT:
        return {"type": "input_text", "text": "".join(p.text for p in as_text(part))}
    item: JSONObject = {"type": "input_file", "filename": part.filename or "document.pdf"}
    if part.url is not None:
        item["file_url"] = part.url
    else:
        item["file_data"] = f"data:{part.media_type};base64,{part.data}"
    return item


def user_items(messages: list[Message]) -> list[JSONObject]:
    """The user messages, as the input items a compacted conversation keeps."""
    items: list[JSONObject] = []
    for message in messages:
        if message.role != "user":
            continue
        content: list[JSONObject] = []
        for part in message.content:
            if isinstance(part, TextPart):
                content.append({"type": "input_text", "text": part.text})
            elif isinstance(part, ImagePart):
                url = part.url or f"data:{part.media_type};base64,{part.data}"
                content.append({"type": "input_image", "image_url": url, "detail": part.detail})
            elif isinstance(part, DocumentPart):
                content.append(_file_item(part))
        items.append(
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": content,
            }
        )
    return items


def register_compact(
    podium: Podium,
    ingress: ResponsesIngress,
    keeper: StoringResponsesIngress | None,
    compactions: Compactions,
    extra: ExtraHooks,
) -> None:
    gateway, limit = podium.gateway, podium.config.server.max_body_bytes

    async def compact(http: Request) -> Response:
        context = RequestContext(ingress.name, http.headers)
        body = parse_json(await http.body(limit))
        if not isinstance(body, dict):
            await gateway.authenticate(context)
            raise PodiumError("invalid_request", "request body must be a JSON object")
        refuse_provider_fields(body, http.headers)
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise PodiumError(
                "invalid_request", f"Unknown parameter: '{unknown[0]}'.", param=unknown[0]
            )
        request = ingress.parse({**body, "store": False}, http.headers)
        if keeper is not None:
            request = await keeper.resolve(request, context)
        assert isinstance(request, ResponsesRequest)
        kept = user_items(request.messages)
        request.messages = [*request.messages, Message("user", [TextPart(INSTRUCTION)])]
        request.tools, request.tool_choice, request.response_format = [], None, None
        request.max_tokens = SUMMARY_TOKENS
        outcome = await gateway.handle(request, context, extra=extra)
        answer = outcome.response
        assert answer is not None  # asked whole
        if not answer.text.strip():
            raise PodiumError(
                "upstream", f"worker {answer.model!r} wrote no summary", code="empty_summary"
            )
        summary = {
            "id": f"cmp_{context.trace_id}",
            "type": "compaction",
            "encrypted_content": compactions.seal(context.caller.owner, answer.text),
            "created_by": answer.model,
        }
        compacted = {
            "id": f"resp_{context.trace_id}",
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*kept, summary],
            "usage": usage_object(answer.usage, total_cost(outcome.run.attempts)),
        }
        return Response(orjson.dumps(compacted), 200, outcome.headers(context))

    podium.app.route("POST", "/v1/responses/compact", compact, ingress)

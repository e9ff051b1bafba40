"""OpenAI's Conversations API: ``/v1/conversations`` and its ``/items``, over
:class:`~podium.responses.conversations.ConversationStore`. A response given ``conversation``
reads the conversation's items before its input and adds its input and output to it
(:mod:`podium.api.responses_stored`). Registered with the storing Responses ingress, so
``responses.store: false`` turns both off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, StringConstraints, ValidationError

from podium.api.http import Request, Response
from podium.api.openai import Wire
from podium.api.responses_request import Item, validation_error
from podium.api.responses_stored import (
    StoringResponsesIngress,
    conversation_not_found,
    input_items,
    page,
)
from podium.errors import PodiumError
from podium.responses.conversations import Conversation

if TYPE_CHECKING:
    from podium.app import Podium

# OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512; 20 items a call.
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=512)],
    ],
    Field(max_length=16),
]
MAX_ITEMS = 20


class ConversationIn(Wire):
    items: list[Item] | None = Field(None, max_length=MAX_ITEMS)
    metadata: Metadata | None = None
    safety_identifier: str | None = None  # accepted, as on /v1/responses


class ConversationUpdate(Wire):
    metadata: Metadata


class ItemsIn(Wire):
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)


def missing(conversation_id: str) -> PodiumError:
    return conversation_not_found(conversation_id, param="conversation_id")


def register_routes(podium: Podium, ingress: StoringResponsesIngress) -> None:
    conversations = ingress.conversations
    limit = podium.config.server.max_body_bytes

    async def owner_of(http: Request) -> str:
        return (await podium.gateway.caller(ingress.name, http.headers)).owner

    async def read(http: Request, model: type[Wire]) -> tuple[Any, Any]:
        body = await http.json(limit)
        if not isinstance(body, dict):
            raise PodiumError("invalid_request", "request body must be a JSON object")
        try:
            return model.model_validate(body), body
        except ValidationError as error:
            raise validation_error(error) from None

    async def owned(http: Request) -> Conversation:
        conversation_id = http.params["conversation_id"]
        found = await conversations.get(await owner_of(http), conversation_id)
        if found is None:
            raise missing(conversation_id)
        return found

    async def create(http: Request) -> Response:
        owner = await owner_of(http)
        wire, body = await read(http, ConversationIn)
        conversation = await conversations.create(owner, wire.metadata or {})
        await conversations.append(
            conversation.conversation_id, input_items(body.get("items") or [])
        )
        return Response.json(conversation.wire())

    async def retrieve(http: Request) -> Response:
        return Response.json((await owned(http)).wire())

    async def update(http: Request) -> Response:
        owner = await owner_of(http)
        wire, _ = await read(http, ConversationUpdate)
        conversation_id = http.params["conversation_id"]
        updated = await conversations.update(owner, conversation_id, wire.metadata)
        if updated is None:
            raise missing(conversation_id)
        return Response.json(updated.wire())

    async def delete(http: Request) -> Response:
        conversation_id = http.params["conversation_id"]
        if not await conversations.delete(await owner_of(http), conversation_id):
            raise missing(conversation_id)
        return Response.json(
            {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        )

    async def add_items(http: Request) -> Response:
        conversation = await owned(http)
        _, body = await read(http, ItemsIn)
        added = input_items(body["items"])
        await conversations.append(conversation.conversation_id, added)
        return Response.json(
            {
                "object": "list",
                "data": added,
                "first_id": added[0]["id"],
                "last_id": added[-1]["id"],
                "has_more": False,
            }
        )

    async def list_items(http: Request) -> Response:
        conversation = await owned(http)
        items = await conversations.items(conversation.conversation_id)
        return Response.json(page(items, http.query))

    async def item(http: Request) -> Response:
        conversation = await owned(http)
        item_id = http.params["item_id"]
        found = await conversations.item(conversation.conversation_id, item_id)
        if found is None:
            raise _no_item(item_id)
        return Response.json(found)

    async def delete_item(http: Request) -> Response:
        conversation = await owned(http)
        item_id = http.params["item_id"]
        if not await conversations.delete_item(conversation.conversation_id, item_id):
            raise _no_item(item_id)
        return Response.json(conversation.wire())

    route = podium.app.route
    route("POST", "/v1/conversations", create, ingress)
    route("GET", "/v1/conversations/{conversation_id}", retrieve, ingress)
    route("POST", "/v1/conversations/{conversation_id}", update, ingress)
    route("DELETE", "/v1/conversations/{conversation_id}", delete, ingress)
    route("POST", "/v1/conversations/{conversation_id}/items", add_items, ingress)
    route("GET", "/v1/conversations/{conversation_id}/items", list_items, ingress)
    route("GET", "/v1/conversations/{conversation_id}/items/{item_id}", item, ingress)
    route("DELETE", "/v1/conversations/{conversation_id}/items/{item_id}", delete_item, ingress)


def _no_item(item_id: str) -> PodiumError:
    return PodiumError(
        "not_found",
        f"Item with id '{item_id[:128]}' not found in this conversation.",
        param="item_id",
        code="item_not_found",
    )

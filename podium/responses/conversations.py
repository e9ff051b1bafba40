"""Conversations (OpenAI's Conversations API) in the store's ``conversations`` and
``conversation_items`` tables: a named, ordered list of items that a response given
``conversation`` reads before its input and then extends with its input and output.

As with stored responses, a conversation belongs to the owner of the key that made it, and
every statement is filtered by that owner. Conversations are kept until deleted, as OpenAI
keeps them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from podium.policy.sealing import Sealer, Unsealed
from podium.store.tables import SQLExecutor
from podium.types import JSONObject


@dataclass(slots=True)
class Conversation:
    conversation_id: str
    created_at: float
    metadata: dict[str, str]

    def wire(self) -> JSONObject:
        return {
            "id": self.conversation_id,
            "object": "conversation",
            "created_at": int(self.created_at),
            "metadata": self.metadata,
        }


def new_conversation_id() -> str:
    return f"conv_{uuid.uuid4().hex}"


class ConversationStore:
    def __init__(
        self,
        db: SQLExecutor,
        *,
        sealer: Sealer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.sealer = sealer or Unsealed()
        self._clock = clock

    async def create(self, owner: str, metadata: dict[str, str]) -> Conversation:
        conversation = Conversation(new_conversation_id(), self._clock(), metadata)
        await self.db.execute(
            "INSERT INTO conversations (conversation_id, owner, created_at, metadata) "
            "VALUES (?, ?, ?, ?)",
            (
                conversation.conversation_id,
                owner,
                conversation.created_at,
                orjson.dumps(metadata).decode(),
            ),
        )
        return conversation

    async def get(self, owner: str, conversation_id: str) -> Conversation | None:
        rows = await self.db.execute(
            "SELECT conversation_id, created_at, metadata FROM conversations "
            "WHERE conversation_id = ? AND owner = ?",
            (conversation_id, owner),
        )
        return Conversation(rows[0][0], rows[0][1], orjson.loads(rows[0][2])) if rows else None

    async def update(
        self, owner: str, conversation_id: str, metadata: dict[str, str]
    ) -> Conversation | None:
        rows = await self.db.execute(
            "UPDATE conversations SET metadata = ? WHERE conversation_id = ? AND owner = ? "
            "RETURNING conversation_id, created_at, metadata",
            (orjson.dumps(metadata).decode(), conversation_id, owner),
        )
        return Conversation(rows[0][0], rows[0][1], orjson.loads(rows[0][2])) if rows else None

    async def delete(self, owner: str, conversation_id: str) -> bool:
        # The conversation first: once it is gone its items are unreachable, even if the
        # second statement never runs.
        rows = await self.db.execute(
            "DELETE FROM conversations WHERE conversation_id = ? AND owner = ? RETURNING 1",
            (conversation_id, owner),
        )
        if not rows:
            return False
        await self.db.execute(
            "DELETE FROM conversation_items WHERE conversation_id = ?", (conversation_id,)
        )
        return True

    async def erase(self, owner: str) -> tuple[int, int]:
        """Delete every conversation ``owner`` has and their items; returns how many of each."""
        items = await self.db.execute(
            "DELETE FROM conversation_items WHERE conversation_id IN "
            "(SELECT conversation_id FROM conversations WHERE owner = ?) RETURNING 1",
            (owner,),
        )
        conversations = await self.db.execute(
            "DELETE FROM conversations WHERE owner = ? RETURNING 1", (owner,)
        )
        return len(conversations), len(items)

    async def append(self, conversation_id: str, items: list[JSONObject]) -> None:
        """Add ``items`` at the end, in order (the caller has checked the owner)."""
        if not items:
            return
        # The order key: nanoseconds, plus each item's place in this append. Appends to one
        # conversation at the same nanosecond from two processes are left to chance.
        start = time.time_ns()
        rows = ", ".join("(?, ?, ?, ?)" for _ in items)
        params: list[object] = []
        for offset, item in enumerate(items):
            sealed = self.sealer.seal(orjson.dumps(item), conversation_id)
            params += [conversation_id, start + offset, item["id"], sealed]
        await self.db.execute(
            f"INSERT INTO conversation_items (conversation_id, seq, item_id, item) VALUES {rows}",
            tuple(params),
        )

    async def items(self, conversation_id: str) -> list[JSONObject]:
        rows = await self.db.execute(
            "SELECT item FROM conversation_items WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        )
        return [orjson.loads(self.sealer.open(row[0], conversation_id)) for row in rows]

    async def item(self, conversation_id: str, item_id: str) -> JSONObject | None:
        rows = await self.db.execute(
            "SELECT item FROM conversation_items WHERE conversation_id = ? AND item_id = ? "
            "ORDER BY seq LIMIT 1",
            (conversation_id, item_id),
        )
        return orjson.loads(self.sealer.open(rows[0][0], conversation_id)) if rows else None

    async def items_by_id(self, owner: str, item_ids: Sequence[str]) -> dict[str, JSONObject]:
        """The items of ``owner``'s conversations with these ids (the latest added where one
        repeats); ids not found are left out."""
        if not item_ids:
            return {}
        marks = ", ".join("?" * len(item_ids))
        rows = await self.db.execute(
            "SELECT i.item_id, i.conversation_id, i.item FROM conversation_items i JOIN "
            "conversations c ON c.conversation_id = i.conversation_id WHERE c.owner = ? "
            f"AND i.item_id IN ({marks}) ORDER BY i.seq",
            (owner, *item_ids),
        )
        return {
            item_id: orjson.loads(self.sealer.open(item, conversation_id))
            for item_id, conversation_id, item in rows
        }

    async def delete_item(self, conversation_id: str, item_id: str) -> bool:
        rows = await self.db.execute(
            "DELETE FROM conversation_items WHERE conversation_id = ? AND item_id = ? RETURNING 1",
            (conversation_id, item_id),
        )
        return bool(rows)

"""Stored responses in the store's ``responses`` table (SQLite or PostgreSQL, the same SQL).

Each response belongs to the owner of the key that created it: every read, chain and delete is
filtered by owner, so one application never sees another's conversations, even by id. A
response past its retention is gone for reads at once and deleted by the next sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import orjson

from podium.periodic import Periodic
from podium.policy.sealing import Sealer, Unsealed
from podium.responses.settings import ResponsesSettings
from podium.types import JSONObject


@runtime_checkable
class SQLExecutor(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


@dataclass(slots=True)
class StoredResponse:
    response_id: str
    previous_response_id: str | None
    input_items: list[JSONObject]  # this request's own input, each item with its id
    response: JSONObject  # the Response object as the client received it

    def items(self) -> list[JSONObject]:
        """What this turn added to the conversation: its input, then its output."""
        output = self.response.get("output")
        return [*self.input_items, *(output if isinstance(output, list) else [])]


@dataclass(slots=True)
class KeptCounts:
    """What /metrics reports of stored responses and conversations (this process's)."""

    kept: int = 0  # responses stored
    keep_failures: int = 0  # responses or conversation turns the store could not take
    continued: int = 0  # requests that read a stored conversation back


def conversation_items(chain: list[StoredResponse]) -> list[JSONObject]:
    """The items of a chain (newest first, as :meth:`ResponseStore.chain` gives it), oldest
    turn first: each turn's input, then its output."""
    return [item for turn in reversed(chain) for item in turn.items()]


_COLUMNS = "response_id, previous_response_id, input_items, response"

# The chain from one response back to the first, newest first, in one statement. The depth
# bound stops it one row past ``max_chain``, so a chain too long is seen without reading it all.
_CHAIN = f"""
WITH RECURSIVE chain ({_COLUMNS}, depth) AS (
    SELECT {_COLUMNS}, 0 FROM responses
    WHERE response_id = ? AND owner = ? AND (expires_at IS NULL OR expires_at > ?)
    UNION ALL
    SELECT r.response_id, r.previous_response_id, r.input_items, r.response, chain.depth + 1
    FROM responses r JOIN chain ON r.response_id = chain.previous_response_id
    WHERE r.owner = ? AND (r.expires_at IS NULL OR r.expires_at > ?) AND chain.depth < ?
)
SELECT {_COLUMNS} FROM chain ORDER BY depth
"""


class ResponseStore:
    def __init__(
        self,
        db: SQLExecutor,
        settings: ResponsesSettings,
        *,
        sealer: Sealer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.settings = settings
        self.sealer = sealer or Unsealed()
        self._clock = clock
        self._timer = Periodic(
            self.sweep, settings.sweep_interval_seconds, name="stored-response sweep"
        )

    async def save(self, owner: str, trace_id: str, stored: StoredResponse) -> None:
        now = self._clock()
        days = self.settings.retention_days
        await self.db.execute(
            "INSERT INTO responses (response_id, owner, created_at, expires_at, "
            "previous_response_id, trace_id, input_items, response) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.response_id,
                owner,
                now,
                None if days is None else now + days * 86400,
                stored.previous_response_id,
                trace_id,
                self.sealer.seal(orjson.dumps(stored.input_items), stored.response_id),
                self.sealer.seal(orjson.dumps(stored.response), stored.response_id),
            ),
        )

    def _stored(self, row: Any) -> StoredResponse:
        response_id, sealer = row[0], self.sealer
        return StoredResponse(
            response_id,
            row[1],
            orjson.loads(sealer.open(row[2], response_id)),
            orjson.loads(sealer.open(row[3], response_id)),
        )

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        rows = await self.db.execute(
            f"SELECT {_COLUMNS} FROM responses WHERE response_id = ? AND owner = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (response_id, owner, self._clock()),
        )
        return self._stored(rows[0]) if rows else None

    async def delete(self, owner: str, response_id: str) -> bool:
        rows = await self.db.execute(
            "DELETE FROM responses WHERE response_id = ? AND owner = ? "
            "AND (expires_at IS NULL OR expires_at > ?) RETURNING 1",
            (response_id, owner, self._clock()),
        )
        return bool(rows)

    async def erase(self, owner: str) -> int:
        """Delete every response ``owner`` keeps; returns how many."""
        rows = await self.db.execute("DELETE FROM responses WHERE owner = ? RETURNING 1", (owner,))
        return len(rows)

    async def chain(self, owner: str, response_id: str) -> list[StoredResponse]:
        """``response_id`` and the responses it continues, newest first: at most
        ``max_chain + 1`` of them, and fewer when one earlier in the chain is gone (the last
        one's ``previous_response_id`` then names it). Empty when ``response_id`` is unknown."""
        now = self._clock()
        rows = await self.db.execute(
            _CHAIN, (response_id, owner, now, owner, now, self.settings.max_chain)
        )
        return [self._stored(row) for row in rows]

    async def sweep(self, batch: int = 5000) -> int:
        """Delete expired responses, a batch per statement; returns how many."""
        deleted = 0
        while True:
            rows = await self.db.execute(
                "DELETE FROM responses WHERE response_id IN (SELECT response_id FROM responses "
                "WHERE expires_at <= ? LIMIT ?) RETURNING 1",
                (self._clock(), batch),
            )
            deleted += len(rows)
            if len(rows) < batch:
                return deleted

    async def start(self) -> None:
        if self.settings.retention_days is not None:
            self._timer.start()

    async def close(self) -> None:
        await self._timer.close()

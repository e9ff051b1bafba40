"""Stored responses in the store's ``responses`` table (SQLite or PostgreSQL, the same SQL).

Each response belongs to the owner of the key that created it: every read, chain and delete is
filtered by owner, so one application never sees another's conversations, even by id. A
response past its retention is gone for reads at once and deleted by the next sweep.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from podium.periodic import Periodic
from podium.policy.sealing import Sealer
from podium.responses.settings import ResponsesSettings
from podium.store.tables import SealedTables, SQLExecutor, Statement, execute_together
from podium.types import JSONObject

Event = tuple[str, bytes]  # a stream event: its type, and its JSON


@dataclass(slots=True)
class StoredResponse:
    response_id: str
    previous_response_id: str | None
    input_items: list[JSONObject]  # this request's own input, each item with its id
    response: JSONObject  # the Response object as the client received it
    # When the replica running a background response last said it still runs it; None once
    # it has finished (and for every response answered as it came).
    heartbeat_at: float | None = None
    streamed: bool = False  # a background response created with ``stream``: its events are kept
    # When its events are (or were) deleted, once it has ended (responses.background_events_hours)
    events_until: float | None = None

    @property
    def running(self) -> bool:
        return self.heartbeat_at is not None

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


# An item id Podium made names its response: the answer's message is ``msg_<tail>`` and the
# input items it gave ids to ``<kind>_<tail>_<n>``, where the response is ``resp_<tail>``.
_OWN_ID = re.compile(r"^[a-z]+_([0-9a-f]{32})(?:_\d+)?$")


def holder_of(item_id: str) -> str | None:
    """The response an id Podium made names (None for another's id: a client's own, or a tool
    call's, which the ``response_items`` index finds instead)."""
    match = _OWN_ID.match(item_id)
    return None if match is None else f"resp_{match.group(1)}"


_COLUMNS = (
    "response_id, previous_response_id, input_items, response, heartbeat_at, streamed, events_until"
)

# The chain from one response back to the first, newest first, in one statement. The depth
# bound stops it one row past ``max_chain``, so a chain too long is seen without reading it all.
_CHAIN = f"""
WITH RECURSIVE chain ({_COLUMNS}, depth) AS (
    SELECT {_COLUMNS}, 0 FROM responses
    WHERE response_id = ? AND owner = ? AND (expires_at IS NULL OR expires_at > ?)
    UNION ALL
    SELECT r.response_id, r.previous_response_id, r.input_items, r.response, r.heartbeat_at,
        r.streamed, r.events_until, chain.depth + 1
    FROM responses r JOIN chain ON r.response_id = chain.previous_response_id
    WHERE r.owner = ? AND (r.expires_at IS NULL OR r.expires_at > ?) AND chain.depth < ?
)
SELECT {_COLUMNS} FROM chain ORDER BY depth
"""


class ResponseStore(SealedTables[ResponsesSettings]):
    def __init__(
        self,
        db: SQLExecutor,
        settings: ResponsesSettings,
        *,
        sealer: Sealer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(db, settings, sealer=sealer, clock=clock)
        self._timer = Periodic(
            self.sweep, settings.sweep_interval_seconds, name="stored-response sweep"
        )

    async def save(self, owner: str, trace_id: str, stored: StoredResponse) -> None:
        """Keep ``stored``; a background response is kept as it starts, ``running``. Its
        items' ids are indexed in the same transaction: one trip to the store."""
        now = self._clock()
        days = self.settings.retention_days
        keep = (
            "INSERT INTO responses (response_id, owner, created_at, expires_at, "
            "previous_response_id, trace_id, input_items, response, heartbeat_at, streamed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.response_id,
                owner,
                now,
                None if days is None else now + days * 86400,
                stored.previous_response_id,
                trace_id,
                self.sealer.seal(orjson.dumps(stored.input_items), stored.response_id),
                self.sealer.seal(orjson.dumps(stored.response), stored.response_id),
                now if stored.running else None,
                int(stored.streamed),
            ),
        )
        await execute_together(
            self.db, [keep, *self._index(owner, stored.response_id, stored.items())]
        )

    async def finish(self, response_id: str, response: JSONObject) -> None:
        """A background response's final Response object; it runs no longer."""
        rows = await self.db.execute(
            "UPDATE responses SET response = ?, heartbeat_at = NULL, events_until = ? "
            "WHERE response_id = ? RETURNING owner",
            (
                self.sealer.seal(orjson.dumps(response), response_id),
                self.events_until(),
                response_id,
            ),
        )
        output = response.get("output")
        if rows and isinstance(output, list):
            await execute_together(self.db, self._index(rows[0][0], response_id, output))

    @staticmethod
    def _index(owner: str, response_id: str, items: Sequence[JSONObject]) -> list[Statement]:
        """The statement saying which response holds each of ``items`` whose id does not say
        so itself (:func:`holder_of`), for input items that name one: none, for a plain turn."""
        ids = list(
            dict.fromkeys(
                str(item["id"])
                for item in items
                if item.get("id") and holder_of(str(item["id"])) != response_id
            )
        )
        if not ids:
            return []
        rows = ", ".join(["(?, ?, ?)"] * len(ids))
        params = tuple(value for item_id in ids for value in (owner, item_id, response_id))
        sql = (
            f"INSERT INTO response_items (owner, item_id, response_id) VALUES {rows} "
            "ON CONFLICT DO NOTHING"
        )
        return [(sql, params)]

    async def items_by_id(self, owner: str, item_ids: Sequence[str]) -> dict[str, JSONObject]:
        """The items of ``owner``'s stored responses with these ids: where the id names its
        response, from there; else (or once that response is gone) from the latest response
        the index says holds it. Ids not found are left out."""
        found: dict[str, JSONObject] = {}
        named: dict[str, list[str]] = {}
        for item_id in item_ids:
            holder = holder_of(item_id)
            if holder is not None:
                named.setdefault(holder, []).append(item_id)
        for response_id, ids in named.items():
            found.update(await self._items_of(owner, response_id, ids))
        rest = [item_id for item_id in item_ids if item_id not in found]
        if not rest:
            return found
        marks = ", ".join("?" * len(rest))
        rows = await self.db.execute(
            f"SELECT i.item_id, r.response_id FROM response_items i JOIN responses r "
            f"ON r.response_id = i.response_id WHERE i.owner = ? AND i.item_id IN ({marks}) "
            "AND (r.expires_at IS NULL OR r.expires_at > ?) ORDER BY r.created_at",
            (owner, *rest, self._clock()),
        )
        latest: dict[str, list[str]] = {}
        for item_id, response_id in {item_id: holder for item_id, holder in rows}.items():
            latest.setdefault(response_id, []).append(item_id)
        for response_id, ids in latest.items():
            found.update(await self._items_of(owner, response_id, ids))
        return found

    async def _items_of(
        self, owner: str, response_id: str, item_ids: Sequence[str]
    ) -> dict[str, JSONObject]:
        stored = await self.get(owner, response_id)
        if stored is None:
            return {}
        return {str(item["id"]): item for item in stored.items() if item.get("id") in item_ids}

    async def beat(self, response_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """Say these background responses still run: returns those another replica asked to
        cancel, and those deleted meanwhile."""
        if not response_ids:
            return set(), set()
        marks = ", ".join("?" * len(response_ids))
        rows = await self.db.execute(
            f"UPDATE responses SET heartbeat_at = ? WHERE response_id IN ({marks}) "
            "AND heartbeat_at IS NOT NULL RETURNING response_id, cancel_requested",
            (self._clock(), *response_ids),
        )
        cancel = {row[0] for row in rows if row[1]}
        return cancel, set(response_ids) - {row[0] for row in rows}

    async def request_cancel(self, owner: str, response_id: str) -> bool:
        """Ask the replica running a background response to stop it; False if none runs it."""
        rows = await self.db.execute(
            "UPDATE responses SET cancel_requested = 1 WHERE response_id = ? AND owner = ? "
            "AND heartbeat_at IS NOT NULL RETURNING 1",
            (response_id, owner),
        )
        return bool(rows)

    async def settle_stale(
        self, response_id: str, response: JSONObject, silent_since: float
    ) -> bool:
        """End a background response whose replica has said nothing since ``silent_since``
        (it stopped) with ``response``; False if it has finished or spoke since."""
        rows = await self.db.execute(
            "UPDATE responses SET response = ?, heartbeat_at = NULL, events_until = ? "
            "WHERE response_id = ? AND heartbeat_at < ? RETURNING 1",
            (
                self.sealer.seal(orjson.dumps(response), response_id),
                self.events_until(),
                response_id,
                silent_since,
            ),
        )
        return bool(rows)

    def events_until(self) -> float | None:
        """When the events of a background response ending now go."""
        hours = self.settings.background_events_hours
        return None if hours is None else self._clock() + hours * 3600

    def events_gone(self, stored: StoredResponse) -> bool:
        """Whether the events of ``stored`` (ended, streamed) are no longer kept."""
        return stored.events_until is not None and stored.events_until <= self._clock()

    async def add_events(self, response_id: str, first: int, events: Sequence[Event]) -> None:
        """A streamed background response's events from sequence number ``first`` on."""
        if not events:
            return
        rows = ", ".join(["(?, ?, ?, ?)"] * len(events))
        params: list[Any] = []
        for offset, (kind, data) in enumerate(events):
            sequence = first + offset
            sealed = self.sealer.seal(data, f"{response_id}#{sequence}")
            params.extend((response_id, sequence, kind, sealed))
        await self.db.execute(
            f"INSERT INTO response_events (response_id, sequence, kind, data) VALUES {rows}",
            tuple(params),
        )

    async def events_after(self, response_id: str, after: int) -> list[tuple[int, Event]]:
        """The events kept for ``response_id`` (whose owner the caller checked) after sequence
        number ``after``, in order."""
        rows = await self.db.execute(
            "SELECT sequence, kind, data FROM response_events WHERE response_id = ? "
            "AND sequence > ? ORDER BY sequence",
            (response_id, after),
        )
        return [
            (row[0], (row[1], self.sealer.open(row[2], f"{response_id}#{row[0]}"))) for row in rows
        ]

    def _stored(self, row: Any) -> StoredResponse:
        response_id, sealer = row[0], self.sealer
        return StoredResponse(
            response_id,
            row[1],
            orjson.loads(sealer.open(row[2], response_id)),
            orjson.loads(sealer.open(row[3], response_id)),
            row[4],
            bool(row[5]),
            row[6],
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
        if rows:
            await execute_together(
                self.db,
                [
                    (f"DELETE FROM {table} WHERE response_id = ?", (response_id,))
                    for table in ("response_events", "response_items")
                ],
            )
        return bool(rows)

    async def erase(self, owner: str) -> int:
        """Delete every response ``owner`` keeps; returns how many."""
        await self.db.execute(
            "DELETE FROM response_events WHERE response_id IN "
            "(SELECT response_id FROM responses WHERE owner = ?)",
            (owner,),
        )
        await self.db.execute("DELETE FROM response_items WHERE owner = ?", (owner,))
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
                break
        # The events of ended background responses, once kept long enough to pick up a stream.
        await self.db.execute(
            "DELETE FROM response_events WHERE response_id IN (SELECT response_id FROM "
            "responses WHERE events_until <= ?)",
            (self._clock(),),
        )
        # Events and index rows outlive their response only here: it expired, or was deleted
        # while it ran.
        for table in ("response_events", "response_items"):
            await self.db.execute(
                f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM responses "
                f"WHERE responses.response_id = {table}.response_id)"
            )
        return deleted

    async def start(self) -> None:
        settings = self.settings
        if settings.retention_days is not None or settings.background_events_hours is not None:
            self._timer.start()

    async def close(self) -> None:
        await self._timer.close()

"""Batches and their requests in the store (SQLite or PostgreSQL, the same SQL).

A batch belongs to the owner of the key that created it: every read, cancel and delete is
filtered by owner. Requests and results are sealed at rest like stored responses
(podium/policy/sealing.py), each bound to its batch and place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from podium.batches.settings import BatchSettings
from podium.store.tables import SealedTables
from podium.types import JSONObject

ResultType = Literal["succeeded", "errored", "canceled", "expired"]
RESULT_TYPES: tuple[ResultType, ...] = ("succeeded", "errored", "canceled", "expired")


@dataclass(slots=True)
class Batch:
    batch_id: str
    owner: str
    key_id: str  # whose key the requests run under
    created_at: float
    expires_at: float  # requests not answered by then expire
    delete_after: float  # results are kept until then
    ended_at: float | None
    cancel_initiated_at: float | None
    counts: dict[str, int]  # processing, and each result type
    kind: str = "message"  # which API made it: each lists and reads only its own
    details: JSONObject | None = None  # what that API keeps about it besides its requests
    files_at: float | None = None  # when files were made from its results (OpenAI's)

    @property
    def status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "canceling" if self.cancel_initiated_at is not None else "in_progress"


def _zero_counts() -> dict[str, int]:
    return {name: 0 for name in ("processing", *RESULT_TYPES)}


@dataclass(slots=True)
class BatchRequest:
    seq: int
    custom_id: str
    params: JSONObject


_BATCH = (
    "b.batch_id, b.owner, b.key_id, b.created_at, b.expires_at, b.delete_after, b.ended_at, "
    "b.cancel_initiated_at, b.kind, b.details, b.files_at"
)
# Each batch with its requests counted by result (NULL: still processing), in one statement.
_COUNTED = f"""
SELECT {_BATCH}, r.result_type, count(r.seq)
FROM batches b LEFT JOIN batch_requests r ON r.batch_id = b.batch_id
WHERE {{where}}
GROUP BY {_BATCH}, r.result_type
ORDER BY b.created_at DESC, b.batch_id DESC
"""


class BatchStore(SealedTables[BatchSettings]):
    async def create(
        self,
        batch_id: str,
        owner: str,
        key_id: str,
        requests: Sequence[tuple[str, JSONObject]],
        *,
        kind: str = "message",
        details: JSONObject | None = None,
    ) -> Batch:
        now = self._clock()
        expires = now + self.settings.window_hours * 3600
        delete_after = now + self.settings.retention_days * 86400
        sealed_details = (
            None
            if details is None
            else self.sealer.seal(orjson.dumps(details), f"{batch_id}$details")
        )
        await self.db.execute(
            "INSERT INTO batches (batch_id, owner, key_id, created_at, expires_at, "
            "delete_after, kind, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (batch_id, owner, key_id, now, expires, delete_after, kind, sealed_details),
        )
        chunk = 500  # rows per statement: well under either database's parameter limit
        for start in range(0, len(requests), chunk):
            rows = requests[start : start + chunk]
            params: list[Any] = []
            for offset, (custom_id, body) in enumerate(rows):
                seq = start + offset
                sealed = self.sealer.seal(orjson.dumps(body), f"{batch_id}#{seq}")
                params.extend((batch_id, seq, custom_id, sealed))
            marks = ", ".join(["(?, ?, ?, ?)"] * len(rows))
            await self.db.execute(
                f"INSERT INTO batch_requests (batch_id, seq, custom_id, params) VALUES {marks}",
                tuple(params),
            )
        counts = _zero_counts()
        counts["processing"] = len(requests)
        return Batch(
            batch_id, owner, key_id, now, expires, delete_after, None, None, counts, kind, details
        )

    async def _counted(self, where: str, params: tuple[Any, ...]) -> list[Batch]:
        rows = await self.db.execute(_COUNTED.format(where=where), params)
        batches: dict[str, Batch] = {}
        for row in rows:
            batch = batches.get(row[0])
            if batch is None:
                details = (
                    None
                    if row[9] is None
                    else orjson.loads(self.sealer.open(row[9], f"{row[0]}$details"))
                )
                batch = batches[row[0]] = Batch(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                    _zero_counts(),
                    row[8],
                    details,
                    row[10],
                )
            batch.counts[row[11] or "processing"] += row[12]
        return list(batches.values())

    async def get(self, owner: str, batch_id: str, kind: str = "message") -> Batch | None:
        found = await self._counted(
            "b.batch_id = ? AND b.owner = ? AND b.kind = ? AND b.delete_after > ?",
            (batch_id, owner, kind, self._clock()),
        )
        return found[0] if found else None

    async def page(
        self,
        owner: str,
        limit: int,
        *,
        after: str | None = None,
        before: str | None = None,
        kind: str = "message",
    ) -> list[Batch]:
        """The owner's batches of ``kind``, newest first: ``limit`` of them after (older than)
        or before (newer than) the batch with the id given."""
        where = "b.owner = ? AND b.kind = ? AND b.delete_after > ?"
        params: list[Any] = [owner, kind, self._clock()]
        for cursor, compare in ((after, "<"), (before, ">")):
            if cursor is not None:
                # Ties in created_at are ordered by id, so a page never skips or repeats one.
                where += (
                    f" AND (b.created_at, b.batch_id) {compare} (SELECT created_at, batch_id "
                    "FROM batches WHERE batch_id = ? AND owner = ?)"
                )
                params += [cursor, owner]
        order = "ASC" if before is not None and after is None else "DESC"
        ids = await self.db.execute(
            f"SELECT b.batch_id FROM batches b WHERE {where} "
            f"ORDER BY b.created_at {order}, b.batch_id {order} LIMIT ?",
            (*params, limit),
        )
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        return await self._counted(f"b.batch_id IN ({marks})", tuple(row[0] for row in ids))

    async def cancel(self, owner: str, batch_id: str, kind: str = "message") -> bool:
        rows = await self.db.execute(
            "UPDATE batches SET cancel_initiated_at = ? WHERE batch_id = ? AND owner = ? "
            "AND kind = ? AND ended_at IS NULL AND cancel_initiated_at IS NULL RETURNING 1",
            (self._clock(), batch_id, owner, kind),
        )
        return bool(rows)

    async def delete(self, owner: str, batch_id: str, kind: str = "message") -> bool | None:
        """Delete an ended batch and its results: None when it is still running."""
        rows = await self.db.execute(
            "DELETE FROM batches WHERE batch_id = ? AND owner = ? AND kind = ? "
            "AND ended_at IS NOT NULL RETURNING 1",
            (batch_id, owner, kind),
        )
        if not rows:
            return None if await self.get(owner, batch_id, kind) is not None else False
        await self.db.execute("DELETE FROM batch_requests WHERE batch_id = ?", (batch_id,))
        return True

    async def results(self, batch_id: str) -> list[tuple[str, ResultType, JSONObject | None]]:
        """An ended batch's results in the order of its requests (its owner checked first)."""
        rows = await self.db.execute(
            "SELECT seq, custom_id, result_type, result FROM batch_requests "
            "WHERE batch_id = ? ORDER BY seq",
            (batch_id,),
        )
        return [
            (
                row[1],
                row[2],
                orjson.loads(self.sealer.open(row[3], f"{batch_id}#{row[0]}!"))
                if row[3] is not None
                else None,
            )
            for row in rows
        ]

    # -- running --------------------------------------------------------------------------------

    async def claim(self, runner: str) -> Batch | None:
        """Hold the oldest batch that needs running and nobody holds (or whose holder's lease
        lapsed), for ``lease_seconds``."""
        now = self._clock()
        rows = await self.db.execute(
            "UPDATE batches SET leased_by = ?, leased_until = ? WHERE batch_id = ("
            "SELECT batch_id FROM batches WHERE ended_at IS NULL "
            "AND (leased_until IS NULL OR leased_until < ?) ORDER BY created_at LIMIT 1) "
            "AND ended_at IS NULL AND (leased_until IS NULL OR leased_until < ?) "
            "RETURNING batch_id, owner, kind",
            (runner, now + self.settings.lease_seconds, now, now),
        )
        if not rows:
            return None
        return await self.get(rows[0][1], rows[0][0], rows[0][2])

    async def renew(self, batch_id: str, runner: str) -> tuple[bool, bool]:
        """Hold the batch a while longer: (still ours, cancel asked)."""
        rows = await self.db.execute(
            "UPDATE batches SET leased_until = ? WHERE batch_id = ? AND leased_by = ? "
            "AND ended_at IS NULL RETURNING cancel_initiated_at",
            (self._clock() + self.settings.lease_seconds, batch_id, runner),
        )
        return bool(rows), bool(rows) and rows[0][0] is not None

    async def pending(self, batch_id: str, limit: int) -> list[BatchRequest]:
        rows = await self.db.execute(
            "SELECT seq, custom_id, params FROM batch_requests WHERE batch_id = ? "
            "AND result_type IS NULL ORDER BY seq LIMIT ?",
            (batch_id, limit),
        )
        return [
            BatchRequest(
                row[0], row[1], orjson.loads(self.sealer.open(row[2], f"{batch_id}#{row[0]}"))
            )
            for row in rows
        ]

    async def answer(
        self, batch_id: str, seq: int, result_type: ResultType, result: JSONObject | None
    ) -> None:
        sealed = (
            None if result is None else self.sealer.seal(orjson.dumps(result), f"{batch_id}#{seq}!")
        )
        await self.db.execute(
            "UPDATE batch_requests SET result_type = ?, result = ? WHERE batch_id = ? "
            "AND seq = ? AND result_type IS NULL",
            (result_type, sealed, batch_id, seq),
        )

    async def end(self, batch_id: str, rest: ResultType | None = None) -> None:
        """End a batch; requests still unanswered get ``rest`` (canceled or expired)."""
        if rest is not None:
            await self.db.execute(
                "UPDATE batch_requests SET result_type = ? WHERE batch_id = ? "
                "AND result_type IS NULL",
                (rest, batch_id),
            )
        await self.db.execute(
            "UPDATE batches SET ended_at = ?, leased_by = NULL, leased_until = NULL "
            "WHERE batch_id = ? AND ended_at IS NULL",
            (self._clock(), batch_id),
        )

    async def files_made(self, batch_id: str, details: JSONObject | None = None) -> None:
        """Remember that files were made from an ended batch's results, and what its API
        keeps about it now (``details``, when given: what the results added up to)."""
        if details is None:
            await self.db.execute(
                "UPDATE batches SET files_at = ? WHERE batch_id = ? AND files_at IS NULL",
                (self._clock(), batch_id),
            )
            return
        sealed = self.sealer.seal(orjson.dumps(details), f"{batch_id}$details")
        await self.db.execute(
            "UPDATE batches SET files_at = ?, details = ? WHERE batch_id = ? AND files_at IS NULL",
            (self._clock(), sealed, batch_id),
        )

    async def sweep(self) -> int:
        """Delete batches past their retention, with their requests; returns how many."""
        now = self._clock()
        await self.db.execute(
            "DELETE FROM batch_requests WHERE batch_id IN "
            "(SELECT batch_id FROM batches WHERE delete_after <= ?)",
            (now,),
        )
        rows = await self.db.execute(
            "DELETE FROM batches WHERE delete_after <= ? RETURNING 1", (now,)
        )
        return len(rows)

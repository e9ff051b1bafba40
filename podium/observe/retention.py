"""Retention: delete traces, their feedback and rollup rows older than ``days``, in small
batches on a timer, so the trace writer never waits long behind a big delete."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from podium.observe.settings import RetentionConfig
from podium.periodic import Periodic


class Rows(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


async def sweep(db: Rows, cutoff: float, batch: int = 5000) -> dict[str, int]:
    """Delete every trace recorded before ``cutoff`` (epoch seconds) with its feedback, a
    batch at a time, then older rollup rows; returns the rows deleted per table."""
    deleted = {"traces": 0, "feedback": 0, "trace_rollup": 0}
    while True:
        ids = [
            row[0]
            for row in await db.execute(
                "SELECT trace_id FROM traces WHERE created_at < ? LIMIT ?", (cutoff, batch)
            )
        ]
        if not ids:
            break
        marks = ", ".join("?" for _ in ids)
        deleted["feedback"] += len(
            await db.execute(
                f"DELETE FROM feedback WHERE trace_id IN ({marks}) RETURNING 1", tuple(ids)
            )
        )
        deleted["traces"] += len(
            await db.execute(
                f"DELETE FROM traces WHERE trace_id IN ({marks}) RETURNING 1", tuple(ids)
            )
        )
    # Feedback whose trace was never stored (or is gone already), and old rollup rows.
    deleted["feedback"] += len(
        await db.execute("DELETE FROM feedback WHERE created_at < ? RETURNING 1", (cutoff,))
    )
    deleted["trace_rollup"] += len(
        await db.execute("DELETE FROM trace_rollup WHERE bucket < ? RETURNING 1", (cutoff,))
    )
    return deleted


class Retention:
    def __init__(self, db: Rows, config: RetentionConfig) -> None:
        self.db = db
        self.config = config
        self._timer = Periodic(self._sweep, config.interval_seconds, name="retention sweep")

    async def run_once(self, now: float | None = None) -> dict[str, int]:
        if self.config.days is None:
            return {}
        cutoff = (time.time() if now is None else now) - self.config.days * 86400
        return await sweep(self.db, cutoff, self.config.batch)

    async def _sweep(self) -> dict[str, int] | None:
        deleted = await self.run_once()
        return deleted if any(deleted.values()) else None  # logged only when it deleted

    def start(self) -> None:
        if self.config.days is not None:
            self._timer.start()

    async def close(self) -> None:
        await self._timer.close()

"""Contract-level statistics in the trace store.

``contract_calls`` holds what only a contract call knows (version, live/shadow/test, attempts,
agreement with the live answer for shadow runs); the view ``contract_call_facts`` joins it with
the trace (worker, status, cost, latency) and the evaluator's ``contract.pass`` signals in the
feedback table. The same signals are what ``podium router train --from-traces`` learns from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from podium.contracts.runner import CallEvent

log = logging.getLogger("podium.contracts")


class Rows(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


INSERT = (
    "INSERT INTO contract_calls (trace_id, created_at, contract, version, mode, attempts, "
    "error_code, shadow_of, agrees) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
STATS_SQL = (
    "SELECT contract, version, mode, worker, COUNT(*) AS calls, "
    "SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok, "
    "COUNT(passed) AS judged, AVG(passed) AS pass_rate, AVG(agrees) AS agreement, "
    "AVG(cost_usd) AS mean_cost_usd, SUM(cost_usd) AS cost_usd, "
    "AVG(latency_ms) AS mean_latency_ms, AVG(attempts) AS mean_attempts "
    "FROM contract_call_facts WHERE created_at >= ?{only} "
    "GROUP BY contract, version, mode, worker ORDER BY contract, version, mode, worker"
)
STATS_KEYS = (
    "contract",
    "version",
    "mode",
    "worker",
    "calls",
    "ok",
    "judged",
    "pass_rate",
    "agreement",
    "mean_cost_usd",
    "cost_usd",
    "mean_latency_ms",
    "mean_attempts",
)


@dataclass(slots=True)
class CallRow:
    trace_id: str
    contract: str
    version: str
    mode: str
    attempts: int
    error_code: str | None = None
    shadow_of: str | None = None
    agrees: float | None = None
    created_at: float = 0.0

    def params(self) -> tuple[Any, ...]:
        return (
            self.trace_id,
            self.created_at or time.time(),
            self.contract,
            self.version,
            self.mode,
            self.attempts,
            self.error_code,
            self.shadow_of,
            self.agrees,
        )


def row_of(event: CallEvent) -> CallRow:
    result = event.result
    return CallRow(
        trace_id=event.context.trace_id,
        contract=event.contract.name,
        version=event.contract.version,
        mode=event.mode,
        attempts=result.attempts if result is not None else 0,
        error_code=event.error.code if event.error is not None else None,
        created_at=event.context.started_at,
    )


class CallLog:
    """Writes contract_calls rows off the caller's path; ``drain`` at shutdown."""

    def __init__(self, db: Rows) -> None:
        self._db = db
        self._tasks: set[asyncio.Task[None]] = set()
        self.written = 0

    def listen(self, event: CallEvent) -> None:
        self.write(row_of(event))

    def write(self, row: CallRow) -> None:
        task = asyncio.get_running_loop().create_task(self._write(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, row: CallRow) -> None:
        try:
            await self._db.execute(INSERT, row.params())
            self.written += 1
        except Exception as error:
            log.warning("contract call %s not recorded: %s", row.trace_id, type(error).__name__)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def contract_stats(
    db: Rows, *, contract: str | None = None, since: float = 0.0
) -> list[dict[str, Any]]:
    """Calls, evaluator pass rate, agreement, cost and latency per contract, version, mode
    (live / shadow / test) and worker."""
    if contract is None:
        rows = await db.execute(STATS_SQL.format(only=""), (since,))
    else:
        rows = await db.execute(STATS_SQL.format(only=" AND contract = ?"), (since, contract))
    return [dict(zip(STATS_KEYS, tuple(row), strict=True)) for row in rows]

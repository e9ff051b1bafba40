"""Pre-aggregated trace totals, so the dashboard's long ranges read thousands of rows, not
millions.

The trace writer's batches pass through :class:`RollupStore` (a wrapper around the trace
store): after a batch is written, its totals are added to ``trace_rollup`` with one upsert.
Totals are kept per five minutes and per hour for each dimension the dashboard groups by (all,
worker, caller, contract, route+worker), and latency histograms per hour and per day by worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from podium.store.traces import TraceRecord, TraceStore

BUCKET = 300  # seconds per rollup row for totals
LATENCY_BUCKET = 3600  # seconds per rollup row for latency histograms
# Each total is kept twice: per five minutes (dimension name as is) and per hour (``@1h``), so
# a month reads hourly rows. Latency histograms are kept per hour and per day (``@1d``).
TOTAL_TIERS = (("", BUCKET), ("@1h", 3600))
LATENCY_TIERS = (("", LATENCY_BUCKET), ("@1d", 86400))
SEP = "\x1f"  # joins the parts of a composite key (route, worker)
DIMENSIONS = ("all", "worker", "caller", "contract", "route_worker")
_UPSERT_ROWS = 500  # rows per statement: well under SQLite's variable limit


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_rollup(db: Executor) -> None:
    db.execute(
        """
        CREATE TABLE trace_rollup (
            dim TEXT NOT NULL,
            bucket DOUBLE PRECISION NOT NULL,
            key TEXT NOT NULL,
            requests BIGINT NOT NULL DEFAULT 0,
            errors BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (dim, bucket, key)
        )
        """
    )


def latency_edge(ms: float) -> float:
    """The lower edge of ``ms``'s histogram bucket: 20 buckets per decade (about 12% wide)."""
    if ms <= 1.0:
        return 0.0
    return 10 ** (math.floor(math.log10(ms) * 20) / 20)


def latency_width(edge: float) -> float:
    return 1.0 if edge <= 0 else edge * (10**0.05 - 1)


Row = tuple[str, float, str, int, int, float, int, int, float]


def rollup_rows(records: Sequence[TraceRecord]) -> list[Row]:
    """The rollup increments for one batch of traces."""
    totals: dict[tuple[str, float, str], list[float]] = {}

    def add(dim: str, bucket: float, key: str, trace: TraceRecord, latency: float) -> None:
        row = totals.setdefault((dim, bucket, key), [0, 0, 0.0, 0, 0, 0.0])
        row[0] += 1
        row[1] += trace.status == "error"
        row[2] += trace.cost_usd
        row[3] += trace.input_tokens
        row[4] += trace.output_tokens
        row[5] += latency

    for trace in records:
        worker = trace.worker or "(none)"
        keys = (
            ("all", ""),
            ("worker", worker),
            ("caller", trace.caller),
            ("contract", trace.contract or "(none)"),
            ("route_worker", f"{trace.route}{SEP}{worker}"),
        )
        for tier, width in TOTAL_TIERS:
            bucket = float(int(trace.created_at // width) * width)
            for dim, key in keys:
                add(dim + tier, bucket, key, trace, trace.latency_ms)
        if trace.status != "ok":
            continue
        for tier, width in LATENCY_TIERS:
            bucket = float(int(trace.created_at // width) * width)
            add(
                "latency_ms" + tier,
                bucket,
                f"{worker}{SEP}{latency_edge(trace.latency_ms)!r}",
                trace,
                0,
            )
            if trace.ttft_ms is not None:
                add(
                    "ttft_ms" + tier,
                    bucket,
                    f"{worker}{SEP}{latency_edge(trace.ttft_ms)!r}",
                    trace,
                    0,
                )
    return [
        (dim, bucket, key, int(v[0]), int(v[1]), v[2], int(v[3]), int(v[4]), v[5])
        for (dim, bucket, key), v in totals.items()
    ]


UPSERT_HEAD = (
    "INSERT INTO trace_rollup (dim, bucket, key, requests, errors, cost_usd, input_tokens, "
    "output_tokens, latency_ms) VALUES "
)
UPSERT_TAIL = (
    " ON CONFLICT (dim, bucket, key) DO UPDATE SET "
    "requests = trace_rollup.requests + excluded.requests, "
    "errors = trace_rollup.errors + excluded.errors, "
    "cost_usd = trace_rollup.cost_usd + excluded.cost_usd, "
    "input_tokens = trace_rollup.input_tokens + excluded.input_tokens, "
    "output_tokens = trace_rollup.output_tokens + excluded.output_tokens, "
    "latency_ms = trace_rollup.latency_ms + excluded.latency_ms"
)


def upsert_statements(rows: Sequence[Row]) -> list[tuple[str, tuple[Any, ...]]]:
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for start in range(0, len(rows), _UPSERT_ROWS):
        chunk = rows[start : start + _UPSERT_ROWS]
        values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
        params = tuple(value for row in chunk for value in row)
        statements.append((UPSERT_HEAD + values + UPSERT_TAIL, params))
    return statements


class SqlExecutor(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


class RollupStore:
    """A trace store that also keeps ``trace_rollup`` up to date with what it writes."""

    def __init__(self, inner: TraceStore, db: SqlExecutor) -> None:
        self.inner = inner
        self._db = db

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def write_traces(self, records: list[TraceRecord]) -> None:
        await self.inner.write_traces(records)
        for sql, params in upsert_statements(rollup_rows(records)):
            await self._db.execute(sql, params)

    async def get_trace(self, trace_id: str) -> TraceRecord | None:
        return await self.inner.get_trace(trace_id)

    async def list_traces(self, **filters: Any) -> list[TraceRecord]:
        return await self.inner.list_traces(**filters)

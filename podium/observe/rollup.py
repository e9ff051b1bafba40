"""Pre-aggregated trace totals, so the dashboard's long ranges read thousands of rows, not
millions.

The trace writer's batches pass through :class:`RollupStore` (a wrapper around the trace
store): a batch's totals, summed in memory, are added to ``trace_rollup`` by one multi-row
upsert in the batch's own transaction (on the SQLite store's thread, off the event loop).
Totals are kept per five minutes and per hour for each dimension the dashboard groups by (all,
worker, caller, contract, route+worker), and latency histograms per hour and per day by worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from podium.store.traces import Derive, TraceRecord, TraceStore

BUCKET = 300  # seconds per rollup row for totals
LATENCY_BUCKET = 3600  # seconds per rollup row for latency histograms
# Each total is kept twice: per five minutes (dimension name as is) and per hour (``@1h``), so
# a month reads hourly rows. Latency histograms are kept per hour and per day (``@1d``).
TOTAL_TIERS = (("", BUCKET), ("@1h", 3600))
LATENCY_TIERS = (("", LATENCY_BUCKET), ("@1d", 86400))
SEP = "\x1f"  # joins the parts of a composite key (route, worker)
DIMENSIONS = ("all", "worker", "caller", "contract", "route_worker")
# Rows per statement: powers of two up to 512 (well under SQLite's variable limit), so a batch
# is a few statements drawn from ten texts, each parsed once and then cached by the driver
# (psycopg re-parsed every new text in Python: that was most of a batch's cost).
_UPSERT_CHUNKS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


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


def _latency_step(ms: float) -> int | None:
    return None if ms <= 1.0 else math.floor(math.log10(ms) * 20)


def _edge_of_step(step: int | None) -> float:
    # The same arithmetic as latency_edge, so the keys match rows written before.
    return 0.0 if step is None else 10 ** (step / 20)


def latency_width(edge: float) -> float:
    return 1.0 if edge <= 0 else edge * (10**0.05 - 1)


Row = tuple[str, float, str, int, int, float, int, int, float]


def rollup_rows(records: Sequence[TraceRecord]) -> list[Row]:
    """The rollup increments for one batch of traces.

    One pass groups the traces by everything a total depends on (five-minute bucket, worker,
    caller, contract, route) and the latency histograms by (hour, worker, bucket edge); the
    dimensions are then filled from those groups, which in real traffic are far fewer than the
    traces. (Hours and days are whole multiples of the finer buckets, so they are derived.)"""
    groups: dict[tuple[float, str, str, str, str], list[float]] = {}
    # (kind, hour, worker, histogram step or None below 1 ms) -> totals
    latency: dict[tuple[str, float, str, int | None], list[float]] = {}
    for trace in records:
        created = trace.created_at
        worker = trace.worker or "(none)"
        group_key = (
            float(int(created // BUCKET) * BUCKET),
            worker,
            trace.caller,
            trace.contract or "(none)",
            trace.route,
        )
        group = groups.get(group_key)
        if group is None:
            group = groups[group_key] = [0, 0, 0.0, 0, 0, 0.0]
        group[0] += 1
        group[1] += trace.status == "error"
        group[2] += trace.cost_usd
        group[3] += trace.input_tokens
        group[4] += trace.output_tokens
        group[5] += trace.latency_ms
        if trace.status != "ok":
            continue
        hour = float(int(created // LATENCY_BUCKET) * LATENCY_BUCKET)
        for kind, ms in (("latency_ms", trace.latency_ms), ("ttft_ms", trace.ttft_ms)):
            if ms is None:
                continue
            latency_key = (kind, hour, worker, _latency_step(ms))
            counts = latency.get(latency_key)
            if counts is None:
                counts = latency[latency_key] = [0, 0, 0.0, 0, 0, 0.0]
            counts[0] += 1
            counts[2] += trace.cost_usd
            counts[3] += trace.input_tokens
            counts[4] += trace.output_tokens

    totals: dict[tuple[str, float, str], list[float]] = {}

    def add(dim: str, bucket: float, key: str, values: list[float]) -> None:
        row = totals.get((dim, bucket, key))
        if row is None:
            totals[(dim, bucket, key)] = values.copy()
        else:
            for index, value in enumerate(values):
                row[index] += value

    for (bucket, worker, caller, contract, route), values in groups.items():
        keys = (
            ("all", ""),
            ("worker", worker),
            ("caller", caller),
            ("contract", contract),
            ("route_worker", f"{route}{SEP}{worker}"),
        )
        for tier, width in TOTAL_TIERS:
            tier_bucket = float(int(bucket // width) * width)
            for dim, key in keys:
                add(dim + tier, tier_bucket, key, values)
    for (kind, hour, worker, step), values in latency.items():
        key = f"{worker}{SEP}{_edge_of_step(step)!r}"
        for tier, width in LATENCY_TIERS:
            add(kind + tier, float(int(hour // width) * width), key, values)
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


_UPSERT_TEXTS = {
    size: UPSERT_HEAD + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * size) + UPSERT_TAIL
    for size in _UPSERT_CHUNKS
}


def upsert_statements(rows: Sequence[Row]) -> list[tuple[str, tuple[Any, ...]]]:
    statements: list[tuple[str, tuple[Any, ...]]] = []
    start = 0
    for size in _UPSERT_CHUNKS:
        while len(rows) - start >= size:
            chunk = rows[start : start + size]
            params = tuple(value for row in chunk for value in row)
            statements.append((_UPSERT_TEXTS[size], params))
            start += size
    return statements


def rollup_statements(records: list[TraceRecord]) -> list[tuple[str, tuple[Any, ...]]]:
    return upsert_statements(rollup_rows(records))


class RollupStore:
    """A trace store that also keeps ``trace_rollup`` up to date with what it writes: the
    upsert runs in the batch's own transaction, over the traces the batch added."""

    def __init__(self, inner: TraceStore) -> None:
        self.inner = inner

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        if derive is None:
            await self.inner.write_traces(records, rollup_statements)
            return
        also = derive

        def both(added: list[TraceRecord]) -> list[tuple[str, tuple[Any, ...]]]:
            return rollup_statements(added) + also(added)

        await self.inner.write_traces(records, both)

    async def get_trace(self, trace_id: str) -> TraceRecord | None:
        return await self.inner.get_trace(trace_id)

    async def list_traces(self, **filters: Any) -> list[TraceRecord]:
        return await self.inner.list_traces(**filters)

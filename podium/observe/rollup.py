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
from operator import add
from typing import Any, Protocol

from podium.store.traces import Derive, TraceRecord, TraceStore, flat

BUCKET = 300  # seconds per rollup row for totals
LATENCY_BUCKET = 3600  # seconds per rollup row for latency histograms
# Each total is kept twice: per five minutes (dimension name as is) and per hour (``@1h``), so
# a month reads hourly rows. Latency histograms are kept per hour and per day (``@1d``).
TOTAL_TIERS = (("", BUCKET), ("@1h", 3600))
LATENCY_TIERS = (("", LATENCY_BUCKET), ("@1d", 86400))
SEP = "\x1f"  # joins the parts of a composite key (route, worker)
DIMENSIONS = ("all", "worker", "caller", "contract", "route_worker")
# Rows per statement: every count up to 32 (a batch of a few traces makes ~15-30 rows, and each
# statement more cost ~15k instructions in SQLite), then powers of two up to 512 (well under
# SQLite's variable limit). A batch is a few statements drawn from 36 texts, each parsed once
# and then cached by the driver (psycopg re-parsed every new text in Python: that was most of a
# batch's cost).
_UPSERT_CHUNKS = (512, 256, 128, 64, *range(32, 0, -1))


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


def _edge_of_step(step: int | None) -> float:
    # The same arithmetic as latency_edge, so the keys match rows written before.
    return 0.0 if step is None else 10 ** (step / 20)


def latency_width(edge: float) -> float:
    return 1.0 if edge <= 0 else edge * (10**0.05 - 1)


# A histogram key's edge as text, per step: repr of a float runs dtoa (~5k instructions), and a
# batch needs one per latency group. Steps up to 200 cover latencies up to 10^10 ms.
_EDGE_TEXTS = tuple(repr(_edge_of_step(step)) for step in range(200))
_BELOW_1MS = repr(_edge_of_step(None))


def _edge_text(step: int | None) -> str:
    if step is None:
        return _BELOW_1MS
    return _EDGE_TEXTS[step] if step < len(_EDGE_TEXTS) else repr(_edge_of_step(step))


# The dimension names of each tier, joined once: (width, names in DIMENSIONS order).
_TOTAL_NAMES = tuple(
    (width, tuple(dim + tier for dim in DIMENSIONS)) for tier, width in TOTAL_TIERS
)
_LATENCY_NAMES = tuple(
    (width, {kind: kind + tier for kind in ("latency_ms", "ttft_ms")})
    for tier, width in LATENCY_TIERS
)

Row = tuple[str, float, str, int, int, float, int, int, float]


def rollup_rows(records: Sequence[TraceRecord]) -> list[Row]:
    """The rollup increments for one batch of traces.

    One pass groups the traces by everything a total depends on (five-minute bucket, worker,
    caller, contract, route) and the latency histograms by (hour, worker, bucket edge); the
    dimensions are then filled from those groups, which in real traffic are far fewer than the
    traces. (Hours and days are whole multiples of the finer buckets, so they are derived.)
    Sums are added in the same order however the code is arranged: group by group, in the
    order the groups first appear, so a batch's floats come out the same to the last bit."""
    groups: dict[tuple[float, str, str, str, str], list[Any]] = {}
    # (kind, hour, worker, histogram step or None below 1 ms) -> totals
    latency: dict[tuple[str, float, str, int | None], list[Any]] = {}
    log10, floor = math.log10, math.floor
    for trace in records:
        # A bucket's start is a whole number of seconds, so the coarser starts derived from it
        # by ``b - b % width`` are exact: the same floats as ``float(int(t // width) * width)``
        # from the time itself, for a third of the instructions.
        bucket = float(int(trace.created_at // BUCKET) * BUCKET)
        worker = trace.worker or "(none)"
        cost, tokens_in, tokens_out = trace.cost_usd, trace.input_tokens, trace.output_tokens
        group_key = (bucket, worker, trace.caller, trace.contract or "(none)", trace.route)
        group = groups.get(group_key)
        if group is None:
            group = groups[group_key] = [0, 0, 0.0, 0, 0, 0.0]
        status = trace.status
        group[0] += 1
        group[1] += status == "error"
        group[2] += cost
        group[3] += tokens_in
        group[4] += tokens_out
        group[5] += trace.latency_ms
        if status != "ok":
            continue
        hour = bucket - bucket % LATENCY_BUCKET
        for kind, ms in (("latency_ms", trace.latency_ms), ("ttft_ms", trace.ttft_ms)):
            if ms is None:
                continue
            # The histogram step (None below 1 ms), as latency_edge computes it.
            latency_key = (kind, hour, worker, None if ms <= 1.0 else floor(log10(ms) * 20))
            counts = latency.get(latency_key)
            if counts is None:
                counts = latency[latency_key] = [0, 0, 0.0, 0, 0, 0.0]
            counts[0] += 1
            counts[2] += cost
            counts[3] += tokens_in
            counts[4] += tokens_out

    totals: dict[tuple[str, float, str], list[Any]] = {}
    get = totals.get
    for (bucket, worker, caller, contract, route), values in groups.items():
        keys = ("", worker, caller, contract, f"{route}{SEP}{worker}")
        for width, names in _TOTAL_NAMES:
            tier_bucket = bucket - bucket % width
            for name, key in zip(names, keys, strict=True):
                total_key = (name, tier_bucket, key)
                row = get(total_key)
                if row is None:
                    totals[total_key] = values.copy()
                else:
                    row[:] = map(add, row, values)
    for (kind, hour, worker, step), values in latency.items():
        key = f"{worker}{SEP}{_edge_text(step)}"
        for width, kinds in _LATENCY_NAMES:
            total_key = (kinds[kind], hour - hour % width, key)
            row = get(total_key)
            if row is None:
                totals[total_key] = values.copy()
            else:
                row[:] = map(add, row, values)
    # The counts are ints already (sums of ints and of bools): int() on each of them cost
    # ~30k instructions for the 14 rows of a one-trace batch.
    return [(*key, *values) for key, values in totals.items()]


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
    start, count = 0, len(rows)
    while start < count:
        # The largest size in _UPSERT_CHUNKS that fits, worked out rather than searched for.
        left = count - start
        size = left if left <= 32 else min(1 << (left.bit_length() - 1), 512)
        statements.append((_UPSERT_TEXTS[size], tuple(flat(rows[start : start + size]))))
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

"""One row per request: what was asked, how it was routed, what it cost and how it ended."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol, TypeVar

import orjson

R = TypeVar("R")


@dataclass(slots=True)
class TraceRecord:
    trace_id: str
    created_at: float
    ingress: str
    caller: str
    owner: str
    requested_model: str
    route: str
    status: str  # ok | error
    http_status: int
    router: str | None = None
    rule: str | None = None
    reason: str | None = None
    worker: str | None = None
    workers: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    error: str | None = None
    error_kind: str | None = None
    stream: bool = False
    data_class: str = "public"
    contract: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    policy_actions: list[str] = field(default_factory=list)
    prompt: str | None = None  # kept only when trace content capture is on
    answer: str | None = None
    workflow: str | None = None  # the workflow's key (``program(a,b)``) when a template built it


COLUMNS: tuple[str, ...] = (
    "trace_id",
    "created_at",
    "ingress",
    "caller",
    "owner",
    "requested_model",
    "route",
    "router",
    "rule",
    "reason",
    "worker",
    "workers",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "status",
    "http_status",
    "error",
    "error_kind",
    "stream",
    "data_class",
    "contract",
    "steps",
    "candidates",
    "policy_actions",
    "prompt",
    "answer",
    "workflow",
)
JSON_COLUMNS = frozenset({"steps", "candidates", "policy_actions"})
_COLUMN_VALUES = attrgetter(*COLUMNS)
_JSON_POSITIONS = tuple(COLUMNS.index(column) for column in sorted(JSON_COLUMNS))
_STREAM_POSITION = COLUMNS.index("stream")

# Statements (``?`` placeholders) derived from the traces a batch actually added, which the
# store runs in the batch's own transaction: totals kept beside the traces (the dashboard's
# rollup) then never count a replayed trace twice, nor miss one whose batch committed.
Derive = Callable[[list["TraceRecord"]], list[tuple[str, tuple[Any, ...]]]]


def trace_row(record: TraceRecord) -> list[Any]:
    """The column values of one trace, in ``COLUMNS`` order, as both stores write them (run by
    the writer, off the request's path)."""
    row = list(_COLUMN_VALUES(record))
    for position in _JSON_POSITIONS:
        row[position] = orjson.dumps(row[position]).decode()
    row[_STREAM_POSITION] = int(row[_STREAM_POSITION])
    return row


def fixed_size_chunks(rows: Sequence[R], sizes: Sequence[int]) -> Iterator[tuple[int, Sequence[R]]]:
    """``rows`` in consecutive chunks of the given sizes, largest first (``sizes`` descending,
    ending with 1): a batch becomes a few statements drawn from a fixed set of texts, which the
    driver prepares once each."""
    start = 0
    for size in sizes:
        while len(rows) - start >= size:
            yield size, rows[start : start + size]
            start += size


def flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    """The rows' values, one after another, as a statement's parameters: a list extended by
    each row copies the row whole, where itertools.chain hands its values over one at a time
    (a third of the instructions for a batch's rows)."""
    values: list[Any] = []
    for row in rows:
        values += row
    return values


def trace_listing(
    *,
    limit: int,
    since: float | None = None,
    until: float | None = None,
    caller: str | None = None,
    worker: str | None = None,
    contract: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The parameterised query (``?`` placeholders) behind every store's ``list_traces``:
    newest first, filtered, at most 10,000 rows."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value, op in (
        ("created_at", since, ">="),
        ("created_at", until, "<"),
        ("caller", caller, "="),
        ("worker", worker, "="),
        ("contract", contract, "="),
    ):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(max(1, min(limit, 10_000)))
    return f"SELECT * FROM traces {where} ORDER BY created_at DESC LIMIT ?", tuple(params)


class TraceStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        """Store a batch in one transaction. A trace id already stored is skipped (the first
        row written wins), and ``derive`` sees only the traces this call added."""

    async def get_trace(self, trace_id: str) -> TraceRecord | None: ...

    async def list_traces(
        self,
        *,
        limit: int = 50,
        since: float | None = None,
        until: float | None = None,
        caller: str | None = None,
        worker: str | None = None,
        contract: str | None = None,
    ) -> list[TraceRecord]: ...

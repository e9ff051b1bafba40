"""One row per request: what was asked, how it was routed, what it cost and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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
)
JSON_COLUMNS = frozenset({"steps", "candidates", "policy_actions"})


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

    async def write_traces(self, records: list[TraceRecord]) -> None: ...

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

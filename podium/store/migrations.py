"""Schema migrations as an ordered list of named steps. A step's name is recorded once it has
run, so each runs exactly once per database, in order. Append; never edit a released step.

Statements are written in the SQL that SQLite and PostgreSQL share, so one list serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from podium.batches.migrations import (
    batch_kinds,
    create_batches,
    create_files,
    file_mime_types,
)
from podium.contracts.migrations import create_contract_calls
from podium.observe.migrations import (
    create_feedback,
    drop_dashboard_index,
    feedback_worker_route,
    index_trace_routes,
)
from podium.observe.rollup import create_rollup
from podium.policy.migrations import create_audit, create_keys
from podium.responses.migrations import (
    background_responses,
    create_conversations,
    create_responses,
    index_response_items,
    response_events_until,
)
from podium.state.migrations import create_pool_state


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    apply: Callable[[Executor], None]


def _create_traces(db: Executor) -> None:
    db.execute(
        """
        CREATE TABLE traces (
            trace_id TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            ingress TEXT NOT NULL,
            caller TEXT NOT NULL,
            owner TEXT NOT NULL,
            requested_model TEXT NOT NULL,
            route TEXT NOT NULL,
            router TEXT,
            rule TEXT,
            reason TEXT,
            worker TEXT,
            workers TEXT NOT NULL,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
            ttft_ms DOUBLE PRECISION,
            status TEXT NOT NULL,
            http_status INTEGER NOT NULL,
            error TEXT,
            error_kind TEXT,
            stream INTEGER NOT NULL DEFAULT 0,
            data_class TEXT NOT NULL DEFAULT 'public',
            contract TEXT,
            steps TEXT NOT NULL DEFAULT '[]',
            candidates TEXT NOT NULL DEFAULT '[]',
            policy_actions TEXT NOT NULL DEFAULT '[]',
            prompt TEXT,
            answer TEXT
        )
        """
    )
    db.execute("CREATE INDEX traces_created_at ON traces (created_at)")
    db.execute("CREATE INDEX traces_caller_time ON traces (caller, created_at)")
    db.execute("CREATE INDEX traces_worker_time ON traces (worker, created_at)")
    db.execute("CREATE INDEX traces_contract_time ON traces (contract, created_at)")


def _trace_workflow(db: Executor) -> None:
    # Which templated workflow answered (``program(a,b)``), so the learned router can learn a
    # workflow's outcomes as it learns a worker's.
    db.execute("ALTER TABLE traces ADD COLUMN workflow TEXT")


MIGRATIONS: list[Migration] = [
    Migration("0001_create_traces", _create_traces),
    Migration("0002_create_feedback", create_feedback),
    Migration("0003_create_trace_rollup", create_rollup),
    Migration("0003_create_keys", create_keys),
    Migration("0004_index_trace_routes", index_trace_routes),
    Migration("0005_create_contract_calls", create_contract_calls),
    Migration("0005_drop_dashboard_index", drop_dashboard_index),
    Migration("0005_create_pool_state", create_pool_state),
    Migration("0006_feedback_worker_route", feedback_worker_route),
    Migration("0007_create_audit", create_audit),
    Migration("0008_trace_workflow", _trace_workflow),
    Migration("0009_create_responses", create_responses),
    Migration("0010_create_conversations", create_conversations),
    Migration("0011_background_responses", background_responses),
    Migration("0012_create_batches", create_batches),
    Migration("0013_batch_kinds", batch_kinds),
    Migration("0014_create_files", create_files),
    Migration("0015_index_response_items", index_response_items),
    Migration("0016_response_events_until", response_events_until),
    Migration("0017_file_mime_types", file_mime_types),
]

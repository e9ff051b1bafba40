"""The observability tables, appended to podium.store.migrations: feedback signals stored
against traces, the view that joins them, and the index the dashboard's queries read."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_feedback(db: Executor) -> None:
    # One row per quality signal. ``value`` is the number given (booleans as 1/0), ``label`` the
    # label given; ``score`` is the same signal on one scale, 0 (bad) to 1 (good), where one is
    # known, so signals from apps, people, contracts and the judge can be averaged together.
    db.execute(
        """
        CREATE TABLE feedback (
            feedback_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            name TEXT NOT NULL,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            value DOUBLE PRECISION,
            label TEXT,
            score DOUBLE PRECISION,
            comment TEXT,
            caller TEXT
        )
        """
    )
    db.execute("CREATE INDEX feedback_trace ON feedback (trace_id)")
    db.execute("CREATE INDEX feedback_created_at ON feedback (created_at)")
    # Traces joined with quality signals is then one query:
    #   SELECT t.*, q.quality, q.signals FROM traces t JOIN trace_quality q USING (trace_id)
    db.execute(
        """
        CREATE VIEW trace_quality AS
        SELECT trace_id, AVG(score) AS quality, COUNT(*) AS signals,
               MAX(created_at) AS last_signal_at
        FROM feedback
        WHERE score IS NOT NULL
        GROUP BY trace_id
        """
    )
    # Every column the dashboard aggregates over a time range, so its scans read this narrow
    # index instead of the wide trace rows (steps, candidates and content live there).
    db.execute(
        "CREATE INDEX traces_dashboard ON traces (created_at, worker, route, caller, contract, "
        "status, cost_usd, input_tokens, output_tokens, latency_ms, ttft_ms)"
    )


def index_trace_routes(db: Executor) -> None:
    # Quality by worker and route joins feedback to traces by id: this covering index answers
    # the join without reading the wide trace rows.
    db.execute("CREATE INDEX traces_id_worker_route ON traces (trace_id, worker, route)")


def drop_dashboard_index(db: Executor) -> None:
    # Every dashboard aggregate reads trace_rollup now: the wide covering index from
    # 0002_create_feedback only cost writes and space.
    db.execute("DROP INDEX IF EXISTS traces_dashboard")


def feedback_worker_route(db: Executor) -> None:
    # Quality by worker and route, from feedback alone: each signal carries its trace's worker
    # and route (copied when it is written), under an index covering the dashboard's query.
    db.execute("ALTER TABLE feedback ADD COLUMN worker TEXT")
    db.execute("ALTER TABLE feedback ADD COLUMN route TEXT")
    db.execute(
        "UPDATE feedback SET "
        "worker = (SELECT t.worker FROM traces t WHERE t.trace_id = feedback.trace_id), "
        "route = (SELECT t.route FROM traces t WHERE t.trace_id = feedback.trace_id)"
    )
    db.execute(
        "CREATE INDEX feedback_quality ON feedback "
        "(created_at, worker, route, source, score, trace_id)"
    )
    db.execute("DROP INDEX IF EXISTS traces_id_worker_route")  # 0004's, no longer read

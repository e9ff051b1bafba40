"""The contract_calls table and the contract_call_facts view, appended to
podium.store.migrations (stdlib only: the store imports this module)."""

from __future__ import annotations

from typing import Protocol

PASS_SIGNAL = "contract.pass"  # the evaluator's verdict, stored as a feedback signal


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_contract_calls(db: Executor) -> None:
    db.execute(
        """
        CREATE TABLE contract_calls (
            trace_id TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            contract TEXT NOT NULL,
            version TEXT NOT NULL,
            mode TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            error_code TEXT,
            shadow_of TEXT,
            agrees DOUBLE PRECISION
        )
        """
    )
    db.execute("CREATE INDEX contract_calls_name_time ON contract_calls (contract, created_at)")
    db.execute(
        """
        CREATE VIEW contract_call_facts AS
        SELECT c.trace_id, c.created_at, c.contract, c.version, c.mode, c.attempts,
               c.error_code, c.shadow_of, c.agrees,
               t.worker, t.status, t.cost_usd, t.latency_ms, q.passed
        FROM contract_calls c
        JOIN traces t ON t.trace_id = c.trace_id
        LEFT JOIN (
            SELECT trace_id, AVG(score) AS passed FROM feedback
            WHERE name = 'contract.pass' AND score IS NOT NULL GROUP BY trace_id
        ) q ON q.trace_id = c.trace_id
        """
    )

"""The batch tables, appended to podium.store.migrations (stdlib only: the store imports this
module)."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_batches(db: Executor) -> None:
    # One row per batch; its requests in batch_requests, in order. A request's result is NULL
    # until it is answered (or canceled or expired). leased_by / leased_until: which replica
    # runs it, until when, unless it renews.
    db.execute(
        """
        CREATE TABLE batches (
            batch_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            key_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            delete_after DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION,
            cancel_initiated_at DOUBLE PRECISION,
            leased_by TEXT,
            leased_until DOUBLE PRECISION
        )
        """
    )
    db.execute("CREATE INDEX batches_owner ON batches (owner, created_at)")
    db.execute(
        """
        CREATE TABLE batch_requests (
            batch_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            custom_id TEXT NOT NULL,
            params TEXT NOT NULL,
            result_type TEXT,
            result TEXT,
            PRIMARY KEY (batch_id, seq)
        )
        """
    )

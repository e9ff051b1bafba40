"""The replicas' table, appended to podium.store.migrations (SQL shared by SQLite and
PostgreSQL)."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_pool_state(db: Executor) -> None:
    # One row per worker changed at run time through the admin API: its whole config (JSON),
    # whether it drains, whether it was removed. ``version`` rises with every change, so each
    # replica applies a row once; the table stays as small as the pool.
    db.execute(
        """
        CREATE TABLE podium_pool_state (
            name TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            draining INTEGER NOT NULL DEFAULT 0,
            removed INTEGER NOT NULL DEFAULT 0,
            version BIGINT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            origin TEXT NOT NULL
        )
        """
    )

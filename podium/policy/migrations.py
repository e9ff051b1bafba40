"""The policy layer's tables, appended to podium.store.migrations (SQLite and PostgreSQL SQL)."""

from __future__ import annotations

from typing import Protocol


class _Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_keys(db: _Executor) -> None:
    db.execute(
        """
        CREATE TABLE podium_keys (
            key_id TEXT PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            owner TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            is_admin INTEGER NOT NULL DEFAULT 0,
            scopes TEXT NOT NULL DEFAULT '["*"]',
            metadata TEXT NOT NULL DEFAULT '{}',
            budget_usd DOUBLE PRECISION,
            budget_period TEXT NOT NULL DEFAULT 'month',
            rpm INTEGER,
            tpm INTEGER,
            expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION,
            previous_hash TEXT,
            previous_expires_at DOUBLE PRECISION
        )
        """
    )
    db.execute("CREATE INDEX podium_keys_owner ON podium_keys (owner)")


def create_audit(db: _Executor) -> None:
    # One hash chain per writer (``chain``); the key refuses a second entry at a position, so
    # two writers can never fork one chain and a rewrite cannot slip a row in beside another.
    db.execute(
        """
        CREATE TABLE podium_audit (
            chain TEXT NOT NULL,
            seq BIGINT NOT NULL CHECK (seq >= 1),
            created_at DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (chain, seq)
        )
        """
    )
    db.execute("CREATE INDEX podium_audit_created_at ON podium_audit (created_at)")

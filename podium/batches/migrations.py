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


def batch_kinds(db: Executor) -> None:
    # Which API a batch belongs to ('message': Anthropic's; 'openai': OpenAI's), so each lists
    # its own; and what that API keeps about the batch besides its requests (OpenAI's endpoint,
    # input file, window and metadata), as sealed JSON.
    db.execute("ALTER TABLE batches ADD COLUMN kind TEXT NOT NULL DEFAULT 'message'")
    db.execute("ALTER TABLE batches ADD COLUMN details TEXT")
    # When files were made from an ended batch's results (OpenAI's output and error files):
    # made once, so a file its owner deleted is not made again.
    db.execute("ALTER TABLE batches ADD COLUMN files_at DOUBLE PRECISION")
    db.execute("CREATE INDEX batches_owner_kind ON batches (owner, kind, created_at)")


def create_files(db: Executor) -> None:
    # Files uploaded for batches (OpenAI's Files API) and those made from a batch's results
    # (batch_id set: its output or error file). content is sealed, bound to the file id.
    db.execute(
        """
        CREATE TABLE files (
            file_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            purpose TEXT NOT NULL,
            filename TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            batch_id TEXT,
            content TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX files_owner ON files (owner, created_at)")


def file_mime_types(db: Executor) -> None:
    # What each file is ("application/pdf", "image/png", "text/plain", ...): Anthropic's Files
    # API says it of every file (mime_type), and a request naming a file by id needs it. Given
    # by the uploader or read from the file's first bytes as it is kept. A file kept before
    # this cannot be read here (its content is sealed): a batch's is text, any other unknown.
    db.execute(
        "ALTER TABLE files ADD COLUMN mime_type TEXT NOT NULL DEFAULT 'application/octet-stream'"
    )
    db.execute(
        "UPDATE files SET mime_type = 'text/plain' WHERE purpose IN ('batch', 'batch_output')"
    )

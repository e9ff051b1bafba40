"""The responses table, appended to podium.store.migrations (stdlib only: the store imports
this module)."""

from __future__ import annotations

from typing import Protocol


class Executor(Protocol):
    def execute(self, sql: str) -> object: ...


def create_responses(db: Executor) -> None:
    # One row per stored response: this request's own input items and the Response object the
    # client received, both as JSON. A conversation is the chain of previous_response_id.
    db.execute(
        """
        CREATE TABLE responses (
            response_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            previous_response_id TEXT,
            trace_id TEXT NOT NULL,
            input_items TEXT NOT NULL,
            response TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX responses_expires_at ON responses (expires_at)")


def create_conversations(db: Executor) -> None:
    # A conversation and its items, in order (seq). Items are Responses items as JSON; an id
    # may repeat (a client's own ids), so the key is the order, not the id.
    db.execute(
        """
        CREATE TABLE conversations (
            conversation_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            metadata TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE conversation_items (
            conversation_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            item_id TEXT NOT NULL,
            item TEXT NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        )
        """
    )
    db.execute(
        "CREATE INDEX conversation_items_id ON conversation_items (conversation_id, item_id)"
    )


def background_responses(db: Executor) -> None:
    # A background response is kept from its start. heartbeat_at is set while a replica runs
    # it (NULL once it has finished); cancel_requested is how another replica asks that one to
    # stop. The events of one created with ``stream`` (streamed = 1) are kept, in order, so a
    # client can pick its stream up again.
    db.execute("ALTER TABLE responses ADD COLUMN heartbeat_at DOUBLE PRECISION")
    db.execute("ALTER TABLE responses ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE responses ADD COLUMN streamed INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """
        CREATE TABLE response_events (
            response_id TEXT NOT NULL,
            sequence BIGINT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (response_id, sequence)
        )
        """
    )


def index_response_items(db: Executor) -> None:
    # Which stored response holds an item, by its id, for the input items that name one
    # (``item_reference``). An id may repeat (a client's own ids, an item sent again), so the
    # key holds the response too. Responses kept before this table are not indexed.
    db.execute(
        """
        CREATE TABLE response_items (
            owner TEXT NOT NULL,
            item_id TEXT NOT NULL,
            response_id TEXT NOT NULL,
            PRIMARY KEY (owner, item_id, response_id)
        )
        """
    )
    db.execute("CREATE INDEX response_items_response ON response_items (response_id)")


def response_events_until(db: Executor) -> None:
    # When a streamed background response's events are deleted (they are kept a while after
    # it ends, for a client picking its stream up again; the response stays longer).
    db.execute("ALTER TABLE responses ADD COLUMN events_until DOUBLE PRECISION")
    # The hourly sweep looks for the ones past it: without an index, a scan of every response.
    db.execute("CREATE INDEX responses_events_until ON responses (events_until)")

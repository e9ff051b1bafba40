"""The zero-set-up store: one SQLite file in the data directory.

sqlite3 blocks, so every call runs on one dedicated thread (SQLite connections are not shared
between threads); the event loop never waits on the disk.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson

from podium.store.migrations import MIGRATIONS, Migration
from podium.store.thread import StoreThread
from podium.store.traces import (
    COLUMNS,
    JSON_COLUMNS,
    Derive,
    TraceRecord,
    fixed_size_chunks,
    flat,
    trace_listing,
    trace_row,
)

T = TypeVar("T")


@contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[None]:
    """One explicit transaction. The connection runs in autocommit mode (isolation_level=None),
    where ``with db:`` opens none, so without this every statement committed on its own: a
    failed migration stayed half-applied and a batch of traces was written row by row.
    ``immediate`` takes the write lock at the start rather than at the first write."""
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def apply_migrations(db: sqlite3.Connection, migrations: list[Migration] = MIGRATIONS) -> list[str]:
    """Run the migrations not yet recorded, in order; returns the names it ran."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS podium_migrations "
        "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )
    done = {row[0] for row in db.execute("SELECT name FROM podium_migrations")}
    ran: list[str] = []
    for migration in migrations:
        if migration.name in done:
            continue
        # Each migration and its record commit together, or not at all. Two processes starting
        # on a new file both saw it pending: the write lock is taken first, and the record
        # read again under it, so the second waits (busy_timeout) and then skips it.
        with transaction(db, immediate=True):
            recorded = db.execute(
                "SELECT 1 FROM podium_migrations WHERE name = ?", (migration.name,)
            ).fetchone()
            if recorded is not None:
                continue
            migration.apply(db)
            db.execute(
                "INSERT INTO podium_migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, time.time()),
            )
        ran.append(migration.name)
    return ran


_ROW = f"({', '.join('?' for _ in COLUMNS)})"
# ON CONFLICT names the key: OR IGNORE would also drop a row that breaks NOT NULL, silently.
_CONFLICT = " ON CONFLICT (trace_id) DO NOTHING"
# Rows per statement: powers of two, so a batch is a few statements drawn from nine texts,
# each prepared once and then cached by sqlite3. (A text per batch size kept up to 128
# prepared statements of up to 7,424 parameters each: a soak's memory grew 9 MB.)
_ROWS_PER_STATEMENT = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_INSERT_TRACES = {
    count: f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * count)}"
    f"{_CONFLICT}"
    for count in _ROWS_PER_STATEMENT
}


# The columns a trace may leave empty (None). SQLite stores a NaN as NULL (sqlite3_bind_double
# binds it as NULL), and sqlite3 binds a float as it is, where every None first goes through
# its adapter lookup, which fails by formatting an AttributeError: ~2.7k instructions per None,
# ~16k per typical trace (six empty columns).
_NULLABLE = tuple(
    COLUMNS.index(column)
    for column in (
        "router",
        "rule",
        "reason",
        "worker",
        "ttft_ms",
        "error",
        "error_kind",
        "contract",
        "prompt",
        "answer",
        "workflow",
    )
)


def sqlite_row(record: TraceRecord) -> list[Any]:
    """``trace_row`` with its empty columns as NaN, which SQLite stores as NULL."""
    row = trace_row(record)
    for position in _NULLABLE:
        if row[position] is None:
            row[position] = math.nan
    return row


def _insert_all(db: sqlite3.Connection, rows: list[list[Any]]) -> None:
    """The rows in as few statements as SQLite's parameter limit allows. executemany would
    step once per row, and sqlite3 gives up the GIL around every step: with the event loop
    busy, each step then waited for the GIL (up to the 5 ms switch interval), and a saturated
    server wrote ~800 traces/s while answering ~1,800 requests/s."""
    limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS)
    sizes = [count for count in _ROWS_PER_STATEMENT if count <= limit or count == 1]
    for count, chunk in fixed_size_chunks(rows, sizes):
        db.execute(_INSERT_TRACES[count], flat(chunk))


def insert_new_traces(db: sqlite3.Connection, records: list[TraceRecord]) -> list[TraceRecord]:
    """Insert a batch inside the caller's transaction, skipping trace ids already stored;
    returns the records it added."""
    db.execute("SAVEPOINT trace_batch")
    added = _insert_new(db, records)
    db.execute("RELEASE trace_batch")
    return added


def _insert_new(db: sqlite3.Connection, records: list[TraceRecord]) -> list[TraceRecord]:
    """``insert_new_traces`` within the savepoint ``trace_batch``, which the caller opened."""
    rows = [sqlite_row(record) for record in records]
    changes = db.total_changes
    _insert_all(db, rows)
    if db.total_changes - changes == len(rows):  # the usual case: every trace is new
        return records
    # Some were stored before (a batch retried after its commit, or replayed from the spill
    # file): insert again one by one to learn which are new.
    db.execute("ROLLBACK TO trace_batch")
    return [
        record
        for record, row in zip(records, rows, strict=True)
        if db.execute(_INSERT_TRACES[1], row).rowcount == 1
    ]


def write_batch(db: sqlite3.Connection, records: list[TraceRecord], derive: Derive | None) -> None:
    """Store a batch, and the statements ``derive`` makes of the traces it added, in one
    transaction (``db`` is in none, as the store's own connection is between calls): the
    batch's savepoint, which outside a transaction begins one and commits it when released.
    BEGIN and COMMIT around it were two statements more (~14k instructions)."""
    db.execute("SAVEPOINT trace_batch")
    try:
        added = _insert_new(db, records)
        if derive is not None and added:
            for sql, params in derive(added):
                db.execute(sql, params)
        db.execute("RELEASE trace_batch")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _record(row: sqlite3.Row) -> TraceRecord:
    data = {column: row[column] for column in COLUMNS}
    for column in JSON_COLUMNS:
        data[column] = orjson.loads(data[column] or "[]")
    data["stream"] = bool(data["stream"])
    return TraceRecord(**data)


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = StoreThread("podium-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._thread.run(partial(self._call, fn))

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise RuntimeError("the SQLite store is not open")
        return fn(self._db)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        apply_migrations(db)
        self._db = db

    async def open(self) -> None:
        await self._thread.run(self._open)

    async def close(self) -> None:
        def close(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._run(close)
            self._db = None
        self._thread.stop()

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run one parameterised statement; for modules that keep their own tables here."""

        def run(db: sqlite3.Connection) -> list[sqlite3.Row]:
            return list(db.execute(sql, params))

        return await self._run(run)

    async def execute_together(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` in one transaction, in one trip to the store's thread."""

        def run(db: sqlite3.Connection) -> None:
            with transaction(db):
                for sql, params in statements:
                    db.execute(sql, params)

        await self._run(run)

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        # Everything, serialising the rows and deriving totals included, runs on the store's
        # thread: the event loop only hands the batch over.
        await self._run(partial(write_batch, records=records, derive=derive))

    async def get_trace(self, trace_id: str) -> TraceRecord | None:
        def read(db: sqlite3.Connection) -> TraceRecord | None:
            row = db.execute("SELECT * FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
            return _record(row) if row is not None else None

        return await self._run(read)

    async def list_traces(
        self,
        *,
        limit: int = 50,
        since: float | None = None,
        until: float | None = None,
        caller: str | None = None,
        worker: str | None = None,
        contract: str | None = None,
    ) -> list[TraceRecord]:
        sql, params = trace_listing(
            limit=limit,
            since=since,
            until=until,
            caller=caller,
            worker=worker,
            contract=contract,
        )

        def read(db: sqlite3.Connection) -> list[TraceRecord]:
            return [_record(row) for row in db.execute(sql, params)]

        return await self._run(read)

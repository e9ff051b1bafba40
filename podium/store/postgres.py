"""The shared store for many replicas: PostgreSQL through psycopg 3 (async) and a connection pool.

The same ordered migrations as SQLite (podium/store/migrations.py) run here; replicas starting
together take an advisory lock, so each step runs once. Modules' own statements arrive written
for SQLite (``?`` placeholders) and are rewritten once per statement text
(podium/store/dialect.py). Rows answer by position and by column name, as ``sqlite3.Row`` does,
and NUMERIC results (``SUM`` of integers, ``AVG``) come back as floats, as they do in SQLite.

``store: {kind: postgres, url: postgresql://user@host/db, schema: podium}``: the schema is
created when missing and every connection works in it (so several Podiums can share one
database, and tests take a schema of their own).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from podium.store.dialect import StatementRecorder, to_numbered, to_pyformat
from podium.store.migrations import MIGRATIONS, Migration
from podium.store.traces import (
    COLUMNS,
    JSON_COLUMNS,
    Derive,
    TraceRecord,
    trace_listing,
    trace_row,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection, AsyncCursor
    from psycopg_pool import AsyncConnectionPool

SCHEMA_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# pg_advisory_xact_lock key for migrations: any constant shared by every Podium ("podium" in hex).
MIGRATION_LOCK = 0x706F6469756D


class Row(tuple[Any, ...]):
    """A result row: ``row[0]`` and ``row["column"]`` both work, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: AsyncCursor[Any]) -> Any:
    names = [column.name for column in cursor.description or ()]
    index = {name: position for position, name in enumerate(names)}

    def make(values: Any) -> Row:
        row = Row(values)
        row._index = index
        return row

    return make


def _trace_rows(records: list[TraceRecord]) -> list[list[Any]]:
    return [trace_row(record) for record in records]


def _record(row: Row) -> TraceRecord:
    data = {column: row[column] for column in COLUMNS}
    for column in JSON_COLUMNS:
        data[column] = orjson.loads(data[column] or "[]")
    data["stream"] = bool(data["stream"])
    return TraceRecord(**data)


# A batch is copied (binary COPY, the fastest way in) into a per-connection staging table, then
# moved into traces, skipping ids already stored; the ids moved come back so totals derived
# from the batch count only what was added. Types as in migration 0001_create_traces.
_COPY_TYPES: dict[str, str] = {
    "trace_id": "text",
    "created_at": "double precision",
    "ingress": "text",
    "caller": "text",
    "owner": "text",
    "requested_model": "text",
    "route": "text",
    "router": "text",
    "rule": "text",
    "reason": "text",
    "worker": "text",
    "workers": "text",
    "input_tokens": "bigint",
    "output_tokens": "bigint",
    "cost_usd": "double precision",
    "latency_ms": "double precision",
    "ttft_ms": "double precision",
    "status": "text",
    "http_status": "integer",
    "error": "text",
    "error_kind": "text",
    "stream": "integer",
    "data_class": "text",
    "contract": "text",
    "steps": "text",
    "candidates": "text",
    "policy_actions": "text",
    "prompt": "text",
    "answer": "text",
    "workflow": "text",
}
_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS traces_incoming ("
    + ", ".join(f"{column} {_COPY_TYPES[column]}" for column in COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_COPY_TRACES = f"COPY traces_incoming ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_MOVE_TRACES = (
    f"INSERT INTO traces ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM traces_incoming "
    "ON CONFLICT (trace_id) DO NOTHING RETURNING trace_id"
)


class PostgresStore:
    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        migrations: list[Migration] = MIGRATIONS,
    ) -> None:
        if schema is not None and not SCHEMA_PATTERN.fullmatch(schema):
            raise ValueError(f"store.schema {schema!r} is not a plain SQL identifier")
        self.url = url
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.migrations = migrations
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._statements: dict[str, str] = {}  # SQLite-style text -> psycopg text
        self._numbered: dict[str, str] = {}  # SQLite-style text -> $n text (raw cursor)

    # -- life ------------------------------------------------------------------------------------

    async def _configure(self, connection: AsyncConnection[Any]) -> None:
        from psycopg.types.numeric import FloatLoader

        # SUM over BIGINT and AVG are NUMERIC in PostgreSQL; callers expect floats, as in SQLite.
        connection.adapters.register_loader("numeric", FloatLoader)
        connection.row_factory = _row_factory
        # Temporary tables live in the session's own schema, whatever the search_path says.
        await connection.execute(_STAGING)

    async def open(self) -> None:
        # Imported here: psycopg is the optional ``postgres`` extra.
        from psycopg import AsyncConnection
        from psycopg_pool import AsyncConnectionPool

        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(self.timeout))}
        if self.schema is not None:
            connection = await AsyncConnection.connect(self.url, **kwargs)
            async with connection, connection.transaction():
                # IF NOT EXISTS still races between replicas starting together: queue them.
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            kwargs["options"] = f"-c search_path={self.schema}"
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            kwargs=kwargs,
            configure=self._configure,
            timeout=self.timeout,
            open=False,
        )
        await pool.open(wait=True, timeout=self.timeout)
        self._pool = pool
        try:
            await self.apply_migrations()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _ready(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            raise RuntimeError("the PostgreSQL store is not open")
        return self._pool

    async def apply_migrations(self) -> list[str]:
        """Run the steps not yet recorded, in order, each in a transaction with its record."""
        ran: list[str] = []
        async with self._ready().connection() as connection:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS podium_migrations "
                    "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                )
            for migration in self.migrations:
                async with connection.transaction():
                    # Replicas starting at once queue here; each sees the others' records.
                    await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    cursor = await connection.execute(
                        "SELECT 1 FROM podium_migrations WHERE name = %s", (migration.name,)
                    )
                    if await cursor.fetchone() is not None:
                        continue
                    recorder = StatementRecorder("postgresql")
                    migration.apply(recorder)
                    for statement in recorder.statements:
                        await connection.execute(statement)
                    await connection.execute(
                        "INSERT INTO podium_migrations (name, applied_at) VALUES (%s, %s)",
                        (migration.name, time.time()),
                    )
                    ran.append(migration.name)
        return ran

    # -- statements ------------------------------------------------------------------------------

    def _translate(self, sql: str) -> str:
        translated = self._statements.get(sql)
        if translated is None:
            translated = to_pyformat(sql)
            if len(self._statements) < 4096:  # statements are program text: a bounded set
                self._statements[sql] = translated
        return translated

    def _number(self, sql: str) -> str:
        numbered = self._numbered.get(sql)
        if numbered is None:
            numbered = to_numbered(sql)
            if len(self._numbered) < 4096:
                self._numbered[sql] = numbered
        return numbered

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run one parameterised statement written with ``?`` placeholders."""
        async with self._ready().connection() as connection:
            cursor = await connection.execute(self._translate(sql), params)
            if cursor.description is None:
                return []
            rows: list[Row] = await cursor.fetchall()
            return rows

    async def execute_together(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` in one transaction, on one connection."""
        async with self._ready().connection() as connection, connection.transaction():
            for sql, params in statements:
                await connection.execute(self._translate(sql), params)

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        from psycopg import AsyncRawCursor

        # Serialising rows and deriving totals are CPU work: a worker thread does them, so the
        # event loop keeps serving requests meanwhile.
        rows = await asyncio.to_thread(_trace_rows, records)
        async with (
            self._ready().connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            async with cursor.copy(_COPY_TRACES) as copy:
                copy.set_types([_COPY_TYPES[column] for column in COLUMNS])
                for row in rows:
                    await copy.write_row(row)
            await cursor.execute(_MOVE_TRACES)
            added_ids = {row[0] for row in await cursor.fetchall()}
            added = records
            if len(added_ids) != len(records):  # some were stored before (a replayed batch)
                added = list(
                    {r.trace_id: r for r in reversed(records) if r.trace_id in added_ids}.values()
                )
            if derive is not None and added:
                statements = await asyncio.to_thread(derive, added)
                async with AsyncRawCursor(connection) as raw:
                    for sql, params in statements:
                        await raw.execute(self._number(sql), params)

    async def get_trace(self, trace_id: str) -> TraceRecord | None:
        rows = await self.execute("SELECT * FROM traces WHERE trace_id = ?", (trace_id,))
        return _record(rows[0]) if rows else None

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
        return [_record(row) for row in await self.execute(sql, params)]

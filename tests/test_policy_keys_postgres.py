"""The key table's SQL runs on PostgreSQL as it is: the migration and every statement the key
store sends, replayed through psql as prepared statements in a schema of the test's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.policy.migrations import create_keys


def postgres_available() -> bool:
    if shutil.which("psql") is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not postgres_available() and os.environ.get("CI") != "true",
    reason="no PostgreSQL on 127.0.0.1:5432 with psql (these tests always run when CI=true)",
)


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return repr(int(value) if isinstance(value, bool) else value)
    return "'" + str(value).replace("'", "''") + "'"


class Recorder:
    """An executor that records statements and answers SELECTs with one stored row."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.row: tuple[Any, ...] | None = None

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]:
        self.statements.append((sql, params))
        if sql.lstrip().upper().startswith("INSERT"):
            self.row = (*params[:12], params[12], None, None, None)
        return [self.row] if sql.lstrip().upper().startswith("SELECT") and self.row else []


class DDL:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str) -> object:
        self.statements.append(sql)
        return None


def test_key_store_sql_runs_on_postgresql() -> None:
    recorder = Recorder()
    store = KeyStore(recorder)  # type: ignore[arg-type]

    async def exercise() -> None:
        record, _ = await store.create(
            NewKey(owner="o'brien; DROP TABLE x", scopes=["model:gpt-*"], budget_usd=5, rpm=10)
        )
        await store.all()
        await store.get(record.key_id)
        await store.rotate(record.key_id, grace_seconds=60)
        await store.revoke(record.key_id)

    asyncio.run(exercise())
    ddl = DDL()
    create_keys(ddl)
    schema = f"podium_test_{uuid.uuid4().hex[:10]}"
    script = [f"CREATE SCHEMA {schema};", f"SET search_path TO {schema};"]
    script += [statement.strip() + ";" for statement in ddl.statements]
    for index, (sql, params) in enumerate(recorder.statements):
        pieces = sql.split("?")  # the store's statements carry no literal question marks
        numbered = pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], 1))
        script.append(f"PREPARE s{index} AS {numbered};")
        arguments = ", ".join(literal(value) for value in params)
        script.append(f"EXECUTE s{index}" + (f"({arguments})" if params else "") + ";")
    script.append(
        "SELECT owner, revoked_at IS NOT NULL, previous_hash IS NOT NULL FROM podium_keys;"
    )
    script.append(f"DROP SCHEMA {schema} CASCADE;")
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-d", "test", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t"],
        input="\n".join(script),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PGUSER": os.environ.get("PGUSER", "postgres")},
    )
    assert result.returncode == 0, result.stderr
    assert "o'brien; DROP TABLE x|t|t" in result.stdout

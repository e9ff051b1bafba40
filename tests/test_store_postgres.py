"""The PostgreSQL store: the same ordered migrations as SQLite, traces in and out, modules'
own statements (written with ``?``) as they are, keys and feedback, and a whole gateway on it.
Each test works in a schema of its own, dropped afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from podium.app import create_podium
from podium.config import PodiumConfig
from podium.observe.feedback import INSERT
from podium.policy.keys import KeyStore, NewKey
from podium.store.dialect import to_numbered, to_pyformat
from podium.store.migrations import MIGRATIONS
from podium.store.postgres import PostgresStore
from podium.store.traces import TraceRecord
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve
from tests.conftest import worker
from tests.shared_servers import PG_URL, drop_schema, needs_postgres, unique

pytestmark = needs_postgres


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = unique("podium_test")
    yield name
    await drop_schema(name)


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(PG_URL, schema=schema, max_size=4)
    await opened.open()
    yield opened
    await opened.close()


def trace(trace_id: str, **fields: Any) -> TraceRecord:
    values: dict[str, Any] = {
        "trace_id": trace_id,
        "created_at": time.time(),
        "ingress": "openai",
        "caller": "anonymous",
        "owner": "anonymous",
        "requested_model": "podium/auto",
        "route": "direct",
        "status": "ok",
        "http_status": 200,
        "worker": "alpha",
        "workers": "alpha",
        "input_tokens": 12,
        "output_tokens": 34,
        "cost_usd": 0.0001,
        "steps": [{"worker": "alpha", "status": "ok"}],
        "policy_actions": ["budget:reserved:0.01"],
    }
    values.update(fields)
    return TraceRecord(**values)


def test_placeholders_are_rewritten_outside_quotes_only() -> None:
    assert to_pyformat("SELECT ? WHERE a = '?' AND b LIKE 'x%'") == (
        "SELECT %s WHERE a = '?' AND b LIKE 'x%%'"
    )
    assert to_pyformat('SELECT "what?" FROM t WHERE c = ?') == 'SELECT "what?" FROM t WHERE c = %s'
    assert to_numbered("SELECT ?, '?' WHERE b LIKE 'x%' AND c = ?") == (
        "SELECT $1, '?' WHERE b LIKE 'x%' AND c = $2"
    )


async def test_the_same_migrations_run_once_in_order(store: PostgresStore) -> None:
    rows = await store.execute("SELECT name FROM podium_migrations ORDER BY applied_at, name")
    assert sorted(row["name"] for row in rows) == sorted(m.name for m in MIGRATIONS)
    assert await store.apply_migrations() == []  # a second open runs nothing


async def test_replicas_starting_together_migrate_once(schema: str) -> None:
    stores = [PostgresStore(PG_URL, schema=schema, max_size=2) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        rows = await stores[0].execute("SELECT COUNT(*) FROM podium_migrations")
        assert rows[0][0] == len(MIGRATIONS)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_traces_in_and_out(store: PostgresStore) -> None:
    now = time.time()
    await store.write_traces(
        [
            trace("t1", created_at=now - 10, caller="key-a"),
            trace(
                "t2",
                created_at=now - 5,
                caller="key-b",
                stream=True,
                ttft_ms=None,
                workflow="program(alpha,python)",
            ),
        ]
    )
    got = await store.get_trace("t2")
    assert got is not None and got.stream is True and got.ttft_ms is None
    assert got.workflow == "program(alpha,python)"
    assert got.steps == [{"worker": "alpha", "status": "ok"}]
    assert got.policy_actions == ["budget:reserved:0.01"]
    assert [t.trace_id for t in await store.list_traces()] == ["t2", "t1"]
    assert [t.trace_id for t in await store.list_traces(caller="key-a")] == ["t1"]
    assert [t.trace_id for t in await store.list_traces(since=now - 7)] == ["t2"]
    # Written again (a batch replayed after a failure): stored once, the first row kept, and
    # totals derived in the batch's transaction count only what was added.
    counted: list[str] = []

    def derive(added: list[TraceRecord]) -> list[tuple[str, tuple[Any, ...]]]:
        counted.extend(record.trace_id for record in added)
        return [("UPDATE traces SET reason = ? WHERE trace_id = ?", ("counted", r.trace_id))
                for r in added]  # fmt: skip

    replay = [trace("t1", created_at=now - 10, status="error", http_status=502), trace("t3")]
    await store.write_traces(replay, derive)
    rows = await store.execute("SELECT COUNT(*), MAX(http_status) FROM traces")
    assert tuple(rows[0]) == (3, 200)
    assert counted == ["t3"]
    assert (await store.get_trace("t3")).reason == "counted"  # type: ignore[union-attr]
    assert await store.get_trace("missing") is None


async def test_module_statements_run_unchanged(store: PostgresStore) -> None:
    await store.write_traces([trace("t1", cost_usd=0.25), trace("t2", cost_usd=0.5)])
    rows = await store.execute(
        "SELECT COUNT(*) AS n, SUM(input_tokens) AS tokens, AVG(cost_usd) FROM traces "
        "WHERE route LIKE 'dir%' AND caller = ?",
        ("anonymous",),
    )
    assert rows[0]["n"] == 2 and rows[0][0] == 2
    # SUM over BIGINT is NUMERIC in PostgreSQL: it comes back as a float, as in SQLite.
    assert isinstance(rows[0]["tokens"], float) and rows[0]["tokens"] == 24.0
    assert rows[0][2] == pytest.approx(0.375)
    # Feedback's insert-if-the-trace-exists statement, as the feedback API sends it.
    sql = (
        INSERT.replace(" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", "")
        + " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM traces WHERE trace_id = ?) RETURNING feedback_id"
    )
    signal = ("f1", "t1", time.time(), "thumbs", "app", "boolean", 1.0, None, 1.0, None, "k")
    assert len(await store.execute(sql, (*signal, "t1"))) == 1
    assert await store.execute(sql, (*signal[:1], "nope", *signal[2:], "nope")) == []
    quality = await store.execute("SELECT trace_id, quality FROM trace_quality")
    assert [(row["trace_id"], row["quality"]) for row in quality] == [("t1", 1.0)]


async def test_keys_live_in_postgres(store: PostgresStore) -> None:
    keys = KeyStore(store)
    record, key = await keys.create(
        NewKey(owner="o'brien; DROP TABLE podium_keys", budget_usd=5, rpm=10)
    )
    assert key.startswith("pk-")
    again = await keys.get(record.key_id)
    assert again is not None and again.owner == record.owner and again.rpm == 10
    await keys.rotate(record.key_id, grace_seconds=60)
    revoked = await keys.revoke(record.key_id)
    assert revoked.revoked_at is not None
    assert [r.key_id for r in await keys.all()] == [record.key_id]


async def test_a_gateway_on_postgres_records_traces_and_checks_keys(
    schema: str, make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    config = make_config(
        [worker("alpha", "openai", fake_openai.base_url)],
        store={"kind": "postgres", "url": PG_URL, "pg_schema": schema, "flush_interval": 0.05},
        access={"auth": {"required": True}},
    )
    podium = create_podium(config)
    async with serve(podium.app) as url:
        keys = KeyStore(podium.store)  # type: ignore[arg-type]
        _, key = await keys.create(NewKey(owner="team-a"))
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key) as client:
            reply = await client.chat.completions.with_raw_response.create(
                model="alpha", messages=[{"role": "user", "content": "hi"}]
            )
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="pk-nope") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(
                    model="alpha", messages=[{"role": "user", "content": "hi"}]
                )
        trace_id = reply.headers["x-podium-trace-id"]
        assert await podium.recorder.flush()
        stored = await podium.store.get_trace(trace_id)
        assert stored is not None and stored.owner == "team-a" and stored.status == "ok"


def test_config_requires_a_url_for_postgres(make_config: Callable[..., PodiumConfig]) -> None:
    from podium.config import ConfigError

    with pytest.raises(ConfigError, match="kind postgres needs a url"):
        make_config([], store={"kind": "postgres"})

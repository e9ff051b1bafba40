"""Retention deletes old traces, their feedback and rollup rows in batches, keeps the rest;
the sweep runs on a timer off the request path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from podium.observe.feedback import INSERT, make_signal
from podium.observe.retention import Retention, sweep
from podium.observe.rollup import rollup_rows, upsert_statements
from podium.observe.settings import RetentionConfig
from podium.store.sqlite import SQLiteStore
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_commands_traces import trace


async def count(store: SQLiteStore, table: str) -> int:
    rows = await store.execute(f"SELECT COUNT(*) FROM {table}")
    return int(rows[0][0])


async def filled(tmp_path: Any, now: float) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "p.db")
    await store.open()
    records = [trace(f"old{i}", now - 40 * 86400 - i, "small") for i in range(25)]
    records += [trace(f"new{i}", now - 86400 - i, "small") for i in range(5)]
    await store.write_traces(records)
    for sql, params in upsert_statements(rollup_rows(records)):
        await store.execute(sql, params)
    for record in records[::5]:
        await store.execute(INSERT, make_signal(record.trace_id, "u", True, source="app").row())
    return store


async def test_sweep_deletes_only_what_is_older_than_the_cutoff(tmp_path: Any) -> None:
    now = time.time()
    store = await filled(tmp_path, now)
    try:
        deleted = await sweep(store, now - 30 * 86400, batch=7)  # several batches
        assert deleted["traces"] == 25 and deleted["feedback"] == 5
        assert deleted["trace_rollup"] > 0
        assert await count(store, "traces") == 5
        assert await count(store, "feedback") == 1
        remaining = await store.execute("SELECT MIN(bucket) FROM trace_rollup")
        assert remaining[0][0] >= now - 30 * 86400 - 3600
        assert await sweep(store, now - 30 * 86400) == {
            "traces": 0,
            "feedback": 0,
            "trace_rollup": 0,
        }
    finally:
        await store.close()


async def test_retention_off_keeps_everything(tmp_path: Any) -> None:
    now = time.time()
    store = await filled(tmp_path, now)
    try:
        assert await Retention(store, RetentionConfig(days=None)).run_once(now) == {}
        assert await count(store, "traces") == 30
    finally:
        await store.close()


async def test_the_timer_sweeps_in_the_background(tmp_path: Any) -> None:
    now = time.time()
    store = await filled(tmp_path, now)
    retention = Retention(store, RetentionConfig(days=30, interval_seconds=0.01))
    try:
        retention.start()
        for _ in range(500):
            if await count(store, "traces") == 5:
                break
            await asyncio.sleep(0.01)
        assert await count(store, "traces") == 5
    finally:
        await retention.close()
        await store.close()


async def test_the_gateway_runs_retention_from_config(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    settings = {"observe": {"retention": {"days": 1, "interval_seconds": 3600}}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], **settings) as running:
        store = running.podium.store
        await store.write_traces([trace("ancient", time.time() - 5 * 86400, "alpha")])
        assert running.podium.config.observe.retention.days == 1
        retention = Retention(store, running.podium.config.observe.retention)
        deleted = await retention.run_once()
    assert deleted["traces"] == 1

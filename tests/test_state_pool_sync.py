"""Two gateways on one store act as one pool: a worker added, changed or removed through one
gateway's admin API is served, changed or gone on the other, a gateway started later picks up
every earlier change, and a store that is briefly unreachable delays a change but loses none.

(tests/test_replicas.py runs whole ``podium serve`` processes on PostgreSQL; these run two
gateways in one process on one SQLite file, as ``podium serve --workers N`` does.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import openai
import orjson
import pytest

from podium.state.pool_sync import PoolSync
from podium.store.tables import SQLExecutor
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import Running, worker

SETTINGS = {"store": {"sync_interval": 0.05}}
HI = [{"role": "user", "content": "hi"}]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


def sync_of(running: Running) -> PoolSync:
    sync = running.podium.extras["pool_sync"]
    assert isinstance(sync, PoolSync)
    return sync


async def test_a_worker_added_on_one_gateway_serves_on_the_other_and_its_removal_travels(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    alpha = worker("alpha", "openai", fake_openai.base_url)
    async with (
        gateway([alpha], **SETTINGS) as first,
        gateway([alpha], **SETTINGS) as second,
        httpx.AsyncClient(base_url=first.url) as admin,
        openai.AsyncOpenAI(base_url=second.v1, api_key="unused", max_retries=0) as client,
    ):
        added = await admin.post(
            "/admin/workers", json=worker("beta", "openai", fake_openai.base_url)
        )
        assert added.status_code == 201, added.text

        async def beta_on_second() -> bool:
            return "beta" in [m.id async for m in client.models.list()]

        assert await eventually(beta_on_second)
        raw = await client.chat.completions.with_raw_response.create(model="beta", messages=HI)
        assert raw.headers["x-podium-worker"] == "beta"

        assert (await admin.delete("/admin/workers/beta")).status_code == 200

        async def beta_gone_from_second() -> bool:
            return "beta" not in [m.id async for m in client.models.list()]

        assert await eventually(beta_gone_from_second)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="beta", messages=HI)


async def test_a_gateway_started_later_applies_every_earlier_change(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    alpha = worker("alpha", "openai", fake_openai.base_url)
    async with (
        gateway([alpha], **SETTINGS) as first,
        httpx.AsyncClient(base_url=first.url) as admin,
    ):
        await admin.post("/admin/workers", json=worker("beta", "openai", fake_openai.base_url))
        await admin.patch("/admin/workers/alpha", json={"price": {"input": 7.0}})
        await admin.post("/admin/workers/alpha/drain")
        await asyncio.sleep(0.2)  # the writes are shared in the background
    # the first gateway is gone; the second starts from the configuration file alone
    async with (
        gateway([alpha], **SETTINGS) as second,
        httpx.AsyncClient(base_url=second.url) as admin,
    ):

        async def caught_up() -> bool:
            listed = (await admin.get("/admin/workers")).json()["workers"]
            return {w["name"] for w in listed} == {"alpha", "beta"}

        assert await eventually(caught_up)
        alpha_now = (await admin.get("/admin/workers/alpha")).json()
        assert alpha_now["price"]["input"] == 7.0
        assert alpha_now["health"]["draining"] is True


async def test_applying_a_change_does_not_echo_it_back(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    alpha = worker("alpha", "openai", fake_openai.base_url)
    async with (
        gateway([alpha], **SETTINGS) as first,
        gateway([alpha], **SETTINGS) as second,
        httpx.AsyncClient(base_url=first.url) as admin,
    ):
        await admin.post("/admin/workers/alpha/drain")
        store = first.podium.store
        assert isinstance(store, SQLExecutor)

        async def version() -> int:
            rows = await store.execute(
                "SELECT version FROM podium_pool_state WHERE name = ?", ("alpha",)
            )
            return int(rows[0][0]) if rows else 0

        assert await eventually(lambda: _drained(second, "alpha"))
        await asyncio.sleep(0.3)  # several sync rounds on both
        assert await version() == 1


async def _drained(running: Running, name: str) -> bool:
    found = running.podium.pool.get(name)
    return found is not None and found.draining


INSERT = (
    "INSERT INTO podium_pool_state (name, config, draining, removed, version, updated_at, origin)"
    " VALUES (?, ?, 0, 0, 1, 0, 'elsewhere')"
)


async def test_a_stored_row_that_no_longer_validates_is_skipped_and_the_rest_applied(
    gateway: Any, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    alpha = worker("alpha", "openai", fake_openai.base_url)
    # the polling is off: this test runs the rounds itself
    async with gateway([alpha], store={"sync_interval": 0}) as running:
        store = running.podium.store
        assert isinstance(store, SQLExecutor)
        await store.execute(INSERT, ("broken", '{"name": "broken", "provider": 3}'))
        good = worker("gamma", "openai", fake_openai.base_url)
        await store.execute(INSERT, ("gamma", orjson.dumps(good).decode()))
        with caplog.at_level(logging.WARNING, logger="podium.pool_sync"):
            assert await sync_of(running).sync_once() == 1
        assert running.podium.pool.get("gamma") is not None
        assert running.podium.pool.get("broken") is None
        assert "could not apply the shared change to worker broken" in caplog.text
        caplog.clear()
        assert await sync_of(running).sync_once() == 0  # not retried every round
        assert "broken" not in caplog.text


async def test_a_row_another_podium_version_wrote_is_applied_and_not_written_back(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """During a rolling upgrade the replicas' configs differ in defaults and fields; a replica
    that wrote back every row in its own form would echo it with the other version forever."""
    alpha = worker("alpha", "openai", fake_openai.base_url)
    async with gateway([alpha], store={"sync_interval": 0}) as running:
        store = running.podium.store
        assert isinstance(store, SQLExecutor)
        # the older form: only the fields it knew, in its own order
        older = {"price": {"input": 3.0}, **worker("gamma", "openai", fake_openai.base_url)}
        await store.execute(INSERT, ("gamma", orjson.dumps(older).decode()))
        assert await sync_of(running).sync_once() == 1
        await asyncio.sleep(0.1)  # the pool listener's publish, had it anything to write
        rows = await store.execute(
            "SELECT version, origin FROM podium_pool_state WHERE name = ?", ("gamma",)
        )
        assert [tuple(row) for row in rows] == [(1, "elsewhere")]
        assert await sync_of(running).sync_once() == 0


class Unreachable:
    """A store connection that fails while ``down`` is set."""

    def __init__(self, store: SQLExecutor) -> None:
        self.store = store
        self.down = False

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]:
        if self.down:
            raise ConnectionError("store unreachable")
        return await self.store.execute(sql, params)


async def test_a_change_made_while_the_store_is_down_is_shared_when_it_answers(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    alpha = worker("alpha", "openai", fake_openai.base_url)
    off = {"store": {"sync_interval": 0}}
    async with gateway([alpha], **off) as first, gateway([alpha], **off) as second:
        store = first.podium.store
        assert isinstance(store, SQLExecutor)
        await sync_of(first).aclose()  # this test's own sync, on a connection it can cut, instead
        flaky = Unreachable(store)
        sync = PoolSync(first.podium.pool, flaky, interval=0)
        await sync.start()
        try:
            flaky.down = True
            first.podium.pool.drain("alpha", True)
            await asyncio.sleep(0.05)  # the background write fails
            assert sync.failures == 1
            with pytest.raises(ConnectionError):
                await sync.sync_once()
            assert await sync_of(second).sync_once() == 0  # nothing reached the store

            flaky.down = False
            await sync.sync_once()  # shares what it could not
            assert await sync_of(second).sync_once() == 1
            assert await _drained(second, "alpha")
        finally:
            await sync.aclose()

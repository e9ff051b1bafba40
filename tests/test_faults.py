"""Faults and bad clients: PostgreSQL going away and coming back (requests keep flowing,
traces wait in memory and on disk, then all arrive), Redis unreachable (limited keys refused by
default or let through when configured, breakers still work replica by replica), slow-loris
clients and clients that never read their stream."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from podium.app import create_podium
from podium.config import PodiumConfig
from podium.policy.keys import KeyStore, NewKey
from podium.store.postgres import PostgresStore
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve
from tests.conftest import worker
from tests.shared_servers import (
    PG_HOST,
    PG_PORT,
    PG_URL,
    Forwarder,
    Replica,
    drop_schema,
    free_port,
    needs_postgres,
    unique,
)


def statuses_of(results: list[Any]) -> list[int]:
    return [r if isinstance(r, int) else 0 for r in results]


async def post(session: aiohttp.ClientSession, url: str, key: str | None, **body: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], **body}
    async with session.post(f"{url}/v1/chat/completions", json=payload, headers=headers) as r:
        await r.read()
        return r.status, r.headers.get("x-podium-trace-id")


# -- PostgreSQL down ----------------------------------------------------------------------------


@needs_postgres
async def test_postgres_down_requests_flow_and_every_trace_arrives_when_it_returns(
    make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    schema = unique("podium_faults")
    relay = await Forwarder(PG_HOST, PG_PORT).start()
    through_relay = f"postgresql://postgres@127.0.0.1:{relay.port}/test"
    config = make_config(
        [worker("alpha", "openai", fake_openai.base_url)],
        store={
            "kind": "postgres",
            "url": through_relay,
            "pg_schema": schema,
            "flush_interval": 0.05,
            "queue_limit": 20,  # a small memory bound: the rest spills to the local file
            "batch_size": 10,
        },
        access={"auth": {"required": True, "cache_ttl": 0.2}},
    )
    podium = create_podium(config)
    direct = PostgresStore(PG_URL, schema=schema, max_size=1)
    try:
        async with serve(podium.app) as url, aiohttp.ClientSession() as session:
            _, key = await KeyStore(podium.store).create(NewKey(owner="team-a"))  # type: ignore[arg-type]
            before = [await post(session, url, key) for _ in range(5)]
            await relay.cut()  # PostgreSQL is gone: its connections drop, the port is closed
            during = [await post(session, url, key) for _ in range(60)]
            await asyncio.sleep(0.5)  # the recorder tries (and fails) to write meanwhile
            assert podium.recorder.spilled > 0  # past the memory bound, traces went to disk
            await relay.restore()
            answered = [*before, *during]
            assert [status for status, _ in answered] == [200] * 65
            wanted = {trace_id for _, trace_id in answered}
            await direct.open()

            async def stored() -> set[str]:
                rows = await direct.execute("SELECT trace_id FROM traces")
                return {row[0] for row in rows}

            deadline = time.monotonic() + 30
            while not wanted <= await stored() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            assert wanted <= await stored()  # nothing lost
    finally:
        await direct.close()
        await relay.aclose()
        await drop_schema(schema)


# -- Redis down ---------------------------------------------------------------------------------


def closed_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_redis_down_limited_keys_follow_the_fail_mode(
    gateway: Any, fake_openai: FakeOpenAI, fail_mode: str
) -> None:
    url = closed_redis()
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)],
        access={
            "auth": {"required": True},
            "limits": {"backend": "redis", "url": url, "timeout": 0.1, "fail_mode": fail_mode},
        },
        redis={"url": url, "timeout": 0.1},
    ) as running:
        keys = KeyStore(running.podium.store)
        _, limited = await keys.create(NewKey(owner="team-a", rpm=100, budget_usd=10))
        _, unlimited = await keys.create(NewKey(owner="team-b"))
        async with aiohttp.ClientSession() as session:
            limited_status, _ = await post(session, running.url, limited)
            unlimited_status, _ = await post(session, running.url, unlimited)
    # closed (the default): refused rather than let a key overspend; open: let through.
    assert limited_status == (503 if fail_mode == "closed" else 200)
    assert unlimited_status == 200  # keys without limits never needed Redis


async def test_redis_down_breakers_still_open_on_this_replica(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    url = closed_redis()
    async with gateway(
        [
            worker(
                "alpha",
                "openai",
                fake_openai.base_url,
                retry={"attempts": 0},
                breaker={"failures": 2, "reset_after": 30},
            )
        ],
        redis={"url": url, "timeout": 0.1},
    ) as running:
        fake_openai.behaviour.fail(500, times=2)
        async with openai.AsyncOpenAI(
            base_url=running.v1, api_key="unused", max_retries=0
        ) as client:
            for _ in range(2):
                with pytest.raises(openai.InternalServerError):
                    await client.chat.completions.create(
                        model="alpha", messages=[{"role": "user", "content": "hi"}]
                    )
            sent = len(fake_openai.received)
            with pytest.raises(openai.APIStatusError) as refused:
                await client.chat.completions.create(
                    model="alpha", messages=[{"role": "user", "content": "hi"}]
                )
        assert refused.value.status_code == 503
        assert len(fake_openai.received) == sent  # the open circuit kept the call home
        assert running.podium.pool.get("alpha").breaker.state == "open"  # type: ignore[union-attr]


# -- bad clients --------------------------------------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path, fake_openai: FakeOpenAI) -> Any:
    # A long answer: 8 MB in 1,000 chunks, so a gateway that buffered it would show.
    fake_openai.behaviour.reply = "x" * 8_000_000
    fake_openai.behaviour.chunk_size = 8_000
    replica = Replica(
        {
            "data_dir": str(tmp_path / "data"),
            "workers": [worker("alpha", "openai", fake_openai.base_url)],
            "server": {"keep_alive": 1, "max_connections": 400},
            "store": {"flush_interval": 0.05},
        },
        tmp_path / "replica",
    )
    await replica.start()
    try:
        yield replica
    finally:
        await replica.stop()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_slow_loris_clients_do_not_block_others(served: Replica) -> None:
    async def loris() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: podium\r\nX-Slow: ")
        await writer.drain()
        return reader, writer

    lorises = await asyncio.gather(*(loris() for _ in range(100)))
    try:
        for _ in range(3):  # they dribble a byte now and then, never finishing the head
            for _, writer in lorises:
                writer.write(b"a")
            async with aiohttp.ClientSession() as session:
                results = await asyncio.gather(
                    *(post(session, served.url, None) for _ in range(20))
                )
            assert [status for status, _ in results] == [200] * 20
    finally:
        for _, writer in lorises:
            writer.close()


async def test_an_idle_keep_alive_connection_is_closed(served: Replica) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: podium\r\n\r\n")
    await writer.drain()
    assert b"200" in await reader.readline()
    # server.keep_alive is 1 s: the server hangs up on an idle client (EOF), well before 30 s.
    async with asyncio.timeout(30):
        while await reader.read(65536):
            pass
    writer.close()


async def test_clients_that_never_read_their_stream_hold_bounded_memory(
    served: Replica,
) -> None:
    assert served.process is not None
    pid = served.process.pid
    body = b'{"model":"alpha","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: podium\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    before = rss_kb(pid)
    readers = []
    for _ in range(20):  # each answer is 8 MB: 160 MB if the gateway buffered them
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port, limit=1024)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(request)
        await writer.drain()
        readers.append((reader, writer))
    await asyncio.sleep(3)  # the gateway streams what the sockets take, then waits
    grown_mb = (rss_kb(pid) - before) / 1024
    async with aiohttp.ClientSession() as session:
        status, _ = await post(session, served.url, None)
    for _, writer in readers:
        writer.transport.abort()
    assert status == 200  # still serving others
    assert grown_mb < 60, f"the gateway grew {grown_mb:.0f} MB holding unread streams"


# -- podium serve --workers N on one machine ----------------------------------------------------


async def test_serve_with_two_processes_on_one_sqlite_file(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    replica = Replica(
        {
            "data_dir": str(tmp_path / "data"),
            "workers": [worker("alpha", "openai", fake_openai.base_url)],
            "store": {"flush_interval": 0.05, "sync_interval": 0.2},
        },
        tmp_path / "replica",
        processes=2,
    )
    await replica.start()
    try:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(post(session, replica.url, None) for _ in range(40)))
            assert [status for status, _ in results] == [200] * 40
            # A drain through whichever process takes the call reaches the other through the
            # store: after a few polls, no new request gets the drained worker.
            async with session.post(f"{replica.url}/admin/workers/alpha/drain") as response:
                assert response.status == 200
            await asyncio.sleep(1.0)
            drained = await asyncio.gather(*(post(session, replica.url, None) for _ in range(10)))
            assert {status for status, _ in drained} == {503}  # no_serving_worker
    finally:
        await replica.stop()  # graceful: both processes flush their traces
    from podium.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "data" / "podium.db")
    await store.open()
    try:
        rows = await store.execute("SELECT trace_id FROM traces")
    finally:
        await store.close()
    assert {trace_id for _, trace_id in results} <= {row[0] for row in rows}


@needs_postgres
async def test_a_drain_made_while_postgres_is_down_is_shared_when_it_returns(
    make_config: Callable[..., PodiumConfig], fake_openai: FakeOpenAI
) -> None:
    schema = unique("podium_faults")
    relay = await Forwarder(PG_HOST, PG_PORT).start()
    config = make_config(
        [worker("alpha", "openai", fake_openai.base_url)],
        store={
            "kind": "postgres",
            "url": f"postgresql://postgres@127.0.0.1:{relay.port}/test",
            "pg_schema": schema,
            "sync_interval": 0.1,
        },
    )
    podium = create_podium(config)
    direct = PostgresStore(PG_URL, schema=schema, max_size=1)
    try:
        async with (
            asyncio.timeout(90),
            serve(podium.app) as url,
            aiohttp.ClientSession() as session,
        ):
            async with session.get(f"{url}/admin/workers") as response:
                assert response.status == 200  # admin checks have read the keys once
            await relay.cut()
            async with session.post(f"{url}/admin/workers/alpha/drain") as response:
                assert response.status == 200  # applied here at once
            await relay.restore()
            await direct.open()

            async def shared() -> bool:
                rows = await direct.execute(
                    "SELECT draining FROM podium_pool_state WHERE name = ?", ("alpha",)
                )
                return bool(rows) and rows[0][0] == 1

            deadline = time.monotonic() + 30
            while not await shared() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            assert await shared()
    finally:
        await direct.close()
        await relay.aclose()
        await drop_schema(schema)

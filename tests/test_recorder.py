"""The trace recorder: one row per request, written in batches by a background task, nothing
lost on a clean shutdown, and a spill file that is replayed once the store answers again."""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from podium.observe.recorder import TraceRecorder
from podium.observe.rollup import RollupStore
from podium.store.sqlite import SQLiteStore
from podium.store.traces import Derive, TraceRecord
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


def trace(trace_id: str) -> TraceRecord:
    return TraceRecord(
        trace_id=trace_id,
        created_at=time.time(),
        ingress="openai",
        caller="anonymous",
        owner="anonymous",
        requested_model="alpha",
        route="direct",
        status="ok",
        http_status=200,
    )


class CountingStore(SQLiteStore):
    """The real store, remembering the size of every batch it was given; it can be made to
    fail, as a store that is down does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.down = False
        self.fail_after: int | None = None  # batches accepted before it goes down

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        if self.down or (self.fail_after is not None and len(self.batches) >= self.fail_after):
            raise sqlite3.OperationalError("database is locked")
        self.batches.append(len(records))
        await super().write_traces(records, derive)


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
        return count


async def test_the_background_task_writes_in_batches(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(
        store, spill_path=tmp_path / "spill.jsonl", batch_size=10, flush_interval=60
    )
    recorder.start()
    for index in range(25):
        recorder.record(trace(f"t{index}"))  # never waits for the disk
    # Full batches wake the writer at once (the 60 s interval is not what triggers it).
    await until(lambda: recorder.written >= 20)
    assert recorder.written >= 20 and all(size <= 10 for size in store.batches)
    assert recorder.depth <= 5
    await recorder.close()
    await store.close()
    assert count_rows(tmp_path / "p.db") == 25
    assert store.batches[:2] == [10, 10]


class HeldStore(CountingStore):
    """Holds every write until ``go`` is set, as a store busy with a large batch does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.go = asyncio.Event()

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        await self.go.wait()
        await super().write_traces(records, derive)


async def until(condition: Any, tries: int = 500) -> None:
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.01)


async def test_traces_queued_during_a_write_wait_for_a_full_batch_or_the_interval(
    tmp_path: Path,
) -> None:
    store = HeldStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(
        store, spill_path=tmp_path / "spill.jsonl", batch_size=4, flush_interval=0.3
    )
    recorder.start()
    for index in range(4):
        recorder.record(trace(f"a{index}"))
    await asyncio.sleep(0.01)  # the full batch is being written
    for index in range(2):
        recorder.record(trace(f"b{index}"))
    store.go.set()
    await until(lambda: recorder.written >= 4)
    await asyncio.sleep(0.05)
    # Not written at once in a batch of two: they wait for two more, or for the interval.
    assert store.batches == [4] and recorder.depth == 2
    for index in range(2):
        recorder.record(trace(f"c{index}"))
    await until(lambda: recorder.written >= 8)
    assert store.batches == [4, 4]
    recorder.record(trace("d"))
    await until(lambda: recorder.written >= 9)  # the interval ended
    assert store.batches == [4, 4, 1]
    await recorder.close()
    await store.close()
    assert count_rows(tmp_path / "p.db") == 9


async def test_the_writer_waits_the_interval_and_retries_a_failed_store_no_faster(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(
        store, spill_path=tmp_path / "spill.jsonl", batch_size=4, flush_interval=0.05
    )
    recorder.start()
    recorder.record(trace("alone"))  # less than a batch: written when the interval ends
    await until(lambda: recorder.written, tries=100)
    assert store.batches == [1]
    store.down = True
    for index in range(6):  # a full batch that cannot be written
        recorder.record(trace(f"t{index}"))
    failures = recorder.failures
    await asyncio.sleep(0.3)
    assert 1 <= recorder.failures - failures <= 8  # about one try per interval, not a spin
    store.down = False
    await recorder.close()
    await store.close()
    assert count_rows(tmp_path / "p.db") == 7


async def test_nothing_is_lost_on_a_clean_shutdown(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(
        store, spill_path=tmp_path / "spill.jsonl", batch_size=64, flush_interval=60
    )
    recorder.start()
    for index in range(1000):
        recorder.record(trace(f"t{index}"))
    await recorder.close()
    await store.close()
    assert count_rows(tmp_path / "p.db") == 1000
    assert max(store.batches) <= 64
    assert not (tmp_path / "spill.jsonl").exists()


async def test_a_failing_store_spills_and_the_spill_is_replayed(tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    store.down = True
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8, flush_interval=60)
    recorder.start()
    for index in range(30):
        recorder.record(trace(f"t{index}"))
    assert await recorder.flush() is False  # the store is down: kept in memory
    assert recorder.depth == 30 and recorder.failures == 1
    await recorder.close()  # still down at shutdown: everything goes to the spill file
    await store.close()
    assert len(spill.read_bytes().splitlines()) == 30

    store = CountingStore(tmp_path / "p.db")  # the next start, with the store back
    await store.open()
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8, flush_interval=60)
    recorder.record(trace("after"))
    assert await recorder.flush() is True
    await store.close()
    assert count_rows(tmp_path / "p.db") == 31
    assert not spill.exists()


async def test_an_overfull_buffer_spills_instead_of_growing(tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    store.down = True
    recorder = TraceRecorder(store, spill_path=spill, batch_size=5, queue_limit=20)
    for index in range(50):
        recorder.record(trace(f"t{index}"))
    assert recorder.depth <= 20 and recorder.spilled >= 30
    store.down = False
    assert await recorder.flush() is True
    await store.close()
    assert count_rows(tmp_path / "p.db") == 50


def spill_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("spill.jsonl*"))


async def spill_while_down(tmp_path: Path, count: int) -> Path:
    """A run whose store was down throughout: ``count`` traces end up in the spill file."""
    spill = tmp_path / "spill.jsonl"
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    store.down = True
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8, queue_limit=16)
    for index in range(count):
        recorder.record(trace(f"t{index:03d}"))
    await recorder.close()
    await store.close()
    assert len(spill.read_bytes().splitlines()) == count
    return spill


async def test_a_large_spill_is_replayed_a_batch_at_a_time(tmp_path: Path) -> None:
    spill = await spill_while_down(tmp_path, 100)
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8)
    assert await recorder.flush() is True
    await store.close()
    assert count_rows(tmp_path / "p.db") == 100
    assert max(store.batches) <= 8  # read and written in batches, never all in memory at once
    assert spill_files(tmp_path) == ["spill.jsonl.lock"]


async def test_a_replay_that_fails_halfway_adds_nothing_twice(tmp_path: Path) -> None:
    spill = await spill_while_down(tmp_path, 40)
    inner = CountingStore(tmp_path / "p.db")
    store = RollupStore(inner)  # the dashboard's totals are kept in the same transactions
    await store.open()
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8)
    inner.fail_after = 3  # three batches in, the store goes away
    assert await recorder.flush() is False
    assert count_rows(tmp_path / "p.db") == 24
    inner.fail_after = None
    recorder.record(trace("live"))
    assert await recorder.flush() is True  # the replay starts the file over
    rows = await inner.execute("SELECT requests FROM trace_rollup WHERE dim = 'all'")
    await store.close()
    assert count_rows(tmp_path / "p.db") == 41
    assert sum(row[0] for row in rows) == 41  # each trace counted once


async def test_a_spill_left_by_a_process_that_died_is_replayed(tmp_path: Path) -> None:
    spill = await spill_while_down(tmp_path, 20)
    # It had claimed the spill file for its replay, then died (its lock went with it).
    spill.rename(tmp_path / "spill.jsonl.claimed-4242-0badf00d")
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8)
    assert await recorder.flush() is True
    await store.close()
    assert count_rows(tmp_path / "p.db") == 20
    assert spill_files(tmp_path) == ["spill.jsonl.lock"]


async def test_a_spill_another_process_is_replaying_is_left_to_it(tmp_path: Path) -> None:
    spill = await spill_while_down(tmp_path, 20)
    claimed = tmp_path / "spill.jsonl.claimed-4242-0badf00d"
    spill.rename(claimed)
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(store, spill_path=spill, batch_size=8)
    with claimed.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # the other process, mid-replay
        assert await recorder.flush() is True
    await store.close()
    assert count_rows(tmp_path / "p.db") == 0 and claimed.exists()


async def test_rows_hold_what_the_issue_asks_for(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, retry={"attempts": 0})]) as r,
        openai.AsyncOpenAI(base_url=r.v1, api_key="-", max_retries=0) as client,
    ):
        good = await client.chat.completions.with_raw_response.create(
            model="alpha", messages=[{"role": "user", "content": "hi"}]
        )
        fake_openai.behaviour.fail(500, "upstream exploded")
        async with httpx.AsyncClient() as plain:
            response = await plain.post(
                f"{r.v1}/chat/completions",
                json={"model": "alpha", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert response.status_code == 502
        bad_id = response.headers["x-podium-trace-id"]
        await r.podium.recorder.flush()
        ok = await r.podium.store.get_trace(good.headers["x-podium-trace-id"])
        failed = await r.podium.store.get_trace(bad_id)
        rows = await r.podium.store.list_traces()
    assert len(rows) == 2  # one row per request
    assert ok is not None and failed is not None
    assert ok.created_at > 0 and ok.caller == "anonymous" and ok.requested_model == "alpha"
    assert ok.route == "direct" and ok.worker == "alpha" and ok.workers == "alpha"
    assert ok.input_tokens > 0 and ok.output_tokens > 0 and ok.cost_usd > 0
    assert ok.latency_ms > 0 and ok.ttft_ms is not None
    assert (ok.status, ok.http_status, ok.error) == ("ok", 200, None)
    assert (failed.status, failed.http_status) == ("error", 502)
    assert failed.error is not None and "upstream exploded" in failed.error


async def test_many_requests_then_shutdown_keeps_every_row(
    gateway: Any, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # A long flush interval and a big batch: nothing is written until the shutdown flush.
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            store={"flush_interval": 3600, "batch_size": 10_000},
        ) as running,
        httpx.AsyncClient(base_url=running.v1) as client,
    ):
        database = running.podium.config.resolved_data_dir() / "podium.db"
        body = {"model": "alpha", "messages": [{"role": "user", "content": "count me"}]}

        async def one() -> int:
            return (await client.post("/chat/completions", json=body)).status_code

        statuses = await asyncio.gather(*(one() for _ in range(150)))
        assert statuses == [200] * 150
        assert count_rows(database) == 0  # still buffered
    assert count_rows(database) == 150


class SlowStore(CountingStore):
    """A store that takes far longer per batch than a shutdown may wait."""

    async def write_traces(self, records: list[TraceRecord], derive: Derive | None = None) -> None:
        await asyncio.sleep(0.5)
        await super().write_traces(records, derive)


async def test_a_backlog_larger_than_shutdown_allows_goes_to_the_spill_file(
    tmp_path: Path,
) -> None:
    store = SlowStore(tmp_path / "p.db")
    await store.open()
    spill = tmp_path / "spill.jsonl"
    recorder = TraceRecorder(
        store, spill_path=spill, batch_size=10, flush_interval=3600, close_timeout=0.2
    )
    for index in range(100):
        recorder.record(trace(f"t{index}"))
    await recorder.close()
    written = count_rows(tmp_path / "p.db")
    spilled = len(spill.read_bytes().splitlines()) if spill.exists() else 0
    assert written + spilled >= 100  # every trace is in the store or on disk, none lost
    assert spilled > 0
    await store.close()

    # The next start writes what was spilled: all 100 rows, none twice.
    store = CountingStore(tmp_path / "p.db")
    await store.open()
    recorder = TraceRecorder(store, spill_path=spill, batch_size=10, flush_interval=3600)
    assert await recorder.flush()
    assert count_rows(tmp_path / "p.db") == 100
    assert not spill.exists()
    await store.close()

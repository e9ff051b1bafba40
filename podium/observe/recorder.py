"""Writing traces off the hot path: requests append to a buffer, a background task writes
batches. When the store is down the buffer holds up to a bound, then spills to a local JSONL
file; both are written when the store answers again. A clean shutdown flushes everything.

Server processes of one host (``podium serve --workers N``) share the spill file: appends and
the replay's claim (read and remove) hold an exclusive ``flock`` on a lock file beside it, so a
replay never removes lines another process is writing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import orjson

from podium.store.traces import TraceRecord, TraceStore

log = logging.getLogger("podium.traces")


class TraceRecorder:
    def __init__(
        self,
        store: TraceStore,
        *,
        spill_path: Path,
        batch_size: int = 256,
        flush_interval: float = 0.5,
        queue_limit: int = 100_000,
        close_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.spill_path = spill_path
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_limit = queue_limit
        self.close_timeout = close_timeout
        self._buffer: deque[TraceRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.spilled = 0
        self.failures = 0

    @property
    def depth(self) -> int:
        return len(self._buffer)

    def record(self, trace: TraceRecord) -> None:
        """Queue a trace; never blocks and never raises."""
        self._buffer.append(trace)
        if len(self._buffer) > self.queue_limit:
            self._spill(self.batch_size)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @contextlib.contextmanager
    def _spill_lock(self) -> Iterator[None]:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.spill_path.with_name(self.spill_path.name + ".lock")
        with lock.open("ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _spill(self, count: int) -> None:
        batch = [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]
        self._append_spill(batch)

    def _append_spill(self, batch: list[TraceRecord]) -> None:
        try:
            with self._spill_lock(), self.spill_path.open("ab") as out:
                for trace in batch:
                    out.write(orjson.dumps(dataclasses.asdict(trace)) + b"\n")
            self.spilled += len(batch)
        except OSError:
            log.exception("could not spill %d traces to %s", len(batch), self.spill_path)
            self._buffer.extendleft(reversed(batch))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    def _claim_spill(self) -> list[TraceRecord]:
        with self._spill_lock():
            if not self.spill_path.is_file():
                return []
            lines = self.spill_path.read_bytes().splitlines()
            self.spill_path.unlink()
        return [TraceRecord(**orjson.loads(line)) for line in lines if line.strip()]

    async def _replay_spill(self) -> None:
        if not self.spill_path.is_file():
            return
        records = self._claim_spill()
        for start in range(0, len(records), self.batch_size):
            try:
                await self.store.write_traces(records[start : start + self.batch_size])
            except BaseException:
                self._append_spill(records[start:])  # back on disk for the next attempt
                raise
            self.written += len(records[start : start + self.batch_size])

    async def flush(self) -> bool:
        """Write everything buffered (and anything spilled). False if the store failed."""
        try:
            await self._replay_spill()
            while self._buffer:
                batch = [
                    self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))
                ]
                try:
                    await self.store.write_traces(batch)
                except BaseException:
                    self._buffer.extendleft(reversed(batch))
                    raise
                self.written += len(batch)
        except Exception:
            self.failures += 1
            log.warning("trace store unavailable; %d traces buffered", len(self._buffer))
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            # A backlog larger than the store can take before the process is stopped goes to
            # the spill file, which is fast, rather than being lost with the process.
            async with asyncio.timeout(self.close_timeout):
                flushed = await self.flush()
        except TimeoutError:
            flushed = False
        if not flushed:
            self._spill(len(self._buffer))  # nothing lost: written at the next start

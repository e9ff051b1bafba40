"""Writing traces off the hot path: a request appends its trace to a buffer (nothing more), a
background task writes batches. The buffer is bounded: past ``queue_limit`` the oldest batch
goes to a local JSONL spill file rather than grow memory, and so does everything when the store
is down; the spill is written once the store answers again, a batch at a time. A clean shutdown
writes what it can within ``close_timeout`` and spills the rest.

Server processes of one host (``podium serve --workers N``) share the spill file: appends and
the replay's claim (renaming the file aside) hold an exclusive ``flock`` on a lock file beside
it, so a replay never takes lines another process is still writing. A claimed file is locked
by the process replaying it; one left by a process that died is replayed by the next."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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
        # The writer, between batches: True when the interval ended, False when woken.
        self._waiting: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._replay_due = True  # at start: whatever an earlier run left on disk
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
            self._wake()

    # -- the spill file --------------------------------------------------------------------------

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
        try:
            lines = b"".join(orjson.dumps(trace) + b"\n" for trace in batch)
            with self._spill_lock(), self.spill_path.open("ab") as out:
                out.write(lines)
            self.spilled += len(batch)
            self._replay_due = True
        except OSError:
            log.exception("could not spill %d traces to %s", len(batch), self.spill_path)
            self._buffer.extendleft(reversed(batch))

    def _claim_spills(self) -> list[BinaryIO]:
        """The spill files to replay, each open and exclusively locked: the live spill file
        (renamed aside first, so appends start a new one) and any claimed file whose replayer
        died. A file another process is replaying is locked, and skipped."""
        claimed: list[BinaryIO] = []
        with self._spill_lock():
            if self.spill_path.is_file():
                aside = self.spill_path.with_name(
                    f"{self.spill_path.name}.claimed-{os.getpid()}-{os.urandom(4).hex()}"
                )
                self.spill_path.rename(aside)
            for path in sorted(self.spill_path.parent.glob(f"{self.spill_path.name}.claimed-*")):
                handle = path.open("rb")
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                claimed.append(handle)
        return claimed

    async def _replay_spills(self) -> None:
        claimed = self._claim_spills()
        try:
            while claimed:
                handle = claimed[0]
                batch: list[TraceRecord] = []
                for line in handle:  # a batch at a time: memory stays flat however much spilled
                    if line.strip():
                        batch.append(TraceRecord(**orjson.loads(line)))
                    if len(batch) >= self.batch_size:
                        await self._write(batch)
                        batch = []
                        await self._write_buffered(keep=self.batch_size - 1)  # live ones too
                if batch:
                    await self._write(batch)
                # Written (the store skips ids it already has, so a replay that failed halfway
                # and starts over adds nothing twice): gone from disk.
                _remove(claimed.pop(0))
        finally:
            for handle in claimed:
                handle.close()  # unlocked: the next replay starts these over
        self._replay_due = False

    # -- the writer ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # A future and a timer rather than an Event under asyncio.timeout: the timer ends most
        # waits, and the timeout did so by cancelling the task and turning the cancellation into
        # a TimeoutError, ~45k instructions a batch.
        loop = asyncio.get_running_loop()
        flushed = True
        while not self._closing:
            # A full batch waiting is written at once, unless the store just failed: then the
            # next try waits for the interval, or for the next trace queued.
            interval_ended = False
            if not flushed or len(self._buffer) < self.batch_size:
                self._waiting = waiting = loop.create_future()
                timer = loop.call_later(self.flush_interval, _settle, waiting, True)
                try:
                    interval_ended = await waiting
                finally:
                    timer.cancel()
                    self._waiting = None
            # Due: the full batches, and at the end of an interval everything queued. Traces
            # queued while a batch is written wait for the next full batch or interval, rather
            # than go at once in a batch of one or two (a busy writer wrote mostly those): each
            # write costs a commit, its statements and the rollup's totals whatever its size.
            depth = len(self._buffer)
            flushed = await self.flush(depth if interval_ended else depth - depth % self.batch_size)

    def _wake(self) -> None:
        if self._waiting is not None:
            _settle(self._waiting, False)

    async def _write(self, batch: list[TraceRecord]) -> None:
        await self.store.write_traces(batch)
        self.written += len(batch)

    async def _write_buffered(self, keep: int = 0) -> None:
        """Write batches from the buffer until at most ``keep`` traces are left in it."""
        while len(self._buffer) > keep:
            await self._write_oldest(self.batch_size)

    async def _write_oldest(self, count: int) -> None:
        """Write the oldest ``count`` traces (fewer if fewer are queued) in one batch."""
        batch = [self._buffer.popleft() for _ in range(min(count, len(self._buffer)))]
        try:
            await self._write(batch)
        except BaseException:
            self._buffer.extendleft(reversed(batch))
            raise

    async def flush(self, due: int | None = None) -> bool:
        """Write everything buffered (or the oldest ``due`` traces, a batch at a time) and
        anything spilled. False if the store failed."""
        try:
            if due is None:
                await self._write_buffered()
            else:
                while due > 0 and self._buffer:
                    size = min(due, self.batch_size)
                    await self._write_oldest(size)
                    due -= size
            if self._replay_due:
                await self._replay_spills()
                if due is None:  # else what came meanwhile is due at the next batch or interval
                    await self._write_buffered()
        except Exception:
            self.failures += 1
            log.warning("trace store unavailable; %d traces buffered", len(self._buffer))
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        self._wake()
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


def _settle(waiting: asyncio.Future[bool], interval_ended: bool) -> None:
    if not waiting.done():
        waiting.set_result(interval_ended)


def _remove(handle: BinaryIO) -> None:
    Path(handle.name).unlink()
    handle.close()

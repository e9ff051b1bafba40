"""Runs batches: each process takes the oldest batch nobody holds, answers its requests a few at
a time (``batches.concurrency``) and keeps each result as it comes, renewing its hold as it
goes. A replica that stops mid-batch lets its hold lapse; another takes the batch over where it
stood. A cancel stops the requests in flight (they are ``canceled``); past its window, what is
left ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from podium.batches.store import Batch, BatchRequest, BatchStore, ResultType
from podium.types import JSONObject

log = logging.getLogger("podium.batches")

# Answers one request of a batch: its result type and the result object.
Answer = Callable[[Batch, BatchRequest], Awaitable[tuple[ResultType, JSONObject]]]


class BatchRunner:
    def __init__(
        self,
        store: BatchStore,
        answers: dict[str, Answer] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = store.settings
        # Each API that makes batches says how its requests are answered (by Batch.kind): one
        # runner, so ``concurrency`` bounds them all together.
        self.answers: dict[str, Answer] = dict(answers or {})
        self.name = f"runner-{uuid.uuid4().hex[:12]}"  # this process, as its leases say
        self.answered = 0  # requests, for /metrics
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        """A batch was just created: look now rather than at the next poll."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                batch = await self.store.claim(self.name)
            except Exception:
                log.exception("could not look for batches to run")
                batch = None
            if batch is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
                self._wake.clear()
                continue
            try:
                await self.run(batch)
            except Exception:
                # Its hold lapses and a replica (this one, next time) goes on where it stood.
                log.exception("batch %s stopped; it will be taken up again", batch.batch_id)

    async def run(self, batch: Batch) -> None:
        store, batch_id = self.store, batch.batch_id
        chunk = self.settings.concurrency * 4
        while True:
            ours, cancel = await store.renew(batch_id, self.name)
            if not ours:
                return  # deleted, ended, or taken over after our hold lapsed
            if cancel:
                await store.end(batch_id, "canceled")
                return
            if self._clock() >= batch.expires_at:
                await store.end(batch_id, "expired")
                return
            pending = await store.pending(batch_id, chunk)
            if not pending:
                await store.end(batch_id)
                return
            if await self._answer_all(batch, pending) == "canceled":
                await store.end(batch_id, "canceled")
                return

    async def _answer_all(self, batch: Batch, requests: list[BatchRequest]) -> str | None:
        """Answer ``requests``, ``concurrency`` at once, keeping each result; stop them all
        when a renewal finds the batch canceled (returns "canceled") or no longer ours."""
        slots = asyncio.Semaphore(self.settings.concurrency)
        answer = self.answers[batch.kind]

        async def one(request: BatchRequest) -> None:
            async with slots:
                result_type, result = await answer(batch, request)
                await self.store.answer(batch.batch_id, request.seq, result_type, result)
                self.answered += 1

        work = asyncio.ensure_future(asyncio.gather(*(one(request) for request in requests)))
        every = self.settings.lease_seconds / 3
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=every)
                if done:
                    work.result()
                    return None
                ours, cancel = await self.store.renew(batch.batch_id, self.name)
                if cancel or not ours:
                    return "canceled" if ours else None
        finally:
            if not work.done():  # canceled, taken over, or this process stopping
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

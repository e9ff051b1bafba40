"""How much of one worker Podium may use: calls in flight at once, requests and tokens per
minute (a worker's ``limits:``), and a rest after the upstream itself said 429.

A call takes room before it is sent and gives it back when its answer ends. With no room, it
waits its turn for at most ``queue_seconds`` (``background_queue_seconds`` for background work:
batches, background responses, the judge), never past the request's deadline, and is then
turned away: the engine tries the next worker the decision allows. Interactive calls are
served before background ones, and background work may hold at most ``background_share`` of
the slots and of each per-minute limit, so a batch never starves the traffic people wait on.

Slots are counted per process (each replica holds its own). The per-minute buckets are the
ones the key limits use (:mod:`podium.policy.limits`), so with ``access.limits.backend:
redis`` a worker's quota is shared by every replica, as the vendor counts it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from podium.config import WorkerLimits
from podium.context import Priority
from podium.policy.limits import MemoryLimits, RateTake

log = logging.getLogger("podium.capacity")

Sleep = Callable[[float], Awaitable[None]]


class RateBuckets(Protocol):
    async def take_rate(
        self, key_id: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateTake: ...

    async def adjust_tokens(self, key_id: str, *, tpm: int, delta: int) -> None: ...


class AtCapacity(Exception):
    """No room on the worker within the wait allowed. ``wait``: seconds until there may be."""

    def __init__(self, worker: str, reason: str, wait: float) -> None:
        super().__init__(f"worker {worker!r} at capacity: {reason}")
        self.worker = worker
        self.reason = reason
        self.wait = wait


class Slot:
    """Room taken on a worker for one call: give it back with :meth:`release` when the answer
    ends, with the tokens it really used (the token bucket was charged an estimate)."""

    __slots__ = ("capacity", "counted", "priority", "released", "tokens")

    def __init__(self, capacity: Capacity, priority: Priority, tokens: int, counted: bool) -> None:
        self.capacity = capacity
        self.priority = priority
        self.tokens = tokens
        self.counted = counted  # holds one of the worker's slots
        self.released = False

    def release(self, used_tokens: int | None = None) -> None:
        if self.released:
            return
        self.released = True
        self.capacity._give_back(self, used_tokens)


class Capacity:
    def __init__(
        self,
        worker: str,
        limits: WorkerLimits,
        buckets: RateBuckets | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.worker = worker
        self.buckets: RateBuckets = buckets or MemoryLimits(clock)
        self._clock = clock
        self._sleep = sleep
        self.resting_until = 0.0  # perf_counter time before which the upstream asked not to call
        self.in_use = 0
        self.background_in_use = 0
        self.refused = 0  # calls turned away, for /metrics
        self.waited = 0  # calls that waited for room, for /metrics
        self._queues: dict[Priority, deque[asyncio.Future[None]]] = {
            "interactive": deque(),
            "background": deque(),
        }
        self._key = f"worker/{worker}"
        self._background_key = f"worker/{worker}/background"
        self._corrections: set[asyncio.Task[None]] = set()
        self._unchecked = False  # the buckets' store failed: said once, until it answers again
        self.reconfigure(limits)

    def reconfigure(self, limits: WorkerLimits) -> None:
        """New limits, in place: calls in flight keep their room, and callers waiting are
        given any room the change made."""
        self.limits = limits
        concurrency = limits.concurrency
        self.slots = concurrency
        # At least one slot for background work, whatever the share, so it is never shut out.
        self.background_slots = (
            None
            if concurrency is None
            else max(1, math.floor(concurrency * limits.background_share))
        )
        # Whether any limit is set: the engine asks nothing of an unlimited worker that is not
        # resting (two attribute reads a call).
        self.limited = bool(concurrency or limits.rpm or limits.tpm)
        self._hand_on()

    def resting_for(self) -> float:
        """Seconds left of the upstream's pause (0.0: none)."""
        return max(0.0, self.resting_until - self._clock()) if self.resting_until else 0.0

    def rest(self, seconds: float) -> None:
        """The upstream answered 429 and asked for ``seconds``: no call of this process goes
        to the worker before then (each would only be told the same)."""
        until = self._clock() + seconds
        if until > self.resting_until:
            self.resting_until = until

    def patience(self, priority: Priority) -> float:
        """Seconds a call of ``priority`` may wait for room here."""
        if priority == "interactive":
            return self.limits.queue_seconds
        return self.limits.background_queue_seconds

    async def acquire(
        self,
        priority: Priority,
        tokens: int,
        deadline: float | None = None,
        *,
        wait: bool = True,
        rested: bool = False,
    ) -> Slot | None:
        """Room for one call of about ``tokens`` tokens (prompt and answer), waiting for it as
        long as allowed (not at all unless ``wait``); None when the worker has no limits
        (nothing to give back). Raises :class:`AtCapacity` when there is no room in time.
        ``rested``: the call is a retry that has already waited out the upstream's pause."""
        now = self._clock()
        give_up = now + self.patience(priority) if wait else now
        if deadline is not None and deadline < give_up:
            give_up = deadline
        try:
            if self.resting_until and not rested:
                await self._rested(now, give_up)
            if not self.limited:
                return None
            counted = self.slots is not None
            if counted:
                await self._take_slot(priority, give_up)
            slot = Slot(self, priority, tokens, counted)
            try:
                await self._take_rate(slot, give_up)
            except BaseException:
                slot.release()
                raise
        except AtCapacity:
            # Turned away for good; a first look that may come back and wait is not counted.
            if wait or not self.patience(priority):
                self.refused += 1
            raise
        return slot

    async def _rested(self, now: float, give_up: float) -> None:
        until = self.resting_until
        if until <= now:
            self.resting_until = 0.0
            return
        if until > give_up:
            raise AtCapacity(self.worker, "the upstream asked for a pause (429)", until - now)
        self.waited += 1
        await self._sleep(until - now)

    def _room(self, priority: Priority) -> bool:
        if self.slots is None or self.background_slots is None:
            return True  # the limit was lifted while calls waited
        if self.in_use >= self.slots:
            return False
        return priority == "interactive" or self.background_in_use < self.background_slots

    def _occupy(self, priority: Priority) -> None:
        self.in_use += 1
        if priority == "background":
            self.background_in_use += 1

    async def _take_slot(self, priority: Priority, give_up: float) -> None:
        queue = self._queues[priority]
        # Interactive calls go before any background one that waits; each kind in turn.
        ahead = queue or (priority == "background" and self._queues["interactive"])
        if not ahead and self._room(priority):
            self._occupy(priority)
            return
        left = give_up - self._clock()
        if left <= 0:
            raise AtCapacity(self.worker, f"all {self.slots} slots busy", 1.0)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        self.waited += 1
        try:
            async with asyncio.timeout(left):
                await turn  # resolved by _hand_on, with the slot already counted as ours
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                self._free(priority)  # handed a slot just as time ran out: give it on
            else:
                turn.cancel()
            if isinstance(error, TimeoutError):
                raise AtCapacity(self.worker, f"all {self.slots} slots busy", 1.0) from None
            raise
        finally:
            if turn in queue:
                queue.remove(turn)

    def _free(self, priority: Priority) -> None:
        self.in_use -= 1
        if priority == "background":
            self.background_in_use -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        """Give free slots to the callers waiting, interactive ones first."""
        for priority in ("interactive", "background"):
            queue = self._queues[priority]
            while queue and self._room(priority):
                turn = queue.popleft()
                if not turn.done():
                    self._occupy(priority)
                    turn.set_result(None)

    async def _take_rate(self, slot: Slot, give_up: float) -> None:
        rpm, tpm = self.limits.rpm, self.limits.tpm
        if not rpm and not tpm:
            return
        keys = [(self._key, rpm, tpm)]
        if slot.priority == "background" and self.limits.background_share < 1:
            # Background work takes from a smaller bucket too, so it leaves the rest of each
            # minute to interactive calls. Taken first: when the worker's own bucket then has
            # no room, the background bucket stays charged (errs on the side of waiting).
            share = self.limits.background_share
            keys.insert(
                0,
                (
                    self._background_key,
                    None if rpm is None else max(1, int(rpm * share)),
                    None if tpm is None else max(1, int(tpm * share)),
                ),
            )
        for key, key_rpm, key_tpm in keys:
            while True:
                try:
                    taken = await self.buckets.take_rate(
                        key, rpm=key_rpm, tpm=key_tpm, tokens=slot.tokens
                    )
                except Exception as error:  # a shared store that is down: the upstream counts
                    if not self._unchecked:
                        self._unchecked = True
                        log.warning("worker %s: rate limits not checked (%s)", self.worker, error)
                    return
                if self._unchecked:
                    self._unchecked = False
                    log.warning("worker %s: rate limits checked again", self.worker)
                if taken.wait <= 0:
                    break
                now = self._clock()
                if now + taken.wait > give_up:
                    requests_short = taken.requests_left is not None and taken.requests_left < 1
                    limit = f"rpm {key_rpm}" if requests_short else f"tpm {key_tpm}"
                    if key != self._key:
                        limit = f"background work's share ({limit})"
                    raise AtCapacity(self.worker, f"{limit} reached", taken.wait)
                self.waited += 1
                await self._sleep(taken.wait)

    def _give_back(self, slot: Slot, used_tokens: int | None) -> None:
        if slot.counted:
            self._free(slot.priority)
        tpm = self.limits.tpm
        if tpm and used_tokens is not None and used_tokens != slot.tokens:
            delta = used_tokens - slot.tokens
            keys = [self._key]
            if slot.priority == "background" and self.limits.background_share < 1:
                keys.append(self._background_key)
            for key in keys:
                self._correct(key, tpm if key == self._key else self._background_tpm(), delta)

    def _background_tpm(self) -> int:
        assert self.limits.tpm is not None
        return max(1, int(self.limits.tpm * self.limits.background_share))

    def _correct(self, key: str, tpm: int, delta: int) -> None:
        """Charge the token bucket what the call really used. In this process's buckets that
        is done at once; a shared store is told in a task of its own (release never waits)."""
        if isinstance(self.buckets, MemoryLimits):
            self.buckets.adjust_now(key, tpm, delta)
            return
        try:
            task = asyncio.get_running_loop().create_task(
                self.buckets.adjust_tokens(key, tpm=tpm, delta=delta)
            )
        except RuntimeError:
            return  # no loop (shutting down): the bucket refills by itself within the minute
        self._corrections.add(task)
        task.add_done_callback(self._corrected)

    def _corrected(self, task: asyncio.Task[None]) -> None:
        self._corrections.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("worker %s: tokens not corrected (%s)", self.worker, task.exception())

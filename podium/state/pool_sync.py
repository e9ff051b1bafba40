"""The worker pool's run-time changes, made on any replica, applied on every replica.

A change through the admin API (add, reprice, drain, remove) is written at once to
``podium_pool_state`` in the shared store, one row per worker with a rising ``version``. Every
replica reads the (small) table every ``store.sync_interval`` seconds and applies the rows whose
version it has not seen, so a worker drained on one replica is drained on all within about one
interval. A replica that starts later applies the table at start-up: changes outlive restarts.
The same works for ``podium serve --workers N`` on one SQLite file.

A replica applying a row changes its own pool too; that change matches the row, so it is not
written back (no echo between replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from podium.config import WorkerConfig
from podium.workers import Worker, WorkerPool

log = logging.getLogger("podium.pool_sync")

UPSERT = (
    "INSERT INTO podium_pool_state (name, config, draining, removed, version, updated_at, origin) "
    "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (name) DO UPDATE SET config = excluded.config, "
    "draining = excluded.draining, removed = excluded.removed, "
    "version = podium_pool_state.version + 1, updated_at = excluded.updated_at, "
    "origin = excluded.origin RETURNING version"
)
READ = "SELECT name, config, draining, removed, version FROM podium_pool_state"


class SQLExecutor(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class State:
    """What replicas agree on for one worker."""

    config: str  # canonical JSON of the worker's config
    draining: bool
    removed: bool


def _canonical(config: WorkerConfig) -> str:
    return orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS).decode()


def state_of(worker: Worker | None, last: State | None) -> State | None:
    if worker is None:
        return State(last.config, False, True) if last is not None else None
    return State(_canonical(worker.config), worker.draining, False)


class PoolSync:
    def __init__(self, pool: WorkerPool, db: SQLExecutor, *, interval: float) -> None:
        self.pool = pool
        self.db = db
        self.interval = interval
        self.origin = uuid.uuid4().hex[:12]
        self._known: dict[str, State] = {}  # as last written or applied here
        self._unshared: set[str] = set()  # changed here while the store was unreachable
        self._versions: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one apply or publish at a time
        self._closing = False
        self.applied = 0
        self.failures = 0

    # -- local changes -> the store -----------------------------------------------------------

    def changed(self, name: str) -> None:
        """A pool listener: publish the change (in the background; the admin call returns)."""
        task = asyncio.get_running_loop().create_task(self.publish(name))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def publish(self, name: str) -> None:
        async with self._lock:
            state = state_of(self.pool.get(name), self._known.get(name))
            if state is None or state == self._known.get(name):
                self._unshared.discard(name)
                return  # nothing new (or the echo of a change this replica just applied)
            try:
                rows = await self.db.execute(
                    UPSERT,
                    (name, state.config, int(state.draining), int(state.removed), time.time(),
                     self.origin),
                )  # fmt: skip
            except Exception as error:
                self.failures += 1
                self._unshared.add(name)  # shared by the sync loop once the store answers
                log.warning("could not share the change to worker %s yet: %s", name, error)
                return
            self._unshared.discard(name)
            self._known[name] = state
            if rows:
                self._versions[name] = int(rows[0][0])

    # -- the store -> this pool -----------------------------------------------------------------

    async def sync_once(self) -> int:
        """Share changes the store missed, then apply every row not yet seen here; returns
        how many were applied."""
        for name in list(self._unshared):
            await self.publish(name)
        if self._unshared:
            raise ConnectionError("the store is still unreachable")
        rows = await self.db.execute(READ)
        applied = 0
        async with self._lock:
            for name, config, draining, removed, version in rows:
                if self._versions.get(name) == int(version):
                    continue
                state = State(str(config), bool(draining), bool(removed))
                try:
                    await self._apply(str(name), state)
                    applied += 1
                    # Known as this replica now holds it, in its own canonical form, so the
                    # pool listener's publish finds nothing new. A row written by another
                    # Podium version (other defaults, fields) would otherwise be written back
                    # in this one's form, and two versions would echo it between them forever.
                    state = state_of(self.pool.get(str(name)), state) or state
                except Exception as error:  # one bad row must not stop the others
                    log.warning("could not apply the shared change to worker %s: %s", name, error)
                # a row that failed is not retried every round: it waits for its next version
                self._versions[name] = int(version)
                self._known[name] = state
        self.applied += applied
        return applied

    async def _apply(self, name: str, state: State) -> None:
        worker = self.pool.get(name)
        if state.removed:
            if worker is not None:
                # The pool lets requests in flight finish first: do not hold the sync for them.
                task = asyncio.get_running_loop().create_task(self._remove(name))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
                await asyncio.sleep(0)  # it leaves the pool now; closing waits in the background
            return
        try:
            config = WorkerConfig.model_validate(orjson.loads(state.config))
        except (ValidationError, ValueError) as error:
            raise ValueError(f"stored config is invalid: {error}") from None
        if worker is None:
            worker = await self.pool.add(config)
        elif _canonical(worker.config) != state.config:
            changes = config.model_dump()
            changes.pop("name")
            worker = await self.pool.update(name, changes)
        if worker.draining != state.draining:
            self.pool.drain(name, state.draining)

    async def _remove(self, name: str) -> None:
        with contextlib.suppress(KeyError):  # removed meanwhile
            await self.pool.remove(name)

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.pool.listeners.append(self.changed)
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = 0.05  # the store may still be opening: retry soon at first
        while not self._closing:
            try:
                await self.sync_once()
                delay = self.interval
            except Exception as error:
                # The driver may turn a cancellation into its own error: closing decides.
                if self._closing:
                    return
                self.failures += 1
                log.debug("pool sync: store unavailable (%s)", type(error).__name__)
                delay = min(self.interval, delay * 2)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        if self.changed in self.pool.listeners:
            self.pool.listeners.remove(self.changed)
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writes:
            # A store that is down must not hold up shutdown: a change not yet shared is
            # applied on this replica only (logged), as it would be after a crash.
            writes = list(self._writes)
            _, late = await asyncio.wait(writes, timeout=2.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*writes, return_exceptions=True)

"""Notes that providers leave for the other processes and replicas of a deployment: short
strings under a key, each kept for a while (which Gemini context cache holds a prompt prefix,
say). A note is a hint: a reader acts on it or, finding none, does the work itself, so a store
that is down costs nothing but the sharing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class SharedNotes(Protocol):
    async def read(self, key: str) -> str | None:
        """The note under ``key``, or None (none, it lapsed, or the store cannot be asked)."""

    async def write(self, key: str, value: str, seconds: float) -> None:
        """Keep ``value`` under ``key`` for ``seconds``; a failure is not the caller's."""

    async def claim(self, key: str, seconds: float) -> bool:
        """Take ``key`` for ``seconds`` unless someone holds it: whether this caller may do
        the work the key names (True too when the store cannot be asked: each does its own)."""

    async def release(self, key: str) -> None:
        """Give up a claim once its work is done (or failed), so another may take it."""


class NoteBoard:
    """A worker pool's notes, which its providers hold from the start: nothing is shared until
    the deployment gives it a store (:meth:`podium.workers.WorkerPool.set_shared_notes`)."""

    def __init__(self) -> None:
        self.store: SharedNotes | None = None

    async def read(self, key: str) -> str | None:
        return None if self.store is None else await self.store.read(key)

    async def write(self, key: str, value: str, seconds: float) -> None:
        if self.store is not None and seconds > 0:
            await self.store.write(key, value, seconds)

    async def claim(self, key: str, seconds: float) -> bool:
        return self.store is None or await self.store.claim(key, seconds)

    async def release(self, key: str) -> None:
        if self.store is not None:
            await self.store.release(key)


class MemoryNotes:
    """Notes kept in this process: what several pools in one process (tests, benchmarks)
    share. Lapsed notes go when read, and the oldest past ``capacity``."""

    def __init__(self, capacity: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.capacity = capacity
        self.clock = clock
        self.notes: dict[str, tuple[float, str]] = {}  # key -> (until, value), oldest first

    async def read(self, key: str) -> str | None:
        found = self.notes.get(key)
        if found is None:
            return None
        if found[0] <= self.clock():
            del self.notes[key]
            return None
        return found[1]

    async def write(self, key: str, value: str, seconds: float) -> None:
        self.notes.pop(key, None)
        self.notes[key] = (self.clock() + seconds, value)
        while len(self.notes) > self.capacity:
            del self.notes[next(iter(self.notes))]

    async def claim(self, key: str, seconds: float) -> bool:
        if await self.read(key) is not None:
            return False
        await self.write(key, "claimed", seconds)
        return True

    async def release(self, key: str) -> None:
        self.notes.pop(key, None)

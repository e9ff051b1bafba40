"""One run at a time of the work for a key: callers that ask while it runs wait for the same
result instead of starting it again (reading one PDF, creating one context cache)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """The work runs as a task of its own, so a caller that goes away (cancelled) does not
    cancel it for the others waiting on it; it is forgotten once done, whatever its outcome."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def running(self, key: K) -> bool:
        return key in self._running

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        """``work()``'s result: the run in progress for ``key``, else a new one."""
        future = self._running.get(key)
        if future is None:
            future = self._running[key] = asyncio.ensure_future(work())
            future.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(future)

    def _forget(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]

    async def aclose(self) -> None:
        """Cancel every run in progress and wait for them to end."""
        running = list(self._running.values())
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)

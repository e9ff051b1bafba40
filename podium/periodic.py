"""Work on a timer, in a task of its own: the retention sweeps of traces and of stored
responses. A run that fails is logged and the next one goes ahead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("podium.periodic")


class Periodic:
    def __init__(
        self,
        work: Callable[[], Awaitable[Any]],
        interval: float,
        *,
        name: str,
        first_delay: float = 60.0,
    ) -> None:
        self.work = work
        self.interval = interval
        self.name = name
        # The first run waits a little: start-up (and the store opening) comes first.
        self.first_delay = min(first_delay, interval)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        delay = self.first_delay
        while True:
            await asyncio.sleep(delay)
            delay = self.interval
            try:
                done = await self.work()
            except Exception:
                log.exception("%s failed; will try again", self.name)
                continue
            if done:
                log.info("%s: %s", self.name, done)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

"""Providers' notes shared by replicas through Redis (:mod:`podium.shared_notes`): one key per
note, ``<prefix>notes:<key>``, set with its lifetime. A note is a hint, so a Redis that cannot
be reached is left alone for ``retry_after`` seconds (a dead server costs a request a clock
read, not a timeout) and every process goes on with what it knows itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from podium.state.redis_client import DEFAULT_MAX_CONNECTIONS, Cooldown, pooled_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("podium.notes")


class RedisNotes:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "podium:",
        timeout: float = 0.25,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.base = f"{prefix}notes:"
        self.timeout = timeout
        self.max_connections = max_connections
        self.cooldown = Cooldown(retry_after, clock)
        self._redis: Redis | None = None

    def _client(self) -> Redis | None:
        if self.cooldown.resting() is not None:
            return None
        if self._redis is None:
            self._redis = pooled_redis(
                self.url,
                timeout=self.timeout,
                max_connections=self.max_connections,
                queue_timeout=self.timeout,  # a hint is not worth waiting for
                name="podium-notes",
            )
        return self._redis

    def _failed(self, error: BaseException) -> None:
        if self.cooldown.resting() is None:
            log.warning(
                "shared notes: Redis unreachable (%s); each process keeps its own",
                type(error).__name__,
            )
        self.cooldown.failed(error)

    async def read(self, key: str) -> str | None:
        redis = self._client()
        if redis is None:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                value = await redis.get(self.base + key)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failed(error)
            return None
        self.cooldown.recovered()
        return str(value) if value is not None else None

    async def write(self, key: str, value: str, seconds: float) -> None:
        redis = self._client()
        if redis is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await redis.set(self.base + key, value, px=max(1, int(seconds * 1000)))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failed(error)
            return
        self.cooldown.recovered()

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

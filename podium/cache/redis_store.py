"""The response cache in Redis, shared by every process and replica.

One string per entry, ``<prefix>cache:<sha256>``, written with ``SET ... PX`` so Redis expires
it; eviction beyond that is Redis's own ``maxmemory-policy`` (``allkeys-lru`` suits a cache).
A cache never refuses a request: when Redis cannot be reached the call raises
:class:`CacheUnavailable` (the request is answered by its worker), and Redis is left alone for
``retry_after`` seconds so a dead server costs nothing per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from podium.cache.store import CacheUnavailable
from podium.state.redis_client import pooled_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RedisCache:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "podium:",
        timeout: float = 0.25,
        max_connections: int = 32,
        retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.base = f"{prefix}cache:"
        self.timeout = timeout
        self.max_connections = max_connections
        self.retry_after = retry_after
        self.errors = 0
        self._clock = clock
        self._redis: Redis | None = None
        self._down_since: float | None = None

    def _client(self) -> Redis:
        if self._down_since is not None and self._clock() - self._down_since < self.retry_after:
            raise CacheUnavailable("Redis was unreachable a moment ago")
        if self._redis is None:
            self._redis = pooled_redis(
                self.url,
                timeout=self.timeout,
                max_connections=self.max_connections,
                # A lookup that cannot get a connection soon is a miss, not a wait.
                queue_timeout=self.timeout,
                name="podium-cache",
            )
        return self._redis

    def _failed(self, error: BaseException) -> CacheUnavailable:
        self.errors += 1
        self._down_since = self._clock()
        return CacheUnavailable(f"Redis unreachable ({type(error).__name__})")

    async def get(self, key: str) -> str | None:
        redis = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                value = await redis.get(self.base + key)
        except Exception as error:
            raise self._failed(error) from None
        self._down_since = None
        return str(value) if value is not None else None

    async def put(self, key: str, value: str, ttl: float) -> None:
        redis = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                await redis.set(self.base + key, value, px=max(1, int(ttl * 1000)))
        except Exception as error:
            raise self._failed(error) from None
        self._down_since = None

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

"""One way to open a Redis client for the request path: a bounded, blocking connection pool.

redis-py's default pool opens a new connection whenever none is idle, without limit. A burst
of requests (512 streams starting at once across two replicas) then opens hundreds of
connections at the same moment; their handshakes wait behind the burst's own work in the
event loop, overrun the per-call timeout, and every key with limits is refused as if Redis
were down. Redis answers one command at a time anyway, so a few connections per process carry
any load: callers beyond them queue for a free one.

:class:`OptionalRedis` builds on it for the optional uses of Redis (the response cache,
providers' notes, session affinity): Redis left alone for a while after it fails;
:class:`RedisStrings` adds strings with lifetimes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_QUEUE_TIMEOUT = 5.0


def pooled_redis(
    url: str, *, timeout: float, max_connections: int, queue_timeout: float, name: str
) -> Redis:
    """A client whose pool holds at most ``max_connections``. ``timeout`` bounds a connect and
    a read; ``queue_timeout`` the wait for a free connection, which is longer: under a burst
    the wait is the event loop's own backlog, not Redis being slow. ``name`` labels the
    connections in Redis's ``CLIENT LIST``, so an operator sees which part of Podium holds
    them."""
    # Imported here: redis is an optional extra, needed only when a Redis backend is chosen.
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=queue_timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        client_name=name,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


class Cooldown:
    """For the optional uses of Redis (session affinity, the response cache), where a failure
    means going on without it: after one, Redis is left alone for ``seconds``, so a dead
    server costs each request a clock read instead of a timeout."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.errors = 0
        self.because = ""  # the last failure's exception name
        self._clock = clock
        self._since: float | None = None

    def resting(self) -> float | None:
        """Seconds since the last failure, while Redis is still being left alone; else None."""
        if self._since is None:
            return None
        ago = self._clock() - self._since
        return ago if ago < self.seconds else None

    def failed(self, error: BaseException) -> None:
        self.errors += 1
        self.because = type(error).__name__
        self._since = self._clock()

    def recovered(self) -> None:
        self._since = None


class RedisUnavailable(Exception):
    """Redis cannot answer now (or is being left alone after failing)."""


class OptionalRedis:
    """A client for an optional use of Redis (the response cache, providers' notes, session
    affinity), whose keys live under ``<prefix><space>:``. A call that fails raises
    :attr:`unavailable` and leaves Redis alone for ``retry_after`` seconds (:class:`Cooldown`),
    so a dead server costs each call a clock read instead of a timeout. ``label`` names the
    connections in ``CLIENT LIST``."""

    unavailable: type[Exception] = RedisUnavailable
    space: ClassVar[str]  # the part of every key after the deployment's prefix
    label: ClassVar[str]
    resting_note: ClassVar[str] = "not asked again yet"  # told to a call while Redis rests
    failed_note: ClassVar[str] = ""  # told to a call that failed, beside why

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
        self.base = f"{prefix}{self.space}:"
        self.timeout = timeout
        self.max_connections = max_connections
        self.cooldown = Cooldown(retry_after, clock)
        self._redis: Redis | None = None

    @property
    def errors(self) -> int:
        return self.cooldown.errors

    def _client(self) -> Redis:
        ago = self.cooldown.resting()
        if ago is not None:
            raise self.unavailable(
                f"Redis unreachable {ago:.1f} s ago ({self.cooldown.because}); {self.resting_note}"
            )
        if self._redis is None:
            self._redis = pooled_redis(
                self.url,
                timeout=self.timeout,
                max_connections=self.max_connections,
                # An optional use: a call that cannot get a connection soon goes without.
                queue_timeout=self.timeout,
                name=self.label,
            )
            self._opened(self._redis)
        return self._redis

    def _opened(self, redis: Redis) -> None:
        """What to prepare on a client just made (scripts to register, say)."""

    def _failed(self, error: BaseException) -> Exception:
        self.cooldown.failed(error)
        note = f"; {self.failed_note}" if self.failed_note else ""
        return self.unavailable(f"Redis unreachable ({self.cooldown.because}){note}")

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()


class RedisStrings(OptionalRedis):
    """Strings under ``base + key``, each set with its lifetime (``SET ... PX``)."""

    async def get(self, key: str) -> str | None:
        redis = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                value = await redis.get(self.base + key)
        except Exception as error:
            raise self._failed(error) from None
        self.cooldown.recovered()
        return str(value) if value is not None else None

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""
        await self._set(key, value, ttl, only_new=False)

    async def put_new(self, key: str, value: str, ttl: float) -> bool:
        """:meth:`put`, only if nothing is kept under ``key`` (``SET NX``): whether it was."""
        return await self._set(key, value, ttl, only_new=True)

    async def delete(self, key: str) -> None:
        redis = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                await redis.delete(self.base + key)
        except Exception as error:
            raise self._failed(error) from None
        self.cooldown.recovered()

    async def _set(self, key: str, value: str, ttl: float, *, only_new: bool) -> bool:
        redis = self._client()
        try:
            async with asyncio.timeout(self.timeout):
                kept = await redis.set(
                    self.base + key, value, px=max(1, int(ttl * 1000)), nx=only_new
                )
        except Exception as error:
            raise self._failed(error) from None
        self.cooldown.recovered()
        return bool(kept)

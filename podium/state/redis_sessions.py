"""Session affinity shared by replicas through Redis: which worker holds each conversation.

One key per session, ``<prefix>{sessions}:<digest>`` (the digest hides the client's session id
and bounds the key's length), set with the affinity TTL on every answered turn. A sorted set
``<prefix>{sessions}:lru`` orders them by their last answered turn; a write that takes the
deployment past ``max_sessions`` evicts the least recent, so the map stays bounded whatever
clients send. Each write is one Lua script (Redis runs it atomically) that reads the time from
Redis itself, so replicas with skewed clocks agree; the ``{sessions}`` hash tag keeps a
deployment's keys on one Redis Cluster slot, which the script needs.

Reads are one ``GET`` on the routing path, never cached locally: another replica may have moved
the session a moment ago, and a stale local copy would send the turn back to the old worker.

When Redis cannot be reached, reads raise :class:`SessionsUnavailable` (the router chain records
it on the decision and the next router chooses: routing without affinity), writes are dropped,
and Redis is left alone for ``retry_after`` seconds so a dead server costs nothing per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from podium.state.redis_client import DEFAULT_MAX_CONNECTIONS, OptionalRedis

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("podium.sessions")

# KEYS[1]: the session's key, KEYS[2]: the deployment's LRU index. ARGV: worker, ttl in ms,
# max sessions, the session's member name in the index, the key prefix of sessions.
PUT = """
local t = redis.call('TIME')
-- Microseconds: turns written within one millisecond must still be ordered for eviction
-- (equal scores would fall back to the members' hash order).
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl * 1000)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #oldest, 2 do redis.call('DEL', ARGV[5] .. oldest[i]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
"""

FORGET = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class SessionsUnavailable(Exception):
    """The shared session map cannot be read; the turn is routed without affinity."""


class RedisSessions(OptionalRedis):
    """The session map of a deployment, shared by every process and replica using Redis."""

    unavailable = SessionsUnavailable
    space = "{sessions}"
    label = "podium-sessions"
    # Affinity is a hint: a turn that cannot reach Redis soon is routed without it.
    resting_note = failed_note = "routing without affinity"

    def __init__(
        self,
        url: str,
        *,
        max_sessions: int,
        ttl: float,
        prefix: str = "podium:",
        timeout: float = 0.25,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            url,
            prefix=prefix,
            timeout=timeout,
            max_connections=max_connections,
            retry_after=retry_after,
            clock=clock,
        )
        self.max_sessions = max_sessions
        self.ttl = ttl
        self.index = f"{self.base}lru"
        self._scripts: dict[str, Any] = {}

    def _member(self, key: str) -> str:
        return hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=16).hexdigest()

    def _opened(self, redis: Redis) -> None:
        self._scripts = {
            "put": redis.register_script(PUT),
            "forget": redis.register_script(FORGET),
        }

    async def get(self, key: str) -> str | None:
        try:
            redis = self._client()
            async with asyncio.timeout(self.timeout):
                worker = await redis.get(self.base + self._member(key))
        except SessionsUnavailable:
            raise
        except asyncio.CancelledError:
            # The router chain gave up on us (its budget): treat Redis as too slow for now.
            self._failed(TimeoutError())
            raise
        except Exception as error:
            raise self._failed(error) from None
        self.cooldown.recovered()
        return str(worker) if worker is not None else None

    async def put(self, key: str, worker: str) -> None:
        member = self._member(key)
        ttl_ms = max(1, int(self.ttl * 1000))
        args = [worker, ttl_ms, self.max_sessions, member, self.base]
        await self._write("put", [self.base + member, self.index], args)

    async def forget(self, key: str) -> None:
        member = self._member(key)
        await self._write("forget", [self.base + member, self.index], [member])

    async def _write(self, script: str, keys: list[str], args: list[Any]) -> None:
        # Writes run after the answer; a lost one only means the next turn routes afresh.
        try:
            self._client()
            async with asyncio.timeout(self.timeout * 2):
                await self._scripts[script](keys=keys, args=args)
        except SessionsUnavailable:
            return
        except Exception as error:
            self._failed(error)
            log.debug("could not write a session to Redis: %s", type(error).__name__)
            return
        self.cooldown.recovered()

"""The response cache in Redis, shared by every process and replica.

One string per entry, ``<prefix>cache:<sha256>``, written with ``SET ... PX`` so Redis expires
it; eviction beyond that is Redis's own ``maxmemory-policy`` (``allkeys-lru`` suits a cache).
A cache never refuses a request: when Redis cannot be reached the call raises
:class:`CacheUnavailable` (the request is answered by its worker), and Redis is left alone for
``retry_after`` seconds so a dead server costs nothing per request.

Clearing walks ``<prefix>cache:*`` with ``SCAN`` and drops what it finds with ``UNLINK`` in
batches (never ``KEYS``, which blocks Redis), on a connection of its own with a longer timeout.
Only names whose rest is a sha256 are dropped, so a deployment whose prefix happens to extend
this one's (``podium:`` and ``podium:cache:``) keeps its entries.
"""

from __future__ import annotations

import re

from podium.cache.store import CacheUnavailable
from podium.state.redis_client import RedisStrings, pooled_redis

CLEAR_BATCH = 500
CLEAR_TIMEOUT = 5.0  # seconds for one SCAN or UNLINK while clearing
ENTRY_NAME = re.compile(r"[0-9a-f]{64}")
GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisCache(RedisStrings):
    unavailable = CacheUnavailable  # a lookup that fails is a miss, never a refusal
    space = "cache"
    label = "podium-cache"

    async def clear(self) -> int:
        pattern = GLOB_SPECIAL.sub(r"\\\1", self.base) + "*"
        redis = pooled_redis(
            self.url,
            timeout=max(self.timeout, CLEAR_TIMEOUT),
            max_connections=1,
            queue_timeout=CLEAR_TIMEOUT,
            name="podium-cache-clear",
        )
        removed = 0
        try:
            cursor: int = 0
            while True:
                cursor, names = await redis.scan(cursor, match=pattern, count=CLEAR_BATCH)
                mine = [name for name in names if self._is_entry(name)]
                if mine:
                    removed += int(await redis.unlink(*mine))
                if cursor == 0:
                    return removed
        except Exception as error:
            raise CacheUnavailable(
                f"Redis unreachable while clearing ({type(error).__name__}); "
                f"{removed} entries were removed"
            ) from None
        finally:
            await redis.aclose()

    def _is_entry(self, name: str | bytes) -> bool:
        # The client decodes replies, so names are text.
        return isinstance(name, str) and bool(ENTRY_NAME.fullmatch(name[len(self.base) :]))

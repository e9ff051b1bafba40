"""The response cache as a plugin: wraps the gateway's executor when ``cache.enabled`` and adds
``/admin/cache``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podium.cache.admin import EXTENSION_KEY, register_routes
from podium.cache.executor import CachingExecutor
from podium.cache.store import MemoryCache, ResponseCache

if TYPE_CHECKING:
    from podium.app import Podium


def register_app(podium: Podium) -> None:
    settings = podium.config.cache
    register_routes(podium)  # also when off: /admin/cache then says so
    if not settings.enabled:
        return
    backend: ResponseCache
    if settings.backend == "redis":
        from podium.cache.redis_store import RedisCache

        url = settings.url or podium.config.redis.url
        assert url is not None  # the configuration refuses a redis backend without a url
        backend = RedisCache(
            url,
            prefix=settings.prefix,
            timeout=settings.timeout,
            max_connections=settings.max_connections,
            retry_after=settings.retry_after,
        )
    else:
        backend = MemoryCache(
            max_entries=settings.max_entries, max_total_bytes=settings.max_total_bytes
        )
    cache = CachingExecutor(podium.gateway.executor, backend, settings, podium.pool)
    podium.gateway.executor = cache
    podium.extras[EXTENSION_KEY] = cache
    podium.app.on_shutdown.append(backend.aclose)

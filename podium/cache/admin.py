"""``/admin/cache``: what the response cache holds and does, and emptying it.

- ``GET /admin/cache``: the settings that matter (backend, scope, ttl) and this process's
  counters since it started; the memory backend adds its entries and bytes.
- ``DELETE /admin/cache`` (or ``POST /admin/cache/clear``): drop every entry. The memory backend
  is this process's own; the Redis backend is shared, so one call empties it for every replica.

Clearing is all-or-nothing: an entry's name is a hash that covers its scope, so the entries of
one key or owner cannot be told apart without reading them all. A clear is recorded in the
audit trail as ``cache.clear``, with how many entries went (or why it failed).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from podium.api.admin import admin_route
from podium.api.http import Request, Response
from podium.cache.executor import CachingExecutor
from podium.cache.store import CacheUnavailable, MemoryCache
from podium.errors import PodiumError
from podium.policy.access import admin_actor

if TYPE_CHECKING:
    from podium.app import Podium

EXTENSION_KEY = "cache"


def describe(cache: CachingExecutor) -> dict[str, Any]:
    settings = cache.settings
    backend: dict[str, Any] = {"kind": settings.backend}
    if isinstance(cache.backend, MemoryCache):
        backend.update(
            entries=len(cache.backend),
            bytes=cache.backend.total_bytes,
            max_entries=settings.max_entries,
            max_total_bytes=settings.max_total_bytes,
        )
    else:
        backend["prefix"] = settings.prefix
    return {
        "enabled": True,
        "backend": backend,
        "scope": settings.scope,
        "ttl_seconds": settings.ttl_seconds,
        "max_bytes": settings.max_bytes,
        "tools": settings.tools,
        # Counters are this process's: with `podium serve --workers N`, each process has its own.
        "process": os.getpid(),
        "counters": {
            "hits": cache.hits,
            "misses": cache.misses,
            "stored": cache.stored,
            "errors": cache.errors,
        },
    }


class CacheAdmin:
    def __init__(self, podium: Podium) -> None:
        self.podium = podium

    def _cache(self) -> CachingExecutor:
        cache = self.podium.extras.get(EXTENSION_KEY)
        if not isinstance(cache, CachingExecutor):
            raise PodiumError(
                "not_found",
                "the response cache is off; turn it on with 'cache: {enabled: true}' in "
                "podium.yaml (docs/operations.md, 'The response cache')",
                code="cache_disabled",
            )
        return cache

    async def stats(self, _: Request) -> Response:
        return Response.json(describe(self._cache()))

    async def clear(self, request: Request) -> Response:
        cache = self._cache()
        if request.query:
            raise PodiumError(
                "invalid_request",
                "clearing the cache is all-or-nothing: entries are named by a hash that covers "
                "their scope, so one key's or owner's entries cannot be picked out; send no "
                "parameters",
                param=next(iter(request.query)),
                code="cache_clear_all_only",
            )
        kind = cache.settings.backend
        try:
            removed = await cache.backend.clear()
        except CacheUnavailable as error:
            self._audit(request, {"backend": kind, "outcome": "failed", "error": str(error)})
            raise PodiumError(
                "overloaded", f"the cache could not be cleared: {error}", code="cache_unavailable"
            ) from None
        self._audit(request, {"backend": kind, "outcome": "cleared", "removed": removed})
        shared = kind == "redis"
        return Response.json(
            {
                "cleared": True,
                "backend": kind,
                "removed": removed,
                # The memory backend is per process; say which one answered.
                "process": None if shared else os.getpid(),
                "shared": shared,
            }
        )

    def _audit(self, request: Request, details: dict[str, Any]) -> None:
        if self.podium.audit is not None:
            self.podium.audit.record(admin_actor(request), "cache.clear", "cache", details)


def register_routes(podium: Podium) -> None:
    admin = CacheAdmin(podium)
    admin_route(podium, "GET", "/admin/cache", admin.stats)
    admin_route(podium, "DELETE", "/admin/cache", admin.clear)
    admin_route(podium, "POST", "/admin/cache/clear", admin.clear)

"""Replicas as one gateway: worker-pool changes through the store, breaker state and
providers' notes (podium/shared_notes.py) through Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podium.state.pool_sync import PoolSync
from podium.state.redis_breakers import SharedBreakers
from podium.state.redis_notes import RedisNotes
from podium.store.tables import SQLExecutor

if TYPE_CHECKING:
    from podium.app import Podium


def register_app(podium: Podium) -> None:
    store = podium.store
    if isinstance(store, SQLExecutor):
        sync = PoolSync(podium.pool, store, interval=podium.config.store.sync_interval)
        podium.extras["pool_sync"] = sync
        podium.app.on_startup.append(sync.start)
        podium.app.on_shutdown.append(sync.aclose)
    settings = podium.config.redis
    if settings.url is not None and settings.notes:
        notes = RedisNotes(
            settings.url,
            prefix=settings.prefix,
            timeout=settings.timeout,
            max_connections=settings.max_connections,
        )
        podium.pool.set_shared_notes(notes)
        podium.app.on_shutdown.append(notes.aclose)
    if settings.url is not None and settings.breakers:
        breakers = SharedBreakers(settings.url, prefix=settings.prefix, timeout=settings.timeout)
        podium.pool.set_breaker_factory(breakers.factory)
        podium.extras["breakers"] = breakers
        podium.app.on_startup.append(breakers.start)
        podium.app.on_shutdown.append(breakers.aclose)

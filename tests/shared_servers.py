"""The real PostgreSQL (127.0.0.1:5432, trust auth, database ``test``) and Redis
(127.0.0.1:6379) the scale-out tests use. With CI=true they must be there (the tests fail
rather than skip); elsewhere the tests skip, naming what is missing."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_USER = os.environ.get("PGUSER", "postgres")
PG_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _skip_unless(available: bool, reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not available and os.environ.get("CI") != "true",
        reason=f"{reason} (these tests always run when CI=true)",
    )


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_postgres = _skip_unless(
    listening(PG_HOST, PG_PORT) and _importable("psycopg_pool"),
    f"no PostgreSQL on {PG_HOST}:{PG_PORT} or psycopg not installed (pip install -e '.[postgres]')",
)
needs_redis = _skip_unless(
    listening(REDIS_HOST, REDIS_PORT) and _importable("redis"),
    f"no Redis on {REDIS_HOST}:{REDIS_PORT} or the redis client not installed",
)


def unique(prefix: str) -> str:
    """A name no parallel run uses: schemas and Redis key prefixes per test."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def drop_schema(schema: str) -> None:
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(PG_URL, autocommit=True) as connection:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def drop_redis_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()

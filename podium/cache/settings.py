"""The ``cache:`` section of podium.yaml: the exact-match response cache.

Imports only pydantic and the standard library, because podium.config imports it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CacheScope = Literal["key", "owner", "global"]


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Off by default: a cached answer is the same answer again, where a worker would have
    # sampled a new one; turning that on is the operator's call.
    enabled: bool = False
    # memory: each process keeps its own entries (the zero-set-up default); redis: every
    # process and replica shares one cache.
    backend: Literal["memory", "redis"] = "memory"
    # The Redis of the redis backend; None: the top-level ``redis.url``.
    url: str | None = None
    prefix: str = Field("podium:", min_length=1, max_length=64)
    ttl_seconds: float = Field(3600.0, gt=0)
    max_bytes: int = Field(64 * 1024, ge=1)  # an answer larger than this (encoded) is not kept
    # Memory backend, per process: the least recently used entries go first past either bound.
    max_entries: int = Field(10_000, ge=1)
    max_total_bytes: int = Field(64 * 1024 * 1024, ge=1)
    # Who may be answered from whose entries: key (the same API key), owner (every key of one
    # owner), global (everyone; only for deployments with one tenant).
    scope: CacheScope = "key"
    # Requests that offer the model tools are answered from the cache too: Podium runs no tool
    # itself, and the same conversation gets the same tool call back. False keeps them fresh.
    tools: bool = True
    # Redis backend: seconds for one call, connections per process, and how long Redis is left
    # alone after it failed (the request is answered by the worker meanwhile).
    timeout: float = Field(0.25, gt=0)
    max_connections: int = Field(32, ge=1, le=10_000)
    retry_after: float = Field(1.0, ge=0)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

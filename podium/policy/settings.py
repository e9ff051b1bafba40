"""The ``access:`` section of podium.yaml: keys, limits, audit and the secret store.

Imports only pydantic and the standard library, because podium.config imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthSettings(_Strict):
    # None: keys are required as soon as one application key exists (so `make serve` with no
    # keys stays open); true: always required; false: optional (a key given is still checked).
    required: bool | None = None
    # Seconds a key lookup is cached; a revoked key is refused at most this long after revoking.
    cache_ttl: float = Field(5.0, gt=0, le=3600)


class LimitSettings(_Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = Field("podium:", min_length=1, max_length=64)
    # closed: when Redis is unreachable, keys that have limits are refused (503) rather than
    # allowed to overspend; open: they pass unmetered.
    fail_mode: Literal["closed", "open"] = "closed"
    # Output tokens assumed for a request that sets no max_tokens and whose worker declares no
    # max_output_tokens: the reservation is an upper bound only when this is.
    default_output_tokens: int = Field(1024, ge=1)
    # A reservation never settled (a crashed request) is released after this many seconds.
    hold_seconds: float = Field(900.0, gt=0)
    timeout: float = Field(0.5, gt=0)  # seconds for one Redis call
    # Connections to Redis per process. A burst of requests queues for a free one instead of
    # opening hundreds at once; past ``queue_timeout`` seconds of waiting the store counts as
    # unreachable (and ``fail_mode`` applies).
    max_connections: int = Field(32, ge=1, le=10_000)
    queue_timeout: float = Field(5.0, gt=0)


class AuditSettings(_Strict):
    # file: a hash-chained JSONL file per machine; store: chains in the store's podium_audit
    # table (one per server process), the file taking entries only while the store is down.
    backend: Literal["file", "store"] = "file"
    # The store backend's chain for this process; default <host>:<pid>:<start time>. Processes
    # that share a name take turns on one chain (the database refuses a fork).
    chain: str | None = Field(None, min_length=1, max_length=200)
    path: Path | None = None  # default: <data_dir>/audit.jsonl
    refusals: bool = True  # record refused requests (401/402/403/429) too


class SecretStoreSettings(_Strict):
    path: Path | None = None  # default: <data_dir>/secrets.enc
    master_key_env: str = Field("PODIUM_MASTER_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class AccessSettings(_Strict):
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    secrets: SecretStoreSettings = Field(default_factory=SecretStoreSettings)

    def audit_path(self, data_dir: Path) -> Path:
        return (self.audit.path or data_dir / "audit.jsonl").expanduser()

    def secrets_path(self, data_dir: Path) -> Path:
        return (self.secrets.path or data_dir / "secrets.enc").expanduser()

"""The ``redis:`` section of podium.yaml: state replicas share through Redis besides limits.

Imports only pydantic and the standard library, because podium.config imports it. Rate limits
and budget reservations have their own switch (``access.limits.backend: redis``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RedisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None: circuit-breaker state and session affinity stay in each process (the zero-set-up
    # default).
    url: str | None = None
    prefix: str = Field("podium:", min_length=1, max_length=64)
    timeout: float = Field(0.25, gt=0)  # seconds for one Redis call
    max_connections: int = Field(32, ge=1, le=10_000)  # per process; callers beyond them wait
    # Share circuit-breaker openings and closings between replicas: one replica seeing a worker
    # fail opens its circuit everywhere, so the others stop sending it traffic too.
    breakers: bool = True
    # Share session affinity (routing.affinity): a conversation keeps its worker whichever
    # process or replica answers its next turn.
    sessions: bool = True
    # Share what providers note for each other: which Gemini context cache holds a prompt
    # prefix, so the replicas use one instead of each creating (and paying to keep) its own.
    notes: bool = True

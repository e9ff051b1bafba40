"""The ``batches:`` section of podium.yaml. Only pydantic here: config.py imports it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # False: the batch routes answer 404, saying so
    max_requests: int = Field(10_000, ge=1, le=100_000)  # in one batch
    max_body_bytes: int = Field(64 * 2**20, ge=1024)  # of the request that creates one
    # Requests of batches one process answers at once: interactive traffic comes first.
    concurrency: int = Field(4, ge=1, le=256)
    window_hours: float = Field(24.0, gt=0)  # what is not answered by then expires
    retention_days: float = Field(29.0, gt=0)  # results kept after a batch is created
    poll_seconds: float = Field(1.0, gt=0)  # how often a process looks for batches to run
    # A replica holds a batch it runs for this long, and renews the hold as it goes; another
    # takes the batch over when the hold lapses (the first stopped).
    lease_seconds: float = Field(60.0, ge=1)

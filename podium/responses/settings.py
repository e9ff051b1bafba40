"""The ``responses:`` section of podium.yaml. Only pydantic here: config.py imports it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ResponsesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Keep the responses clients ask to keep (``store``, true unless the request says false, as
    # at OpenAI), in the store beside the traces. False keeps none: ``previous_response_id``
    # and ``GET /v1/responses/{id}`` are then refused, saying so.
    store: bool = True
    retention_days: float | None = Field(30.0, gt=0)  # None keeps them until deleted
    # The most stored responses one ``previous_response_id`` may chain back through.
    max_chain: int = Field(1000, ge=1, le=100_000)
    sweep_interval_seconds: float = Field(3600.0, gt=0)  # how often expired ones are deleted

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
    # Background responses (``background: true``): at most this many run at once in one
    # process; beyond it a request is refused (429) rather than queued without bound.
    max_background: int = Field(256, ge=1)
    # How often a running one's new stream events are written, and a client following it on
    # another replica reads them.
    background_poll_seconds: float = Field(0.1, gt=0, le=5)
    # A running one whose replica has said nothing for this long (it stopped) is reported as
    # failed. The replica says so every tenth of it.
    background_stale_seconds: float = Field(30.0, ge=1)
    # At shutdown, how long running ones may take to finish before they are stopped (failed).
    background_shutdown_seconds: float = Field(30.0, ge=0)
    # How long a streamed one's events are kept once it has ended, for a client to pick its
    # stream up again (``?stream=true&starting_after=N``); the response itself is kept for
    # ``retention_days``. None keeps them as long as the response.
    background_events_hours: float | None = Field(24.0, gt=0)

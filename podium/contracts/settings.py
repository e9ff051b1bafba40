"""The ``contracts:`` section of ``podium.yaml``. Only pydantic and the standard library here
(``podium.config`` imports this module)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ShadowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # contract name -> the version that runs in shadow next to the current one on live calls
    versions: dict[str, str] = Field(default_factory=dict)
    rate: float = Field(1.0, ge=0, le=1)  # share of live calls that also run the shadow
    max_in_flight: int = Field(4, ge=1)  # shadow runs beyond this are skipped, not queued


class ContractsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path | None = None  # the contracts directory; None: contracts are off
    # contract name -> version pinned as current (``podium contracts promote`` overrides it)
    current: dict[str, str] = Field(default_factory=dict)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)

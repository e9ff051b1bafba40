"""The ``costs:`` section of podium.yaml: price overrides, scenarios and the default frontier.

Imports only pydantic and the standard library: podium.config imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Grade = Literal["high", "medium", "low"]
Kind = Literal["proprietary", "open-weight"]

_PERCENT = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*%\s*$")


def parse_change(value: object) -> float:
    """A price change as a fraction: ``"-30%"`` and ``-0.3`` both mean 30% cheaper."""
    if isinstance(value, bool):
        raise ValueError("a price change is a percentage such as -30% or a fraction such as -0.3")
    if isinstance(value, int | float):
        change = float(value)
        if abs(change) > 1:
            raise ValueError(
                f"{value} is ambiguous as a fraction; write a percentage such as '{value}%'"
            )
    elif isinstance(value, str) and (match := _PERCENT.match(value)):
        change = float(match.group(1)) / 100
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a price change; write a percentage such as -30% "
                "or a fraction such as -0.3"
            ) from None
        return parse_change(number)
    else:
        raise ValueError("a price change is a percentage such as -30% or a fraction such as -0.3")
    if change < -1:
        raise ValueError(f"{value}: a price cannot fall by more than 100%")
    return change


class Tier(Protocol):
    @property
    def above(self) -> int: ...


TierT = TypeVar("TierT", bound=Tier)


def reached(tiers: Iterable[TierT], input_tokens: float) -> TierT | None:
    """The highest of ``tiers`` (ascending by ``above``) a request of this many input tokens
    passes, or None below them all. The one rule for long-prompt rates: the gateway's
    ``Price.at`` and the projections' ``ModelPrice.cost`` both choose by it."""
    chosen: TierT | None = None
    for tier in tiers:
        if input_tokens > tier.above:
            chosen = tier
    return chosen


def check_ascending(thresholds: Sequence[int]) -> None:
    """A tier list must be unambiguous: distinct ``above`` thresholds, lowest first."""
    if list(thresholds) != sorted(set(thresholds)):
        raise ValueError("tiers must have distinct 'above' thresholds in ascending order")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierEntry(Strict):
    """Long-prompt rates in a price entry: every token of a request whose input passes
    ``above`` tokens is billed at them (as Anthropic and Google bill long prompts); an unset
    rate is the entry's base rate."""

    above: int = Field(ge=1)
    input: float | None = Field(None, ge=0)
    output: float | None = Field(None, ge=0)
    cached_input: float | None = Field(None, ge=0)


class PriceEntry(Strict):
    """One model's list price (USD per one million tokens) and what it is good for. In an
    override every field is optional: a partial entry changes only what it names."""

    vendor: str | None = None
    input: float | None = Field(None, ge=0)
    output: float | None = Field(None, ge=0)
    cached_input: float | None = Field(None, ge=0)
    grade: Grade | None = None
    kind: Kind | None = None
    context: int | None = Field(None, gt=0)
    tasks: list[str] | None = None
    batch: float | None = Field(None, gt=0, le=1)
    flagship: bool | None = None
    aliases: list[str] | None = None
    api_model: str | None = None  # the id the vendor's API expects, when not the key
    source: str | None = None
    as_of: str | None = None
    tiers: list[TierEntry] | None = None  # given, it replaces the model's tiers

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: list[TierEntry] | None) -> list[TierEntry] | None:
        if tiers:
            check_ascending([tier.above for tier in tiers])
        return tiers


class VendorEntry(Strict):
    provider: str | None = None  # the Podium provider that speaks its API
    base_url: str | None = None
    api_key_env: str | None = None
    pricing: str | None = None
    hosting: str | None = None
    retention: str | None = None
    training: str | None = None
    trains_on_data: bool | None = None  # may the vendor use API data to improve its models?


class ScenarioEntry(Strict):
    """A named what-if: ``changes`` maps a model, ``vendor:NAME``, ``grade:NAME``,
    ``kind:NAME`` or ``*`` to a change (``-30%``). A bare mapping of changes is accepted too."""

    description: str = ""
    changes: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "changes" not in data and "description" not in data:
            return {"changes": data}
        return data

    @field_validator("changes", mode="before")
    @classmethod
    def _changes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("changes must map a model or vendor:NAME to a change such as -30%")
        return {str(key): parse_change(change) for key, change in value.items()}


class PriceFile(Strict):
    """A prices file (``--prices FILE``), and the shape of the packaged table."""

    as_of: str | None = None
    note: str | None = None
    vendors: dict[str, VendorEntry] = Field(default_factory=dict)
    models: dict[str, PriceEntry] = Field(default_factory=dict)
    scenarios: dict[str, ScenarioEntry] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _prices_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prices" in data:
            data = dict(data)
            data["models"] = {**(data.get("models") or {}), **(data.pop("prices") or {})}
        return data


class CostsConfig(Strict):
    """``costs:`` in podium.yaml."""

    prices: dict[str, PriceEntry] = Field(default_factory=dict)
    scenarios: dict[str, ScenarioEntry] = Field(default_factory=dict)
    prices_file: str | None = None  # a prices file read after the packaged table
    frontier: str | None = None  # the single-vendor model to compare against

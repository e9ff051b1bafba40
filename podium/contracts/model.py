"""A contract: a named task with an input schema, an output schema, model-agnostic
instructions, examples, a policy and an evaluator. Validated as a whole when it is loaded."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
# ``{{ input.field }}``, ``{{ input.a.b }}``, ``{{ input }}`` (the whole input as JSON).
PLACEHOLDER = re.compile(r"\{\{\s*(input(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowHint(_Strict):
    template: str = Field(min_length=1)
    workers: list[str] = Field(default_factory=list)  # empty: the eligible workers by strength
    options: dict[str, Any] = Field(default_factory=dict)


class RoutingHint(_Strict):
    """At most one of: a rule of the rules router (its target is used whatever its conditions),
    a router by name, or a workflow template."""

    rule: str | None = None
    router: str | None = None
    workflow: WorkflowHint | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> RoutingHint:
        given = [n for n in ("rule", "router", "workflow") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of rule, router or workflow (got {given})")
        return self


class ContractPolicy(_Strict):
    data_class: str | None = None  # declared class of the inputs (raises the request's class)
    max_cost_usd: float | None = Field(None, gt=0)  # per call, every attempt included
    latency_ms: float | None = Field(None, gt=0)  # per attempt; a slower attempt is abandoned
    quality_floor: float | None = Field(None, ge=0, le=1)
    vendors: list[str] | None = None  # allowed WorkerConfig.profile.vendor values
    regions: list[str] | None = None  # allowed WorkerConfig.profile.region values
    routing: RoutingHint = Field(default_factory=RoutingHint)
    max_attempts: int = Field(4, ge=1, le=8)  # first try, repairs and escalations together
    max_output_tokens: int = Field(512, ge=1, le=32_768)
    temperature: float | None = Field(0.0, ge=0, le=2)


class Evaluator(_Strict):
    """How an output is judged against an example's expected output (or on its own)."""

    kind: Literal["exact", "regex", "schema", "reference", "judge"] = "schema"
    fields: list[str] | None = None  # exact / reference: compare only these top-level fields
    pattern: str | None = None  # regex: searched in ``field`` (or the whole output JSON)
    field: str | None = None
    threshold: float = Field(0.8, ge=0, le=1)  # reference: share of expected fields that match
    worker: str | None = None  # judge: the worker that judges
    criteria: str | None = None  # judge: what a good output does

    @model_validator(mode="after")
    def _complete(self) -> Evaluator:
        if self.kind == "regex":
            if not self.pattern:
                raise ValueError("a regex evaluator needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern does not compile: {error}") from None
        if self.kind == "judge" and not self.worker:
            raise ValueError("a judge evaluator needs a worker")
        return self

    @property
    def needs_reference(self) -> bool:
        return self.kind in ("exact", "reference")


class Example(_Strict):
    input: dict[str, Any]
    expected: Any = None
    name: str | None = None


class Contract(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    version: str = Field("1", pattern=VERSION_PATTERN)
    description: str = ""
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    instructions: str = Field(min_length=1)
    examples: list[Example] = Field(default_factory=list)
    policy: ContractPolicy = Field(default_factory=ContractPolicy)
    evaluator: Evaluator = Field(default_factory=Evaluator)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def string_field(self) -> str | None:
        """The one field of an input schema that is a single required-or-not string, if so:
        then a chat message's whole text can be the input."""
        properties = self.input_schema.get("properties")
        if self.input_schema.get("type") != "object" or not isinstance(properties, dict):
            return None
        if len(properties) != 1:
            return None
        ((name, spec),) = properties.items()
        return name if isinstance(spec, dict) and spec.get("type") == "string" else None

    def placeholders(self) -> list[str]:
        return [match.group(1) for match in PLACEHOLDER.finditer(self.instructions)]

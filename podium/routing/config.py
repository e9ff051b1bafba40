"""The ``routing:`` section of ``podium.yaml``: which routers run, in what order, with what rules.

Only pydantic and the standard library here (``podium.config`` imports this module). Routers
validate anything deeper (regular expressions compile, targets name workers) when they are built,
and raise :class:`RoutingConfigError` naming the rule or route.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CHAIN = ["rules", "affinity", "semantic", "direct"]
VIRTUAL_MODEL = "podium/auto"


class RoutingConfigError(ValueError):
    """A routing section that cannot be built; the message names the router and the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Section = TypeVar("Section", bound=BaseModel)


def parse_section(section: Any, cls: type[Section], name: str) -> Section:
    """A router's section as ``cls``; ``type`` (the router kind of a second instance under
    ``routing.routers``) is not part of it. Raises :class:`RoutingConfigError` naming the
    router and the field."""
    if section is None:
        return cls()
    if isinstance(section, cls):
        return section
    if isinstance(section, BaseModel):
        section = section.model_dump()
    if isinstance(section, dict):
        section = {key: value for key, value in section.items() if key != "type"}
    try:
        return cls.model_validate(section)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RoutingConfigError(
            f"{name}: {where}: {first['msg']}" if where else f"{name}: {first['msg']}"
        ) from None


class WorkflowTarget(_Strict):
    """A workflow template by name and the workers that fill its roles, in the template's order
    (``single``: the answering worker, then fallbacks; ``cascade``: cheap first, then stronger)."""

    template: str = Field(min_length=1)
    workers: list[str] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class Target(_Strict):
    """Where a rule or route sends a request: exactly one of a worker, a workflow or a router."""

    worker: str | None = None
    workflow: WorkflowTarget | None = None
    router: str | None = None
    fallbacks: list[str] = Field(default_factory=list)  # workers to try when ``worker`` fails

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        given = [n for n in ("worker", "workflow", "router") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of worker, workflow or router"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def describe(self) -> str:
        if self.worker is not None:
            return f"worker {self.worker!r}"
        if self.workflow is not None:
            return f"workflow {self.workflow.template!r} over {', '.join(self.workflow.workers)}"
        return f"router {self.router!r}"


class RuleMatch(_Strict):
    """Every condition given must hold; a list matches when any of its items does."""

    model: list[str] | None = None  # requested model names or aliases (exact)
    contract: list[str] | None = None
    data_class: list[str] | None = None
    caller: dict[str, str] | None = None  # key_id / owner / any metadata key -> exact value
    headers: dict[str, str] | None = None  # header (any case) -> regular expression, or "*"
    keywords: list[str] | None = None  # whole words or phrases, any case
    regex: list[str] | None = None  # Python regular expressions (searched)
    text: Literal["last_user", "all"] = "last_user"  # which text keywords and regex read
    min_tokens: int | None = Field(None, ge=0)  # estimated prompt tokens, inclusive
    max_tokens: int | None = Field(None, ge=0)
    tools: bool | None = None  # True: the request offers tools; False: it offers none
    images: bool | None = None
    # True: the last user message asks for a Python function whose docstring has examples the
    # ``examples`` checker can run (podium/code_examples.py); False: it has none.
    code_examples: bool | None = None


class RuleConfig(Target):
    name: str = Field(min_length=1, max_length=128)
    match: RuleMatch = Field(default_factory=RuleMatch)
    reason: str | None = None  # shown in the decision instead of the generated one


class RouteConfig(Target):
    """A semantic route: example utterances and where requests like them go."""

    name: str = Field(min_length=1, max_length=128)
    utterances: list[str] = Field(min_length=1)
    threshold: float | None = Field(None, ge=-1, le=1)  # None: the router's default


class SemanticConfig(_Strict):
    routes: list[RouteConfig] = Field(default_factory=list)
    # The route set shipped with Podium (code, math, extraction, chat) for the local pool;
    # ``targets`` re-points its routes at other workers, and routes given above replace
    # shipped ones of the same name.
    use_default_routes: bool = False
    targets: dict[str, str] = Field(default_factory=dict)
    scoring: Literal["nearest", "centroid"] = "nearest"
    threshold: float = Field(0.45, ge=-1, le=1)
    margin: float = Field(0.0, ge=0, le=2)  # closer than this to the runner-up: no opinion
    model: str | None = None  # a static embedding model directory; None: the shipped model
    # How much of the last user message is embedded: its head and, for a longer text, its tail
    # (where a question after a pasted document usually is). Bounds the cost of huge prompts.
    max_chars: int = Field(1024, ge=64, le=100_000)
    models: list[str] = Field(default_factory=lambda: [VIRTUAL_MODEL])  # requests it routes


class AffinityConfig(_Strict):
    enabled: bool = True
    max_sessions: int = Field(10_000, ge=1)  # least recently used sessions are forgotten
    ttl_seconds: float = Field(3600.0, gt=0)
    header: str = "x-podium-session"
    models: list[str] = Field(default_factory=lambda: [VIRTUAL_MODEL])


class RoutingConfig(_Strict):
    chain: list[str] = Field(default_factory=lambda: list(DEFAULT_CHAIN))
    rules: list[RuleConfig] = Field(default_factory=list)
    semantic: SemanticConfig = Field(default_factory=SemanticConfig)
    affinity: AffinityConfig = Field(default_factory=AffinityConfig)
    # Sections for other routers (third-party, or a second instance of a built-in kind under
    # another name with ``type: semantic``), validated by the router's own factory.
    routers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timeout_ms: float = Field(250.0, gt=0)  # a router slower than this is skipped

    @model_validator(mode="after")
    def _unique_names(self) -> RoutingConfig:
        for kind, names in (
            ("chain", self.chain),
            ("rule", [rule.name for rule in self.rules]),
            ("semantic route", [route.name for route in self.semantic.routes]),
        ):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(repeated)}")
        return self

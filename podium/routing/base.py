"""The router socket: ``Router.plan(request, context) -> Decision``.

A router scores candidates and picks a workflow; it never sees a worker that policy has not
cleared for the request (``RouteContext.eligible``), so a routing trick can change cost but
never where data goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from podium.config import WorkerConfig
from podium.context import Caller
from podium.types import ChatRequest
from podium.workflow import Workflow

NO_CHECKERS: frozenset[str] = frozenset()


@dataclass(slots=True)
class RouteContext:
    caller: Caller
    eligible: list[WorkerConfig]  # already filtered by policy: clearance, scopes, draining
    headers: dict[str, str] = field(default_factory=dict)
    data_class: str = "public"
    contract: str | None = None
    budget_usd: float | None = None
    session_id: str | None = None
    # Cleared workers that only check drafts (``role: check``), taken out of ``eligible`` so
    # that no router chooses one to answer; a workflow's check step may still name one.
    checkers: tuple[WorkerConfig, ...] = ()

    def __post_init__(self) -> None:
        for worker in self.eligible:
            if worker.role == "check":
                self.checkers = tuple(w for w in self.eligible if w.role == "check")
                self.eligible = [w for w in self.eligible if w.role != "check"]
                return

    def eligible_names(self) -> set[str]:
        return {worker.name for worker in self.eligible}

    def checker_names(self) -> frozenset[str]:
        if not self.checkers:  # the usual pool: asked on every decision, so no set is built
            return NO_CHECKERS
        return frozenset(worker.name for worker in self.checkers)


@dataclass(slots=True)
class Candidate:
    worker: str
    score: float  # the router's own scale; higher is better
    quality: float | None = None  # predicted probability of a good answer
    cost_usd: float | None = None  # predicted cost of the call
    label: str | None = None  # what was scored, when more than the worker (a route, a template)


@dataclass(slots=True)
class Decision:
    workflow: Workflow
    router: str
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    rule: str | None = None
    # Calls made while deciding (a Conductor's planner): engine Attempts the trace records
    # as steps of the request, ahead of the workflow's own.
    attempts: list[Any] = field(default_factory=list)

    @property
    def route(self) -> str:
        """A short label for headers and metrics: ``router`` or ``router:rule``."""
        return f"{self.router}:{self.rule}" if self.rule else self.router


class Router(Protocol):
    """Optionally, a router sets ``decides_for``: a frozenset of the requested models it can
    decide for (its ``plan`` answers None for any other), which lets the chain pass it over
    for other models without asking. Absent or None: any model."""

    name: str

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        """A decision, or None to let the next router in the chain decide."""

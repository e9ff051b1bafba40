"""Who is calling and what Podium has decided about one request so far."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass(slots=True)
class Caller:
    """The authenticated application. Anonymous when no key store is configured."""

    key_id: str = "anonymous"
    owner: str = "anonymous"
    scopes: list[str] = field(default_factory=lambda: ["*"])
    metadata: dict[str, str] = field(default_factory=dict)
    is_admin: bool = False


def new_trace_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class RequestContext:
    """Carried along one request's path, from ingress to the trace."""

    ingress: str  # openai | anthropic | contract
    headers: dict[str, str]
    caller: Caller = field(default_factory=Caller)
    trace_id: str = field(default_factory=new_trace_id)
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    data_class: str = "public"
    contract: str | None = None
    session_id: str | None = None
    policy_actions: list[str] = field(default_factory=list)
    # Pseudonymisation: placeholder -> original value, for this request only. None: the
    # request was not pseudonymised. Never logged, traced or sent to a worker.
    pseudonyms: dict[str, str] | None = None
    budget_usd: float | None = None  # the most this request may spend

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

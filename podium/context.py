"""Who is calling and what Podium has decided about one request so far."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from podium.errors import PodiumError

# Who waits for an answer (RequestContext.priority; podium/capacity.py).
Priority: TypeAlias = Literal["interactive", "background"]
# A caller may mark its own requests as background work; Podium marks batches and background
# responses so itself.
PRIORITY_HEADER = "x-podium-priority"


def priority_asked(value: str) -> Priority:
    """The priority a request's ``x-podium-priority`` header asks for."""
    if value == "background":
        return "background"
    if value == "interactive":
        return "interactive"
    raise PodiumError(
        "invalid_request",
        f"{PRIORITY_HEADER}: give 'interactive' (the default) or 'background' (work nobody "
        "waits on as it runs, which yields the workers to interactive calls)",
        param=PRIORITY_HEADER,
    )


@dataclass(slots=True)
class Caller:
    """The authenticated application. Anonymous when no key store is configured."""

    key_id: str = "anonymous"
    owner: str = "anonymous"
    scopes: list[str] = field(default_factory=lambda: ["*"])
    metadata: dict[str, str] = field(default_factory=dict)
    is_admin: bool = False


def new_trace_id() -> str:
    """32 hex digits in the UUIDv7 layout: milliseconds since the epoch, then 74 random bits.
    Time-ordered ids land at the end of a store's primary-key index; random ones touched a
    different index page per trace, which made that index the trace writer's largest cost."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (rand >> 62 & 0xFFF) << 64
        | 0b10 << 62
        | rand & ((1 << 62) - 1)
    )
    return f"{value:032x}"


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
    # The answer is JSON (``response_format``): values go back escaped for its strings.
    answer_is_json: bool = False
    budget_usd: float | None = None  # the most this request may spend
    # Text Podium's configuration wrote, not the caller (a contract's preamble and output
    # schema): the data policy neither classifies nor pseudonymises it.
    operator_texts: frozenset[str] = frozenset()
    # Headers a layer on the path adds to a successful answer (``x-podium-cache``, say).
    response_headers: dict[str, str] = field(default_factory=dict)
    # Set by Podium alone, never from a request: the key a request runs under when no key came
    # with it (a batch's requests run under the key that created the batch).
    on_behalf_of: str | None = None
    # Who waits for the answer: "background" for work nobody watches as it happens (batches,
    # background responses, a caller's ``x-podium-priority: background``), which yields the
    # workers' limits to interactive calls (podium/capacity.py).
    priority: Priority = "interactive"

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

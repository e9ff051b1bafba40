"""Quality signals stored against traces: from applications and people (``POST /v1/feedback``)
and automatically from contract evaluators, verifier steps and the judge.

Other modules record a signal with :func:`record` (``record(podium, trace_id, "schema",
True, source="contract")``): it never blocks the caller; signals are written in batches by a
background task, and the ones still queued at shutdown are written before the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from podium.errors import PodiumError
from podium.observe.recent import RecentTraces
from podium.observe.settings import FeedbackConfig

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.feedback")

Kind = Literal["boolean", "number", "label"]
Score = bool | int | float | str
# Labels whose meaning is plain enough to put on the 0..1 quality scale.
GOOD_LABELS = frozenset({"good", "correct", "pass", "passed", "positive", "up", "yes", "accept"})
BAD_LABELS = frozenset({"bad", "incorrect", "fail", "failed", "negative", "down", "no", "reject"})
MAX_LABEL_CHARS = 200
MAX_NAME_CHARS = 100
EXTENSION_KEY = "feedback"


class Rows(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


@dataclass(slots=True)
class Signal:
    trace_id: str
    name: str
    source: str
    kind: Kind
    value: float | None
    label: str | None
    score: float | None  # 0 (bad) .. 1 (good), when the value says that plainly
    comment: str | None = None
    caller: str | None = None
    created_at: float = 0.0
    feedback_id: str = ""
    worker: str | None = None  # the trace's, copied so quality by worker needs no join
    route: str | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.feedback_id or uuid.uuid4().hex,
            self.trace_id,
            self.created_at or time.time(),
            self.name,
            self.source,
            self.kind,
            self.value,
            self.label,
            self.score,
            self.comment,
            self.caller,
        )

    def routed_row(self) -> tuple[Any, ...]:
        """The parameters of :data:`INSERT_ROUTED`."""
        return (*self.row(), self.worker, self.trace_id, self.route, self.trace_id)

    def describe(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "value": self.value,
            "label": self.label,
            "score": self.score,
            "comment": self.comment,
        }


def make_signal(
    trace_id: str,
    name: str,
    value: Any,
    *,
    source: str,
    comment: str | None = None,
    caller: str | None = None,
    scale: tuple[float, float] | None = None,
) -> Signal:
    """Validate one signal. ``value`` is a boolean, a number or a label; a number counts as a
    score when it lies in 0..1, or in ``scale`` (low, high) when one is given."""
    kind: Kind
    number: float | None = None
    label: str | None = None
    score: float | None = None
    if isinstance(value, bool):
        kind, number, score = "boolean", float(value), float(value)
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PodiumError("invalid_request", "score must be a finite number", param="score")
        kind, number = "number", float(value)
        low, high = scale or (0.0, 1.0)
        if low <= number <= high and high > low:
            score = (number - low) / (high - low)
    elif isinstance(value, str):
        if not value.strip() or len(value) > MAX_LABEL_CHARS:
            raise PodiumError(
                "invalid_request",
                f"a label score must be 1 to {MAX_LABEL_CHARS} characters",
                param="score",
            )
        kind, label = "label", value.strip()
        lowered = label.lower()
        score = 1.0 if lowered in GOOD_LABELS else 0.0 if lowered in BAD_LABELS else None
    else:
        raise PodiumError(
            "invalid_request",
            "score must be a boolean, a number or a label string; "
            f"got {type(value).__name__ if value is not None else 'null'}",
            param="score",
            code="invalid_score_type",
        )
    return Signal(
        trace_id=trace_id,
        name=name,
        source=source,
        kind=kind,
        value=number,
        label=label,
        score=score,
        comment=comment,
        caller=caller,
        created_at=time.time(),
        feedback_id=uuid.uuid4().hex,
    )


INSERT = (
    "INSERT INTO feedback (feedback_id, trace_id, created_at, name, source, kind, value, label, "
    "score, comment, caller) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ROUTED_COLUMNS = (
    "INSERT INTO feedback (feedback_id, trace_id, created_at, name, source, kind, value, label, "
    "score, comment, caller, worker, route) "
)
# Podium's own writes also copy the trace's worker and route (when the trace is not stored
# yet, from what the gateway saw), so the dashboard's quality query reads feedback alone.
INSERT_ROUTED = _ROUTED_COLUMNS + (
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "COALESCE(?, (SELECT worker FROM traces WHERE trace_id = ?)), "
    "COALESCE(?, (SELECT route FROM traces WHERE trace_id = ?)))"
)
# Insert only when the trace exists, and say whether it did: one statement.
INSERT_IF_TRACE = _ROUTED_COLUMNS + (
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, t.worker, t.route FROM traces t "
    "WHERE t.trace_id = ? RETURNING feedback_id"
)


class TokenBuckets:
    """Per-caller rate limit: ``rate`` per second sustained, ``burst`` at once. Keeps at most
    ``max_callers`` buckets (the least recently seen go first), so memory stays bounded."""

    def __init__(self, rate: float, burst: int, *, max_callers: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, caller: str, now: float | None = None) -> float:
        """0 when allowed; otherwise the seconds until one more would be."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > self.max_callers:
            self._buckets.popitem(last=False)
        return wait


class Feedback:
    """Stores signals. ``submit`` (the HTTP API) writes at once and says whether the trace
    exists; ``record`` (automatic signals) queues and returns at once."""

    def __init__(self, db: Rows, config: FeedbackConfig, *, recent: int = 11_024) -> None:
        self._db = db
        self.config = config
        self.limits = TokenBuckets(config.rate_per_second, config.burst)
        self._pending = 0
        self._queue: deque[Signal] = deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Traces finished in this process but perhaps not yet flushed by the trace writer:
        # feedback for them must not be refused as unknown. ``recent``: how many to remember
        # (the writer's backlog at most: its queue limit plus a batch).
        self._recent = RecentTraces(recent)
        self.written = 0
        self.refused = 0

    # -- traces this process has seen -----------------------------------------------------------

    def saw_trace(self, trace_id: str, worker: str | None = None, route: str = "none") -> None:
        self._recent.add(trace_id, worker, route)

    # -- the API path --------------------------------------------------------------------------

    def admit(self, caller: str) -> None:
        """Refuse with 429 when ``caller`` sends too fast or too many writes are in flight."""
        wait = self.limits.take(caller)
        if wait > 0:
            self.refused += 1
            raise PodiumError(
                "rate_limit",
                f"too much feedback from this caller; at most {self.config.rate_per_second:g} "
                f"per second (bursts of {self.config.burst})",
                retry_after=wait,
                code="feedback_rate_limited",
            )
        if self._pending >= self.config.max_pending:
            self.refused += 1
            raise PodiumError(
                "rate_limit",
                "Podium is busy storing feedback; try again shortly",
                retry_after=1.0,
                code="feedback_busy",
            )

    async def submit(self, signal: Signal) -> bool:
        """Store ``signal`` now. False (nothing stored) when its trace is unknown."""
        self._pending += 1
        try:
            seen = self._recent.get(signal.trace_id)
            if seen is not None:
                signal.worker, signal.route = seen
                await self._db.execute(INSERT_ROUTED, signal.routed_row())
                self.written += 1
                return True
            rows = await self._db.execute(INSERT_IF_TRACE, (*signal.row(), signal.trace_id))
            stored = len(rows) > 0
            self.written += stored
            return stored
        finally:
            self._pending -= 1

    # -- automatic signals ----------------------------------------------------------------------

    def record(
        self,
        trace_id: str,
        name: str,
        value: Score,
        *,
        source: str,
        comment: str | None = None,
        scale: tuple[float, float] | None = None,
    ) -> Signal:
        """Queue one automatic signal; raises PodiumError only for a value of the wrong type."""
        signal = make_signal(trace_id, name, value, source=source, comment=comment, scale=scale)
        signal.worker, signal.route = self._recent.get(trace_id) or (None, None)
        self._queue.append(signal)
        self._wake.set()
        return signal

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write every queued signal; False (they stay queued) if the store failed."""
        async with self._flushing:  # one writer at a time, or a signal could be sent twice
            while self._queue:
                signal = self._queue[0]
                try:
                    await self._db.execute(INSERT_ROUTED, signal.routed_row())
                except Exception as error:
                    log.warning(
                        "feedback store unavailable (%s); %d signals queued",
                        type(error).__name__,
                        len(self._queue),
                    )
                    return False
                self._queue.popleft()
                self.written += 1
        return True

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


async def signals_for(db: Rows, trace_id: str, limit: int = 200) -> list[dict[str, Any]]:
    rows = await db.execute(
        "SELECT created_at, name, source, kind, value, label, score, comment FROM feedback "
        "WHERE trace_id = ? ORDER BY created_at LIMIT ?",
        (trace_id, limit),
    )
    keys = ("created_at", "name", "source", "kind", "value", "label", "score", "comment")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def feedback_of(podium: Podium) -> Feedback | None:
    found = podium.extras.get(EXTENSION_KEY)
    return found if isinstance(found, Feedback) else None


def record(
    podium: Podium,
    trace_id: str,
    name: str,
    value: Score,
    *,
    source: str = "contract",
    comment: str | None = None,
    scale: tuple[float, float] | None = None,
) -> None:
    """Record an automatic quality signal against a trace (contract evaluators, verifiers).
    Does nothing when the observability plugin is not loaded."""
    feedback = feedback_of(podium)
    if feedback is not None:
        feedback.record(trace_id, name, value, source=source, comment=comment, scale=scale)

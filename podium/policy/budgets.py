"""Budgets and rate limits per key, enforced before any upstream call.

- ``admit``: one request and its estimated tokens come out of the key's RPM/TPM buckets, or
  the request is refused with 429 and Retry-After.
- ``decided``: once the router has named the workers, the request's worst-case cost (estimated
  input tokens plus ``max_tokens``, or a default, of output at each step's price; the dearest
  fallback for the last step) is reserved against the key's budget for the period, or the
  request is refused with 402. Images and PDF pages are priced as each worker is billed for
  them (podium/media.py); before a worker is known, the TPM take counts images by Claude's
  rule.
- ``finish``: the reservation is settled with the real cost from the trace, and the token
  bucket corrected with the real token count.

Because every reservation is taken atomically against spent + held, concurrent requests at the
edge of a budget cannot overspend it; only a request whose real cost exceeds its own estimate
can, and by no more than that request.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from podium.config import WorkerConfig
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.hooks import Hook
from podium.media import request_media
from podium.policy.keys import KeyCache, KeyRecord, KeyUnavailable
from podium.policy.limits import (
    Closing,
    LimitBackend,
    LimitsUnavailable,
    MemoryLimits,
    Periods,
    RateTake,
    to_nano,
    usd,
)
from podium.policy.settings import LimitSettings
from podium.routing.base import Decision
from podium.store.traces import TraceRecord
from podium.types import ChatRequest, Message
from podium.workers import (
    WorkerPool,
    estimate_input_tokens,
    estimate_tokens,
    price_tokens,
)

if TYPE_CHECKING:
    from podium.policy.audit import AuditTrail

log = logging.getLogger("podium.budgets")
BUDGET_HEADER = "x-podium-budget-remaining-usd"


def output_tokens(request: ChatRequest, worker_max: int | None, default: int) -> int:
    if request.max_tokens is not None:
        return min(request.max_tokens, worker_max) if worker_max else request.max_tokens
    return worker_max or default


def _step_cost(
    config: WorkerConfig, tokens_in: int, request: ChatRequest, default_output: int
) -> tuple[float, int]:
    """USD for one step on this worker, at most, and the output tokens it may write."""
    out = output_tokens(request, config.max_output_tokens, default_output)
    return price_tokens(config.price, tokens_in, out), out


def estimate_cost(
    request: ChatRequest,
    decision: Decision,
    pool: WorkerPool,
    default_output: int,
    *,
    prompt: int | None = None,
) -> float:
    """The most the decided workflow should cost, in USD. ``prompt``: the request's
    :func:`estimate_input_tokens` (no worker's: its documents' text only), when already
    known."""
    steps = decision.workflow.steps
    if prompt is None:
        prompt = estimate_input_tokens(request)
    if len(steps) == 1 and not decision.workflow.fallbacks and not steps[0].instruction:
        # The usual plan, one worker and nothing else: the loop below, without its loop.
        worker = pool.get(steps[0].worker)
        if worker is None:
            return 0.0
        config = worker.config
        if request.attachments or request.has_images():  # what they cost this worker
            prompt += request_media(request).tokens(config)
        cost = _step_cost(config, prompt, request, default_output)[0]
        return 0.0 + cost if cost >= 0.0 else 0.0
    last = len(steps) - 1
    produced = 0
    total = 0.0
    # Images and PDF pages cost each worker its own tokens (podium/media.py).
    media = request_media(request)
    for index, step in enumerate(steps):
        names = (step.worker, *decision.workflow.fallbacks) if index == last else (step.worker,)
        tokens_in = (
            prompt + produced + (estimate_tokens(step.instruction) if step.instruction else 0)
        )
        worst, worst_output = 0.0, 0
        for name in names:
            worker = pool.get(name)
            if worker is None:
                continue
            if media:
                config = worker.config
                tokens = tokens_in + media.tokens(config)
                cost, out = _step_cost(config, tokens, request, default_output)
            else:
                cost, out = _step_cost(worker.config, tokens_in, request, default_output)
            if cost >= worst:
                worst, worst_output = cost, out
        total += worst
        produced += worst_output
    return total


@dataclass(slots=True)
class _Open:
    record: KeyRecord  # as admitted: ``decided`` reserves against the same record
    started: float
    tokens: int = 0  # taken from the TPM bucket
    # The request whose input ``prompt`` tokens were estimated at admission: ``decided`` uses
    # the estimate again unless a hook replaced the request since (pseudonymised it, say) or
    # its messages (truncated them).
    request: ChatRequest | None = None
    messages: list[Message] | None = None
    prompt: int = 0
    period: str | None = None
    reservation: str | None = None
    period_seconds: float = 0.0


def rate_headers(
    headers: dict[str, str],
    rpm: int | None,
    tpm: int | None,
    take: RateTake,
    *,
    ingress: str = "openai",
    now: float = 0.0,
) -> None:
    """The rate-limit headers of the caller's own API for a key's limits: each limit, what is
    left of it after this request, and when the bucket is full again. OpenAI says when as a
    duration (``6m0s``, ``1.5s``); Anthropic (``anthropic-ratelimit-*``) as an RFC 3339 time,
    from ``now``."""
    anthropic = ingress == "anthropic"
    for kind, limit, left in (
        ("requests", rpm, take.requests_left),
        ("tokens", tpm, take.tokens_left),
    ):
        if not limit or left is None:
            continue
        full_in = max(0.0, (limit - left) * 60.0 / limit)
        remaining = str(max(0, math.floor(left)))
        if anthropic:
            reset = datetime.fromtimestamp(math.ceil(now + full_in), UTC)
            headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{kind}-remaining"] = remaining
            headers[f"anthropic-ratelimit-{kind}-reset"] = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = remaining
            headers[f"x-ratelimit-reset-{kind}"] = _duration(full_in)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60.0)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class LimitsHook(Hook):
    def __init__(
        self,
        keys: KeyCache,
        backend: LimitBackend,
        pool: WorkerPool,
        settings: LimitSettings,
        *,
        audit: AuditTrail | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.backend = backend
        self.pool = pool
        self.settings = settings
        self.audit = audit
        self._clock = clock
        self._open: dict[str, _Open] = {}
        self._admitted = 0
        self._periods = Periods()
        # Reservation ids: unique per trace and, within this process, per reservation.
        self._reservations = itertools.count()
        # This process's own limits are called as plain functions (they never wait): a
        # coroutine and its await for each of the three calls a request makes cost more than
        # the calls. Exactly MemoryLimits: a subclass may override the async methods.
        self._memory = backend if type(backend) is MemoryLimits else None

    # -- helpers ---------------------------------------------------------------------------------

    def _refuse(self, context: RequestContext, error: PodiumError) -> PodiumError:
        if self.audit is not None:
            self.audit.record(
                f"key:{context.caller.key_id}",
                "request.refused",
                context.trace_id,
                {"status": error.status, "code": error.code, "ingress": context.ingress},
            )
        return error

    def _unavailable(self, context: RequestContext, cause: LimitsUnavailable) -> PodiumError | None:
        """The error to raise when the limit store is down, or None to go on unmetered."""
        if self.settings.fail_mode == "open":
            log.warning(
                "limit store unreachable (%s); letting key %s through", cause, context.caller.key_id
            )
            return None
        log.warning("limit store unreachable (%s); refusing key %s", cause, context.caller.key_id)
        return self._refuse(
            context,
            PodiumError(
                "overloaded",
                "Podium cannot check this key's limits right now (its limit store is "
                "unreachable), so it refuses rather than overspend; try again shortly",
                code="limits_unavailable",
                retry_after=1.0,
            ),
        )

    async def _record(self, context: RequestContext) -> KeyRecord | None:
        key_id = context.caller.key_id
        if key_id == "anonymous":
            return None
        try:
            record = await self.keys.by_id(key_id)
        except KeyUnavailable:
            return None
        return record if record is not None and record.has_limits() else None

    def _sweep(self) -> None:
        """Forget requests that never finished (a crash between admit and finish)."""
        cutoff = self._clock() - self.settings.hold_seconds
        for trace_id in [t for t, o in self._open.items() if o.started < cutoff]:
            del self._open[trace_id]

    # -- the hook --------------------------------------------------------------------------------

    async def admit(self, request: ChatRequest, context: RequestContext) -> None:
        # The fresh-keys case without the coroutine of _record (1k instructions a request).
        snapshot = self.keys.fresh()
        if snapshot is not None:
            record = snapshot.by_id.get(context.caller.key_id)
            if record is not None and not record.has_limits():
                return
        else:
            record = await self._record(context)
        if record is None:
            return
        self._admitted += 1
        if self._admitted % 1024 == 0:
            self._sweep()
        opened = _Open(record, self._clock())
        if record.rpm or record.tpm:
            prompt = estimate_input_tokens(request)
            opened.request, opened.messages, opened.prompt = request, request.messages, prompt
            # output_tokens(request, None, ...), written out: no worker is known yet.
            most = request.max_tokens
            tokens = prompt + (most if most is not None else self.settings.default_output_tokens)
            if request.attachments or request.has_images():
                tokens += request_media(request).unrouted_tokens()
            memory = self._memory
            if memory is not None:
                take = memory.take_now(record.key_id, record.rpm, record.tpm, tokens)
            else:
                try:
                    take = await self.backend.take_rate(
                        record.key_id, rpm=record.rpm, tpm=record.tpm, tokens=tokens
                    )
                except LimitsUnavailable as cause:
                    error = self._unavailable(context, cause)
                    if error is not None:
                        raise error from None
                    return
            wait = take.wait
            if wait > 0:
                limits = [f"{record.rpm} requests"] if record.rpm else []
                limits += [f"{record.tpm} tokens"] if record.tpm else []
                state: dict[str, str] = {}
                rate_headers(
                    state,
                    record.rpm,
                    record.tpm,
                    take,
                    ingress=context.ingress,
                    now=opened.started,
                )
                raise self._refuse(
                    context,
                    PodiumError(
                        "rate_limit",
                        f"rate limit reached for key {record.key_id} ({' and '.join(limits)} "
                        f"per minute); retry after {wait:.1f} s",
                        code="rate_limit_exceeded",
                        retry_after=wait,
                        headers=state,
                    ),
                )
            opened.tokens = tokens if record.tpm else 0
            rate_headers(
                context.response_headers,
                record.rpm,
                record.tpm,
                take,
                ingress=context.ingress,
                now=opened.started,
            )
        self._open[context.trace_id] = opened

    async def decided(
        self, request: ChatRequest, decision: Decision, context: RequestContext
    ) -> None:
        opened = self._open.get(context.trace_id)
        if opened is None:
            return
        record = opened.record
        if record.budget_usd is None:
            return
        estimate = estimate_cost(
            request,
            decision,
            self.pool,
            self.settings.default_output_tokens,
            prompt=opened.prompt
            if request is opened.request and request.messages is opened.messages
            else None,
        )
        period, remaining = self._periods.of(record.budget_period, self._clock())
        reservation = f"{context.trace_id}.{next(self._reservations)}"
        budget, amount = to_nano(record.budget_usd), to_nano(estimate, up=True)
        memory = self._memory
        if memory is not None:
            hold_seconds = self.settings.hold_seconds
            verdict = memory.reserve_now(
                record.key_id, period, budget, amount, reservation, hold_seconds
            )
        else:
            try:
                verdict = await self.backend.reserve(
                    record.key_id,
                    period,
                    budget=budget,
                    amount=amount,
                    reservation=reservation,
                    hold_seconds=self.settings.hold_seconds,
                    period_seconds=remaining,
                )
            except LimitsUnavailable as cause:
                error = self._unavailable(context, cause)
                if error is not None:
                    raise error from None
                return
        if not verdict.allowed:
            raise self._refuse(
                context,
                PodiumError(
                    "payment_required",
                    f"budget exhausted for key {record.key_id}: ${usd(verdict.spent):.6f} spent "
                    f"and ${usd(verdict.held):.6f} held by requests in flight, of "
                    f"${record.budget_usd:.2f} this {record.budget_period} ({period}); this "
                    f"request could cost up to ${estimate:.6f}. The budget resets at the start "
                    f"of the next {record.budget_period} (UTC).",
                    code="budget_exceeded",
                    retry_after=remaining,
                ),
            )
        opened.period, opened.reservation, opened.period_seconds = period, reservation, remaining
        context.policy_actions.append(f"budget:reserved:{estimate:.6f}")
        # What is left should this request cost its whole reservation: a floor, not a guess.
        left = budget - verdict.spent - verdict.held - amount
        context.response_headers[BUDGET_HEADER] = f"{usd(left if left > 0 else 0):.6f}"

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        opened = self._open.pop(context.trace_id, None)
        if opened is None:
            return
        record = opened.record
        actual = to_nano(trace.cost_usd)
        tpm = record.tpm or 0
        delta = trace.input_tokens + trace.output_tokens - opened.tokens if opened.tokens else 0
        memory = self._memory
        if memory is not None:  # the Closing's fields, without building one
            memory.close_now(record.key_id, opened.period, opened.reservation, actual, tpm, delta)
            return
        closing = Closing(  # by position: keywords cost 2k instructions more
            record.key_id,
            opened.period,
            opened.reservation,
            actual,
            opened.period_seconds,
            tpm,
            delta,
        )
        try:
            await self.backend.close(closing)
        except LimitsUnavailable:
            # The reservation expires on its own (hold_seconds); the real cost is lost.
            log.warning("could not settle %s for key %s", context.trace_id, closing.key_id)

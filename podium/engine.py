"""Calling workers reliably: retries with jittered backoff, fallback down a list of cleared
workers, and the circuit breaker, around any provider.

A stream is retried or moved to another worker only until its first event exists; after that
the client holds the bytes and a failure ends the stream with an error.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar, cast

from podium.capacity import AtCapacity, Slot
from podium.context import Priority
from podium.documents import for_worker
from podium.errors import PodiumError, ProviderError
from podium.providers.base import EmbeddingProvider, RelayingProvider
from podium.types import (
    ChatRequest,
    ChatResponse,
    Embeddings,
    EmbedRequest,
    RelayMeter,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
    WireItem,
    WireUsage,
)
from podium.workers import Worker, WorkerPool, estimate_tokens, prompt_tokens, tokens_for_length

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")
Item = TypeVar("Item")

# Failures that move on to the next worker at once: the same worker would answer the same way
# (its key refused, its model unknown upstream), so retrying it only adds latency.
NOT_WORTH_REPEATING = frozenset({"upstream_credential_refused", "upstream_model_not_found"})
# Failures that say the worker has more than it can take (429 without a Retry-After, 503/529,
# its own timeout): a learned concurrency limit comes down (podium/adaptive.py).
OVERLOAD_KINDS = frozenset({"rate_limit", "overloaded", "timeout"})
# The answer a call is assumed to take from a token limit when neither it nor its worker says.
DEFAULT_ANSWER_TOKENS = 1024


@dataclass(slots=True)
class Attempt:
    """One try of one worker: what the trace records for every step."""

    worker: str
    status: str = "ok"  # ok | error | skipped
    error: str | None = None
    error_kind: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    step: int = 0
    role: str = "answer"
    queued_ms: float = 0.0  # waited for room on the worker (its limits) before it was sent


class Engine:
    def __init__(
        self,
        pool: WorkerPool,
        *,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.pool = pool
        self._sleep = sleep
        self._jitter = jitter

    def _candidates(self, workers: list[str], attempts: list[Attempt]) -> list[Worker]:
        chosen: list[Worker] = []
        for name in workers:
            worker = self.pool.get(name)
            if worker is None:
                attempts.append(Attempt(name, status="skipped", error="worker removed"))
                continue
            chosen.append(worker)
        return chosen

    def _backoff(self, worker: Worker, retry: int, error: ProviderError) -> float | None:
        """Seconds to wait before retrying ``worker``, or None to move on to the next one."""
        policy = worker.config.retry
        if retry >= policy.attempts or not error.retryable or error.code in NOT_WORTH_REPEATING:
            return None
        if error.retry_after is not None:
            # Honour the upstream's own word; if it asks for longer than we would wait at all,
            # another worker is the better bet.
            wait: float = error.retry_after
            return wait if wait <= policy.backoff_max else None
        delay = min(policy.backoff_max, policy.backoff_base * (2.0**retry))
        return delay * (0.5 + self._jitter())

    @staticmethod
    def _exhausted(
        workers: list[str], last: PodiumError | None, full: AtCapacity | None
    ) -> PodiumError:
        if last is not None:
            return last
        if full is not None:
            return ProviderError(
                "overloaded",
                f"every worker that may answer is at capacity ({full}); try again in a moment",
                retryable=True,
                retry_after=max(1.0, math.ceil(full.wait)),
                code="workers_at_capacity",
            )
        return ProviderError(
            "overloaded",
            f"no worker could take the request (tried: {', '.join(workers) or 'none'}; "
            "circuits open or workers removed)",
            retryable=True,
        )

    async def _first_success(
        self,
        workers: list[str],
        attempts: list[Attempt],
        call: Callable[[Worker, Attempt, float, ChatRequest], Awaitable[T]],
        request: ChatRequest,
        *,
        step: int,
        role: str,
        deadline: float | None = None,
        priority: Priority = "interactive",
    ) -> T:
        """Try ``call`` on each worker in turn, retrying retryable failures with backoff while
        the worker's breaker allows; the first success wins. A non-retryable error is the
        caller's own and ends the search at once. ``deadline`` (``time.perf_counter``'s clock,
        :mod:`podium.deadline`): no attempt starts or back-off ends past it, and an attempt
        still waiting for its answer then is given up. A worker without room for the call
        (its ``limits``, :mod:`podium.capacity`) is passed over at once for the next, and
        asked again once the others have been tried, then waiting its turn for room."""
        last: ProviderError | None = None
        full: AtCapacity | None = None  # the worker at capacity that frees up soonest
        candidates = self._candidates(workers, attempts)
        first_pass = len(candidates)  # past it, the full workers asked again, waiting for room
        # The list grows as it is walked: a full worker comes again at its end.
        for index, worker in enumerate(candidates):
            retry = 0
            waits = index >= first_pass
            # Documents go as each worker reads them: the PDF, or its text.
            sent = request if not request.attachments else for_worker(request, worker.config)
            rested = False  # this retry has waited out the upstream's 429 pause itself
            while True:
                slot: Slot | None = None
                queued = 0.0  # seconds this attempt waited for room on the worker
                capacity = worker.capacity
                if capacity.limited or (capacity.resting_until and not rested):
                    asked = time.perf_counter()
                    try:
                        slot = await capacity.acquire(
                            priority,
                            _tokens_asked(worker, request),
                            deadline,
                            wait=waits,
                            rested=rested,
                        )
                    except AtCapacity as busy:
                        if full is None or busy.wait < full.wait:
                            full = busy
                        if not waits and capacity.patience(priority) > 0:
                            candidates.append(worker)
                        attempts.append(
                            Attempt(
                                worker.name,
                                status="skipped",
                                error=str(busy),
                                error_kind="at_capacity",
                                step=step,
                                role=role,
                            )
                        )
                        break
                    queued = time.perf_counter() - asked
                if not worker.breaker.allow():
                    if slot is not None:
                        slot.release()
                    attempts.append(
                        Attempt(
                            worker.name,
                            status="skipped",
                            error="circuit open",
                            step=step,
                            role=role,
                        )
                    )
                    break
                # Set after: a keyword argument to a dataclass costs ~0.5k instructions.
                attempt = Attempt(worker.name)
                attempt.step, attempt.role = step, role
                if queued > 0.001:
                    attempt.queued_ms = queued * 1000
                started = time.perf_counter()
                bound = None if deadline is None else _bound(worker, deadline, last)
                timer: asyncio.Timeout | None = None
                answered: T | None = None
                overloaded = False  # the upstream said so, or did not answer in time
                worker.in_flight += 1
                try:
                    if bound is None:
                        answered = result = await call(worker, attempt, started, sent)
                    else:
                        async with asyncio.timeout(bound) as timer:
                            answered = result = await call(worker, attempt, started, sent)
                except TimeoutError:
                    # Providers raise their own timeouts as ProviderError; one that is not the
                    # deadline timer's goes on up, as any other exception would.
                    abandon_probe(worker)
                    if timer is None or not timer.expired():
                        raise
                    # The deadline's: the worker was not at fault, so no breaker failure, and
                    # no other worker is tried, since the caller has given up.
                    attempt.latency_ms = (time.perf_counter() - started) * 1000
                    attempt.status, attempt.error, attempt.error_kind = (
                        "error",
                        "the request's deadline passed",
                        "timeout",
                    )
                    attempts.append(attempt)
                    raise _late(last) from None
                except ProviderError as error:
                    attempt.latency_ms = (time.perf_counter() - started) * 1000
                    attempt.status, attempt.error, attempt.error_kind = (
                        "error",
                        error.message,
                        error.kind,
                    )
                    attempts.append(attempt)
                    if not error.retryable:
                        worker.breaker.record_success()  # the worker answered; the input was bad
                        raise
                    worker.breaker.record_failure()
                    pause = error.retry_after if error.kind == "rate_limit" else None
                    # A 429 that says when to come back is a quota running out (requests or
                    # tokens a minute): the worker rests, and its concurrency stays. One that
                    # does not, or a 503/529, says the worker has more calls than it can take.
                    overloaded = error.kind in OVERLOAD_KINDS and not pause
                    if pause:
                        capacity.rest(pause)  # other calls wait or go elsewhere meanwhile
                    rested = bool(pause)
                    last = error
                    delay = self._backoff(worker, retry, error)
                    if delay is None or (
                        deadline is not None and time.perf_counter() + delay >= deadline
                    ):
                        break  # the next worker, now, rather than a wait past the deadline
                    retry += 1
                    await self._sleep(delay)
                    continue
                except BaseException:
                    abandon_probe(worker)
                    raise
                finally:
                    worker.in_flight -= 1
                    if slot is not None:
                        if isinstance(answered, Metered):
                            answered.slot = slot  # a stream holds its room until it ends
                        elif answered is not None:
                            usage = attempt.usage
                            slot.release(
                                usage.total_tokens or None,
                                answer_tokens=usage.output_tokens or None,
                            )
                        else:
                            slot.release(overloaded=overloaded)
                attempts.append(attempt)
                return result
        raise self._exhausted(workers, last, full)

    def complete(
        self,
        request: ChatRequest,
        workers: list[str],
        attempts: list[Attempt],
        *,
        step: int = 0,
        role: str = "answer",
        deadline: float | None = None,
        priority: Priority = "interactive",
    ) -> Awaitable[tuple[Worker, ChatResponse]]:
        # The search itself is what the caller awaits: a coroutine of this method's own and
        # a closure per call cost ~2k instructions a request.
        return self._first_success(
            workers,
            attempts,
            self._complete_on,
            request,
            step=step,
            role=role,
            deadline=deadline,
            priority=priority,
        )

    async def _complete_on(
        self, worker: Worker, attempt: Attempt, started: float, request: ChatRequest
    ) -> tuple[Worker, ChatResponse]:
        response = await worker.provider.complete(request)
        worker.breaker.record_success()
        attempt.latency_ms = (time.perf_counter() - started) * 1000
        attempt.ttft_ms = attempt.latency_ms
        if response.usage.total_tokens == 0 and worker.uses_tokens:
            response.usage = Usage(
                prompt_tokens(request, worker.config), estimate_tokens(response.text)
            )
        attempt.usage = response.usage
        attempt.cost_usd = worker.cost(response.usage)
        return worker, response

    async def stream(
        self,
        request: ChatRequest,
        workers: list[str],
        attempts: list[Attempt],
        *,
        step: int = 0,
        role: str = "answer",
        relay: str | None = None,
        deadline: float | None = None,
        priority: Priority = "interactive",
    ) -> MeteredStream | MeteredRelay:
        """Open a stream on the first worker that produces a first event. Waiting for that
        first event counts as work in flight, so a drain waits for it too. ``relay`` names the
        caller's wire format when its stream may be relayed as the provider's own bytes: a
        worker whose provider speaks that format relays (a :class:`MeteredRelay`)."""

        async def call(
            worker: Worker, attempt: Attempt, started: float, request: ChatRequest
        ) -> MeteredStream | MeteredRelay:
            provider = worker.provider
            if relay is not None and getattr(provider, "wire", None) == relay:
                meter = RelayMeter()
                items = cast(RelayingProvider, provider).relay(request, meter)
                first_item = await _first(items)
                attempt.ttft_ms = (time.perf_counter() - started) * 1000
                relayed = MeteredRelay(worker, request, first_item, items, attempt, started)
                relayed.meter = meter
                return relayed
            events = provider.stream(request)
            first = await _first(events)
            attempt.ttft_ms = (time.perf_counter() - started) * 1000
            return MeteredStream(worker, request, first, events, attempt, started)

        return await self._first_success(
            workers,
            attempts,
            call,
            request,
            step=step,
            role=role,
            deadline=deadline,
            priority=priority,
        )

    def embed(
        self,
        request: EmbedRequest,
        worker: str,
        attempts: list[Attempt],
        *,
        priority: Priority = "interactive",
    ) -> Awaitable[tuple[Worker, Embeddings]]:
        """Embed on ``worker`` alone, with its retries and breaker. No fallback: another
        model's vectors live in another space, and would not match the ones already stored."""

        async def call(
            worker: Worker, attempt: Attempt, started: float, _: ChatRequest
        ) -> tuple[Worker, Embeddings]:
            provider = worker.provider
            if not isinstance(provider, EmbeddingProvider):
                raise ProviderError(
                    "invalid_request",
                    f"worker {worker.name!r} cannot embed text: its provider "
                    f"({worker.config.provider}) has no embeddings",
                    worker=worker.name,
                    code="unsupported_worker",
                )
            embeddings = await provider.embed(request)
            worker.breaker.record_success()
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            if embeddings.usage.input_tokens == 0:
                characters = sum(len(text) for text in request.inputs)
                embeddings.usage = Usage(tokens_for_length(characters), 0)
            attempt.usage = embeddings.usage
            attempt.cost_usd = worker.cost(embeddings.usage)
            return worker, embeddings

        # What a token limit is charged: the texts, as a prompt of no messages and an "answer"
        # of their estimated length.
        characters = sum(len(text) for text in request.inputs)
        stand_in = ChatRequest(request.model, [], max_tokens=tokens_for_length(characters))
        return self._first_success(
            [worker], attempts, call, stand_in, step=0, role="embed", priority=priority
        )


def _bound(worker: Worker, deadline: float, last: ProviderError | None) -> float | None:
    """Seconds an attempt on ``worker`` may take before the deadline, or None when the worker's
    own time limits end it first (no timer of ours needed: the SDKs' default of 600 s is
    longer than the default limits). Past the deadline: the error."""
    left = deadline - time.perf_counter()
    if left <= 0:
        raise _late(last)
    timeouts = worker.config.timeouts
    # An answer starts within the connect, the response head and the first line's gap.
    own = timeouts.connect + 2 * timeouts.first_byte
    return None if left >= own else left


def _late(last: ProviderError | None) -> ProviderError:
    detail = f"; the last attempt's error: {last.message}" if last is not None else ""
    return ProviderError(
        "timeout",
        "the request's deadline passed before a worker answered (x-podium-timeout, or the "
        f"client's own timeout){detail}",
        retryable=False,
    )


def _tokens_asked(worker: Worker, request: ChatRequest) -> int:
    """What a call may use of a worker's tokens a minute: its prompt, estimated (its
    documents and images too, as the worker reads them), and the most it may answer
    (corrected to the real count when it ends)."""
    answer = request.max_tokens or worker.config.max_output_tokens or DEFAULT_ANSWER_TOKENS
    return prompt_tokens(request, worker.config) + answer


def abandon_probe(worker: Worker) -> None:
    """A call cancelled while it was the half-open probe proves nothing either way; without
    this the breaker would wait for that probe's verdict forever and never let another call
    through. Treat it as inconclusive: open again, and probe after the next ``reset_after``."""
    if worker.breaker.state == "half_open":
        worker.breaker.record_failure()


async def _first(items: AsyncGenerator[Item, None]) -> Item | None:
    try:
        return await anext(items)
    except StopAsyncIteration:
        return None
    except BaseException:
        await items.aclose()
        raise


class Metered(Generic[Item]):
    """A started stream that counts what passes through it and settles its attempt at the end
    (usage, cost, latency, outcome), whether it finishes, fails or is cancelled."""

    def __init__(
        self,
        worker: Worker,
        request: ChatRequest,
        first: Item | None,
        rest: AsyncGenerator[Item, None],
        attempt: Attempt,
        started: float,
    ) -> None:
        self.worker = worker
        self.attempt = attempt
        self.text_chars = 0
        self._request = request
        self._first = first
        self._rest = rest
        self._started = started
        self.usage: Usage | None = None
        self.finished = False
        # Called once the stream has ended and its attempt is settled, with the error that
        # ended it (None when it finished or the client left): writes the trace of a stream
        # nothing else wraps.
        self.on_end: Callable[[PodiumError | None], None] | None = None
        self.slot: Slot | None = None  # room held on a worker with limits, until the end
        worker.in_flight += 1

    def _observe(self, item: object) -> None:
        kind = type(item)
        if kind is TextDelta:
            self.text_chars += len(cast(TextDelta, item).text)
        elif kind is ToolCallDelta:
            self.text_chars += len(cast(ToolCallDelta, item).arguments)
        elif kind is UsageReport or kind is WireUsage:
            self.usage = cast(UsageReport | WireUsage, item).usage

    async def events(self) -> AsyncGenerator[Item, None]:
        observe = self._observe
        failure: PodiumError | None = None
        try:
            if self._first is not None:
                observe(self._first)
                yield self._first
            async for item in self._rest:
                observe(item)
                yield item
            self.worker.breaker.record_success()
            self.finished = True
        except ProviderError as error:
            failure = error
            self.worker.breaker.record_failure()
            self.attempt.status, self.attempt.error = "error", error.message
            self.attempt.error_kind = error.kind
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self.attempt.status, self.attempt.error = "error", "client disconnected"
            self.attempt.error_kind = "cancelled"
            abandon_probe(self.worker)
            raise
        finally:
            await self._rest.aclose()
            self._settle()
            if self.on_end is not None:
                self.on_end(failure)

    def _answer_estimate(self) -> int:
        """The answer's tokens, by what passed, when no usage came (the caller left first)."""
        return (self.text_chars + 3) // 4

    def _settle(self) -> None:
        if self.worker.in_flight > 0 and self.attempt.latency_ms == 0.0:
            self.worker.in_flight -= 1
        usage = self.usage
        if self.worker.uses_tokens:
            if usage is None or usage.total_tokens == 0:
                usage = Usage(0, self._answer_estimate())
            if usage.input_tokens == 0:  # the upstream did not say: estimate the prompt's side
                prompt = prompt_tokens(self._request, self.worker.config)
                usage = replace(usage, input_tokens=prompt)
        elif usage is None:
            usage = Usage()
        self.attempt.usage = usage
        self.attempt.cost_usd = self.worker.cost(usage)
        self.attempt.latency_ms = (time.perf_counter() - self._started) * 1000
        if self.slot is not None:
            self.slot.release(
                usage.total_tokens,
                answer_tokens=(usage.output_tokens or None) if self.finished else None,
                overloaded=self.attempt.error_kind in OVERLOAD_KINDS,
            )


class MeteredStream(Metered[StreamEvent]):
    """A stream of canonical events."""


class MeteredRelay(Metered[WireItem]):
    """A relayed stream: the provider's own bytes, and its usage (see :class:`WireUsage`).
    Its text is never decoded, so the relay's meter estimates a stream cut short."""

    meter: RelayMeter | None = None

    def _answer_estimate(self) -> int:
        return self.meter.answer_tokens() if self.meter is not None else 0

"""One request's path, independent of any wire format: admit, clear, route, run, record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from podium.config import WorkerConfig
from podium.context import PRIORITY_HEADER, Caller, RequestContext, priority_asked
from podium.deadline import DEADLINE_HEADERS, deadline, request_seconds
from podium.engine import Attempt, MeteredRelay, MeteredStream
from podium.errors import PodiumError
from podium.executor import Executor, Run
from podium.hooks import Hook
from podium.media import request_media
from podium.resume import carry_on
from podium.routing.base import Candidate, Decision, RouteContext, Router
from podium.routing.chain import decide
from podium.routing.fit import images_refused, reads_documents, unread_why
from podium.store.traces import TraceRecord
from podium.types import (
    ChatRequest,
    ChatResponse,
    EventStream,
    StreamEvent,
    TextDelta,
    Usage,
    WireItem,
)
from podium.workers import WorkerPool, worker_named
from podium.workflow import WorkflowError


@dataclass(slots=True)
class Outcome:
    """What the ingress needs to answer: the response (or stream) and the facts for headers."""

    decision: Decision
    run: Run
    worker: str
    response: ChatResponse | None = None
    stream: AsyncIterator[StreamEvent] | None = None
    relay: AsyncIterator[WireItem] | None = None  # a stream relayed in the caller's wire format

    def headers(self, context: RequestContext) -> dict[str, str]:
        headers = {
            "x-podium-trace-id": context.trace_id,
            "x-podium-worker": self.worker,
            "x-podium-route": self.decision.route,
        }
        # A stream's cost is known only at its end, after the headers have gone: it says
        # "pending" here, and the final figure travels in the stream's usage report (OpenAI
        # ``usage.cost_usd`` with ``stream_options.include_usage``) and in the trace.
        headers["x-podium-cost-usd"] = (
            f"{total_cost(self.run.attempts):.8f}" if self.response is not None else STREAM_COST
        )
        if context.response_headers:
            headers.update(context.response_headers)
        return headers


STREAM_COST = "pending"


def enforce_clearance(decision: Decision, eligible: list[WorkerConfig]) -> None:
    """Whatever a router or a hook did to the plan, every step and every fallback must be a
    worker that policy cleared for this request; uncleared fallbacks are dropped, an
    uncleared step refuses the request."""
    cleared = {worker.name for worker in eligible if worker.role == "answer"}
    checkers: frozenset[str] = frozenset()
    if len(cleared) < len(eligible):  # only a pool with checkers pays for this
        checkers = frozenset(worker.name for worker in eligible if worker.role == "check")
    if decision.workflow.fallbacks:  # most plans have none: no comprehension (a call) then
        decision.workflow.fallbacks = [w for w in decision.workflow.fallbacks if w in cleared]
    try:
        decision.workflow.validate(cleared, checkers)
    except WorkflowError as error:
        raise PodiumError(
            "permission", f"the routed plan broke clearance: {error}", code="not_cleared"
        ) from None


def enforce_capabilities(
    decision: Decision, request: ChatRequest, eligible: list[WorkerConfig]
) -> None:
    """A request with images goes only to workers that declare ``vision``, and one with a PDF
    that has no text to send instead only to workers that read it (``documents``, or
    ``vision`` for a scan's drawn pages): a fallback that does not is dropped, and a step that
    does not refuses the request (400) before anything is sent. Otherwise a text-only model
    fails upstream (llama.cpp answers 500), and a caller's bad request would count against
    the worker's circuit breaker for everyone."""
    if not request.attachments and not request.has_images():
        return  # the usual request
    images = request.has_images()
    media = request_media(request)  # read once for every step and fallback judged
    by_name = {worker.name: worker for worker in eligible}

    def lacking(name: str) -> str | None:
        """Why ``name`` cannot take the request, if it cannot."""
        worker = by_name.get(name)
        if worker is None or worker.role != "answer":
            return None
        declared = ", ".join(worker.capabilities) or "none"
        if images and "vision" not in worker.capabilities:
            return (
                f"worker {name!r} does not accept images (its capabilities: {declared}); "
                "send them to a worker with 'vision', or leave them out"
            )
        if request.attachments and not reads_documents(request, worker):
            if "documents" in worker.capabilities:
                return unread_why(request, worker)
            return (
                f"worker {name!r} does not accept PDFs without a text layer (its capabilities: "
                f"{declared}); send them to a worker with 'documents', or leave them out"
            )
        return images_refused(request, worker, media)

    if decision.workflow.fallbacks:
        decision.workflow.fallbacks = [w for w in decision.workflow.fallbacks if lacking(w) is None]
    for step in decision.workflow.steps:
        why = lacking(step.worker)
        if why is not None:
            raise PodiumError("invalid_request", why, param="messages", code="unsupported_input")


def total_cost(attempts: Sequence[Attempt]) -> float:
    if len(attempts) == 1:  # the usual request: the sum without its generator
        cost = attempts[0].cost_usd
        if type(cost) is float:
            return 0.0 + cost  # what sum() gives for one float (0.0 for -0.0)
    return sum(attempt.cost_usd for attempt in attempts)


def total_usage(attempts: Sequence[Attempt]) -> Usage:
    if len(attempts) == 1:  # Usage() + the one usage, in one step
        one = attempts[0].usage
        return Usage(
            one.input_tokens,
            one.output_tokens,
            one.cached_input_tokens,
            one.cache_write_tokens,
            one.cache_write_long_tokens,
        )
    usage = Usage()
    for attempt in attempts:
        usage = usage + attempt.usage
    return usage


STAGES = (
    "admit",
    "eligible",
    "transform_request",
    "decided",
    "transform_response",
    "transform_events",
    "finish",
)


def _overrides(hook: Hook, stage: str) -> bool:
    """Does ``hook`` do anything at ``stage``? The base class's methods are no-ops."""
    base = getattr(Hook, stage)
    return getattr(type(hook), stage, None) is not base or stage in getattr(hook, "__dict__", {})


class Stages:
    """The hooks that act at each point of the path, in registration order. Skipping the
    base class's no-ops saves an await per hook per point on every request."""

    __slots__ = ("source", *STAGES)

    def __init__(self, hooks: list[Hook]) -> None:
        self.source = list(hooks)
        for stage in STAGES:
            setattr(self, stage, [hook for hook in hooks if _overrides(hook, stage)])

    def current(self, hooks: list[Hook]) -> bool:
        # List equality compares items by identity before __eq__ (which hooks leave as
        # identity): the same hooks in the same order, in C rather than an all() over them.
        return self.source == hooks

    admit: list[Hook]
    eligible: list[Hook]
    transform_request: list[Hook]
    decided: list[Hook]
    transform_response: list[Hook]
    transform_events: list[Hook]
    finish: list[Hook]


class ExtraHooks:
    """Hooks an ingress adds for its own requests: requests of other ingresses do not pay for
    them. ``before`` ones act ahead of the gateway's at each point (the Responses API's
    ``truncation``, so budgets and the cost guard price what is sent); the others after."""

    def __init__(self, hooks: list[Hook], *, before: list[Hook] | None = None) -> None:
        self.hooks = hooks
        self.before = before or []
        self._base: list[Hook] = []
        self._stages: Stages | None = None

    def stages(self, base: list[Hook]) -> Stages:
        stages = self._stages
        if stages is None or self._base != base:  # identity first: cheap when unchanged
            self._base = list(base)
            stages = self._stages = Stages([*self.before, *base, *self.hooks])
        return stages


class Gateway:
    def __init__(
        self,
        pool: WorkerPool,
        routers: list[Router],
        executor: Executor,
        *,
        hooks: list[Hook] | None = None,
        record: Callable[[TraceRecord], None] | None = None,
        router_timeout: float = 0.25,
        default_worker: str | None = None,
        capture_content: bool = False,
        request_timeout: float | None = None,
    ) -> None:
        self.pool = pool
        self.routers = routers
        self.executor: Executor = executor
        self.hooks: list[Hook] = hooks or []
        self._record = record
        self.router_timeout = router_timeout
        self.default_worker = default_worker  # answers when every router failed
        self.capture_content = capture_content
        self.request_timeout = request_timeout  # when the client names no deadline
        self._background: set[asyncio.Task[None]] = set()
        self._stages = Stages(self.hooks)

    @property
    def stages(self) -> Stages:
        """The hooks per point of the path; rebuilt when ``hooks`` changes (plugins add theirs
        after the gateway is built)."""
        stages = self._stages
        if not stages.current(self.hooks):
            stages = self._stages = Stages(self.hooks)
        return stages

    # -- the path -------------------------------------------------------------------------------

    async def authenticate(self, context: RequestContext, model: str | None = None) -> None:
        """Only the caller checks (the hooks that authenticate), for a request refused before
        it could be read. With no ``model`` known, a key's model scopes are not judged."""
        stand_in = ChatRequest(model=model or "", messages=[])
        for hook in self.stages.admit:
            if not hook.authenticates:
                continue
            try:
                await hook.admit(stand_in, context)
            except PodiumError as refusal:
                if model is not None or refusal.code != "scope_denied":
                    raise

    async def caller(self, ingress: str, headers: dict[str, str]) -> Caller:
        """Who is calling (or their 401 / 403), for the routes that read or change what a
        caller keeps: stored responses, conversations, batches."""
        context = RequestContext(ingress, headers)
        await self.authenticate(context)
        return context.caller

    async def admit(
        self, request: ChatRequest, context: RequestContext, stages: Stages | None = None
    ) -> ChatRequest:
        stages = stages or self.stages
        if PRIORITY_HEADER in context.headers:
            context.priority = priority_asked(context.headers[PRIORITY_HEADER])
        for hook in stages.admit:
            await hook.admit(request, context)
        for hook in stages.transform_request:
            request = await hook.transform_request(request, context)
        return request

    def eligible(
        self, request: ChatRequest, context: RequestContext, stages: Stages | None = None
    ) -> list[WorkerConfig]:
        # Embedding workers answer POST /v1/embeddings only (podium/embedding.py).
        workers = [worker.config for worker in self.pool.serving() if worker.config.role != "embed"]
        if not workers:
            # Every worker drained or removed: no class or key would help, so not a 403.
            raise PodiumError(
                "overloaded",
                "no worker is taking requests: every worker is draining or has been removed",
                code="no_serving_worker",
            )
        for hook in (stages or self.stages).eligible:
            workers = hook.eligible(workers, request, context)
        return workers

    async def route(
        self, request: ChatRequest, context: RequestContext, eligible: list[WorkerConfig]
    ) -> Decision:
        # By position (caller, eligible, headers, data_class, contract, budget_usd,
        # session_id): a keyword argument to a dataclass costs ~0.5k instructions.
        route_context = RouteContext(
            context.caller,
            eligible,
            context.headers,
            context.data_class,
            context.contract,
            context.budget_usd,
            context.session_id,
        )
        if not eligible:
            raise PodiumError(
                "permission",
                f"no worker is cleared for this request (data class {context.data_class!r})",
                code="no_eligible_worker",
            )
        # The chain re-checks clearance on every decision, skips routers that fail, overrun
        # their budget or plan outside the eligible workers, and falls back to the default.
        try:
            return await decide(
                self.routers,
                request,
                route_context,
                budget_s=self.router_timeout,
                default_worker=self.default_worker,
            )
        except PodiumError as error:
            if error.code == "model_not_found" and self._embeds(request.model):
                raise PodiumError(
                    "invalid_request",
                    f"the model {request.model!r} embeds text; send it to POST /v1/embeddings",
                    param="model",
                    code="embedding_model",
                ) from None
            raise

    def _embeds(self, model: str) -> bool:
        """Whether ``model`` names an embedding worker (by name or alias)."""
        configs = (worker.config for worker in self.pool)
        return worker_named(model, configs, self.pool.aliases, "embed") is not None

    async def handle(
        self,
        request: ChatRequest,
        context: RequestContext,
        *,
        relay: str | None = None,
        extra: ExtraHooks | None = None,
        routed: Callable[[], None] | None = None,
    ) -> Outcome:
        """Admit, route and start answering. Streams come back started (first event in hand).
        ``relay`` names the caller's wire format when its ingress can pass a provider's own
        stream bytes on (see :class:`podium.providers.base.RelayingProvider`); ``extra``, the
        hooks its ingress adds; ``routed`` is called once the request is admitted, routed and
        cleared, before any worker is asked (a background response is answered then)."""
        decision: Decision | None = None
        run = Run()
        stages = self.stages if extra is None else extra.stages(self.hooks)
        try:
            request = await self.admit(request, context, stages)
            run.priority = context.priority
            # After admission: a caller without a valid key hears that first.
            # Most requests without an SDK name no deadline: one probe instead of two calls.
            if self.request_timeout is not None or not context.headers.keys().isdisjoint(
                DEADLINE_HEADERS
            ):
                seconds = request_seconds(context.headers, self.request_timeout)
                run.deadline = deadline(seconds, since=context.started)
            eligible = self.eligible(request, context, stages)
            decision = await self.route(request, context, list(eligible))
            run.attempts.extend(decision.attempts)  # a planner's call is part of the cost
            for hook in stages.decided:
                await hook.decided(request, decision, context)
            enforce_clearance(decision, eligible)
            enforce_capabilities(decision, request, eligible)
            if routed is not None:
                routed()
            if request.stream:
                return await self._stream(request, decision, run, context, stages, relay)
            response = await self.executor.complete(
                request, decision.workflow, run, context=context
            )
            for hook in stages.transform_response:
                response = hook.transform_response(response, context)
            self.finish(request, decision, run, context, status=200, response=response)
            return Outcome(decision, run, response.model, response)  # by position, as above
        except PodiumError as error:
            self.finish(request, decision, run, context, status=error.status, error=error)
            raise

    async def _stream(
        self,
        request: ChatRequest,
        decision: Decision,
        run: Run,
        context: RequestContext,
        stages: Stages,
        relay: str | None,
    ) -> Outcome:
        # Relaying is chosen once, here: only when no hook would change an event (each hook
        # hands back the stream it is given when it has nothing to do) and no content is kept.
        if relay is not None and (
            self.capture_content or not _untouched(stages.transform_events, context)
        ):
            relay = None
        metered = await self.executor.stream(
            request, decision.workflow, run, relay=relay, context=context
        )
        outcome = Outcome(decision, run, metered.worker.name)  # by position, as above
        if isinstance(metered, MeteredRelay):
            # Nothing wraps a relayed stream: the trace is written as it ends, with no layer
            # of its own on every chunk.
            def ended(error: PodiumError | None) -> None:
                status = _stream_status(error, metered)
                self.finish(request, decision, run, context, status=status, error=error)

            metered.on_end = ended
            outcome.relay = metered.events()
            return outcome
        events: EventStream = metered.events()
        for hook in stages.transform_events:
            events = hook.transform_events(events, context)
        outcome.stream = self._recorded(events, metered, request, decision, run, context)
        return outcome

    async def _recorded(
        self,
        events: EventStream,
        metered: MeteredStream,
        request: ChatRequest,
        decision: Decision,
        run: Run,
        context: RequestContext,
    ) -> AsyncIterator[StreamEvent]:
        """The stream, passed on; its trace is written when it ends, however it ends."""
        error: PodiumError | None = None
        text: list[str] | None = [] if self.capture_content else None
        try:
            if text is None:
                async for event in events:
                    yield event
            else:
                async for event in events:
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                    yield event
        except PodiumError as failure:
            error = failure
            raise
        finally:
            self.finish(
                request,
                decision,
                run,
                context,
                status=_stream_status(error, metered),
                error=error,
                answer="".join(text) if text is not None else None,
            )

    # -- recording -------------------------------------------------------------------------------

    def record(
        self,
        request: ChatRequest,
        decision: Decision | None,
        run: Run,
        context: RequestContext,
        *,
        status: int,
        response: ChatResponse | None = None,
        error: PodiumError | None = None,
    ) -> None:
        """Write the trace (and run the finish hooks) for a request answered outside
        :meth:`handle`: contract calls run several attempts under one trace, and the judge's
        grading calls are Podium's own requests."""
        self.finish(request, decision, run, context, status=status, response=response, error=error)

    def finish(
        self,
        request: ChatRequest,
        decision: Decision | None,
        run: Run,
        context: RequestContext,
        *,
        status: int,
        response: ChatResponse | None = None,
        error: PodiumError | None = None,
        answer: str | None = None,
    ) -> None:
        """Record the request's trace and run the ``finish`` hooks (settle budgets, count
        metrics), whatever the outcome; other paths (embeddings) end here too."""
        attempts = run.attempts
        usage = total_usage(attempts)
        # One loop for the last attempt that answered and the workers tried (in order, once
        # each), rather than a comprehension and a generator: a call each.
        answered: Attempt | None = None
        tried: dict[str, None] = {}
        for attempt in attempts:
            if attempt.status == "ok":
                answered = attempt
            if attempt.status != "skipped":
                tried[attempt.worker] = None
        last_attempt = attempts[-1] if attempts else None
        ok = status < 400
        # By position, in the fields' order (each keyword argument costs ~0.5k instructions,
        # ~14k for a trace); tests/test_gateway.py checks every field of a recorded trace.
        trace = TraceRecord(
            context.trace_id,  # trace_id
            context.started_at,  # created_at
            context.ingress,  # ingress
            context.caller.key_id,  # caller
            context.caller.owner,  # owner
            request.model,  # requested_model
            decision.route if decision else "none",  # route
            "ok" if ok else "error",  # status
            status,  # http_status
            decision.router if decision else None,  # router
            decision.rule if decision else None,  # rule
            decision.reason if decision else None,  # reason
            answered.worker
            if answered is not None
            else (last_attempt.worker if last_attempt else None),  # worker
            ",".join(tried),  # workers
            usage.input_tokens,  # input_tokens
            usage.output_tokens,  # output_tokens
            total_cost(attempts),  # cost_usd
            context.elapsed_ms(),  # latency_ms
            answered.ttft_ms if answered is not None else None,  # ttft_ms
            None if ok else (error.message if error else "client disconnected"),  # error
            None if ok else (error.kind if error else "cancelled"),  # error_kind
            request.stream,  # stream
            context.data_class,  # data_class
            context.contract,  # contract
            list(map(_attempt_dict, attempts)),  # steps (map: no comprehension's call)
            list(map(_candidate_dict, decision.candidates)) if decision else [],  # candidates
            list(context.policy_actions),  # policy_actions
            request.prompt_text() if self.capture_content else None,  # prompt
            (response.text if response is not None else answer) if self.capture_content else None,
            decision.workflow.key if decision else None,  # workflow
        )
        if self._record is not None:
            self._record(trace)
        finishing = self.stages.finish
        if finishing:
            self._start_finish_hooks(finishing, trace, context)

    def _start_finish_hooks(
        self, hooks: list[Hook], trace: TraceRecord, context: RequestContext
    ) -> None:
        """Run the finish hooks now, as far as they go without waiting: most never wait (metrics,
        signals, an in-memory budget), and a task per request cost ~25k instructions. Hooks that
        wait on something go on in a background task, from where they stopped."""
        hooks_run = self._run_finish_hooks(hooks, trace, context)
        try:
            waiting_on = hooks_run.send(None)
        except StopIteration:
            return
        except asyncio.CancelledError:
            return  # as a task that was cancelled: nothing to report
        except Exception as error:  # reported as a failed task's error was, and not raised
            asyncio.get_running_loop().call_exception_handler(
                {"message": "a finish hook failed", "exception": error}
            )
            return
        task = asyncio.get_running_loop().create_task(carry_on(hooks_run, waiting_on))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_finish_hooks(
        self, hooks: list[Hook], trace: TraceRecord, context: RequestContext
    ) -> None:
        for hook in hooks:
            await hook.finish(trace, context)

    async def drain_background(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _stream_status(error: PodiumError | None, metered: MeteredStream | MeteredRelay) -> int:
    if error is not None:
        return error.status
    return 200 if metered.attempt.status == "ok" else 499  # else: the client left


async def _probe() -> EventStream:
    nothing: tuple[StreamEvent, ...] = ()
    for event in nothing:
        yield event


def _untouched(hooks: list[Hook], context: RequestContext) -> bool:
    """Would every one of ``hooks`` hand the stream back unchanged for this request?"""
    probe = _probe()
    return all(hook.transform_events(probe, context) is probe for hook in hooks)


def _candidate_dict(candidate: Candidate) -> dict[str, object]:
    # What dataclasses.asdict gives for these flat fields, without its recursive deep copy;
    # written out, not a comprehension over the fields (tests/test_gateway.py holds the two
    # the same).
    return {
        "worker": candidate.worker,
        "score": candidate.score,
        "quality": candidate.quality,
        "cost_usd": candidate.cost_usd,
        "label": candidate.label,
    }


def _attempt_dict(attempt: Attempt) -> dict[str, object]:
    usage = attempt.usage
    step = _step_dict(attempt)
    # The upstream's prompt cache, when it used one: kept out of the common step's dict.
    if usage.cached_input_tokens:
        step["cache_read_tokens"] = usage.cached_input_tokens
    if usage.cache_write_tokens or usage.cache_write_long_tokens:
        step["cache_write_tokens"] = usage.cache_write_tokens + usage.cache_write_long_tokens
    if attempt.queued_ms:  # it waited for room on its worker (limits): kept out like the cache
        step["queued_ms"] = round(attempt.queued_ms, 3)
    return step


def _step_dict(attempt: Attempt) -> dict[str, object]:
    return {
        "step": attempt.step,
        "role": attempt.role,
        "worker": attempt.worker,
        "status": attempt.status,
        "error": attempt.error,
        "error_kind": attempt.error_kind,
        "latency_ms": round(attempt.latency_ms, 3),
        "ttft_ms": round(attempt.ttft_ms, 3) if attempt.ttft_ms is not None else None,
        "input_tokens": attempt.usage.input_tokens,
        "output_tokens": attempt.usage.output_tokens,
        "cost_usd": attempt.cost_usd,
    }

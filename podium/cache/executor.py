"""The response cache as a wrapper around the workflow executor.

It runs where the executor runs: after admission (keys, limits, content policy, the injection
screen) and after routing, so a hit is still refused, redacted and budgeted like any request,
and its key covers the routed plan. The key is a sha256 over the canonical request (messages,
tools, sampling, response format, the end user), the decided workflow (each step's worker,
instruction and access, the fallbacks), the configuration of every worker in it (a repriced or
re-pointed worker misses), the request's data class and contract, and the scope (the API key,
its owner, or everyone).

A hit calls no worker: its trace has one step with role ``cache``, cost 0 and the tokens the
answer was recorded with, and the policy action ``cache:hit``. A client's ``Cache-Control:
no-cache`` skips the lookup (the fresh answer still replaces the entry) and ``no-store`` keeps
the answer out of the cache. A backend that fails is a miss (``cache:error``), never a refusal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, replace

import orjson

from podium.cache.settings import CacheSettings
from podium.cache.store import (
    CacheUnavailable,
    ResponseCache,
    decode_entry,
    encode_entry,
    storable,
)
from podium.context import RequestContext
from podium.engine import Attempt, MeteredRelay, MeteredStream
from podium.executor import Executor, Run, replay
from podium.types import (
    ChatRequest,
    ChatResponse,
    StreamEvent,
    collect,
    has_breakpoints,
    without_breakpoints,
)
from podium.workers import Worker, WorkerPool
from podium.workflow import Workflow

HEADER = "x-podium-cache"
ROLE = "cache"
KEY_VERSION = 1
# Worker settings that do not change what the worker answers.
NOT_IN_KEY = {
    "aliases",
    "timeouts",
    "retry",
    "breaker",
    "quality_prior",
    "document_page_tokens",
}


@dataclass(slots=True, frozen=True)
class Directives:
    lookup: bool
    store: bool


def directives(context: RequestContext) -> Directives:
    """What the client's ``Cache-Control`` allows."""
    header = context.headers.get("cache-control")
    if not header:
        return Directives(lookup=True, store=True)
    named = {part.split("=", 1)[0].strip().lower() for part in header.split(",")}
    return Directives(lookup="no-cache" not in named, store="no-store" not in named)


class CachingExecutor:
    """An :class:`~podium.executor.Executor` that answers repeated requests from ``backend``."""

    def __init__(
        self,
        inner: Executor,
        backend: ResponseCache,
        settings: CacheSettings,
        pool: WorkerPool,
    ) -> None:
        self.inner = inner
        self.backend = backend
        self.settings = settings
        self.pool = pool
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.errors = 0

    # -- the key ---------------------------------------------------------------------------------

    def _scope(self, context: RequestContext) -> str:
        scope = self.settings.scope
        if scope == "key":
            return f"key:{context.caller.key_id}"
        if scope == "owner":
            return f"owner:{context.caller.owner}"
        return "global"

    def key(self, request: ChatRequest, workflow: Workflow, context: RequestContext) -> str:
        # The requested model name is left out: the workflow says who answers. Streaming,
        # metadata and prompt-cache hints change how the answer travels, is labelled or is
        # paid for, not what it is.
        canonical = replace(
            request,
            model="",
            stream=False,
            include_usage=False,
            metadata={},
            cache=None,
            cache_explicit=False,
            cache_key=None,
            cache_retention=None,
        )
        if has_breakpoints(request):
            canonical = without_breakpoints(canonical)
        names = dict.fromkeys([*workflow.workers, *workflow.fallbacks])
        workers = []
        for name in names:
            worker = self.pool.get(name)
            config = worker.config.model_dump(mode="json", exclude=NOT_IN_KEY) if worker else None
            workers.append([name, config])
        material = orjson.dumps(
            [
                KEY_VERSION,
                self._scope(context),
                context.data_class,
                context.contract,
                canonical,
                workflow,
                workers,
            ],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(material).hexdigest()

    def _qualifies(self, request: ChatRequest, context: RequestContext | None) -> Directives | None:
        if context is None or (request.tools and not self.settings.tools):
            return None
        wanted = directives(context)
        return wanted if wanted.lookup or wanted.store else None

    # -- the backend, never failing a request ---------------------------------------------------

    async def _lookup(self, key: str, context: RequestContext) -> ChatResponse | None:
        try:
            value = await self.backend.get(key)
        except CacheUnavailable:
            self.errors += 1
            context.policy_actions.append("cache:error")
            return None
        if value is None:
            return None
        return decode_entry(value, id=f"cache-{context.trace_id}")

    async def _keep(self, key: str, response: ChatResponse, context: RequestContext) -> None:
        if not storable(response):
            return
        value = encode_entry(response)
        if len(value) > self.settings.max_bytes:
            return
        try:
            await self.backend.put(key, value, self.settings.ttl_seconds)
        except CacheUnavailable:
            self.errors += 1
            context.policy_actions.append("cache:error")
            return
        self.stored += 1
        context.policy_actions.append("cache:stored")

    def _answered(self, context: RequestContext, result: str) -> None:
        if result == "hit":
            self.hits += 1
        else:
            self.misses += 1
        context.policy_actions.append(f"cache:{result}")
        context.response_headers[HEADER] = result

    @staticmethod
    def _hit_attempt(response: ChatResponse, workflow: Workflow, run: Run) -> Attempt:
        attempt = Attempt(
            response.model,
            latency_ms=0.0,
            ttft_ms=0.0,
            usage=response.usage,
            cost_usd=0.0,
            step=len(workflow.steps) - 1,
            role=ROLE,
        )
        run.attempts.append(attempt)
        return attempt

    # -- the executor ----------------------------------------------------------------------------

    async def complete(
        self,
        request: ChatRequest,
        workflow: Workflow,
        run: Run,
        *,
        context: RequestContext | None = None,
    ) -> ChatResponse:
        wanted = self._qualifies(request, context)
        if wanted is None or context is None:
            return await self.inner.complete(request, workflow, run, context=context)
        key = self.key(request, workflow, context)
        if wanted.lookup:
            cached = await self._lookup(key, context)
            if cached is not None:
                self._hit_attempt(cached, workflow, run)
                self._answered(context, "hit")
                return cached
        response = await self.inner.complete(request, workflow, run, context=context)
        self._answered(context, "miss")
        if wanted.store:
            await self._keep(key, response, context)
        return response

    async def stream(
        self,
        request: ChatRequest,
        workflow: Workflow,
        run: Run,
        *,
        relay: str | None = None,
        context: RequestContext | None = None,
    ) -> MeteredStream | MeteredRelay:
        wanted = self._qualifies(request, context)
        if wanted is None or context is None:
            return await self.inner.stream(request, workflow, run, relay=relay, context=context)
        key = self.key(request, workflow, context)
        if wanted.lookup:
            cached = await self._lookup(key, context)
            worker = self._worker(cached, workflow) if cached is not None else None
            if cached is not None and worker is not None:
                attempt = self._hit_attempt(cached, workflow, run)
                self._answered(context, "hit")
                return CachedStream(worker, cached, attempt)
        # Keeping the answer needs its events: a relayed stream is the provider's own bytes.
        metered = await self.inner.stream(
            request, workflow, run, relay=None if wanted.store else relay, context=context
        )
        self._answered(context, "miss")
        if not wanted.store or not isinstance(metered, MeteredStream):
            return metered

        async def keep(response: ChatResponse) -> None:
            await self._keep(key, response, context)

        return StoringStream(metered, keep, limit=self.settings.max_bytes)

    def _worker(self, cached: ChatResponse, workflow: Workflow) -> Worker | None:
        """The worker a replayed stream is labelled with: the one that answered, else the
        plan's last step."""
        return self.pool.get(cached.model) or self.pool.get(workflow.steps[-1].worker)


class CachedStream(MeteredStream):
    """A cached answer replayed as a stream. It holds no upstream call, so it takes no slot
    of the worker's and tells its circuit breaker nothing (the base class's constructor
    would do both)."""

    def __init__(self, worker: Worker, response: ChatResponse, attempt: Attempt) -> None:
        self.worker = worker
        self.attempt = attempt
        self.finished = False
        self.on_end = None
        self._response = response

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter()
        try:
            async for event in replay(self._response):
                yield event
            self.finished = True
        except BaseException:
            self.attempt.status, self.attempt.error = "error", "client disconnected"
            self.attempt.error_kind = "cancelled"
            raise
        finally:
            self.attempt.latency_ms = (time.perf_counter() - started) * 1000


class StoringStream(MeteredStream):
    """The worker's stream passed on as it arrives, and kept once it finished normally.
    Everything else (its worker slot, breaker, usage and cost) is the wrapped stream's."""

    def __init__(
        self,
        inner: MeteredStream,
        keep: Callable[[ChatResponse], Awaitable[None]],
        *,
        limit: int,
    ) -> None:
        self.inner = inner
        self.worker = inner.worker
        self.attempt = inner.attempt
        self.finished = False
        self.on_end = None
        self._keep = keep
        self._limit = limit

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        kept: list[StreamEvent] | None = []
        size = 0
        events = self.inner.events()
        try:
            async for event in events:
                if kept is not None:
                    kept.append(event)
                    size += len(getattr(event, "text", "")) + len(getattr(event, "arguments", ""))
                    if size > self._limit:
                        kept = None  # too large to keep: stop holding it
                yield event
        finally:
            await events.aclose()
        self.finished = self.inner.finished
        if kept is None or not self.inner.finished or self.attempt.status != "ok":
            return
        response = await collect(_each(kept), id="", model=self.worker.name)
        response.usage = self.attempt.usage  # settled by the wrapped stream as it ended
        await self._keep(response)


async def _each(events: list[StreamEvent]) -> AsyncGenerator[StreamEvent, None]:
    for event in events:
        yield event

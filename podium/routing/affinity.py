"""Session affinity: the turns of one conversation stay on the worker that answered the first.

Two halves share one bounded map (held by the Podium's routing parts, never module state):

- :class:`AffinityRouter`, early in the chain, answers "the worker this session used" while that
  worker is still eligible (policy moves a session as soon as it is not) and can take the turn
  (:mod:`podium.routing.fit`: a turn with images it cannot read, or a conversation grown past
  its context window, moves too);
- :class:`AffinityHook` learns, after each answer, which worker actually answered (after any
  fallback) and forgets a session whose turn failed, so a failing worker does not hold it.

A rule that fires before the affinity router moves the session: the hook records its worker.
The session key is, in order: ``RequestContext.session_id`` (a Responses ``conversation`` sets
it), the ``x-podium-session`` header,
``metadata.session_id`` (or ``session`` / ``conversation_id``), OpenAI's ``prompt_cache_key``
(which clients set to keep requests that share a prefix on one cache), else a hash of the
caller, the ``user`` field and the conversation's opening (system messages and the first user
message), which every later turn of the same conversation repeats.

Where the map lives is a :class:`SessionMap`: :class:`LocalSessions` keeps it in the process (the
zero-set-up default); with ``redis.url`` set (and ``redis.sessions``), every process and replica
shares one map in Redis (:class:`~podium.state.redis_sessions.RedisSessions`), so a turn keeps
its worker whichever replica the load balancer picks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from podium.context import RequestContext
from podium.hooks import Hook
from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.config import AffinityConfig, RoutingConfigError, parse_section
from podium.routing.fit import able, fits
from podium.routing.registry import RouterParts, RouterRegistry
from podium.store.traces import TraceRecord
from podium.types import ChatRequest
from podium.workflow import Workflow

if TYPE_CHECKING:
    from podium.app import Podium

METADATA_KEYS = ("session_id", "session", "conversation_id")
OPENING_CHARS = 4096  # how much of the opening the hash reads


class SessionMap(Protocol):
    """session key -> the worker holding that session."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, worker: str) -> None: ...

    async def forget(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


class LocalSessions:
    """In this process: least recently used first out, entries expire ``ttl`` seconds after
    the turn that wrote them."""

    def __init__(
        self, max_sessions: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        worker, seen = entry
        if self._clock() - seen > self.ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return worker

    async def put(self, key: str, worker: str) -> None:
        self._entries[key] = (worker, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)

    async def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    async def aclose(self) -> None:
        self._entries.clear()


def session_id(request: ChatRequest, headers: dict[str, str], header: str) -> str:
    """The conversation's id: explicit when the client gave one, else a hash of its opening."""
    explicit = headers.get(header)
    if explicit:
        return explicit[:256]
    for key in METADATA_KEYS:
        value = request.metadata.get(key)
        if value:
            return str(value)[:256]
    if request.cache_key:
        # Requests that share a prompt-cache key share a prefix: on one worker, they share
        # its cache too.
        return "c-" + request.cache_key[:256]
    digest = hashlib.blake2b(digest_size=16)
    digest.update((request.user or "").encode("utf-8", "replace"))
    for message in request.messages:
        digest.update(b"\x1f" + message.role.encode())
        digest.update(message.text()[:OPENING_CHARS].encode("utf-8", "replace"))
        if message.role == "user":
            break  # the opening ends with the first user message
    return "h-" + digest.hexdigest()


def session_key(caller_key: str, session: str) -> str:
    return f"{caller_key}\x1f{session}"  # sessions never cross callers


class AffinityRouter:
    name = "affinity"

    def __init__(self, sessions: SessionMap, config: AffinityConfig) -> None:
        self.sessions = sessions
        self.config = config
        self.models = frozenset(config.models)
        # The models plan() may decide for (see Router): none while switched off.
        self.decides_for = self.models if config.enabled else frozenset()

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        if not self.config.enabled or request.model not in self.models:
            return None
        session = context.session_id or session_id(request, context.headers, self.config.header)
        key = session_key(context.caller.key_id, session)
        # A shared map that cannot be read raises: the chain records why on the decision and
        # the routers after this one choose (routing without affinity).
        worker = await self.sessions.get(key)
        if worker is None:
            return None  # a new conversation: the routers after this one choose
        eligible = [w.name for w in context.eligible]
        if worker not in eligible:
            # Policy moved it: the next router chooses afresh, and the worker that answers
            # this turn holds the session from then on (the hook writes it).
            return None
        pinned = context.eligible[eligible.index(worker)]
        if not fits(request, pinned) and able(request, context.eligible):
            # This turn brings images or tools the worker cannot take, or the conversation has
            # outgrown its context window: it moves as it would for policy.
            return None
        return Decision(
            workflow=Workflow.single(worker, fallbacks=[w for w in eligible if w != worker]),
            router=self.name,
            reason=f"session {session[:24]!r} stays on worker {worker!r}, which answered its "
            "earlier turns",
            candidates=[Candidate(worker=worker, score=1.0)],
        )


class AffinityHook(Hook):
    """Records which worker answered each session's turn (see the module docstring)."""

    def __init__(self, sessions: SessionMap, config: AffinityConfig) -> None:
        self.sessions = sessions
        self.config = config
        self.models = frozenset(config.models)

    async def decided(
        self, request: ChatRequest, decision: Decision, context: RequestContext
    ) -> None:
        if self.config.enabled and request.model in self.models and context.session_id is None:
            context.session_id = session_id(request, context.headers, self.config.header)

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        if not self.config.enabled or context.session_id is None:
            return
        if trace.requested_model not in self.models:
            return
        key = session_key(context.caller.key_id, context.session_id)
        if trace.status == "ok" and trace.worker:
            await self.sessions.put(key, trace.worker)
        else:
            await self.sessions.forget(key)  # a failed turn frees the session to move


def session_map(config: AffinityConfig, parts: RouterParts) -> SessionMap:
    """Shared through Redis when ``redis.url`` is set and ``redis.sessions`` is on."""
    redis = parts.config.redis
    if redis.url is not None and redis.sessions:
        from podium.state.redis_sessions import RedisSessions

        if importlib.util.find_spec("redis") is None:
            raise RoutingConfigError(
                "affinity: redis.url is set but the redis client is not installed "
                "(pip install 'podium[redis]'), or set redis.sessions: false"
            )
        return RedisSessions(
            redis.url,
            max_sessions=config.max_sessions,
            ttl=config.ttl_seconds,
            prefix=redis.prefix,
            timeout=redis.timeout,
            max_connections=redis.max_connections,
        )
    return LocalSessions(config.max_sessions, config.ttl_seconds)


def build_affinity(section: Any, parts: RouterParts) -> AffinityRouter:
    config = parse_section(section, AffinityConfig, "affinity")
    sessions = session_map(config, parts)
    parts.hooks.append(AffinityHook(sessions, config))
    return AffinityRouter(sessions, config)


def register_routers(registry: RouterRegistry) -> None:
    registry.register("affinity", build_affinity)


def register_app(podium: Podium) -> None:
    maps = [hook.sessions for hook in podium.hooks if isinstance(hook, AffinityHook)]

    async def close() -> None:
        await podium.gateway.drain_background()  # finish hooks still writing their sessions
        for sessions in maps:
            await sessions.aclose()

    if maps:
        podium.app.on_shutdown.append(close)

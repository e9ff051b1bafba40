"""Gemini's explicit context caching: a ``cachedContents`` resource for the prefix a request's
prompt-cache breakpoints mark, kept per worker and reused while it lives.

Gemini caches long prefixes unasked (its implicit cache; ``cachedContentTokenCount`` is read as
cached input). Its explicit cache is a resource: ``POST /cachedContents`` with the model, the
system instruction, the tools, the tool config and the contents before the breakpoint, for a
lifetime (``ttl``). A request then names it (``cachedContent``) and sends only the rest of its
contents, never a system instruction, tools or a tool config of its own: Gemini refuses those
beside a cache, so they always belong to the cached prefix. Reads are billed at the cached
price, and the resource is billed for storage per token and hour while it lives.

:class:`ContextCaches` is one worker's registry: resources by a hash of their exact prefix and
model, each created at most once however many requests want it together, reused until shortly
before it expires, recreated when Gemini no longer knows it, and bounded in number. A create
that fails never fails a request: the request goes uncached, and the failure is logged once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from podium.errors import ProviderError
from podium.image_tokens import GEMINI, image_size
from podium.providers.http import Upstream
from podium.shared_notes import NoteBoard
from podium.single_flight import SingleFlight
from podium.types import CACHE_SECONDS, CacheTTL

log = logging.getLogger("podium.gemini")

# Where a breakpoint falls in a request's ``contents``: (content index, parts of that content
# before it, lifetime). (0, 0, ttl) is before every content: the system instruction and tools.
Mark = tuple[int, int, CacheTTL]

# Gemini's smallest cacheable prefix: 1,024 tokens for Flash models, 4,096 for Pro.
MINIMUM_FLASH = 1024
MINIMUM_PRO = 4096
# A resource is not named in a request this close to its expiry (a new one is made instead).
EXPIRY_MARGIN = 10.0
# How long a prefix whose create failed is sent uncached before it is tried again: a refusal
# of the prefix itself (a 400: too small, a model without caching) for an hour, anything that
# may pass (429, 5xx, a timeout) for a minute.
REFUSED_PAUSE = 3600.0
FAILED_PAUSE = 60.0
# How long a process holds its claim on a prefix while it makes its resource: past a create's
# longest wait, so a process that died making one delays the others no longer than this.
CLAIM_SECONDS = 30.0
# Tokens counted for a file in a prefix's estimate whose size is not known (a file by URI, or
# an image whose header is not read: Gemini's figure for an image up to 384 pixels).
BLOB_TOKENS = 258
# The fields a cached prefix holds, which a request naming the resource may not send.
CACHED_FIELDS = ("systemInstruction", "tools", "toolConfig")

_PRO = re.compile(r"(^|[-_/.])pro($|[-_.])")


def default_minimum(model: str) -> int:
    """Gemini's minimum cacheable prefix for ``model``: 4,096 tokens for Pro, else 1,024."""
    return MINIMUM_PRO if _PRO.search(model.lower()) else MINIMUM_FLASH


@dataclass(slots=True)
class CachePlan:
    """A request split at its last breakpoint: the resource that would hold the prefix, and
    the contents sent beside it."""

    key: str  # the prefix's identity: a hash of the model and the prefix, exactly
    body: dict[str, Any]  # POST /cachedContents, without its ttl
    rest: list[dict[str, Any]]
    ttl: CacheTTL
    tokens: int  # the prefix's size, estimated
    payload: dict[str, Any]  # the whole request, as sent without a cache


@dataclass(slots=True)
class Resource:
    """A ``cachedContents`` resource Gemini holds for a worker."""

    name: str  # cachedContents/{id}
    expires: float  # on the registry's clock
    tokens: int  # its usageMetadata.totalTokenCount
    unbilled: float = 0.0  # token-hours of storage no answer has been charged for yet

    def bill(self) -> float:
        """The storage not yet charged, once: the first answer that used the resource pays it."""
        hours, self.unbilled = self.unbilled, 0.0
        return hours


def _has_calls(content: dict[str, Any]) -> bool:
    return any("functionCall" in part or "functionResponse" in part for part in content["parts"])


def _clamp(ci: int, pj: int, contents: list[dict[str, Any]]) -> tuple[int, int]:
    """A cut that leaves the request something to send and splits no turn of function calls or
    responses (Gemini pairs a turn's calls with the next turn's responses, whole)."""
    if ci < len(contents) and pj >= len(contents[ci]["parts"]):
        ci, pj = ci + 1, 0  # the end of a turn is the start of the next
    if ci >= len(contents):  # the whole conversation: keep its last part (or turn) to send
        ci = len(contents) - 1
        parts = contents[ci]["parts"]
        pj = len(parts) - 1 if len(parts) > 1 and not _has_calls(contents[ci]) else 0
    elif pj and _has_calls(contents[ci]):
        pj = 0
    return ci, pj


def estimate_tokens(body: dict[str, Any]) -> int:
    """A prefix's tokens, estimated as Podium estimates text (4 characters a token), an inline
    image by Gemini's rule for its size (podium/image_tokens.py), any other file as
    :data:`BLOB_TOKENS`. A PDF counts as large enough to cache whatever its size: Gemini counts
    its pages, which the body does not say (a refusal as too small costs only a failed
    create)."""
    chars = len(orjson.dumps(body["tools"])) if "tools" in body else 0
    blobs = 0
    system = body.get("systemInstruction")
    contents = [system, *body.get("contents", [])] if system else body.get("contents", [])
    for content in contents:
        for part in content["parts"]:
            if "text" in part:
                chars += len(part["text"])
                continue
            blob = part.get("inlineData") or part.get("fileData")
            if blob is None:
                chars += len(orjson.dumps(part))
            elif blob.get("mimeType") == "application/pdf":
                return 1 << 30
            else:
                size = image_size(blob["data"]) if isinstance(blob.get("data"), str) else None
                blobs += BLOB_TOKENS if size is None else GEMINI.tokens(size, None)
    return (chars + 3) // 4 + blobs


def plan_prefix(
    payload: dict[str, Any], marks: list[Mark], automatic: CacheTTL | None, model: str
) -> CachePlan | None:
    """The request ``payload`` split at its last breakpoint (``marks``; ``automatic``: one
    after its last item too), or None when there is no prefix to cache. The system
    instruction, tools and tool config always go with the prefix; a breakpoint that would
    leave nothing to send moves back to before the last part (or turn)."""
    contents: list[dict[str, Any]] = payload["contents"]
    if not contents:
        return None
    found = list(marks)
    if automatic is not None:
        found.append((len(contents), 0, automatic))
    if not found:
        return None
    cuts = [(*_clamp(ci, pj, contents), ttl) for ci, pj, ttl in found]
    ci, pj = max((ci, pj) for ci, pj, _ in cuts)
    ttl = max((ttl for c, p, ttl in cuts if (c, p) == (ci, pj)), key=CACHE_SECONDS.__getitem__)
    prefix = contents[:ci]
    rest = contents[ci:]
    if pj:
        turn = contents[ci]
        prefix = [*prefix, {"role": turn["role"], "parts": turn["parts"][:pj]}]
        rest = [{"role": turn["role"], "parts": turn["parts"][pj:]}, *contents[ci + 1 :]]
    body: dict[str, Any] = {"model": f"models/{model}"}
    if prefix:
        body["contents"] = prefix
    for field in CACHED_FIELDS:
        if field in payload:
            body[field] = payload[field]
    if len(body) == 1:  # no system instruction, tools or contents: nothing to cache
        return None
    key = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return CachePlan(key, body, rest, ttl, estimate_tokens(body), payload)


def with_resource(payload: dict[str, Any], plan: CachePlan, name: str) -> dict[str, Any]:
    """``payload`` as sent beside the resource ``name``: the rest of its contents, and none of
    the fields the resource holds."""
    sent = {key: value for key, value in payload.items() if key not in CACHED_FIELDS}
    sent["contents"] = plan.rest
    sent["cachedContent"] = name
    return sent


def vanished(error: ProviderError) -> bool:
    """Whether Gemini's answer to a request naming a resource says it no longer knows it: a 404,
    a 403 (the API's "CachedContent not found (or permission denied)") or a 400 saying the cache
    expired. (A wrong key then fails the new create too, and the request whole, so it shows.)"""
    if error.code in ("upstream_model_not_found", "upstream_credential_refused"):
        return True
    message = error.message.lower()
    return error.kind == "invalid_request" and "expired" in message and "cache" in message


class ContextCaches:
    """One worker's ``cachedContents`` resources, by prefix. ``eager``: create a resource the
    first time a prefix is seen; otherwise the second time within its lifetime. ``clock``
    gives seconds (tests move it). ``notes``: where each resource made is noted for the
    deployment's other processes and replicas, which use it rather than make their own (the
    storage is billed once, to the answer that made it), and where one claims a prefix while
    it makes its resource: the others send that prefix uncached meanwhile rather than make
    (and pay to keep) a second one; ``wall``: the time they agree on."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        worker: str,
        model: str,
        eager: bool,
        minimum_tokens: int,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
        notes: NoteBoard | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.upstream = upstream
        self.worker = worker
        self.model = model
        self.eager = eager
        self.minimum_tokens = minimum_tokens
        self.capacity = capacity
        self.clock = clock
        self.resources: OrderedDict[str, Resource] = OrderedDict()  # least recently used first
        self.creating: SingleFlight[str, Resource | None] = SingleFlight()
        self.seen: OrderedDict[str, float] = OrderedDict()  # prefix -> until when it counts
        self.paused: OrderedDict[str, float] = OrderedDict()  # prefix -> not tried until
        self.warned: set[str] = set()  # the kinds of create failure already logged
        self.notes = notes
        self.wall = wall
        self.gone: OrderedDict[str, None] = OrderedDict()  # resources Gemini no longer knows

    async def lease(self, plan: CachePlan, *, again: bool = False) -> Resource | None:
        """The live resource for ``plan``'s prefix, created now if it is worth one; None: send
        the request whole. ``again``: the prefix had a resource Gemini lost, so it is known to
        come back."""
        now = self.clock()
        resource = self.resources.get(plan.key)
        if resource is not None:
            if now < resource.expires - EXPIRY_MARGIN:
                self.resources.move_to_end(plan.key)
                return resource
            del self.resources[plan.key]
            again = True
        if not self.creating.running(plan.key):
            if plan.tokens < self.minimum_tokens:
                return None
            noted = await self._noted(plan.key, now)
            if noted is not None:
                return noted
            if self.paused.get(plan.key, 0.0) > now:
                return None
            if not (self.eager or again or self._seen_before(plan.key, plan.ttl, now)):
                return None
        return await self.creating.run(plan.key, lambda: self._create(plan))

    def forget(self, key: str, name: str) -> None:
        """Drop the resource ``name``: Gemini says it no longer knows it."""
        resource = self.resources.get(key)
        if resource is not None and resource.name == name:
            del self.resources[key]
        self.gone[name] = None  # another replica's note may still name it
        while len(self.gone) > 4 * self.capacity:
            self.gone.popitem(last=False)

    async def aclose(self) -> None:
        await self.creating.aclose()

    def _seen_before(self, key: str, ttl: CacheTTL, now: float) -> bool:
        until = self.seen.pop(key, None)
        if until is not None and until > now:
            return True
        self.seen[key] = now + CACHE_SECONDS[ttl]
        while len(self.seen) > 4 * self.capacity:
            self.seen.popitem(last=False)
        return False

    async def _create(self, plan: CachePlan) -> Resource | None:
        if self.notes is None:
            return await self._make(plan, None)
        claim = f"{self._note_key(plan.key)}:making"
        if not await self.notes.claim(claim, CLAIM_SECONDS):
            return None  # another replica is making it: uncached until its note is there
        try:
            noted = await self._noted(plan.key, self.clock())  # made while this one waited
            return noted if noted is not None else await self._make(plan, self.notes)
        finally:
            await self.notes.release(claim)

    async def _make(self, plan: CachePlan, notes: NoteBoard | None) -> Resource | None:
        seconds = CACHE_SECONDS[plan.ttl]
        started = self.clock()
        try:
            data = await self.upstream.post_json(
                "/cachedContents", {**plan.body, "ttl": f"{seconds}s"}
            )
            name = str(data["name"])
            usage = data.get("usageMetadata") or {}
            tokens = int(usage.get("totalTokenCount") or plan.tokens)
        except ProviderError as error:
            refused = error.kind == "invalid_request"
            self._failed(plan.key, error.kind, error.message, refused)
            return None
        except (KeyError, TypeError, ValueError, AttributeError):
            message = f"worker {self.worker!r} answered a create in an unexpected shape"
            self._failed(plan.key, "shape", message, False)
            return None
        except Exception as error:  # whatever went wrong, the request still goes (uncached)
            log.debug("creating a context cache failed", exc_info=True)
            self._failed(plan.key, type(error).__name__, f"{type(error).__name__}", False)
            return None
        resource = Resource(name, started + seconds, tokens, tokens * seconds / 3600)
        self.resources[plan.key] = resource
        now = self.clock()
        self._bound(now)
        if notes is not None:
            left = resource.expires - now
            note = {"name": name, "expires_at": self.wall() + left, "tokens": tokens}
            await notes.write(self._note_key(plan.key), orjson.dumps(note).decode(), left)
        return resource

    def _note_key(self, key: str) -> str:
        return f"gemini-cache:{self.worker}:{key}"

    async def _noted(self, key: str, now: float) -> Resource | None:
        """The resource another process or replica made for the prefix, while it lives."""
        if self.notes is None:
            return None
        value = await self.notes.read(self._note_key(key))
        if value is None:
            return None
        try:
            note = orjson.loads(value)
            name, tokens = str(note["name"]), int(note["tokens"])
            left = float(note["expires_at"]) - self.wall()
        except (ValueError, KeyError, TypeError):
            return None
        if name in self.gone or left <= EXPIRY_MARGIN:
            return None
        resource = Resource(name, now + left, tokens)  # its maker's answer paid its storage
        self.resources[key] = resource
        self._bound(now)
        return resource

    def _failed(self, key: str, kind: str, message: str, refused: bool) -> None:
        now = self.clock()
        self.paused[key] = now + (REFUSED_PAUSE if refused else FAILED_PAUSE)
        self.paused.move_to_end(key)
        while len(self.paused) > 4 * self.capacity:
            self.paused.popitem(last=False)
        level = logging.DEBUG if kind in self.warned else logging.WARNING
        self.warned.add(kind)
        log.log(
            level,
            "worker %r: no Gemini context cache for a prefix (%s); its requests go uncached "
            "for %d s (further failures of this kind are logged at debug level)",
            self.worker,
            message,
            int(self.paused[key] - now),
        )

    def _bound(self, now: float) -> None:
        """Forget expired resources, then the least recently used past the capacity."""
        for key in [key for key, r in self.resources.items() if r.expires <= now]:
            del self.resources[key]
        while len(self.resources) > self.capacity:
            self.resources.popitem(last=False)

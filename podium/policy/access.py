"""Who is calling: the authentication hook for the chat APIs and the admin-key check.

The key comes from ``Authorization: Bearer`` (OpenAI clients) or ``x-api-key`` (Anthropic
clients). Anything that is not a well-formed Podium key (SQL, NUL bytes, 10 KB of padding) is
refused by its shape before any lookup; well-formed keys are looked up in memory
(:class:`~podium.policy.keys.KeyCache`). Refusals are 401 (no or bad key) or 403 (a key used
outside its scopes), rendered by the caller's ingress in its own wire format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from podium.config import WorkerConfig
from podium.context import Caller, RequestContext
from podium.errors import PodiumError
from podium.hooks import Hook
from podium.policy.keys import (
    KeyCache,
    KeyRecord,
    KeyUnavailable,
    looks_like_podium_key,
    parse_key,
    scope_allows,
)
from podium.policy.settings import AuthSettings
from podium.types import ChatRequest

if TYPE_CHECKING:
    from podium.api.admin import AdminAuth
    from podium.api.http import Request
    from podium.policy.audit import AuditTrail

log = logging.getLogger("podium.access")

ADMIN_CALLER = "podium.admin_key"  # where the admin check leaves the caller, in the ASGI scope


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent, or None. Never logs or echoes it."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if token and scheme.lower() == "bearer":
            return token
        return authorization.strip()  # not a bearer token: checked, and refused, as a key
    api_key = headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


def _unauthorized(reason: str) -> PodiumError:
    return PodiumError(
        "authentication",
        f"invalid API key ({reason}). Send a Podium key as 'Authorization: Bearer pk-...' "
        "or 'x-api-key: pk-...'.",
        code="invalid_api_key",
    )


def _store_down() -> PodiumError:
    return PodiumError(
        "overloaded",
        "Podium cannot check API keys right now (its key store is unreachable); try again",
        code="key_store_unavailable",
        retry_after=1.0,
    )


class AuthHook(Hook):
    authenticates = True  # POST /v1/feedback checks callers through this hook too

    def __init__(
        self, keys: KeyCache, settings: AuthSettings, *, audit: AuditTrail | None = None
    ) -> None:
        self.keys = keys
        self.settings = settings
        self.audit = audit

    def _refuse(self, context: RequestContext, error: PodiumError, actor: str) -> PodiumError:
        if self.audit is not None:
            self.audit.record(
                actor,
                "request.refused",
                context.trace_id,
                {"status": error.status, "code": error.code, "ingress": context.ingress},
            )
        return error

    async def admit(self, request: ChatRequest, context: RequestContext) -> None:
        presented = presented_key(context.headers)
        snapshot = self.keys.fresh()
        if snapshot is None:
            try:
                snapshot = await self.keys.snapshot()
            except KeyUnavailable:
                delegated = context.on_behalf_of is not None
                if presented is None and not delegated and self.settings.required is False:
                    return
                raise self._refuse(context, _store_down(), "unknown") from None
        required = self.settings.required
        if required is None:
            required = snapshot.app_keys > 0
        record: KeyRecord | None
        if presented is None and context.on_behalf_of is not None:
            # Checked as at the time it was given: revoked or expired since, it is refused.
            key_id = context.on_behalf_of
            found = snapshot.by_id.get(key_id)
            if found is None and key_id == Caller().key_id and not required:  # made by nobody
                return
            record, why = self.keys.check(found) if found is not None else (None, "unknown key")
            if record is None:
                why = f"the key {key_id} that created this work can no longer be used ({why})"
                raise self._refuse(context, _unauthorized(why), f"key:{key_id}")
        elif presented is None or (not required and not looks_like_podium_key(presented)):
            # Open mode accepts any placeholder a client SDK insists on sending ("unused").
            if required:
                raise self._refuse(context, _unauthorized("no key given"), "anonymous")
            return
        else:
            record, why = self.keys.find_in(snapshot, presented)
            if record is None:
                parsed = parse_key(presented)
                actor = f"key:{parsed[1]}" if parsed else "unknown"
                raise self._refuse(context, _unauthorized(why), actor)
        if record.is_admin:
            raise self._refuse(
                context,
                PodiumError(
                    "permission",
                    "admin keys are for the admin API only; use an application key (pk-...)",
                    code="admin_key_not_allowed",
                ),
                f"key:{record.key_id}",
            )
        context.caller = record.caller()
        if record.metadata and record.metadata.get("priority") == "background":
            context.priority = "background"  # a key for work nobody waits on (podium/capacity.py)
        if "*" in record.scopes:
            return  # allowed everything: no scope to check
        for kind, name in (
            ("route", context.ingress),
            ("model", request.model),
            ("contract", context.contract),
        ):
            if name is not None and not scope_allows(record.scopes, kind, name):
                raise self._refuse(
                    context,
                    PodiumError(
                        "permission",
                        f"this key may not use {kind} {name!r} (its scopes: "
                        f"{', '.join(record.scopes)})",
                        param="model" if kind == "model" else None,
                        code="scope_denied",
                    ),
                    f"key:{record.key_id}",
                )

    def eligible(
        self, workers: list[WorkerConfig], request: ChatRequest, context: RequestContext
    ) -> list[WorkerConfig]:
        scopes = context.caller.scopes
        if "*" in scopes or not any(scope.startswith("worker:") for scope in scopes):
            return workers
        allowed = [w for w in workers if scope_allows(scopes, "worker", w.name)]
        if workers and not allowed:
            raise PodiumError(
                "permission",
                "none of the workers this key may use can take this request",
                code="scope_denied",
            )
        return allowed


class AdminKeyAuth:
    """The admin API's check once admin keys exist: a valid ``pa-`` key, nothing else.

    Application keys get 403, missing or bad keys 401. While no admin key exists, ``fallback``
    (the environment key, or loopback only) decides, so a fresh install can mint its first
    admin key; the environment key keeps working afterwards as a break-glass credential.
    """

    def __init__(
        self,
        keys: KeyCache,
        fallback: AdminAuth,
        *,
        env_key: Callable[[], str | None],
        audit: AuditTrail | None = None,
    ) -> None:
        self.keys = keys
        self.fallback = fallback
        self._env_key = env_key
        self.audit = audit

    async def authorize(self, request: Request) -> None:
        await self._authorize(request)
        if self.audit is not None and request.method != "GET":
            action, target = admin_action(request.method, request.path)
            # /admin/keys and /admin/cache record their own outcomes
            if not action.startswith(("keys.", "cache.")):
                self.audit.record(
                    admin_actor(request),
                    action,
                    target,
                    {"method": request.method, "path": request.path, "recorded": "authorized"},
                )

    async def _authorize(self, request: Request) -> None:
        presented = presented_key(request.headers)
        parsed = parse_key(presented) if presented else None
        if parsed is not None and not parsed[0]:
            raise PodiumError(
                "permission",
                "application keys cannot use the admin API; use an admin key (pa-...)",
                code="application_key_refused",
            )
        try:
            snapshot = await self.keys.snapshot()
        except KeyUnavailable:
            raise _store_down() from None
        if parsed is not None:
            record, why = await self.keys.find(presented or "")
            if record is None:
                raise PodiumError(
                    "authentication", f"invalid admin key ({why})", code="invalid_admin_key"
                )
            request.scope[ADMIN_CALLER] = record.key_id
            return
        if snapshot.admin_keys == 0 or (presented is not None and self._env_key() is not None):
            await self.fallback.authorize(request)
            request.scope[ADMIN_CALLER] = "bootstrap"
            return
        raise PodiumError(
            "authentication",
            "the admin API needs 'Authorization: Bearer pa-...' (an admin key)",
            code="admin_key_required",
        )


VERBS = {"POST": "add", "PUT": "set", "PATCH": "set", "DELETE": "rm"}


def admin_action(method: str, path: str) -> tuple[str, str]:
    """``POST /admin/workers/w1/drain`` -> ("workers.drain", "workers:w1")."""
    parts = [part for part in path.split("/") if part][1:] or ["admin"]
    area = parts[0]
    verb = parts[2] if len(parts) > 2 else VERBS.get(method, method.lower())
    target = f"{area}:{parts[1]}" if len(parts) > 1 else area
    return f"{area}.{verb}", target


def admin_actor(request: Request) -> str:
    caller = request.scope.get(ADMIN_CALLER)
    return f"admin:{caller}" if caller else "admin"

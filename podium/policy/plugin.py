"""The access layer as a plugin: key authentication, limits and budgets, the audit trail, admin
keys for the admin API, and ``/admin/keys``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from podium.api.admin import KeyOrLoopbackAuth, admin_route
from podium.api.http import Request, Response
from podium.errors import PodiumError
from podium.policy.access import AdminKeyAuth, AuthHook, admin_actor
from podium.policy.audit import AuditTrail
from podium.policy.audit_store import build_trail
from podium.policy.budgets import LimitsHook
from podium.policy.keys import KeyCache, KeyProblem, KeyStore, NewKey
from podium.policy.limits import LimitBackend, MemoryLimits
from podium.policy.settings import LimitSettings
from podium.store.tables import SQLExecutor

if TYPE_CHECKING:
    from podium.app import Podium

MAX_BODY = 64 * 1024


def limit_backend(settings: LimitSettings) -> LimitBackend:
    if settings.backend == "redis":
        from podium.policy.redis_limits import RedisLimits

        return RedisLimits(
            settings.url,
            prefix=settings.prefix,
            timeout=settings.timeout,
            max_connections=settings.max_connections,
            queue_timeout=settings.queue_timeout,
        )
    return MemoryLimits()


def audit_trail(podium: Podium) -> AuditTrail:
    """The gateway's audit trail (create_podium makes one; a hand-built Podium gets one here)."""
    if podium.audit is None:
        podium.audit = build_trail(
            podium.config.access, podium.store, podium.config.resolved_data_dir()
        )
        podium.app.on_shutdown.append(podium.audit.aclose)
    return podium.audit


def register_app(podium: Podium) -> None:
    settings = podium.config.access
    store = podium.store
    if not isinstance(store, SQLExecutor):
        return  # a store without statements of its own: keys cannot be kept, Podium stays open
    keys = KeyStore(store)
    cache = KeyCache(keys, ttl=settings.auth.cache_ttl)
    trail = audit_trail(podium)
    refusals = trail if settings.audit.refusals else None
    backend = limit_backend(settings.limits)
    # First in line: nothing else should spend effort on a request that is not allowed.
    podium.gateway.hooks[0:0] = [
        AuthHook(cache, settings.auth, audit=refusals),
        LimitsHook(cache, backend, podium.pool, settings.limits, audit=refusals),
    ]
    podium.extras["keys"] = cache
    podium.extras["limits"] = backend
    # Workers' requests and tokens a minute are counted where keys' are, and with Redis their
    # slots too: a worker's quota is shared by every replica, as its vendor counts it.
    podium.pool.set_rate_buckets(backend)
    if settings.limits.backend == "redis":
        from podium.policy.redis_limits import RedisLimits

        assert isinstance(backend, RedisLimits)
        podium.pool.set_shared_slots(backend)
    podium.admin_auth = AdminKeyAuth(
        cache,
        podium.admin_auth or KeyOrLoopbackAuth(podium.secrets, podium.config.server.admin_key_env),
        env_key=lambda: podium.secrets.get(podium.config.server.admin_key_env),
        audit=trail,
    )
    admin = KeyAdmin(keys, cache, trail)
    admin_route(podium, "GET", "/admin/keys", admin.list)
    admin_route(podium, "POST", "/admin/keys", admin.create)
    admin_route(podium, "GET", "/admin/keys/{key_id}", admin.show)
    admin_route(podium, "POST", "/admin/keys/{key_id}/revoke", admin.revoke)
    admin_route(podium, "DELETE", "/admin/keys/{key_id}", admin.revoke)
    admin_route(podium, "POST", "/admin/keys/{key_id}/rotate", admin.rotate)

    async def stop_limits() -> None:
        # Shutdown hooks run last-registered first: let requests settle before closing.
        await podium.gateway.drain_background()
        await backend.aclose()

    podium.app.on_startup.append(backend.start)
    podium.app.on_shutdown.append(stop_limits)


def _problem(error: KeyProblem) -> PodiumError:
    if str(error).startswith("no key"):
        return PodiumError("not_found", str(error), code="key_problem")
    return PodiumError("unprocessable", str(error), code="key_problem")


class KeyAdmin:
    def __init__(self, keys: KeyStore, cache: KeyCache, audit: AuditTrail) -> None:
        self.keys = keys
        self.cache = cache
        self.audit = audit

    async def list(self, _: Request) -> Response:
        return Response.json({"keys": [record.public() for record in await self.keys.all()]})

    async def show(self, request: Request) -> Response:
        record = await self.keys.get(request.params["key_id"])
        if record is None:
            raise PodiumError("not_found", "no such key", code="key_problem")
        return Response.json(record.public())

    async def create(self, request: Request) -> Response:
        body = await request.json(MAX_BODY)
        if not isinstance(body, dict):
            raise PodiumError("invalid_request", "the body must be a JSON object")
        spec = _new_key(body)
        try:
            record, key = await self.keys.create(spec)
        except KeyProblem as error:
            raise _problem(error) from None
        self.cache.invalidate()
        self.audit.record(
            admin_actor(request),
            "keys.create",
            f"key:{record.key_id}",
            {"owner": record.owner, "admin": record.is_admin, "scopes": record.scopes},
        )
        return Response.json({**record.public(), "key": key}, status=201)

    async def revoke(self, request: Request) -> Response:
        try:
            record = await self.keys.revoke(request.params["key_id"])
        except KeyProblem as error:
            raise _problem(error) from None
        self.cache.invalidate()
        self.audit.record(admin_actor(request), "keys.revoke", f"key:{record.key_id}", {})
        return Response.json(record.public())

    async def rotate(self, request: Request) -> Response:
        grace = 0.0
        if request.headers.get("content-length", "0") not in ("", "0"):
            body = await request.json(MAX_BODY)
            grace = _number(body.get("grace_seconds", 0) if isinstance(body, dict) else 0)
        try:
            record, key = await self.keys.rotate(request.params["key_id"], grace_seconds=grace)
        except KeyProblem as error:
            raise _problem(error) from None
        self.cache.invalidate()
        self.audit.record(
            admin_actor(request), "keys.rotate", f"key:{record.key_id}", {"grace_seconds": grace}
        )
        return Response.json({**record.public(), "key": key})


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PodiumError("unprocessable", "grace_seconds must be a number >= 0")
    return float(value)


def _new_key(body: dict[str, Any]) -> NewKey:
    allowed = {
        "owner", "name", "admin", "scopes", "metadata", "budget_usd", "budget_period",
        "rpm", "tpm", "expires_at",
    }  # fmt: skip
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise PodiumError(
            "unprocessable", f"unknown fields: {', '.join(unknown)}", param=unknown[0]
        )
    try:
        return TypeAdapter(NewKey).validate_python(body)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc']) or '(body)'}: {item['msg']}"
            for item in error.errors()
        ]
        raise PodiumError("unprocessable", "invalid key: " + "; ".join(problems)) from None

"""The admin API: the worker pool of a running gateway, changed without a restart.

Routes (JSON in, JSON out, errors in Podium's plain shape ``{"error": {type, message, param}}``):

- ``GET /admin/workers``: every worker with its config and health (circuit state, draining,
  requests in flight). ``GET /admin/workers/{name}``: one of them.
- ``POST /admin/workers``: add a worker; the body is one worker entry of ``podium.yaml``.
- ``PATCH /admin/workers/{name}``: change fields (reprice with ``{"price": {"input": 2.5}}``;
  nested sections merge). Changing the provider, model, URL, key variable, options or timeouts
  builds a new provider; requests already running finish on the old one.
- ``POST /admin/workers/{name}/drain`` and ``.../undrain``: stop (resume) sending new requests.
- ``DELETE /admin/workers/{name}``: remove it; its requests in flight finish first.

Validation errors are 422 and name the field and why; an unknown worker is 404; a name that
already exists is 409. Provider keys never pass through here: a worker names the environment
variable that holds its key (``api_key_env``), and a body that carries a key-like field
(``api_key``, ``authorization``, ``secret``...) is refused with 400, without echoing it.

Authentication is pluggable. ``Podium.admin_auth`` holds an :class:`AdminAuth`; anything with
``async authorize(request) -> None`` that raises :class:`~podium.errors.PodiumError` to refuse
(``authentication`` 401 or ``permission`` 403) will do, so virtual admin keys can replace the
default. The default, :class:`KeyOrLoopbackAuth`, reads the variable named by
``server.admin_key_env`` (``PODIUM_ADMIN_KEY``) on every request: when it is set, a request must
carry ``Authorization: Bearer <that key>`` (compared in constant time); when it is unset, only
loopback clients are accepted. Other modules add their own admin routes with
:func:`admin_route`, which applies the same check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from podium.adaptive import AdaptiveLimit
from podium.api.http import Handler, PlainErrors, Request, Response
from podium.config import ConfigError, WorkerConfig
from podium.errors import PodiumError
from podium.modelfiles import ModelFileError
from podium.policy.access import admin_actor
from podium.policy.credentials import CredentialHosts, destination
from podium.secrets import SecretSource
from podium.workers import NameClashError, Worker

if TYPE_CHECKING:
    from podium.app import Podium

MAX_ADMIN_BODY = 256 * 1024

# Field names that would carry a credential itself rather than the name of a variable holding
# one. Matched case-insensitively anywhere in a body, with '-' and '_' treated alike.
SECRET_FIELDS = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
        "password",
        "token",
        "access_token",
        "authorization",
        "x_api_key",
        "api_token",
        "bearer",
    }
)


class AdminAuth(Protocol):
    async def authorize(self, request: Request) -> None:
        """Return to allow ``request``; raise PodiumError (401 or 403) to refuse it."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class KeyOrLoopbackAuth:
    """The default admin check: a bearer key from the environment, else loopback only."""

    def __init__(self, secrets: SecretSource, key_env: str) -> None:
        self._secrets = secrets
        self.key_env = key_env

    async def authorize(self, request: Request) -> None:
        expected = self._secrets.get(self.key_env)
        if expected is None:
            client = request.scope.get("client")
            if not _is_loopback(client[0] if client else None):
                raise PodiumError(
                    "permission",
                    f"the admin API accepts only loopback clients while ${self.key_env} is unset",
                    code="admin_loopback_only",
                )
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected.encode()
        ):
            raise PodiumError(
                "authentication",
                "the admin API needs 'Authorization: Bearer <admin key>'",
                code="admin_key_required",
            )


def admin_auth_of(podium: Podium) -> AdminAuth:
    if podium.admin_auth is None:
        podium.admin_auth = KeyOrLoopbackAuth(podium.secrets, podium.config.server.admin_key_env)
    return podium.admin_auth


def admin_route(podium: Podium, method: str, path: str, handler: Handler) -> None:
    """Register an admin route: the current ``podium.admin_auth`` checks every request."""

    async def guarded(request: Request) -> Any:
        await admin_auth_of(podium).authorize(request)
        return await handler(request)

    podium.app.route(method, path, guarded, PlainErrors())


# -- bodies -------------------------------------------------------------------------------------


def _secret_paths(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            name = str(key)
            where = f"{path}.{name}" if path else name
            if name.lower().replace("-", "_") in SECRET_FIELDS:
                found.append(where)
            else:
                found.extend(_secret_paths(inner, where))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found.extend(_secret_paths(inner, f"{path}[{index}]"))
    return found


def refuse_secrets(body: Any) -> None:
    paths = _secret_paths(body)
    if paths:
        raise PodiumError(
            "invalid_request",
            f"refusing {', '.join(paths)}: provider keys never go through the admin API. Put the "
            "key in an environment variable of the gateway and name it in api_key_env.",
            param=paths[0],
            code="secret_refused",
        )


def validation_message(error: ValidationError, prefix: str = "") -> PodiumError:
    """422 naming every bad field and why (never the submitted values: they may be secrets)."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(body)"
        problems.append(f"{prefix}{where}: {item['msg']}")
    first = error.errors()[0]["loc"] if error.errors() else ()
    return PodiumError(
        "unprocessable",
        "invalid worker: " + "; ".join(problems),
        param=prefix + ".".join(str(part) for part in first) or None,
        code="invalid_worker",
    )


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.json(MAX_ADMIN_BODY)
    if not isinstance(body, dict):
        raise PodiumError("invalid_request", "the body must be a JSON object")
    refuse_secrets(body)
    return body


def _redacted_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as shown to an admin: header values may hold credentials, so only names show."""
    shown = dict(options)
    headers = shown.get("extra_headers")
    if isinstance(headers, dict):
        shown["extra_headers"] = {name: "[hidden]" for name in headers}
    return shown


def describe(worker: Worker) -> dict[str, Any]:
    data = worker.config.model_dump(mode="json")
    data["options"] = _redacted_options(data.get("options") or {})
    room = worker.capacity
    data["health"] = {
        "circuit": worker.breaker.state,
        "draining": worker.draining,
        "in_flight": worker.in_flight,
        # Its limits' slots (None: no concurrency limit) and those background work holds.
        "slots": room.slots,
        "background_in_use": room.background_in_use,
        # Seconds left of an upstream 429's pause (0: none).
        "resting_seconds": round(room.resting_for(), 1),
        # Calls since start that waited for room, and that found none in time.
        "waited": room.waited,
        "turned_away": room.refused,
        # What the vendor last said is left of its quota (its rate-limit headers), if it did.
        "vendor_quota": None if room.vendor is None else room.vendor_state(),
        # A learned concurrency limit (``limits.adaptive``): where it stands and why.
        "adaptive": None if room.adaptive is None else _adaptive_state(room.adaptive),
    }
    # What the estimates go by where the settings are silent: the provider's word.
    rule, upstream = worker.config.image_rule, worker.config.upstream
    limits = upstream.image_limits
    data["upstream"] = {
        "image_tokens": rule.model_dump(mode="json") if isinstance(rule, BaseModel) else str(rule),
        "image_limits": None if limits is None else dataclasses.asdict(limits),
        "document_urls": upstream.document_urls,
    }
    return data


def _adaptive_state(adaptive: AdaptiveLimit) -> dict[str, Any]:
    best = adaptive.best
    return {
        "limit": adaptive.limit,
        # The quickest the worker has lately answered, in milliseconds per answer token.
        "best_ms_per_token": None if best is None else round(best * 1000, 3),
        "raised": adaptive.raised,
        "lowered": adaptive.lowered,
    }


def _unknown(name: str) -> PodiumError:
    return PodiumError("not_found", f"no worker named {name!r}", param="name", code="no_worker")


def _clash(error: NameClashError) -> PodiumError:
    return PodiumError("invalid_request", str(error), status=409, code="worker_name_clash")


def _provider_problem(error: Exception, name: str) -> PodiumError:
    if isinstance(error, ValidationError):
        return validation_message(error, prefix="options.")
    message = (
        str(error) if isinstance(error, ConfigError | ModelFileError) else type(error).__name__
    )
    return PodiumError(
        "unprocessable",
        f"worker {name!r} cannot start: {message}",
        code="worker_unusable",
    )


# -- the routes ---------------------------------------------------------------------------------


class WorkerAdmin:
    def __init__(self, podium: Podium) -> None:
        self.podium = podium
        self.pool = podium.pool
        self._closing: set[asyncio.Task[None]] = set()
        # Keys go only where podium.yaml sends them (podium/policy/credentials.py).
        self.credentials = CredentialHosts(podium.config.workers)

    def _credential_check(self, request: Request) -> Callable[[WorkerConfig], None]:
        """The credential binding, with a refusal written to the audit log: an attempt to
        send a key elsewhere is worth a security review."""

        def check(config: WorkerConfig) -> None:
            try:
                self.credentials.check(config)
            except PodiumError as refusal:
                if self.podium.audit is not None:
                    self.podium.audit.record(
                        admin_actor(request),
                        "workers.refused",
                        f"workers:{config.name}",
                        {
                            "code": refusal.code,
                            "api_key_env": config.api_key_env,
                            "host": destination(config),
                        },
                    )
                raise

        return check

    def _worker(self, request: Request) -> Worker:
        name = request.params["name"]
        worker = self.pool.get(name)
        if worker is None:
            raise _unknown(name)
        return worker

    async def list(self, _: Request) -> Response:
        return Response.json({"workers": [describe(worker) for worker in self.pool]})

    async def show(self, request: Request) -> Response:
        return Response.json(describe(self._worker(request)))

    async def add(self, request: Request) -> Response:
        body = await _json_object(request)
        try:
            config = WorkerConfig.model_validate(body)
        except ValidationError as error:
            raise validation_message(error) from None
        if self.pool.get(config.name) is not None:
            raise PodiumError(
                "invalid_request",
                f"a worker named {config.name!r} already exists; change it with PATCH",
                status=409,
                param="name",
                code="worker_exists",
            )
        try:
            worker = await self.pool.add(config, check=self._credential_check(request))
        except NameClashError as error:
            raise _clash(error) from None
        except PodiumError:
            raise
        except Exception as error:
            if isinstance(error, ConfigError) and "already exists" in str(error):
                raise PodiumError("invalid_request", str(error), status=409, param="name") from None
            raise _provider_problem(error, config.name) from None
        return Response.json(describe(worker), status=201)

    async def update(self, request: Request) -> Response:
        worker = self._worker(request)
        changes = await _json_object(request)
        if not changes:
            raise PodiumError("invalid_request", "nothing to change: the body is empty")
        if "name" in changes and changes["name"] != worker.name:
            raise PodiumError(
                "invalid_request",
                "a worker cannot be renamed; add it under the new name and remove the old one",
                param="name",
            )
        try:
            updated = await self.pool.update(
                worker.name, changes, check=self._credential_check(request)
            )
        except KeyError:
            raise _unknown(worker.name) from None
        except NameClashError as error:
            raise _clash(error) from None
        except ValidationError as error:
            raise validation_message(error) from None
        except PodiumError:
            raise
        except Exception as error:
            raise _provider_problem(error, worker.name) from None
        return Response.json(describe(updated))

    async def drain(self, request: Request) -> Response:
        return Response.json(describe(self.pool.drain(self._worker(request).name, True)))

    async def undrain(self, request: Request) -> Response:
        worker = self.pool.drain(self._worker(request).name, False)
        # "Serve it again, now": also ends a pause an upstream 429 asked for (a daily quota's
        # Retry-After may last hours, and the operator may know better).
        worker.capacity.resting_until = 0.0
        return Response.json(describe(worker))

    async def remove(self, request: Request) -> Response:
        worker = self._worker(request)
        in_flight = worker.in_flight
        # The pool waits for requests in flight before closing the provider; the caller need
        # not, so the removal finishes in the background.
        task = asyncio.get_running_loop().create_task(self._remove(worker))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        await asyncio.sleep(0)  # let it leave the pool before we answer
        return Response.json({"removed": worker.name, "in_flight": in_flight})

    async def _remove(self, worker: Worker) -> None:
        try:
            await self.pool.remove(worker.name)
        except KeyError:
            pass  # removed meanwhile by another call
        except asyncio.CancelledError:
            await worker.provider.aclose()  # shutting down: do not leave it running
            raise

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)


def register_app(podium: Podium) -> None:
    admin = WorkerAdmin(podium)
    admin_route(podium, "GET", "/admin/workers", admin.list)
    admin_route(podium, "POST", "/admin/workers", admin.add)
    admin_route(podium, "GET", "/admin/workers/{name}", admin.show)
    admin_route(podium, "PATCH", "/admin/workers/{name}", admin.update)
    admin_route(podium, "DELETE", "/admin/workers/{name}", admin.remove)
    admin_route(podium, "POST", "/admin/workers/{name}/drain", admin.drain)
    admin_route(podium, "POST", "/admin/workers/{name}/undrain", admin.undrain)
    podium.app.on_shutdown.append(admin.aclose)

"""The endpoints a batch's requests go to (``/v1/chat/completions``, ``/v1/messages``, ...),
each added by the module that serves it, as the handler of its route built around a context
of the batch's choosing: a batch's request is then answered by the very code that answers the
endpoint (its admission, budgets, policy, routing and trace), only under the key that created
the batch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import orjson

from podium.api.http import Handler, Request, Response
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.types import JSONObject

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.batches")

# Makes a request's context from the ingress's name and the request's headers.
ContextFactory = Callable[[str, dict[str, str]], RequestContext]
# Builds an endpoint's handler around the contexts the factory makes.
HandlerFactory = Callable[[ContextFactory], Handler]

KEY = "batch_endpoints"


# Answers a batch's request may be asked again for, after their Retry-After: no room on any
# worker (503, 529 on /v1/messages) or a rate limit (429), never a refusal of the request.
BUSY = frozenset({429, 503, 529})
LONGEST_PAUSE = 60.0  # seconds between two tries of one request, whatever Retry-After says


class BatchEndpoints:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._factories: dict[str, HandlerFactory] = {}
        self._clock = clock
        self._sleep = sleep

    def add(self, url: str, factory: HandlerFactory) -> None:
        self._factories[url] = factory

    def wrap(self, url: str, around: Callable[[Handler, ContextFactory], Handler]) -> None:
        """Put ``around`` about the handlers ``url``'s factory builds (a contract call on a
        chat endpoint, say), as a plugin wraps the route itself."""
        factory = self._factories.get(url)
        if factory is not None:
            self._factories[url] = lambda contexts: around(factory(contexts), contexts)

    def urls(self) -> list[str]:
        return sorted(self._factories)

    def handler(self, url: str, contexts: ContextFactory) -> Handler | None:
        factory = self._factories.get(url)
        return factory(contexts) if factory is not None else None

    async def answer(
        self,
        url: str,
        params: JSONObject,
        *,
        key_id: str,
        batch_id: str,
        refuse: Iterable[str],
        render: Callable[[PodiumError], Response],
        until: float | None = None,
    ) -> Response:
        """What ``url``'s handler answers ``params`` under the key ``key_id``, whole: any
        failure is rendered by ``render`` (the API's error format), never raised, so one
        request's fault never stops its batch. Fields in ``refuse`` (``stream``) are 400s.
        A busy answer (every worker full, a rate limit) is asked again after its
        Retry-After, until ``until`` (the batch's window, a ``time.time``): a batch waits for
        room rather than fail."""

        def delegated(ingress: str, headers: dict[str, str]) -> RequestContext:
            context = RequestContext(ingress, headers)
            context.on_behalf_of = key_id
            context.priority = "background"  # nobody waits on it: interactive calls go first
            return context

        handler = self.handler(url, delegated)
        if handler is None:  # a replica without that endpoint: cannot happen in one release
            return render(PodiumError("api_error", f"{url} is not answered in batches here"))
        for field in refuse:
            if params.get(field):
                return render(
                    PodiumError(
                        "invalid_request",
                        f"{field}: a batch's requests are answered whole, here and now",
                        param=field,
                    )
                )
        while True:
            try:
                response = await handler(posted(url, params))
            except PodiumError as error:
                response = render(error)
            except Exception:
                log.exception("a request of batch %s failed", batch_id)
                return render(
                    PodiumError("api_error", "Podium failed to answer this request; see its log")
                )
            if not isinstance(response, Response):  # a stream, which ``refuse`` keeps out
                return render(PodiumError("api_error", "the endpoint answered with a stream"))
            pause = _pause(response)
            if pause is None or until is None or self._clock() + pause >= until:
                return response
            await self._sleep(pause)


def _pause(response: Response) -> float | None:
    """Seconds to wait before asking again, for a busy answer; None for any other."""
    if response.status not in BUSY:
        return None
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), LONGEST_PAUSE)


def batch_endpoints(podium: Podium) -> BatchEndpoints:
    """This gateway's registry, made by the first module that adds to it or reads it."""
    endpoints: BatchEndpoints = podium.extras.setdefault(KEY, BatchEndpoints())
    return endpoints


def posted(url: str, body: object) -> Request:
    """``POST url`` with ``body`` as JSON, as a handler reads a request from a client."""
    raw = orjson.dumps(body)
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:  # a handler reads its body once; a second read would wait for a disconnect
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": url,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    return Request(scope, receive)

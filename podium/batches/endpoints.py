"""The endpoints an OpenAI batch may name (``/v1/chat/completions``, ...), each added by the
module that serves it, as the handler of its route built around a context of the batch's
choosing: a batch's request is then answered by the very code that answers the endpoint (its
admission, budgets, policy, routing and trace), only under the key that created the batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from podium.api.http import Handler, Request
from podium.context import RequestContext

if TYPE_CHECKING:
    from podium.app import Podium

# Makes a request's context from the ingress's name and the request's headers.
ContextFactory = Callable[[str, dict[str, str]], RequestContext]
# Builds an endpoint's handler around the contexts the factory makes.
HandlerFactory = Callable[[ContextFactory], Handler]

KEY = "batch_endpoints"


class BatchEndpoints:
    def __init__(self) -> None:
        self._factories: dict[str, HandlerFactory] = {}

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

"""The /v1/files routes, which two APIs share: OpenAI's Files API (podium/api/openai_files.py)
and Anthropic's (podium/api/anthropic_files.py). Both read and write one store of the caller's
files (podium/batches/files.py); each route answers in the format the request speaks, which
:func:`speaks_anthropic` tells."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podium.api import anthropic_files, openai_files
from podium.api.http import AnyResponse, Handler, Request
from podium.batches.files import FileStore

if TYPE_CHECKING:
    from podium.app import Podium


def speaks_anthropic(http: Request) -> bool:
    """Anthropic's SDKs send ``anthropic-version`` on every request; OpenAI's never do."""
    return "anthropic-version" in http.headers


def either(openai: Handler, anthropic: Handler) -> Handler:
    """One route's handler: Anthropic's for a request that speaks it, else OpenAI's."""

    async def handle(http: Request) -> AnyResponse:
        return await (anthropic if speaks_anthropic(http) else openai)(http)

    return handle


def register_files(podium: Podium, files: FileStore) -> None:
    """The /v1/files routes. Errors the OpenAI side raises are rendered by the route (OpenAI's
    error object); the Anthropic side renders its own."""
    openai = openai_files.file_handlers(podium, files)
    anthropic = anthropic_files.file_handlers(podium, files)
    for (method, path), handler in openai.items():
        podium.app.route(
            method, path, either(handler, anthropic[method, path]), openai_files.ERRORS
        )

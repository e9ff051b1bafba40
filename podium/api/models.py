"""``GET /v1/models`` and ``GET /v1/models/{model}``: the models a caller may ask for.

OpenAI's format by default; Anthropic's (paged, with ``display_name`` and ``created_at``) for a
client that sends ``anthropic-version``, as Anthropic's SDKs always do. The caller's key is
checked as on the chat endpoints, and a key whose scopes name models sees only those.

The list holds ``podium/auto``, every serving worker that answers (not checkers), its aliases,
the configured aliases, and what plugins add to ``Podium.model_sources`` (the contracts plugin
adds ``contract/NAME`` for each contract).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from podium.api.anthropic import AnthropicIngress
from podium.api.http import Request, Response
from podium.api.openai import OpenAIIngress
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.policy.keys import scope_allows
from podium.routing.direct import VIRTUAL_MODELS
from podium.types import JSONObject

if TYPE_CHECKING:
    from podium.app import Podium

# Podium knows no release dates; Anthropic's format requires one.
EPOCH = "1970-01-01T00:00:00Z"
ANTHROPIC_PAGE = 20  # Anthropic's default page size
ANTHROPIC_MAX_PAGE = 1000


class ListedModel(NamedTuple):
    id: str
    owned_by: str


ModelSource = Callable[[], list[ListedModel]]


def catalogue(podium: Podium) -> list[ListedModel]:
    """Every model name a request may give, first listing of each name kept."""
    listed = [ListedModel(name, "podium") for name in VIRTUAL_MODELS]
    for worker in podium.pool.serving():
        if worker.config.role == "check":
            continue  # nobody can ask it for an answer
        vendor = worker.config.profile.vendor
        listed.append(ListedModel(worker.name, vendor))
        listed.extend(ListedModel(alias, vendor) for alias in worker.config.aliases)
    listed.extend(ListedModel(alias, "podium") for alias in podium.config.aliases)
    for source in podium.model_sources:
        listed.extend(source())
    seen: dict[str, ListedModel] = {}
    for model in listed:
        seen.setdefault(model.id, model)
    return list(seen.values())


def openai_model(model: ListedModel) -> JSONObject:
    return {"id": model.id, "object": "model", "created": 0, "owned_by": model.owned_by}


def anthropic_model(model: ListedModel) -> JSONObject:
    return {"type": "model", "id": model.id, "display_name": model.id, "created_at": EPOCH}


def anthropic_page(models: list[ListedModel], query: dict[str, str]) -> JSONObject:
    """One page of Anthropic's list: ``limit`` models after ``after_id`` or before
    ``before_id``."""
    raw_limit = query.get("limit", str(ANTHROPIC_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= ANTHROPIC_MAX_PAGE:
        raise PodiumError(
            "invalid_request",
            f"limit: Input should be between 1 and {ANTHROPIC_MAX_PAGE}",
            param="limit",
        )
    limit = int(raw_limit)
    ids = [model.id for model in models]
    start, end = 0, len(models)
    for name in ("after_id", "before_id"):
        if name in query and query[name] not in ids:
            raise PodiumError("invalid_request", f"{name}: no model {query[name]!r}", param=name)
    if "before_id" in query:
        end = ids.index(query["before_id"])
        start = max(0, end - limit)
    elif "after_id" in query:
        start = ids.index(query["after_id"]) + 1
        end = min(len(models), start + limit)
    else:
        end = min(len(models), limit)
    page = models[start:end]
    more = start > 0 if "before_id" in query else end < len(models)
    return {
        "data": [anthropic_model(model) for model in page],
        "has_more": more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }


def register_app(podium: Podium) -> None:
    openai, anthropic = OpenAIIngress(), AnthropicIngress()

    async def visible(http: Request, ingress: str) -> list[ListedModel]:
        context = RequestContext(ingress, http.headers)
        await podium.gateway.authenticate(context)
        scopes = context.caller.scopes
        return [model for model in catalogue(podium) if scope_allows(scopes, "model", model.id)]

    async def listing(http: Request) -> Response:
        if "anthropic-version" in http.headers:
            try:
                models = await visible(http, anthropic.name)
                return Response.json(anthropic_page(models, http.query))
            except PodiumError as error:
                return anthropic.render_error(error)
        models = await visible(http, openai.name)
        return Response.json({"object": "list", "data": [openai_model(m) for m in models]})

    async def one(http: Request) -> Response:
        wanted = http.params["model"]
        as_anthropic = "anthropic-version" in http.headers
        try:
            models = await visible(http, anthropic.name if as_anthropic else openai.name)
            found = next((model for model in models if model.id == wanted), None)
            if found is None:
                raise PodiumError(
                    "not_found",
                    f"The model {wanted!r} does not exist or you do not have access to it.",
                    param="model",
                    code="model_not_found",
                )
        except PodiumError as error:
            return (anthropic if as_anthropic else openai).render_error(error)
        body = anthropic_model(found) if as_anthropic else openai_model(found)
        return Response.json(body)

    podium.app.route("GET", "/v1/models", listing, openai)
    podium.app.route("GET", "/v1/models/{model}", one, openai)

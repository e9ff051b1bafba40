"""Contract calls over HTTP: ``POST /v1/contracts/{name}``, ``GET /v1/contracts``, and
``model: "contract/NAME"`` (or ``contract/NAME@VERSION``) on the OpenAI Chat Completions API.

Listed in podium.plugins.BUILTIN_PLUGINS. Contracts load when the app is built: a contract file
that cannot be used stops start-up with the file and the reason.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from podium.api.anthropic import AnthropicIngress
from podium.api.http import (
    AnyResponse,
    Handler,
    PlainErrors,
    Request,
    Response,
    StreamResponse,
)
from podium.api.ingress import Ingress, refuse_provider_fields
from podium.api.models import ListedModel
from podium.api.openai import OpenAIIngress
from podium.api.responses import ResponsesIngress
from podium.batches.endpoints import ContextFactory, batch_endpoints
from podium.config import ConfigError
from podium.context import RequestContext, new_trace_id
from podium.contracts.hints import Hint, HintError, resolve_hint
from podium.contracts.loader import ContractError, ContractSet, load_contracts
from podium.contracts.model import Contract, RoutingHint
from podium.contracts.runner import ContractCallError, ContractResult, ContractRunner
from podium.contracts.shadow import ShadowRunner
from podium.contracts.stats import CallLog, contract_stats
from podium.errors import PodiumError
from podium.executor import replay
from podium.gateway import Outcome, total_usage
from podium.routing.chain import describe_decision
from podium.routing.config import RuleConfig
from podium.types import ChatResponse

if TYPE_CHECKING:
    from podium.app import Podium

EXTENSION_KEY = "contracts"
PREFIX = "contract/"
MAX_INPUT_BYTES = 1024 * 1024


class ContractErrors(PlainErrors):
    """Podium's error shape, plus the attempts of a call that found no valid output."""

    def render_error(self, error: PodiumError) -> Response:
        response = super().render_error(error)
        if isinstance(error, ContractCallError):
            body = orjson.loads(response.body)
            body["error"]["attempts"] = error.attempts
            response.body = orjson.dumps(body)
        return response


def runner_of(podium: Podium) -> ContractRunner | None:
    found = podium.extras.get(EXTENSION_KEY)
    return found if isinstance(found, ContractRunner) else None


def _headers(result: ContractResult) -> dict[str, str]:
    return {
        **result.headers,
        "x-podium-trace-id": result.trace_id,
        "x-podium-worker": result.worker,
        "x-podium-cost-usd": f"{result.cost_usd:.8f}",
        "x-podium-contract-version": result.version,
        "x-podium-attempts": str(result.attempts),
    }


def describe(contract: Contract, runner: ContractRunner) -> dict[str, Any]:
    contracts = runner.contracts
    return {
        "name": contract.name,
        "version": contract.version,
        "versions": contracts.versions(contract.name),
        "current": contracts.current_version(contract.name),
        "shadow": contracts.shadow.get(contract.name),
        "description": contract.description,
        "input_schema": contract.input_schema,
        "output_schema": contract.output_schema,
        "evaluator": contract.evaluator.kind,
        "examples": len(contract.examples),
    }


def input_from_chat(contract: Contract, text: str) -> Any:
    """The contract input a chat message carries: the whole text for a contract whose input is
    one string field, otherwise the text parsed as a JSON object."""
    field = contract.string_field()
    if field is not None:
        return {field: text}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise PodiumError(
            "unprocessable",
            f"contract {contract.key} takes its input as a JSON object in the last user "
            "message; that message is not JSON",
            param="messages",
            code="contract_input_invalid",
        ) from None


def _split(model: str) -> tuple[str, str | None]:
    name, _, version = model.removeprefix(PREFIX).partition("@")
    return name, version or None


def _check_rules(podium: Podium, contracts: ContractSet) -> None:
    """A rule that matches contract calls must name contracts that exist: a typo there would
    never match, and the calls it meant would be routed by the rest of the chain."""
    if podium.config.contracts.dir is None:
        return  # contracts are off: no call can match, whatever the rule names
    routing = podium.config.routing
    rules = [*routing.rules]
    for section in routing.routers.values():
        if section.get("type") == "rules":
            rules += [RuleConfig.model_validate(rule) for rule in section.get("rules", [])]
    known = set(contracts.names())
    for rule in rules:
        for name in rule.match.contract or []:
            if name not in known:
                raise ConfigError(
                    f"routing: rule {rule.name!r} matches contract {name!r}, which is not "
                    f"loaded (contracts: {', '.join(sorted(known)) or 'none'})"
                )


def _hints(podium: Podium, contracts: ContractSet) -> dict[str, Hint]:
    """Every contract version's routing hint, resolved now: one that names nothing stops
    Podium from starting."""
    hints: dict[str, Hint] = {}
    for name in contracts.names():
        for version in contracts.versions(name):
            contract = contracts.by_name[name][version]
            if contract.policy.routing == RoutingHint():
                continue
            if podium.routing is None:
                raise ConfigError(f"contract {contract.key}: policy.routing needs a router chain")
            try:
                hint = resolve_hint(contract, podium.routing, podium.gateway)
            except HintError as error:
                raise ConfigError(str(error)) from None
            if hint is not None:
                hints[contract.key] = hint
    return hints


def register_app(podium: Podium) -> None:
    from podium.api.admin import admin_route

    config = podium.config
    try:
        contracts = load_contracts(config.contracts, config.resolved_data_dir())
    except ContractError as error:
        raise ConfigError(str(error)) from None
    classes = podium.extras.get("data_classes")
    for name in contracts.names():
        for version in contracts.versions(name):
            declared = contracts.by_name[name][version].policy.data_class
            if declared is not None and classes is not None:
                try:
                    classes.check(declared, where=f"contract {name}@{version} policy.data_class")
                except PodiumError as error:
                    raise ConfigError(f"contracts: {error.message}") from None
    _check_rules(podium, contracts)
    runner = ContractRunner(podium, contracts, _hints(podium, contracts))
    podium.extras[EXTENSION_KEY] = runner
    calls = CallLog(podium.store)  # type: ignore[arg-type]
    shadow = ShadowRunner(runner, calls, config.contracts.shadow)
    runner.listeners += [calls.listen, shadow.listen]
    podium.extras["contracts.shadow"] = shadow
    errors = ContractErrors()
    limit = min(config.server.max_body_bytes, MAX_INPUT_BYTES * 8)

    async def call(http: Request) -> Response:
        body = await http.json(limit)
        if not isinstance(body, dict):
            raise PodiumError("invalid_request", "request body must be a JSON object")
        refuse_provider_fields(body, http.headers)
        unknown = sorted(set(body) - {"input", "version"})
        if unknown:
            raise PodiumError(
                "invalid_request",
                f"unknown field {unknown[0]!r}; a contract call takes input and version",
                param=unknown[0],
            )
        if "input" not in body:
            raise PodiumError("invalid_request", "input is required", param="input")
        version = body.get("version")
        if version is not None and not isinstance(version, str | int):
            raise PodiumError("invalid_request", "version must be a string", param="version")
        trace_id = new_trace_id()
        try:
            result = await runner.call(
                http.params["name"],
                body["input"],
                version=str(version) if version is not None else None,
                headers=http.headers,
                trace_id=trace_id,
            )
        except PodiumError as error:
            response = errors.render_error(error)
            data = orjson.loads(response.body)
            data["error"]["trace_id"] = trace_id
            response.body = orjson.dumps(data)
            response.headers["x-podium-trace-id"] = trace_id
            return response
        return Response.json(result.body(), headers=_headers(result))

    async def listing(_: Request) -> Response:
        data = [describe(c, runner) for n in contracts.names() if (c := contracts.get(n))]
        return Response.json({"object": "list", "data": data})

    async def show(http: Request) -> Response:
        return Response.json(describe(runner.contract(http.params["name"]), runner))

    async def stats(http: Request) -> Response:
        query = http.query
        try:
            since = float(query.get("since", "0"))
        except ValueError:
            raise PodiumError("invalid_request", "since must be a number", param="since") from None
        rows = await contract_stats(
            podium.store,  # type: ignore[arg-type]
            contract=query.get("contract"),
            since=since,
        )
        return Response.json({"object": "list", "data": rows})

    podium.app.route("POST", "/v1/contracts/{name}", call, errors)
    podium.app.route("GET", "/v1/contracts", listing, errors)
    podium.app.route("GET", "/v1/contracts/{name}", show, errors)
    admin_route(podium, "GET", "/admin/contracts/stats", stats)
    if len(contracts):
        _wrap_chat(podium, runner, "/v1/chat/completions", OpenAIIngress())
        _wrap_chat(podium, runner, "/v1/messages", AnthropicIngress(podium.gateway.pool))
        _wrap_chat(podium, runner, "/v1/responses", ResponsesIngress())
        _wrap_route(podium, runner)
        podium.model_sources.append(
            lambda: [
                ListedModel(f"{PREFIX}{name}", "podium-contract") for name in contracts.names()
            ]
        )

    async def startup() -> None:
        async def shutdown() -> None:  # runs before the store closes (see observe/plugin.py)
            await shadow.drain()
            await calls.drain()

        podium.app.on_shutdown.append(shutdown)

    podium.app.on_startup.append(startup)


async def _contract_call(http: Request, limit: int) -> tuple[dict[str, Any], str] | None:
    """The body and model of a request for ``contract/NAME``, else None. The body is kept by
    the request, so another handler can read it again; a byte scan first keeps ordinary chat
    requests from being parsed twice."""
    if b'"contract/' not in await http.body(limit):
        return None
    body = await http.json(limit)
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(model, str) or not model.startswith(PREFIX):
        return None
    refuse_provider_fields(body, http.headers)
    return body, model


def _wrap_chat(podium: Podium, runner: ContractRunner, path: str, ingress: Ingress) -> None:
    """``model: "contract/NAME"`` on a chat endpoint (OpenAI's or Anthropic's) runs the
    contract and answers in that endpoint's format; any other model goes to the handler that
    was there. The same for the endpoint's requests in batches (podium/batches/endpoints.py),
    run under the key that created the batch."""
    inner = podium.app.handler("POST", path)
    if inner is None:
        return
    limit = podium.config.server.max_body_bytes
    podium.app.route("POST", path, _contract_chat(inner, runner, ingress, limit), ingress)
    batch_endpoints(podium).wrap(
        path,
        lambda handler, contexts: _contract_chat(handler, runner, ingress, limit, contexts),
    )


def _contract_chat(
    inner: Handler,
    runner: ContractRunner,
    ingress: Ingress,
    limit: int,
    contexts: ContextFactory | None = None,
) -> Handler:
    async def handle(http: Request) -> AnyResponse:
        called = await _contract_call(http, limit)
        if called is None:
            return await inner(http)
        body, model = called
        request = ingress.parse(body, http.headers)
        name, version = _split(model)
        trace_id = new_trace_id()
        # A batch's request carries no key: it runs under the batch's, in the background.
        delegated = contexts(ingress.name, http.headers) if contexts else None
        try:
            contract = runner.contract(name, version)
            data = input_from_chat(contract, request.last_user_text())
            result = await runner.call(
                name,
                data,
                version=version,
                headers=http.headers,
                ingress=ingress.name,
                trace_id=trace_id,
                on_behalf_of=None if delegated is None else delegated.on_behalf_of,
                priority="interactive" if delegated is None else delegated.priority,
            )
        except PodiumError as error:
            response = ingress.render_error(error)
            response.headers["x-podium-trace-id"] = trace_id
            return response
        text = orjson.dumps(result.output).decode()
        answer = ChatResponse(
            id=result.trace_id,
            model=model,
            text=text,
            usage=total_usage(result.run.attempts),
            finish_reason="stop",
        )
        outcome = Outcome(decision=result.decision, run=result.run, worker=result.worker)
        if not request.stream:
            return Response(
                ingress.encode_response(answer, request, outcome), 200, _headers(result)
            )
        context = RequestContext(
            ingress=ingress.name, headers=http.headers, trace_id=result.trace_id
        )
        events: AsyncIterator[Any] = replay(answer)
        outcome.stream = events
        return StreamResponse(
            ingress.encode_stream(events, request, outcome, context), 200, _headers(result)
        )

    return handle


def _wrap_route(podium: Podium, runner: ContractRunner) -> None:
    """``model: "contract/NAME"`` on ``POST /v1/route``: the decision a call with that chat
    body would get (admission, the contract's policy, its routing hint), without running it."""
    path = "/v1/route"
    inner = podium.app.handler("POST", path)
    if inner is None:
        return
    ingress = OpenAIIngress()
    limit = podium.config.server.max_body_bytes

    async def handle(http: Request) -> AnyResponse:
        started = time.perf_counter()
        called = await _contract_call(http, limit)
        if called is None:
            return await inner(http)
        body, model = called
        request = ingress.parse({**body, "stream": False}, http.headers)
        name, version = _split(model)
        contract = runner.contract(name, version)
        data = input_from_chat(contract, request.last_user_text())
        contract, plan, context = await runner.explain(
            name, data, version=version, headers=http.headers
        )
        decision = plan.decision
        payload: dict[str, Any] = {
            "object": "podium.route",
            "model": model,
            "contract": contract.key,
            "trace_id": context.trace_id,
            "data_class": context.data_class,
            "eligible": [worker.name for worker in plan.pool.workers],
            "excluded": plan.pool.excluded,
            "decision": describe_decision(decision),
            "planned_cost_usd": round(plan.cost(contract), 8),
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 3),
        }
        return Response.json(payload, headers={"x-podium-route": decision.route})

    podium.app.route("POST", path, handle, ingress)

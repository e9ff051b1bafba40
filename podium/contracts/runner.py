"""The call path of a contract, built on the gateway's own path.

validate the input (nothing spent yet) -> admit (keys, scopes incl. ``contract:``, declared
data class, PII, limits) -> eligible workers (clearance), narrowed by the contract's policy
(vendors, regions, quality floor, cost per attempt) -> route (the contract's hint, else the
router chain) -> decided hooks (budgets, cost ceiling) -> attempts: answer, one repair on the
same worker with the validation error, then escalation to stronger eligible workers, each
output validated against the output schema -> one trace with every attempt.

A contract never returns output that fails its schema: when the attempts run out the caller
gets ``contract_output_invalid`` (502) listing them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from podium.config import WorkerConfig
from podium.context import Priority, RequestContext
from podium.contracts.evaluate import Verdict, evaluate
from podium.contracts.hints import Hint
from podium.contracts.loader import ContractSet
from podium.contracts.migrations import PASS_SIGNAL
from podium.contracts.model import Contract
from podium.contracts.schemas import Checker, parse_output, render
from podium.engine import Attempt
from podium.errors import PodiumError
from podium.executor import VERDICT_FORMAT, Run
from podium.gateway import enforce_clearance, total_cost
from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.targets import Skip
from podium.types import ChatRequest, ChatResponse, Message, ResponseFormat, TextPart
from podium.workers import estimate_tokens, price_tokens
from podium.workflow import Step, Workflow, WorkflowError

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.contracts")

ROUTE_MODEL = "podium/auto"  # what the router chain sees: the contract names no model
SYSTEM = (
    "You carry out one well-defined task. Reply with a single JSON value that matches this "
    "JSON Schema, and nothing else:\n{schema}"
)
REPAIR = (
    "Your previous answer was rejected: {problems}. Reply again with only JSON that matches "
    "the schema."
)


class ContractCallError(PodiumError):
    """A contract call that ended without a valid output; ``attempts`` says what each try did."""

    def __init__(
        self, message: str, attempts: list[dict[str, Any]], decision: Decision | None = None
    ) -> None:
        super().__init__("upstream", message, status=502, code="contract_output_invalid")
        self.attempts = attempts
        self.decision = decision


@dataclass(slots=True)
class ContractResult:
    output: Any
    trace_id: str
    cost_usd: float
    worker: str
    attempts: int
    contract: str
    version: str
    latency_ms: float
    response: ChatResponse
    decision: Decision
    run: Run
    verdict: Verdict | None = None
    # Headers a layer on the path added (rate limits, budget left), for the caller's answer.
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "trace_id": self.trace_id,
            "cost_usd": self.cost_usd,
            "worker": self.worker,
            "attempts": self.attempts,
            "contract": self.contract,
            "version": self.version,
        }


@dataclass(slots=True)
class CallEvent:
    """One finished contract call, for listeners: ``result`` is None when it failed."""

    contract: Contract
    result: ContractResult | None
    context: RequestContext
    mode: str  # live | shadow | test
    input: Any
    error: PodiumError | None = None


@dataclass(slots=True)
class Eligibility:
    workers: list[WorkerConfig]
    excluded: dict[str, str] = field(default_factory=dict)  # worker -> why
    quality: dict[str, float] = field(default_factory=dict)  # predicted or prior quality


@dataclass(slots=True)
class Plan:
    """A call's routing, decided and not yet run."""

    request: ChatRequest  # as the routers saw it (model ``podium/auto``)
    pool: Eligibility
    decision: Decision

    def cost(self, contract: Contract) -> float:
        """The most the decided steps may cost, one attempt each."""
        prompt_tokens = estimate_tokens(self.request.prompt_text())
        by_name = {w.name: w for w in self.pool.workers}
        return sum(
            attempt_cost(by_name[s.worker], prompt_tokens, contract)
            for s in self.decision.workflow.steps
            if s.worker in by_name
        )


def attempt_cost(worker: WorkerConfig, prompt_tokens: int, contract: Contract) -> float:
    """The most one attempt may cost: the prompt and a full-length answer."""
    out = contract.policy.max_output_tokens
    if worker.max_output_tokens is not None:
        out = min(out, worker.max_output_tokens)
    return price_tokens(worker.price, prompt_tokens, out)


def build_request(contract: Contract, data: dict[str, Any], model: str) -> ChatRequest:
    schema = orjson.dumps(contract.output_schema).decode()
    return ChatRequest(
        model=model,
        messages=[
            Message(role="system", content=[TextPart(SYSTEM.format(schema=schema))]),
            Message(role="user", content=[TextPart(render(contract.instructions, data))]),
        ],
        response_format=ResponseFormat(
            type="json_schema",
            schema=contract.output_schema,
            name=contract.name.replace(".", "_")[:64],
            strict=True,
        ),
        temperature=contract.policy.temperature,
        max_tokens=contract.policy.max_output_tokens,
        metadata={"contract": contract.name, "contract_version": contract.version},
    )


def repair_request(request: ChatRequest, answer: str, problems: list[str]) -> ChatRequest:
    messages = [
        *request.messages,
        Message(role="assistant", content=[TextPart(answer[:4000])]),
        Message(role="user", content=[TextPart(REPAIR.format(problems="; ".join(problems)))]),
    ]
    return replace(request, messages=messages)


class ContractRunner:
    def __init__(
        self, podium: Podium, contracts: ContractSet, hints: Mapping[str, Hint] | None = None
    ) -> None:
        self.podium = podium
        self.contracts = contracts
        self.hints = hints or {}  # by contract key; see podium/contracts/hints.py
        self.checkers: dict[str, tuple[Checker, Checker]] = {}
        # Called after every finished call (statistics, shadow runs): they must not block.
        self.listeners: list[Callable[[CallEvent], None]] = []

    # -- lookups ---------------------------------------------------------------------------------

    def contract(self, name: str, version: str | None = None) -> Contract:
        found = self.contracts.get(name, version)
        if found is None:
            if name in self.contracts.by_name and version is not None:
                raise PodiumError(
                    "not_found",
                    f"contract {name!r} has no version {version!r} (versions: "
                    f"{', '.join(self.contracts.versions(name))})",
                    param="version",
                    code="contract_version_not_found",
                )
            raise PodiumError("not_found", f"no contract named {name!r}", code="contract_not_found")
        return found

    def _checkers(self, contract: Contract) -> tuple[Checker, Checker]:
        found = self.checkers.get(contract.key)
        if found is None:
            found = (Checker(contract.input_schema), Checker(contract.output_schema))
            self.checkers[contract.key] = found
        return found

    # -- policy ----------------------------------------------------------------------------------

    def _quality(self, request: ChatRequest, workers: list[WorkerConfig]) -> dict[str, float]:
        """The learned router's predicted quality per worker when one is loaded, else each
        worker's configured prior."""
        quality = {w.name: w.quality_prior for w in workers if w.quality_prior is not None}
        routing = self.podium.routing
        if routing is None:
            return quality
        from podium.routing.learned_router import LearnedRouter

        for router in routing.every_router():
            if isinstance(router, LearnedRouter):
                try:
                    estimates, _ = router.scorer.estimates(request, workers)
                except Exception:  # no artifact promoted, or it cannot load: priors only
                    continue
                for estimate in estimates:
                    if estimate.known or estimate.worker.name not in quality:
                        quality[estimate.worker.name] = estimate.quality
                break
        return quality

    def eligibility(
        self, contract: Contract, request: ChatRequest, workers: list[WorkerConfig]
    ) -> Eligibility:
        policy = contract.policy
        quality = self._quality(request, workers)
        prompt_tokens = estimate_tokens(request.prompt_text())
        kept: list[WorkerConfig] = []
        excluded: dict[str, str] = {}
        for worker in workers:
            profile = worker.profile
            estimate = attempt_cost(worker, prompt_tokens, contract)
            predicted = quality.get(worker.name)
            if worker.role == "check":
                excluded[worker.name] = "it only checks drafts (role: check)"
            elif policy.vendors is not None and profile.vendor not in policy.vendors:
                excluded[worker.name] = f"vendor {profile.vendor!r} is not allowed"
            elif policy.regions is not None and profile.region not in policy.regions:
                excluded[worker.name] = f"region {profile.region!r} is not allowed"
            elif (
                policy.quality_floor is not None
                and predicted is not None
                and predicted < policy.quality_floor
            ):
                excluded[worker.name] = (
                    f"predicted quality {predicted:.2f} is below the floor {policy.quality_floor}"
                )
            elif policy.max_cost_usd is not None and estimate > policy.max_cost_usd:
                excluded[worker.name] = (
                    f"one attempt may cost ${estimate:.6f}, above the maximum "
                    f"${policy.max_cost_usd}"
                )
            else:
                kept.append(worker)
        return Eligibility(kept, excluded, quality)

    def strength(self, worker: WorkerConfig, quality: Mapping[str, float]) -> tuple[float, float]:
        """Higher is stronger: predicted quality (or prior), then price as a proxy."""
        price = worker.price.input + worker.price.output
        return quality.get(worker.name, -1.0), price

    # -- routing ---------------------------------------------------------------------------------

    async def _route(
        self,
        contract: Contract,
        request: ChatRequest,
        context: RequestContext,
        pool: Eligibility,
    ) -> Decision:
        gateway = self.podium.gateway
        hint = self.hints.get(contract.key)
        if hint is None:
            return await gateway.route(request, context, list(pool.workers))
        weakest_first = [
            w.name for w in sorted(pool.workers, key=lambda w: self.strength(w, pool.quality))
        ]
        route_context = RouteContext(
            caller=context.caller,
            eligible=pool.workers,
            headers=context.headers,
            data_class=context.data_class,
            contract=context.contract,
            budget_usd=context.budget_usd,
            session_id=context.session_id,
        )
        outcome = await hint.decide(request, route_context, weakest_first)
        if isinstance(outcome, Decision):
            try:  # as the chain checks every router's plan
                outcome.workflow.validate(
                    route_context.eligible_names(), route_context.checker_names()
                )
            except WorkflowError as error:
                outcome = Skip(f"it planned an invalid workflow: {error}")
            else:
                return outcome
        decision = await gateway.route(request, context, list(pool.workers))
        decision.reason = (
            f"contract {contract.key}: {hint.label} passed over ({outcome.reason}); "
            f"{decision.reason}"
        )
        return decision

    # -- the call --------------------------------------------------------------------------------

    async def call(
        self,
        name: str,
        data: Any,
        *,
        version: str | None = None,
        headers: dict[str, str] | None = None,
        ingress: str = "contract",
        workers: list[str] | None = None,
        mode: str = "live",
        trace_id: str | None = None,
        notify: bool = True,
        on_behalf_of: str | None = None,
        priority: Priority = "interactive",
    ) -> ContractResult:
        """``on_behalf_of``: the key a call without one of its own runs under (a batch's);
        ``priority``, who waits for it (:attr:`RequestContext.priority`)."""
        context = RequestContext(ingress=ingress, headers=dict(headers or {}), contract=name)
        context.on_behalf_of = on_behalf_of
        context.priority = priority
        if trace_id is not None:
            context.trace_id = trace_id
        request = ChatRequest(model=f"contract/{name}", messages=[])
        contract: Contract | None = None
        decision: Decision | None = None
        run = Run()
        try:
            contract = self.contract(name, version)
            request = self._prepare(contract, data, context)
            request = await self.podium.gateway.admit(request, context)
            run.priority = context.priority
            result = await self._attempts(contract, data, request, context, run, workers)
            decision = result.decision
        except PodiumError as error:
            if isinstance(error, ContractCallError):
                decision = error.decision
            self.podium.gateway.record(
                request, decision, run, context, status=error.status, error=error
            )
            if contract is not None and notify:
                self._notify(contract, None, context, mode, data, error)
            raise
        self.podium.gateway.record(
            request, decision, run, context, status=200, response=result.response
        )
        result.latency_ms = context.elapsed_ms()
        if not contract.evaluator.needs_reference and contract.evaluator.kind != "judge":
            result.verdict = await evaluate(contract, result.output, input=data)
            self.record_signal(result.trace_id, result.verdict)
        if notify:
            self._notify(contract, result, context, mode, data)
        return result

    def _notify(
        self,
        contract: Contract,
        result: ContractResult | None,
        context: RequestContext,
        mode: str,
        data: Any,
        error: PodiumError | None = None,
    ) -> None:
        event = CallEvent(contract, result, context, mode, data, error)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a contract listener failed")

    def record_signal(self, trace_id: str, verdict: Verdict) -> None:
        """The evaluator's verdict as a quality signal on the trace (the learned router's
        ``train --from-traces`` reads these)."""
        if verdict.passed is None:
            return
        from podium.observe.feedback import record

        record(
            self.podium,
            trace_id,
            PASS_SIGNAL,
            verdict.score if verdict.score is not None else verdict.passed,
            source="contract",
            comment=verdict.detail[:200],
        )

    def _prepare(self, contract: Contract, data: Any, context: RequestContext) -> ChatRequest:
        if not isinstance(data, dict):
            raise PodiumError(
                "unprocessable",
                f"contract {contract.key}: input must be a JSON object",
                param="input",
                code="contract_input_invalid",
            )
        problems = self._checkers(contract)[0].problems(data)
        if problems:
            path = problems[0].split(":", 1)[0]
            raise PodiumError(
                "unprocessable",
                f"input does not match contract {contract.key}'s input schema: "
                + "; ".join(problems),
                param=f"input{path[1:]}" if path != "$" else "input",
                code="contract_input_invalid",
            )
        if contract.policy.data_class:
            classes = self.podium.extras.get("data_classes")
            declare = getattr(classes, "declare", None)
            if declare is not None:
                declare(context, contract.policy.data_class, where=f"contract {contract.key}")
            else:
                context.data_class = contract.policy.data_class
        request = build_request(contract, data, f"contract/{contract.name}")
        # The preamble is Podium's text and the contract's schema: "JSON Schema" read as a
        # street address once made every contract call confidential.
        context.operator_texts = frozenset({request.messages[0].text()})
        return request

    async def explain(
        self,
        name: str,
        data: Any,
        *,
        version: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Contract, Plan, RequestContext]:
        """What a call would do, admitted and routed as a call is; nothing is sent or spent."""
        context = RequestContext(ingress="route", headers=dict(headers or {}), contract=name)
        contract = self.contract(name, version)
        request = self._prepare(contract, data, context)
        request = await self.podium.gateway.admit(request, context)
        return contract, await self.plan(contract, request, context), context

    async def plan(
        self,
        contract: Contract,
        request: ChatRequest,
        context: RequestContext,
        forced: list[str] | None = None,
    ) -> Plan:
        """Who may answer a call that has been admitted, and the decision, without running
        it (``POST /v1/route`` shows this); raises when the policy leaves no worker."""
        eligible = self.podium.gateway.eligible(request, context)
        route_request = replace(request, model=ROUTE_MODEL)
        if forced:
            missing = [w for w in forced if w not in {e.name for e in eligible}]
            if missing:
                raise PodiumError(
                    "permission",
                    f"worker {missing[0]!r} is not eligible for contract {contract.key} "
                    f"(data class {context.data_class!r}, caller scopes, or draining)",
                    code="worker_not_eligible",
                )
            eligible = [e for e in eligible if e.name in forced]
        pool = self.eligibility(contract, route_request, eligible)
        if not pool.workers:
            why = "; ".join(f"{w}: {reason}" for w, reason in pool.excluded.items())
            raise PodiumError(
                "unprocessable",
                f"no worker can satisfy contract {contract.key}'s policy"
                + (f" ({why})" if why else " (no worker is eligible)")
                + "; nothing was sent to any model",
                code="contract_policy_unsatisfiable",
            )
        if forced:
            first = pool.workers[0].name
            decision = Decision(
                workflow=Workflow.single(first),
                router="contract",
                reason=f"contract {contract.key}: worker {first!r} chosen by the caller",
                candidates=[Candidate(worker=first, score=1.0)],
            )
        else:
            decision = await self._route(contract, route_request, context, pool)
        decision.workflow.fallbacks = []  # escalation is the fallback, attempt by attempt
        return Plan(route_request, pool, decision)

    async def _attempts(
        self,
        contract: Contract,
        data: dict[str, Any],
        request: ChatRequest,
        context: RequestContext,
        run: Run,
        forced: list[str] | None,
    ) -> ContractResult:
        gateway = self.podium.gateway
        policy = contract.policy
        planned = await self.plan(contract, request, context, forced)
        route_request, pool, decision = planned.request, planned.pool, planned.decision
        for hook in gateway.hooks:
            await hook.decided(route_request, decision, context)
        enforce_clearance(decision, pool.workers)
        by_name = {w.name: w for w in pool.workers}
        cost = planned.cost(contract)
        if policy.max_cost_usd is not None and cost > policy.max_cost_usd:
            raise PodiumError(
                "unprocessable",
                f"the routed plan for contract {contract.key} may cost ${cost:.6f}, above "
                f"its maximum of ${policy.max_cost_usd} per call; nothing was sent",
                code="contract_cost_exceeded",
            )
        checker = self._checkers(contract)[1]
        workflow = decision.workflow
        attempt_request = route_request
        role: str | None = None  # None: the decided workflow's own roles
        tried: list[str] = []
        repaired: set[str] = set()
        failures: list[dict[str, Any]] = []
        stop_reason = "the attempts allowed by the contract ran out"
        for number in range(policy.max_attempts):
            before = len(run.attempts)
            answered: ChatResponse | None = None
            problems: list[str] = []
            worker = workflow.steps[-1].worker
            started = time.perf_counter()
            try:
                async with asyncio.timeout(
                    policy.latency_ms / 1000 if policy.latency_ms is not None else None
                ):
                    answered = await self.podium.executor.complete(attempt_request, workflow, run)
                worker = run.outputs[-1].worker if run.outputs else worker
                parsed, unreadable = parse_output(answered.text)
                problems = [unreadable] if unreadable is not None else checker.problems(parsed)
                if context.pseudonyms:
                    answered, problems = self._restored(answered, context, checker, problems)
            except TimeoutError:
                problems = [f"took longer than the latency target of {policy.latency_ms:g} ms"]
                if len(run.attempts) == before:
                    run.attempts.append(
                        Attempt(
                            worker,
                            status="error",
                            error_kind="timeout",
                            latency_ms=(time.perf_counter() - started) * 1000,
                        )
                    )
            except PodiumError as error:
                problems = [f"{error.kind}: {error.message}"]
            for attempt in run.attempts[before:]:
                attempt.step = number
                if role is not None:
                    attempt.role = role
            last = run.attempts[-1] if len(run.attempts) > before else None
            if not problems and answered is not None:
                return self._success(contract, answered, context, decision, run, worker)
            if last is not None:
                if last.status == "ok":
                    last.status = "invalid"
                last.error = (last.error or problems[0])[:300]
            failures.append({"attempt": number + 1, "worker": worker, "problem": problems[0]})
            tried.append(worker)
            if number + 1 >= policy.max_attempts:
                break
            # Next: one repair on the same worker (it answered, just not to the schema), then
            # a stronger eligible worker that has not been tried.
            next_worker: str | None = None
            if answered is not None and worker not in repaired and worker in by_name:
                repaired.add(worker)
                next_worker, role = worker, "repair"
                attempt_request = repair_request(route_request, answered.text, problems)
            else:
                floor = self.strength(by_name[worker], pool.quality) if worker in by_name else None
                stronger = [
                    w
                    for w in sorted(pool.workers, key=lambda w: self.strength(w, pool.quality))
                    if w.name not in tried
                    and (floor is None or self.strength(w, pool.quality) >= floor)
                ]
                if not stronger:
                    stop_reason = "no stronger eligible worker was left to escalate to"
                    break
                next_worker, role = stronger[0].name, "escalate"
                attempt_request = route_request
            spent = total_cost(run.attempts)
            estimate = attempt_cost(
                by_name[next_worker], estimate_tokens(attempt_request.prompt_text()), contract
            )
            if policy.max_cost_usd is not None and spent + estimate > policy.max_cost_usd:
                stop_reason = (
                    f"the next attempt ({next_worker}, up to ${estimate:.6f}) would take the "
                    f"call past its maximum of ${policy.max_cost_usd}"
                )
                break
            step = Step(worker=next_worker, role=role, access="none")
            workflow = Workflow(steps=[step], template="contract")
        listed = "; ".join(f"#{f['attempt']} {f['worker']}: {f['problem']}" for f in failures)
        raise ContractCallError(
            f"contract {contract.key} produced no output that matches its schema after "
            f"{len(failures)} attempt(s); {stop_reason}. Attempts: {listed}",
            failures,
            decision,
        )

    def _restored(
        self,
        answered: ChatResponse,
        context: RequestContext,
        checker: Checker,
        problems: list[str],
    ) -> tuple[ChatResponse, list[str]]:
        """A pseudonymised call's answer judged as the caller will get it, its values back: a
        pattern or a length holds for the value, not its placeholder. When it passes, the
        restored answer; when it fails, the answer as the worker wrote it, and its problems.
        A problem the restored values alone have is said by its path, so no value goes back
        to the worker in a repair or into the trace."""
        restored = replace(answered)
        for hook in self.podium.gateway.hooks:
            restored = hook.transform_response(restored, context)
        value, unreadable = parse_output(restored.text)
        if unreadable is None:
            path = checker.first_path(value)
            if path is None:
                return restored, []
            why = f"{path}: breaks the output schema once its values are restored"
        else:
            why = "the output is not JSON once its values are restored"
        return answered, problems or [why]

    def _success(
        self,
        contract: Contract,
        answered: ChatResponse,
        context: RequestContext,
        decision: Decision,
        run: Run,
        worker: str,
    ) -> ContractResult:
        response = answered
        for hook in self.podium.gateway.hooks:
            response = hook.transform_response(response, context)  # pseudonyms restored here
        value, why = parse_output(response.text)
        if why is not None:
            value, _ = parse_output(answered.text)
        response.model = worker
        return ContractResult(
            output=value,
            trace_id=context.trace_id,
            cost_usd=total_cost(run.attempts),
            worker=worker,
            attempts=len({a.step for a in run.attempts if a.status != "skipped"}),
            contract=contract.name,
            version=contract.version,
            latency_ms=context.elapsed_ms(),
            response=response,
            decision=decision,
            run=run,
            headers=context.response_headers,
        )

    async def judge(
        self, contract: Contract, data: dict[str, Any], output: Any
    ) -> tuple[bool, str]:
        """A judge evaluator's verdict through its worker (constrained to accept/reject)."""
        worker = contract.evaluator.worker
        assert worker is not None
        judge = self.podium.pool.get(worker)
        classes = self.podium.extras.get("data_classes")
        declared = contract.policy.data_class
        if judge is None:
            return False, f"judge worker {worker!r} is not in the pool"
        if (
            declared
            and classes is not None
            and not classes.cleared(judge.config, declared, pseudonymised=False)
        ):
            return False, f"judge worker {worker!r} is not cleared for data class {declared!r}"
        criteria = contract.evaluator.criteria or "It does the task correctly and completely."
        prompt = (
            f"Task:\n{render(contract.instructions, data)}\n\nOutput:\n"
            f"{orjson.dumps(output).decode()}\n\nCriteria: {criteria}\n"
            'Reply {"verdict": "accept"} if the output meets the criteria, else '
            '{"verdict": "reject", "reason": "..."}.'
        )
        request = ChatRequest(
            model=worker,
            messages=[Message(role="user", content=[TextPart(prompt)])],
            response_format=VERDICT_FORMAT,
            temperature=0.0,
            max_tokens=128,
        )
        _, response = await self.podium.engine.complete(request, [worker], [])
        parsed, _ = parse_output(response.text)
        verdict = parsed.get("verdict") if isinstance(parsed, dict) else None
        reason = parsed.get("reason") if isinstance(parsed, dict) else None
        return verdict == "accept", str(reason or verdict or "unreadable verdict")[:200]

"""The Conductor socket: a planner worker writes the workflow.

The planner (any configured worker: a local Qwen2.5-Coder, or a remote Conductor-class model
behind an OpenAI-compatible API) gets the task and the eligible pool (names, prices,
capabilities, notes) and answers with a workflow in the Conductor format as JSON: up to five
steps, each a worker id, a subtask instruction and an access list (``"all"``, ``"none"`` or
the 0-based indexes of earlier steps). The request carries ``response_format: json_schema``,
so llama.cpp constrains decoding to the schema (worker ids are an enum of the eligible pool).

Podium parses and validates the plan (:meth:`Workflow.validate`); on invalid output, a
failed call or no engine to call, it falls back to another router (the learned router by
default) and says why in the decision's reason. The planner's call is recorded in the trace
as step ``plan`` of the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from podium.routing.base import Candidate, Decision, RouteContext, Router
from podium.routing.fit import cannot_take
from podium.types import ChatRequest, Message, ResponseFormat, TextPart
from podium.workflow import MAX_STEPS, Access, Step, Workflow, WorkflowError

if TYPE_CHECKING:
    from podium.engine import Engine

VIRTUAL_MODEL = "podium/auto"
MAX_TASK_CHARS = 4000
MAX_INSTRUCTION_CHARS = 2000

SYSTEM = (
    "You are the conductor of a team of language models. Given a task and the team, write a "
    "workflow of 1 to {max_steps} steps that answers the task well at a sensible cost. Each step "
    "names one worker from the team, gives it a subtask instruction, and an access list saying "
    'which earlier steps\' outputs it sees: "all", "none", or a list of 0-based step indexes '
    "smaller than its own. The last step's output is the answer the user sees. Prefer one "
    "step for easy tasks. Reply with JSON only."
)


class ConductorConfig(BaseModel):
    """``routing.routers.conductor`` in podium.yaml."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    planner: str | None = None  # the worker that plans; default: the default worker
    fallback: str = "learned"  # the router to ask when the plan is unusable
    max_tokens: int = Field(512, ge=32, le=8192)
    # Shorter plans cost a slow planner less: fewer steps and bounded instructions (the JSON
    # schema carries both, so constrained decoding cannot exceed them).
    max_steps: int = Field(MAX_STEPS, ge=1, le=MAX_STEPS)
    max_instruction_chars: int | None = Field(None, ge=0, le=MAX_INSTRUCTION_CHARS)
    temperature: float = Field(0.0, ge=0, le=2)
    notes: dict[str, str] = Field(default_factory=dict)  # worker -> what it is good at
    models: list[str] = Field(default_factory=lambda: [VIRTUAL_MODEL])


def plan_schema(
    workers: list[str], max_steps: int = MAX_STEPS, max_instruction_chars: int | None = None
) -> dict[str, Any]:
    instruction: dict[str, Any] = {"type": "string"}
    if max_instruction_chars is not None:
        instruction["maxLength"] = max_instruction_chars
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_steps,
                "items": {
                    "type": "object",
                    "properties": {
                        "worker": {"type": "string", "enum": workers},
                        "instruction": instruction,
                        "access": {
                            "anyOf": [
                                {"type": "string", "enum": ["all", "none"]},
                                {"type": "array", "items": {"type": "integer", "minimum": 0}},
                            ]
                        },
                    },
                    "required": ["worker", "instruction", "access"],
                },
            }
        },
        "required": ["steps"],
    }


def pool_description(context: RouteContext, notes: dict[str, str]) -> str:
    lines = []
    for worker in context.eligible:
        price = worker.price
        note = notes.get(worker.name) or ""
        lines.append(
            f"- {worker.name}: ${price.input:g} in / ${price.output:g} out per 1M tokens; "
            f"context {worker.context_window}; can: {', '.join(worker.capabilities)}"
            + (f"; {note}" if note else "")
        )
    return "\n".join(lines)


def planner_request(
    request: ChatRequest, context: RouteContext, config: ConductorConfig
) -> ChatRequest:
    task = request.last_user_text() or request.prompt_text()
    if len(task) > MAX_TASK_CHARS:
        task = task[:MAX_TASK_CHARS] + " [...]"
    prompt = f"Task:\n{task}\n\nTeam:\n{pool_description(context, config.notes)}"
    names = [worker.name for worker in context.eligible]
    return ChatRequest(
        model="podium/conductor",
        messages=[
            Message(role="system", content=[TextPart(SYSTEM.format(max_steps=config.max_steps))]),
            Message(role="user", content=[TextPart(prompt)]),
        ],
        response_format=ResponseFormat(
            type="json_schema",
            name="workflow",
            schema=plan_schema(names, config.max_steps, config.max_instruction_chars),
            strict=True,
        ),
        temperature=config.temperature,
        max_tokens=config.max_tokens,
    )


def refuse_steps_that_cannot_answer(
    workflow: Workflow, request: ChatRequest, context: RouteContext
) -> None:
    """Refuse a plan that gives a step to a worker that surely cannot answer the request (its
    images, its context window): the step would fail, so the plan is as invalid as one naming
    an ineligible worker."""
    configs = {worker.name: worker for worker in context.eligible}
    for index, step in enumerate(workflow.steps):
        why = cannot_take(request, configs[step.worker])
        if why is not None:
            raise WorkflowError(f"step {index}: {why}")


def _access(value: Any, index: int) -> Access:
    if value in ("all", "none"):
        return "all" if value == "all" else "none"
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return list(value)
    raise WorkflowError(f"step {index}: access must be 'all', 'none' or a list of step indexes")


def parse_plan(text: str, eligible: set[str]) -> Workflow:
    """The planner's JSON as a validated workflow; :class:`WorkflowError` says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        raise WorkflowError("the plan is not JSON") from None
    if isinstance(data, list):
        data = {"steps": data}
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise WorkflowError("the plan has no list of steps")
    raw_steps: list[Any] = data["steps"]
    if not 1 <= len(raw_steps) <= MAX_STEPS:
        raise WorkflowError(f"a workflow has 1 to {MAX_STEPS} steps, not {len(raw_steps)}")
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise WorkflowError(f"step {index} is not an object")
        worker, instruction = raw.get("worker"), raw.get("instruction", "")
        if not isinstance(worker, str) or not isinstance(instruction, str):
            raise WorkflowError(f"step {index}: worker and instruction must be strings")
        access = _access(raw.get("access", "all"), index)
        last = index == len(raw_steps) - 1
        role = "answer" if last else ("propose" if access == "none" else "solve")
        steps.append(Step(worker, instruction[:MAX_INSTRUCTION_CHARS], access, role))
    workflow = Workflow(steps=steps, template="conductor")
    workflow.validate(eligible)
    return workflow


class ConductorRouter:
    def __init__(
        self,
        config: ConductorConfig,
        fallback: Callable[[], Router | None],
        default_worker: str | None = None,
        name: str = "conductor",
    ) -> None:
        self.name = name
        self.config = config
        self._fallback = fallback
        self.default_worker = default_worker
        self.engine: Engine | None = None  # bound by the plugin once the gateway exists

    def bind(self, engine: Engine) -> None:
        self.engine = engine

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        if request.model not in self.config.models:
            return None
        eligible = context.eligible_names()
        planner = self.config.planner or self.default_worker
        attempts: list[Any] = []
        if self.engine is None:
            return await self.fall_back(request, context, "no engine to call the planner", attempts)
        if planner is None or planner not in eligible:
            why = f"the planner {planner!r} is not eligible for this request"
            return await self.fall_back(request, context, why, attempts)
        try:
            _, response = await self.engine.complete(
                planner_request(request, context, self.config),
                [planner],
                attempts,
                step=-1,
                role="plan",
            )
            workflow = parse_plan(response.text, eligible)
            refuse_steps_that_cannot_answer(workflow, request, context)
        except WorkflowError as error:
            return await self.fall_back(request, context, f"invalid plan: {error}", attempts)
        except Exception as error:  # the planner's failure must not fail the request
            why = f"the planner failed ({type(error).__name__})"
            return await self.fall_back(request, context, why, attempts)
        decision = Decision(
            workflow=workflow,
            router=self.name,
            reason=f"planned by {planner!r}: {len(workflow.steps)} step(s) over "
            f"{', '.join(dict.fromkeys(workflow.workers))}",
            candidates=[Candidate(w, 1.0) for w in dict.fromkeys(workflow.workers)],
        )
        decision.attempts = attempts
        return decision

    async def fall_back(
        self, request: ChatRequest, context: RouteContext, why: str, attempts: list[Any]
    ) -> Decision:
        fallback = None
        try:
            router = self._fallback()
            if router is not None:
                fallback = await router.plan(request, context)
        except Exception as error:
            why = f"{why}; fallback router failed ({type(error).__name__}: {error})"
        if fallback is not None:
            fallback.reason = f"conductor: {why}; {fallback.router}: {fallback.reason}"
            fallback.attempts = [*attempts, *fallback.attempts]
            return fallback
        names = [worker.name for worker in context.eligible]
        worker = self.default_worker if self.default_worker in names else names[0]
        decision = Decision(
            workflow=Workflow.single(worker, fallbacks=[n for n in names if n != worker]),
            router=self.name,
            reason=f"conductor: {why}; the default worker {worker!r} answers",
            candidates=[Candidate(worker, 0.0)],
        )
        decision.attempts = attempts
        return decision

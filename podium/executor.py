"""Running a routed workflow: every step but the last runs to completion, the last streams.

A step sees the original request plus, as context, the outputs of the earlier steps its access
list names, and its own subtask instruction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from podium.engine import Attempt, Engine, MeteredStream
from podium.types import ChatRequest, ChatResponse, Message, TextPart
from podium.workflow import Step, Workflow


@dataclass(slots=True)
class StepOutput:
    index: int
    worker: str
    role: str
    text: str


@dataclass(slots=True)
class Run:
    """What a workflow run produced so far: the trace reads it."""

    attempts: list[Attempt] = field(default_factory=list)
    outputs: list[StepOutput] = field(default_factory=list)


def _visible(step: Step, outputs: list[StepOutput]) -> list[StepOutput]:
    if step.access == "none":
        return []
    if step.access == "all":
        return list(outputs)
    wanted = set(step.access)
    return [output for output in outputs if output.index in wanted]


def step_request(request: ChatRequest, step: Step, outputs: list[StepOutput]) -> ChatRequest:
    """The request one step sends: the caller's conversation, then what the step may see and
    its subtask."""
    seen = _visible(step, outputs)
    if not seen and not step.instruction:
        return request
    notes: list[str] = []
    for output in seen:
        notes.append(f"[Step {output.index + 1} ({output.role}) output]\n{output.text}")
    if step.instruction:
        notes.append(f"[Your subtask]\n{step.instruction}")
    messages = [*request.messages, Message(role="user", content=[TextPart("\n\n".join(notes))])]
    return replace(request, messages=messages)


class WorkflowExecutor:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _run_steps(self, request: ChatRequest, workflow: Workflow, run: Run) -> None:
        """Every step before the last. Steps with the same access and no dependency on each
        other's outputs run in parallel (fan-out)."""
        steps = workflow.steps[:-1]
        index = 0
        while index < len(steps):
            group = [index]
            while (
                group[-1] + 1 < len(steps)
                and steps[group[-1] + 1].access == steps[index].access
                and steps[group[-1] + 1].role == steps[index].role
                and steps[index].role == "propose"
            ):
                group.append(group[-1] + 1)
            prior = list(run.outputs)

            async def one(i: int, prior: list[StepOutput] = prior) -> tuple[int, ChatResponse, str]:
                step = workflow.steps[i]
                worker, response = await self.engine.complete(
                    step_request(replace(request, stream=False), step, prior),
                    [step.worker],
                    run.attempts,
                    step=i,
                    role=step.role,
                )
                return i, response, worker.name

            results = await asyncio.gather(*(one(i) for i in group))
            for i, response, worker in sorted(results, key=lambda item: item[0]):
                run.outputs.append(StepOutput(i, worker, workflow.steps[i].role, response.text))
            index = group[-1] + 1

    def _last(
        self, request: ChatRequest, workflow: Workflow, run: Run
    ) -> tuple[ChatRequest, list[str]]:
        last = workflow.steps[-1]
        return step_request(request, last, run.outputs), [last.worker, *workflow.fallbacks]

    async def complete(self, request: ChatRequest, workflow: Workflow, run: Run) -> ChatResponse:
        await self._run_steps(request, workflow, run)
        final_request, workers = self._last(request, workflow, run)
        index = len(workflow.steps) - 1
        worker, response = await self.engine.complete(
            final_request, workers, run.attempts, step=index, role=workflow.steps[-1].role
        )
        run.outputs.append(StepOutput(index, worker.name, workflow.steps[-1].role, response.text))
        return response

    async def stream(self, request: ChatRequest, workflow: Workflow, run: Run) -> MeteredStream:
        await self._run_steps(request, workflow, run)
        final_request, workers = self._last(request, workflow, run)
        index = len(workflow.steps) - 1
        return await self.engine.stream(
            final_request, workers, run.attempts, step=index, role=workflow.steps[-1].role
        )

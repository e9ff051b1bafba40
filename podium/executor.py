"""Running a routed workflow: every step but the last runs to completion, the last streams.

A step sees the original request plus, as context, the outputs of the earlier steps its access
list names, and its own subtask instruction.

A ``check`` step judges the step it sees (the latest in its access list). When it accepts, and
that output is complete, the workflow ends there and that output is the answer: a cascade's
draft stands, or, in a cascade with repair, the stronger worker's answer does. When it
rejects, the next steps run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from podium.context import Priority, RequestContext
from podium.engine import Attempt, Engine, MeteredRelay, MeteredStream
from podium.types import (
    ChatRequest,
    ChatResponse,
    CitationDelta,
    EventStream,
    Finish,
    Message,
    ResponseFormat,
    TextDelta,
    TextPart,
    ToolCallDelta,
    Usage,
    UsageReport,
    passages,
)
from podium.workflow import Step, Workflow, output_note, subtask_note

# A cascade's check step answers in this shape (constrained decoding where the worker has it).
VERDICT_FORMAT = ResponseFormat(
    type="json_schema",
    name="verdict",
    strict=True,
    schema={
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["accept", "reject"]},
            "reason": {"type": "string"},
        },
        "required": ["verdict"],
    },
)
REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i cannot|i can'?t|i am unable|i'm unable|as an ai)\b", re.IGNORECASE
)
REPLAY_CHUNK = 48
PROGRAM_TOKENS = 320  # a program step's output budget, whatever the caller's answer allows


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
    responses: dict[int, ChatResponse] = field(default_factory=dict)  # steps before the last
    accepted: StepOutput | None = None  # the output a check accepted: the workflow's answer
    deadline: float | None = None  # perf_counter time an answer must start by (podium.deadline)
    priority: Priority = "interactive"  # the request's (RequestContext.priority)


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
    notes = [output_note(output.index, output.role, output.text) for output in seen]
    if step.instruction:
        notes.append(subtask_note(step.instruction))
    messages = [*request.messages, Message(role="user", content=[TextPart("\n\n".join(notes))])]
    return replace(request, messages=messages)


class Executor(Protocol):
    """What the gateway runs a routed workflow with: :class:`WorkflowExecutor`, or a wrapper
    around it (the response cache). ``context`` is the request's, for wrappers that act per
    caller; the plain executor needs none."""

    async def complete(
        self,
        request: ChatRequest,
        workflow: Workflow,
        run: Run,
        *,
        context: RequestContext | None = None,
    ) -> ChatResponse: ...

    async def stream(
        self,
        request: ChatRequest,
        workflow: Workflow,
        run: Run,
        *,
        relay: str | None = None,
        context: RequestContext | None = None,
    ) -> MeteredStream | MeteredRelay: ...


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
                sub = step_request(replace(request, stream=False), step, prior)
                if step.role == "check":
                    sub = replace(
                        sub,
                        response_format=VERDICT_FORMAT,
                        tools=[],
                        tool_choice=None,
                        temperature=0.0,
                        max_tokens=min(sub.max_tokens or 128, 128),
                    )
                elif step.role == "write":  # code, whatever form the caller's answer takes
                    sub = replace(
                        sub,
                        response_format=None,
                        tools=[],
                        tool_choice=None,
                        max_tokens=max(sub.max_tokens or 0, PROGRAM_TOKENS),
                    )
                worker, response = await self.engine.complete(
                    sub,
                    [step.worker],
                    run.attempts,
                    step=i,
                    role=step.role,
                    deadline=run.deadline,
                    priority=run.priority,
                )
                return i, response, worker.name

            results = await asyncio.gather(*(one(i) for i in group))
            for i, response, worker in sorted(results, key=lambda item: item[0]):
                output = StepOutput(i, worker, workflow.steps[i].role, response.text)
                run.outputs.append(output)
                run.responses[i] = response
                answer = _answer_from(workflow.steps[i], output, run.outputs)
                if answer is not None:
                    run.accepted = self._standing(answer, run)
                    if run.accepted is not None:
                        return  # that output is the answer: nothing after it runs
            index = group[-1] + 1

    def _last(
        self, request: ChatRequest, workflow: Workflow, run: Run
    ) -> tuple[ChatRequest, list[str]]:
        last = workflow.steps[-1]
        workers = [last.worker, *workflow.fallbacks]
        if not run.outputs and not last.instruction:
            return request, workers  # what step_request gives then, without its two calls
        return step_request(request, last, run.outputs), workers

    def _standing(self, checked: StepOutput, run: Run) -> StepOutput | None:
        """``checked`` when it can be the answer: complete, from a worker still in the pool."""
        response = run.responses.get(checked.index)
        if self.engine.pool.get(checked.worker) is None or response is None:
            return None
        return checked if draft_looks_complete(response) else None

    def _accept(self, workflow: Workflow, run: Run) -> StepOutput | None:
        """The answer a check accepted, if any. A cascade without a check (its steps: draft,
        escalate) keeps its draft when the draft looks complete."""
        if run.accepted is not None or workflow.steps[-1].role != "escalate":
            return run.accepted  # most requests: one step, nothing checked
        if len(run.outputs) == 1 and run.outputs[0].role == "draft":
            run.accepted = self._standing(run.outputs[0], run)
        return run.accepted

    async def complete(
        self,
        request: ChatRequest,
        workflow: Workflow,
        run: Run,
        *,
        context: RequestContext | None = None,
    ) -> ChatResponse:
        index = len(workflow.steps) - 1
        if index:  # a single step (most requests) has nothing to run before the last
            await self._run_steps(request, workflow, run)
        draft = self._accept(workflow, run)
        if draft is not None:
            run.attempts.append(Attempt(draft.worker, step=index, role="accept"))
            run.outputs.append(StepOutput(index, draft.worker, "accept", draft.text))
            return run.responses[draft.index]
        final_request, workers = self._last(request, workflow, run)
        worker, response = await self.engine.complete(
            final_request,
            workers,
            run.attempts,
            step=index,
            role=workflow.steps[-1].role,
            deadline=run.deadline,
            priority=run.priority,
        )
        run.outputs.append(StepOutput(index, worker.name, workflow.steps[-1].role, response.text))
        return response

    async def stream(
        self,
        request: ChatRequest,
        workflow: Workflow,
        run: Run,
        *,
        relay: str | None = None,
        context: RequestContext | None = None,
    ) -> MeteredStream | MeteredRelay:
        """The last step's stream, started. ``relay``: see :meth:`Engine.stream` (a cascade's
        accepted draft is replayed as events, never relayed)."""
        index = len(workflow.steps) - 1
        if index:
            await self._run_steps(request, workflow, run)
        draft = self._accept(workflow, run)
        if draft is not None:
            worker = self.engine.pool.get(draft.worker)
            if worker is not None:
                attempt = Attempt(draft.worker, step=index, role="accept", ttft_ms=0.0)
                run.attempts.append(attempt)
                run.outputs.append(StepOutput(index, draft.worker, "accept", draft.text))
                events = replay(run.responses[draft.index])
                first = await anext(events)
                return ReplayStream(worker, request, first, events, attempt, time.perf_counter())
        final_request, workers = self._last(request, workflow, run)
        return await self.engine.stream(
            final_request,
            workers,
            run.attempts,
            step=index,
            role=workflow.steps[-1].role,
            relay=relay,
            deadline=run.deadline,
            priority=run.priority,
        )


def _answer_from(step: Step, output: StepOutput, outputs: list[StepOutput]) -> StepOutput | None:
    """The output a step makes the answer, if complete: a check that accepts, the latest output
    it judged; a run, its own output (a program's, unless it printed nothing)."""
    if output.role == "run":
        return output
    if output.role == "check" and verdict_accepts(output.text):
        seen = _visible(step, outputs)
        return seen[-1] if seen else None
    return None


def verdict_accepts(text: str) -> bool:
    """A check step's verdict: JSON ``{"verdict": "accept"}``, or plain text that accepts and
    does not reject. Anything unreadable rejects (escalating is the safe side)."""
    try:
        data = json.loads(text)
    except ValueError:
        lowered = text.lower()
        return "accept" in lowered and "reject" not in lowered
    return isinstance(data, dict) and str(data.get("verdict", "")).lower() == "accept"


def draft_looks_complete(response: ChatResponse) -> bool:
    if response.tool_calls:
        return True
    text = response.text.strip()
    return bool(text) and response.finish_reason != "length" and not REFUSAL.match(text)


async def replay(response: ChatResponse) -> EventStream:
    """A finished answer as a stream, so the final step of an accepted cascade streams too."""
    for number, (text, cited) in enumerate(passages(response)):
        for start in range(0, len(text), REPLAY_CHUNK):
            yield TextDelta(text[start : start + REPLAY_CHUNK], number > 0 and start == 0)
        for citation in cited:
            yield CitationDelta(citation)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDelta(index, id=call.id, name=call.name, arguments=call.arguments)
    yield Finish(response.finish_reason)
    yield UsageReport(response.usage)


class ReplayStream(MeteredStream):
    """The draft replayed: its tokens were paid for (and traced) in the draft step."""

    def _settle(self) -> None:
        super()._settle()
        self.attempt.usage = Usage()
        self.attempt.cost_usd = 0.0

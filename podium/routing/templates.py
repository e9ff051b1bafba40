"""Workflow templates in the Conductor format (worker, subtask, access list; at most 5 steps).

- ``single``: one call.
- ``cascade``: a cheap worker drafts, a checker judges the draft (JSON verdict, constrained
  decoding), and a stronger worker answers only when the check fails; otherwise the draft is
  the answer. Without a checker the executor judges the draft by its shape (empty, cut off,
  a refusal). With ``repair``, the checker judges the stronger worker's answer too, and when
  it fails, the stronger worker is shown its answer and the check's reason and answers again.
- ``plan_solve``: one worker writes a plan, another follows it.
- ``solve_verify``: one worker answers, another checks and corrects the answer.
- ``fanout``: k workers answer independently (in parallel), a synthesiser merges them
  (Mixture-of-Agents as a baseline).
- ``program``: a worker writes Python that computes the answer, a runner (the ``python``
  provider) runs it and its output is the answer; when the program fails or prints nothing,
  a worker answers the request directly.

Each builder takes the workers that fill its roles, in order, and options; it returns a
:class:`Workflow`. They register in the router registry's template table, so rules and
semantic routes can name them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from podium.workflow import MAX_STEPS, Step, Workflow, WorkflowError

CHECK_INSTRUCTION = (
    "You are checking a draft answer (shown above) to the user's request. Decide whether it is "
    "correct, complete and responsive. Reply only with JSON: "
    '{"verdict": "accept"} or {"verdict": "reject", "reason": "..."}.'
)
PLAN_INSTRUCTION = (
    "Write a short numbered plan (at most 5 steps) for answering the request above. Do not "
    "answer it yet."
)
FOLLOW_PLAN_INSTRUCTION = "Answer the request, following the plan above where it helps."
VERIFY_INSTRUCTION = (
    "A draft answer to the request is shown above. Check it carefully; fix any mistake. Reply "
    "with the final answer only, as if answering the request directly."
)
REPAIR_INSTRUCTION = (
    "Your answer above failed the check shown after it. Answer the request again, in full and "
    "in the same form, with the mistake fixed."
)
PROGRAM_INSTRUCTION = (
    "Do not answer directly. Write a short Python program that computes the answer to the "
    "request above and prints only the answer, in the form the request asks for. Reply with "
    "the code only."
)
SYNTHESISE_INSTRUCTION = (
    "Several independent answers to the request are shown above. Write the single best answer: "
    "keep what they agree on and what is right, drop mistakes. Reply with the answer only."
)
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["accept", "reject"]},
        "reason": {"type": "string"},
    },
    "required": ["verdict"],
}


def _need(name: str, workers: Sequence[str], count: int) -> None:
    if len(workers) < count:
        raise WorkflowError(f"template {name!r} needs at least {count} workers, got {len(workers)}")


def single(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    _need("single", workers, 1)
    return Workflow.single(workers[0], fallbacks=list(workers[1:]))


def cascade(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    """Workers: cheap, strong[, checker]. ``options.verify`` (default true) adds the check
    step; the checker defaults to the cheap worker. ``options.repair`` (default false) checks
    the strong worker's answer too and lets it answer once more when that check fails (five
    steps). ``options.draft_instruction`` is a subtask for the draft (a form that costs fewer
    tokens, say); an accepted draft is the answer."""
    _need("cascade", workers, 2)
    cheap, strong = workers[0], workers[1]
    verify, repair = bool(options.get("verify", True)), bool(options.get("repair", False))
    if repair and not verify:
        raise WorkflowError("cascade: repair needs the check (verify: true)")
    draft_instruction = options.get("draft_instruction", "")
    if not isinstance(draft_instruction, str):
        raise WorkflowError("cascade: draft_instruction must be text")
    checker = workers[2] if len(workers) > 2 else cheap
    steps = [Step(worker=cheap, instruction=draft_instruction, access="none", role="draft")]
    if verify:
        steps.append(Step(worker=checker, instruction=CHECK_INSTRUCTION, access=[0], role="check"))
    steps.append(Step(worker=strong, access="none", role="escalate"))
    if repair:
        steps.append(Step(worker=checker, instruction=CHECK_INSTRUCTION, access=[2], role="check"))
        steps.append(
            Step(worker=strong, instruction=REPAIR_INSTRUCTION, access=[2, 3], role="repair")
        )
    return Workflow(steps=steps, template="cascade", fallbacks=list(workers[3:]))


def plan_solve(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    """Workers: planner[, solver] (the planner solves too when no solver is given)."""
    _need("plan_solve", workers, 1)
    solver = workers[1] if len(workers) > 1 else workers[0]
    return Workflow(
        steps=[
            Step(worker=workers[0], instruction=PLAN_INSTRUCTION, access="none", role="plan"),
            Step(worker=solver, instruction=FOLLOW_PLAN_INSTRUCTION, access=[0], role="answer"),
        ],
        template="plan_solve",
        fallbacks=list(workers[2:]),
    )


def solve_verify(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    """Workers: solver, verifier (the verifier's answer is the final one and streams)."""
    _need("solve_verify", workers, 1)
    verifier = workers[1] if len(workers) > 1 else workers[0]
    return Workflow(
        steps=[
            Step(worker=workers[0], access="none", role="solve"),
            Step(worker=verifier, instruction=VERIFY_INSTRUCTION, access=[0], role="verify"),
        ],
        template="solve_verify",
        fallbacks=list(workers[2:]),
    )


def fanout(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    """Workers: proposer 1..k, then the synthesiser (k <= 4, so at most 5 steps). With one
    worker given, it proposes ``options.k`` times (default 3) and synthesises."""
    _need("fanout", workers, 1)
    if len(workers) == 1:
        k = int(options.get("k", 3))
        proposers, synthesiser = [workers[0]] * k, workers[0]
    else:
        proposers, synthesiser = list(workers[:-1]), workers[-1]
    if not 1 <= len(proposers) <= MAX_STEPS - 1:
        raise WorkflowError(f"fanout takes 1 to {MAX_STEPS - 1} proposers, not {len(proposers)}")
    steps = [Step(worker=w, access="none", role="propose") for w in proposers]
    steps.append(
        Step(
            worker=synthesiser, instruction=SYNTHESISE_INSTRUCTION, access="all", role="synthesise"
        )
    )
    return Workflow(steps=steps, template="fanout")


def program(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    """Workers: writer, runner[, answerer] (the writer answers directly when no answerer is
    given). The runner is a worker that runs what the writer wrote (``provider: python``,
    ``role: check``)."""
    _need("program", workers, 2)
    writer, runner = workers[0], workers[1]
    answerer = workers[2] if len(workers) > 2 else writer
    return Workflow(
        steps=[
            Step(worker=writer, instruction=PROGRAM_INSTRUCTION, access="none", role="write"),
            Step(worker=runner, access=[0], role="run"),
            Step(worker=answerer, access="none", role="escalate"),
        ],
        template="program",
        fallbacks=list(workers[3:]),
    )


TEMPLATES = {
    "single": single,
    "cascade": cascade,
    "plan_solve": plan_solve,
    "solve_verify": solve_verify,
    "fanout": fanout,
    "program": program,
}


def register_templates(registry: Any) -> None:
    """Add every template to a registry with ``register(name, builder)``."""
    for name, builder in TEMPLATES.items():
        if name != "single" or name not in registry:
            registry.register(name, builder)

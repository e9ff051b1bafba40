"""Workflows in the Conductor format: up to five steps, each a worker, a subtask and an access
list naming which earlier steps' outputs it sees."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

MAX_STEPS = 5
SUBTASK_HEADER = "[Your subtask]\n"
_OUTPUT_HEADER = re.compile(r"\[Step \d+ \([a-z_]+\) output\]\n")

Access = Literal["all", "none"] | list[int]


class WorkflowError(ValueError):
    """A workflow that breaks the format: too many steps, bad access lists, unknown workers."""


@dataclass(slots=True)
class Step:
    worker: str
    instruction: str = ""  # empty: answer the request itself
    access: Access = "all"
    role: str = "solve"  # solve | plan | verify | propose | synthesise | answer | write | run


# the steps a worker with ``role: check`` may fill: judging a draft, running a program
TOOL_ROLES = ("check", "run")


@dataclass(slots=True)
class Workflow:
    steps: list[Step]
    template: str = "single"
    fallbacks: list[str] = field(default_factory=list)  # workers to try if the last step fails
    # The workers the template was given, when it was built with its default options: with
    # the template's name they say which workflow this is (``key``), so traces can measure it.
    members: list[str] = field(default_factory=list)

    def validate(self, eligible: set[str], checkers: frozenset[str] = frozenset()) -> None:
        """Every step's worker is eligible; a check or run step may also name a worker that
        only checks or runs (``checkers``), and no other step may."""
        if not 1 <= len(self.steps) <= MAX_STEPS:
            raise WorkflowError(f"a workflow has 1 to {MAX_STEPS} steps, not {len(self.steps)}")
        for index, step in enumerate(self.steps):
            if step.worker not in eligible:
                if step.role in TOOL_ROLES and step.worker in checkers:
                    continue
                raise WorkflowError(f"step {index}: worker {step.worker!r} is not eligible")
            if isinstance(step.access, list):
                for seen in step.access:
                    if not isinstance(seen, int) or not 0 <= seen < index:
                        raise WorkflowError(
                            f"step {index}: access may only name earlier steps, not {seen!r}"
                        )
        for worker in self.fallbacks:
            if worker not in eligible:
                raise WorkflowError(f"fallback worker {worker!r} is not eligible")

    @property
    def workers(self) -> list[str]:
        return [step.worker for step in self.steps]

    @property
    def key(self) -> str | None:
        """``template(worker,...)`` for a templated workflow of more than one call, the name the
        learned router knows it by once traces have measured it; None for a single call and for
        a workflow no template built (a Conductor's plan) or built with options."""
        if self.template == "single" or not self.members:
            return None
        return workflow_key(self.template, self.members)

    @classmethod
    def single(cls, worker: str, fallbacks: list[str] | None = None) -> Workflow:
        # Positional, the role set after: a keyword argument to a dataclass costs ~0.5k
        # instructions more a call, and every routed request builds one of these.
        step = Step(worker)
        step.role = "answer"
        return cls([step], "single", fallbacks or [])


def workflow_key(template: str, members: Sequence[str]) -> str:
    return f"{template}({','.join(members)})"


_KEY = re.compile(r"([a-z][a-z0-9_]*)\(([^()]+)\)")


def parse_workflow_key(name: str) -> tuple[str, list[str]] | None:
    """The template and workers a ``template(worker,...)`` name stands for; None for any other
    name (a worker's)."""
    if not name.endswith(")"):  # every worker's name: asked per column on each decision
        return None
    found = _KEY.fullmatch(name)
    if found is None:
        return None
    return found[1], found[2].split(",")


def output_note(index: int, role: str, text: str) -> str:
    """How a step shows an earlier step's output to its worker (index from 0)."""
    return f"[Step {index + 1} ({role}) output]\n{text}"


def subtask_note(instruction: str) -> str:
    return f"{SUBTASK_HEADER}{instruction}"


def checked_in(note: str) -> str | None:
    """The output a check step was shown (a draft, or a stronger worker's answer), read back
    from its note (see :func:`output_note`); None when the note shows none."""
    found = _OUTPUT_HEADER.search(note)
    if found is None:
        return None
    body = note[found.end() :]
    shown, separator, _ = body.rpartition("\n\n" + SUBTASK_HEADER)
    return shown if separator else body

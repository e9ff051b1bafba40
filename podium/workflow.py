"""Workflows in the Conductor format: up to five steps, each a worker, a subtask and an access
list naming which earlier steps' outputs it sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MAX_STEPS = 5

Access = Literal["all", "none"] | list[int]


class WorkflowError(ValueError):
    """A workflow that breaks the format: too many steps, bad access lists, unknown workers."""


@dataclass(slots=True)
class Step:
    worker: str
    instruction: str = ""  # empty: answer the request itself
    access: Access = "all"
    role: str = "solve"  # solve | plan | verify | propose | synthesise | answer


@dataclass(slots=True)
class Workflow:
    steps: list[Step]
    template: str = "single"
    fallbacks: list[str] = field(default_factory=list)  # workers to try if the last step fails

    def validate(self, eligible: set[str]) -> None:
        if not 1 <= len(self.steps) <= MAX_STEPS:
            raise WorkflowError(f"a workflow has 1 to {MAX_STEPS} steps, not {len(self.steps)}")
        for index, step in enumerate(self.steps):
            if step.worker not in eligible:
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

    @classmethod
    def single(cls, worker: str, fallbacks: list[str] | None = None) -> Workflow:
        # Positional, the role set after: a keyword argument to a dataclass costs ~0.5k
        # instructions more a call, and every routed request builds one of these.
        step = Step(worker)
        step.role = "answer"
        return cls([step], "single", fallbacks or [])

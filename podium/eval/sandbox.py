"""Code answers against their task's tests, in the sandbox (:mod:`podium.sandbox`)."""

from __future__ import annotations

from podium.sandbox import DEFAULT_TIMEOUT, RunResult, run_python


def program(code: str, test: str, entry_point: str) -> str:
    return f"{code}\n\n\n{test}\n\n\ncheck({entry_point})\n"


async def run_tests(
    code: str, test: str, entry_point: str, *, seconds: float = DEFAULT_TIMEOUT
) -> RunResult:
    """The code passes when ``check(entry_point)`` from the task's tests raises nothing."""
    return await run_python(program(code, test, entry_point), seconds=seconds)

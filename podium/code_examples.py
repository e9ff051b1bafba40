"""Checking a code answer against the examples in its own prompt.

A coding request often carries its own tests: the function's docstring shows calls and their
results (``>>> add(2, 3)`` then ``5``). Running a drafted function against those examples
tells a draft that is wrong from one that may be right, without asking a second model; the
``examples`` checker (:mod:`podium.providers.examples`) does that for a cascade's check step.
The evaluation reads code answers with the same helpers.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from podium.sandbox import RunResult, run_python

FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

# Appended to the program under test; exit 0: every example passed, 1: one failed, 3: none.
RUN_EXAMPLES = """

import doctest as _doctest, sys as _sys
_test = _doctest.DocTestParser().get_doctest({doc!r}, dict(globals()), "examples", None, 0)
_runner = _doctest.DocTestRunner(optionflags=_doctest.NORMALIZE_WHITESPACE)
_runner.run(_test, out=_sys.stdout.write)
_sys.exit(3 if not _test.examples else (1 if _runner.failures else 0))
"""
NO_EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class ExampleFunction:
    """The function a prompt asks for: its source as given (signature and docstring, maybe
    imports and helpers), its name, and its docstring with the ``>>>`` examples."""

    code_prompt: str
    name: str
    docstring: str


@dataclass(frozen=True, slots=True)
class ExamplesVerdict:
    accept: bool
    reason: str


def code_blocks(text: str) -> list[str]:
    return FENCED.findall(text or "")


def answer_program(answer: str, code_prompt: str, entry_point: str) -> str:
    """The program a code answer stands for: its longest fenced block (or the whole reply);
    a body without its ``def`` line is appended to the prompt, and a whole definition follows
    the prompt's own imports and helpers."""
    blocks = code_blocks(answer)
    code = max(blocks, key=len) if blocks else (answer or "")
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return f"{code_prompt.rstrip()}\n    pass\n\n\n{code}"
    return code_prompt + code


def _parsed(source: str) -> ast.Module | None:
    # A prompt usually stops after the docstring: the function has no body yet.
    for attempt in (source.rstrip() + "\n    pass\n", source):
        try:
            return ast.parse(attempt)
        except (SyntaxError, ValueError):
            continue
    return None


def find_examples(prompt: str) -> ExampleFunction | None:
    """The last function in the prompt (a fenced block, or the prompt itself) whose docstring
    holds ``>>>`` examples; None when there is none."""
    found: ExampleFunction | None = None
    for source in [*code_blocks(prompt), prompt]:
        if ">>>" not in source:
            continue
        tree = _parsed(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node) or ""
                if ">>>" in doc:
                    found = ExampleFunction(source, node.name, doc)
        if found is not None:
            return found
    return None


def _failed_example(output: str) -> str:
    """The first failing example's call, from doctest's report, for the verdict's reason."""
    match = re.search(r"Failed example:\n\s+(.+)", output)
    if match:
        return f"failed: {match.group(1).strip()[:120]}"
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return f"error: {lines[-1][:160]}" if lines else "failed"


def verdict_for(result: RunResult) -> ExamplesVerdict:
    if result.timed_out:
        return ExamplesVerdict(False, "the examples did not finish in time")
    if result.returncode == 0:
        return ExamplesVerdict(True, "every example in the docstring passed")
    if result.returncode == NO_EXAMPLES:
        return ExamplesVerdict(False, "no examples to run")
    return ExamplesVerdict(False, _failed_example(result.output))


async def check_draft(prompt: str, draft: str, *, seconds: float) -> ExamplesVerdict:
    """Run ``draft`` (a code answer to ``prompt``) against the prompt's docstring examples.
    Anything short of every example passing rejects, so a cascade escalates."""
    function = find_examples(prompt)
    if function is None:
        return ExamplesVerdict(False, "the request has no docstring examples to run")
    program = answer_program(draft, function.code_prompt, function.name)
    result = await run_python(
        program + RUN_EXAMPLES.format(doc=function.docstring), seconds=seconds
    )
    return verdict_for(result)

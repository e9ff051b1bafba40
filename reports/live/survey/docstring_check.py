"""Would the examples in a code prompt's own docstring tell a right draft from a wrong one?

Replays the survey's human_eval answers (``results.jsonl`` beside this file): each worker's code
runs against the ``>>>`` examples of the function's docstring, in the evaluation's sandbox, and
the verdict is set against the task's hidden tests. Then the cascade it would allow: the 0.5B
drafts; the draft stands when its examples pass, else the 1.5B answers.

Run from the repository root: ``python reports/live/survey/docstring_check.py``.
"""

from __future__ import annotations

import ast
import asyncio
import json
from collections import Counter
from pathlib import Path

from podium.code_examples import answer_program
from podium.eval.scoring import Question, load_questions
from podium.sandbox import run_python

HERE = Path(__file__).parent
TASK = Path("../shared/data/tasks/human_eval/train.jsonl")
SMALL, LARGE = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"

# Exit 0: every example passed; 1: one failed; 3: the docstring has no examples.
CHECK = """

import doctest as _doctest, sys as _sys
_test = _doctest.DocTestParser().get_doctest({doc!r}, dict(globals()), "examples", None, 0)
_runner = _doctest.DocTestRunner(optionflags=_doctest.NORMALIZE_WHITESPACE)
_runner.run(_test, out=lambda _: None)
_sys.exit(3 if not _test.examples else (1 if _runner.failures else 0))
"""
VERDICTS = {0: "pass", 1: "fail", 3: "no examples"}


def docstring(question: Question) -> str:
    """The docstring of the function the prompt asks for (its closing quotes excluded)."""
    assert question.code_prompt is not None
    tree = ast.parse(question.code_prompt.rstrip() + "\n    pass\n")
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == question.entry_point:
            return ast.get_docstring(node) or ""
    return ""


async def main() -> None:
    questions = {q.qid: q for q in load_questions(TASK, 30)}
    answers = [json.loads(line) for line in (HERE / "results.jsonl").open()]
    table: Counter[tuple[str, str, bool]] = Counter()
    seen: dict[tuple[str, str], tuple[str, bool, float]] = {}
    for answer in answers:
        worker = answer["strategy"].removeprefix("single:")
        if answer["task"] != "human_eval" or worker not in (SMALL, LARGE):
            continue
        question = questions[answer["qid"]]
        assert question.code_prompt is not None and question.entry_point is not None
        code = answer_program(answer["answer"] or "", question.code_prompt, question.entry_point)
        result = await run_python(code + CHECK.format(doc=docstring(question)), seconds=10)
        verdict = (
            "killed" if result.returncode is None else VERDICTS.get(result.returncode, "error")
        )
        table[(worker, verdict, answer["correct"])] += 1
        seen[(worker, answer["qid"])] = (verdict, answer["correct"], answer["cost_usd"])
    print("worker, examples verdict, right by the hidden tests: count")
    for key, count in sorted(table.items()):
        print(*key, count, sep=", ")
    right = cost = alone_right = alone_cost = 0.0
    for qid in questions:
        verdict, small_right, small_cost = seen[(SMALL, qid)]
        _, large_right, large_cost = seen[(LARGE, qid)]
        escalated = verdict != "pass"
        right += large_right if escalated else small_right
        cost += small_cost + (large_cost if escalated else 0.0)
        alone_right += large_right
        alone_cost += large_cost
    print(
        f"cascade: {right:.0f} of {len(questions)} right at {cost / alone_cost:.0%} of the "
        f"1.5B's cost; the 1.5B alone: {alone_right:.0f} of {len(questions)}"
    )


if __name__ == "__main__":
    asyncio.run(main())

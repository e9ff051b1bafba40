"""Would the examples in a code prompt's own docstring tell a right draft from a wrong one?

Replays the survey's human_eval answers (``results.jsonl`` beside this file): each worker's code
goes through the ``examples`` checker's own check (:func:`podium.code_examples.check_draft`:
the docstring's examples, in doctest form or in prose, run in the sandbox), and the verdict is
set against the task's hidden tests. Then the routing it allows (reports/live/code/pool.yaml):
where the docstring has examples, the 0.5B drafts and the draft stands when they pass, else
the 1.5B answers; where it has none, the 1.5B answers alone.

Run from the repository root: ``python reports/live/survey/docstring_check.py`` (the survey's
30 train questions), or with another run's answers, say the code run's dev questions:
``python reports/live/survey/docstring_check.py reports/live/code/results.jsonl
../shared/data/tasks/human_eval/dev.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from podium.code_examples import check_draft, find_examples
from podium.eval.scoring import load_questions

HERE = Path(__file__).parent
RESULTS = HERE / "results.jsonl"
TASK = Path("../shared/data/tasks/human_eval/train.jsonl")
SMALL, LARGE = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"


async def main(results: Path, task: Path) -> None:
    answers = [json.loads(line) for line in results.open()]
    asked = {answer["qid"] for answer in answers}
    questions = {q.qid: q for q in load_questions(task) if q.qid in asked}
    table: Counter[tuple[str, str, bool]] = Counter()
    seen: dict[tuple[str, str], tuple[bool, bool, float]] = {}
    checkable = {qid for qid, q in questions.items() if find_examples(q.prompt) is not None}
    for answer in answers:
        worker = answer["strategy"].removeprefix("single:")
        if answer["task"] != "human_eval" or worker not in (SMALL, LARGE):
            continue
        prompt = questions[answer["qid"]].prompt
        verdict = await check_draft(prompt, answer["answer"] or "", seconds=10)
        said = "pass" if verdict.accept else ("fail" if answer["qid"] in checkable else "none")
        table[(worker, said, answer["correct"])] += 1
        seen[(worker, answer["qid"])] = (verdict.accept, answer["correct"], answer["cost_usd"])
    print("worker, examples verdict (none: no examples), right by the hidden tests: count")
    for key, count in sorted(table.items()):
        print(*key, count, sep=", ")
    right = cost = alone_right = alone_cost = 0.0
    for qid in questions:
        accepted, small_right, small_cost = seen[(SMALL, qid)]
        _, large_right, large_cost = seen[(LARGE, qid)]
        drafted = qid in checkable
        right += small_right if accepted else large_right
        cost += (small_cost if drafted else 0.0) + (0.0 if accepted else large_cost)
        alone_right += large_right
        alone_cost += large_cost
    print(
        f"{len(checkable)} of {len(questions)} prompts have examples to run; routed so: "
        f"{right:.0f} right at {cost / alone_cost:.0%} of the 1.5B's cost; the 1.5B alone: "
        f"{alone_right:.0f} right"
    )


if __name__ == "__main__":
    arguments = [Path(argument) for argument in sys.argv[1:3]]
    asyncio.run(main(*arguments) if len(arguments) == 2 else main(RESULTS, TASK))

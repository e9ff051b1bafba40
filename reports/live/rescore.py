"""Score stored code answers again with today's sandbox and say which verdicts moved.

Every human_eval row of the given ``results.jsonl`` files is run against its task's tests as
``podium eval live`` scores it (:func:`podium.eval.live.score_answer`), and the new verdict is
set against the recorded one. Run from the repository root, say after a change to the sandbox:
``python reports/live/rescore.py reports/live/code/results.jsonl`` (any number of files).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from podium.eval.live import score_answer
from podium.eval.scoring import Question, load_questions

TASK = Path("../shared/data/tasks/human_eval")


def stored_code_answers(files: list[str]) -> list[tuple[str, dict[str, Any]]]:
    rows = [
        (name, json.loads(line))
        for name in files
        for line in Path(name).read_text(encoding="utf-8").splitlines()
    ]
    return [(name, row) for name, row in rows if row["task"] == "human_eval" and row["answer"]]


async def main(files: list[str]) -> int:
    questions: dict[str, Question] = {
        q.qid: q for split in ("train", "dev") for q in load_questions(TASK / f"{split}.jsonl")
    }
    same = moved = 0
    for name, row in stored_code_answers(files):
        score = await score_answer(questions[row["qid"]], row["answer"])
        if score.correct == row["correct"]:
            same += 1
            continue
        moved += 1
        print(f"moved: {name} {row['strategy']} {row['qid']}: {row['correct']} -> {score}")
    print(f"{same} answers scored as recorded, {moved} moved")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

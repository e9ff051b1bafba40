"""Would a numeric question be answered better by a program than by the number alone?

The evaluation asks numeric questions (svamp, gsm8k) for the final number only, and the local
workers mostly miss it. This probe asks each worker instead to write Python that computes the
answer, runs the code in the sandbox (:mod:`podium.sandbox`) and scores what it prints as
``podium eval live`` scores an answer. Two forms: a whole program that prints the answer, and
one expression (run as ``print(expression)``). Nothing in Podium does this yet: it measures a
lever, on train questions only.

Start the local pool (``podium serve --config reports/live/pool.yaml --port 8411``), then from
the repository root: ``python reports/live/survey/program_probe.py --limit 40``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import time
from pathlib import Path

import openai

from podium.code_examples import code_blocks
from podium.config import load_config
from podium.eval.live import score_answer
from podium.eval.scoring import Question, load_questions
from podium.sandbox import run_python

FORMS = {
    "program": "Write a short Python program that computes the answer to the problem and "
    "prints only the final number. Reply with the code only.",
    "expression": "Write one Python expression that computes the answer. Reply with the "
    "expression only.",
}
WORKERS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


def runnable(reply: str) -> str:
    blocks = code_blocks(reply)
    code = (max(blocks, key=len) if blocks else reply).strip()
    try:
        ast.parse(code, mode="eval")
    except SyntaxError:
        return code
    return f"print({code})"


async def ask(
    client: openai.AsyncOpenAI, worker: str, form: str, question: Question, slots: asyncio.Semaphore
) -> tuple[bool, int, int]:
    async with slots:
        reply = await client.chat.completions.create(
            model=worker,
            messages=[{"role": "user", "content": f"{question.prompt}\n\n{FORMS[form]}"}],
            max_tokens=160,
            temperature=0,
        )
    result = await run_python(runnable(reply.choices[0].message.content or ""), seconds=5)
    printed = result.output if result.passed else ""
    score = await score_answer(question, printed)
    usage = reply.usage
    assert usage is not None
    return score.correct, usage.prompt_tokens, usage.completion_tokens


async def main(args: argparse.Namespace) -> None:
    prices = {w.name: w.price for w in load_config(args.config).workers}
    client = openai.AsyncOpenAI(base_url=args.url, api_key="unused", max_retries=0)
    slots = asyncio.Semaphore(2)
    print("task, worker, form: accuracy, input / output tokens per question, cost per question")
    for task in args.tasks:
        questions = load_questions(Path(task))[: args.limit]
        for worker in WORKERS:
            for form in FORMS:
                began = time.perf_counter()
                asked = (ask(client, worker, form, q, slots) for q in questions)
                rows = await asyncio.gather(*asked)
                n, right = len(rows), sum(r[0] for r in rows)
                inputs, outputs = sum(r[1] for r in rows) / n, sum(r[2] for r in rows) / n
                price = prices[worker]
                cost = (inputs * price.input + outputs * price.output) / 1e6
                print(
                    f"{Path(task).parent.name}, {worker}, {form}: {right / n:.3f}, "
                    f"{inputs:.0f} / {outputs:.0f}, {cost:.2e} USD "
                    f"({time.perf_counter() - began:.0f} s)"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8411/v1")
    parser.add_argument("--config", default="reports/live/pool.yaml")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=[f"../shared/data/tasks/{task}/train.jsonl" for task in ("svamp", "gsm8k")],
    )
    asyncio.run(main(parser.parse_args()))

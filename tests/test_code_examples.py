"""A code answer is checked against the examples in its own prompt's docstring."""

from __future__ import annotations

import asyncio

import pytest

from podium.code_examples import (
    Example,
    answer_program,
    check_draft,
    find_examples,
    read_examples,
)
from tests.conftest import HUMAN_EVAL, human_eval_rows

PROMPT = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """Whether the running balance ever falls below zero.
    >>> below_zero([1, 2, 3])
    False
    >>> below_zero([1, 2, -4, 5])
    True
    """
'''
RIGHT = (
    "```python\ndef below_zero(operations: List[int]) -> bool:\n    balance = 0\n"
    "    for op in operations:\n        balance += op\n        if balance < 0:\n"
    "            return True\n    return False\n```"
)
WRONG = "```python\n    return sum(operations) < 0\n```"


def test_the_function_with_examples_is_found_in_a_bare_prompt_or_a_fenced_block() -> None:
    bare = find_examples(PROMPT)
    assert bare is not None and bare.name == "below_zero"
    assert bare.examples == (
        Example("below_zero([1, 2, 3])", "False"),
        Example("below_zero([1, 2, -4, 5])", "True"),
    )
    fenced = find_examples(f"Complete this function:\n```python\n{PROMPT}```\nThanks.")
    assert fenced is not None and fenced.name == "below_zero"
    assert fenced.code_prompt.startswith("from typing import List")


def test_examples_in_prose_are_read_when_call_and_result_are_literals() -> None:
    doc = (
        "Whether x is a power of n.\n"
        "For example:\n"
        "    is_power(8, 2) => true\n"
        "    is_power(3, 2) ==> false\n"
        "    is_power(9, 3) should return True.\n"
        "    is_power(16, 4) == 1.5\n"
        "    is_power(a, 2) => False\n"
        "    other(1) => 2\n"
        "    is_power(27, 3) \u279e 'yes'\n"
        "    is_power(2, 2) => a power\n"
    )
    assert [(e.call, e.expected) for e in read_examples(doc, "is_power")] == [
        ("is_power(8, 2)", "True"),
        ("is_power(9, 3)", "True"),
        ("is_power(16, 4)", "1.5"),
        ("is_power(27, 3)", "'yes'"),
    ]


def test_loose_doctest_lines_are_read_one_by_one() -> None:
    doc = (
        ">>> count([]) == 0\n"  # a comparison with no output shown must come out true
        "  >>> shift(12, 1)\n"  # indented unlike the first line
        '  "21"\n'  # a string shown in other quotes than repr's: compared by value
        ">>> big([1,\n"  # a call that does not fit on its line cannot be read
        "... 2])\n"
        ">>> count([1, 2])\n"
        "[1,\n"
        " 2]\n"  # output over two lines
        ">>> count(range(3))\n"  # not a literal argument
        "3\n"
        ">>> count([3])\n"
        "<Count 3>\n"  # output that is not a literal: compared as text
    )
    assert read_examples(doc, "count") == (
        Example("count([])", "0"),
        Example("count([1, 2])", "[1, 2]"),
        Example("count([3])", "<Count 3>", by_value=False),
    )
    assert read_examples(doc, "shift") == (Example("shift(12, 1)", "'21'"),)
    wrapped = ">>> round(find_zero([1, 2]), 2) # f(x) = 1 + 2x\n-0.5\n>>> find_zero(xs)\n1.0"
    assert read_examples(wrapped, "find_zero") == (  # the comment dropped, xs unknown
        Example("round(find_zero([1, 2]), 2)", "-0.5"),
    )


def test_prompts_without_examples_have_none() -> None:
    assert find_examples("def f(x):\n    '''Double x.'''\n") is None
    assert find_examples("What is the capital of France? >>> not code") is None
    assert find_examples("") is None


def test_a_whole_definition_keeps_the_prompts_imports_and_a_body_follows_the_prompt() -> None:
    whole = answer_program(RIGHT, PROMPT, "below_zero")
    assert whole.startswith("from typing import List") and "balance = 0" in whole
    body = answer_program(WRONG, PROMPT, "below_zero")
    assert body == PROMPT + "    return sum(operations) < 0\n"


async def test_a_right_draft_passes_its_examples() -> None:
    verdict = await check_draft(PROMPT, RIGHT, seconds=10)
    assert verdict.accept and verdict.reason == "all 2 examples in the docstring passed"


async def test_a_demo_under_main_does_not_run_and_an_early_exit_does_not_pass() -> None:
    demo = RIGHT.removesuffix("```") + "\nif __name__ == '__main__':\n    input()\n```"
    leaving = "```python\nimport sys\nsys.exit(0)\n```"
    assert (await check_draft(PROMPT, demo, seconds=10)).accept
    assert not (await check_draft(PROMPT, leaving, seconds=10)).accept


async def test_a_wrong_draft_is_rejected_naming_the_failed_example() -> None:
    verdict = await check_draft(PROMPT, WRONG, seconds=10)
    assert not verdict.accept
    assert verdict.reason == "below_zero([1, 2, -4, 5]) gave False; expected True"


async def test_broken_looping_and_exampleless_drafts_are_rejected() -> None:
    broken = await check_draft(PROMPT, "```python\n    return (\n```", seconds=10)
    looping = await check_draft(PROMPT, "```python\n    while True:\n        pass\n```", seconds=1)
    no_examples = await check_draft("Write a haiku about autumn.", RIGHT, seconds=10)
    assert not broken.accept and broken.reason.startswith("the code did not run: SyntaxError")
    assert not looping.accept and looping.reason == "the examples did not finish in time"
    assert not no_examples.accept and "no docstring examples" in no_examples.reason


async def test_a_draft_that_reaches_out_fails_its_examples_at_the_guard() -> None:
    sneaky = "```python\n    import socket\n    return False\n```"
    at_import = "```python\nimport socket\n\ndef below_zero(operations):\n    return False\n```"
    in_example = await check_draft(PROMPT, sneaky, seconds=10)
    at_start = await check_draft(PROMPT, at_import, seconds=10)
    assert not in_example.accept
    assert in_example.reason == (
        "below_zero([1, 2, 3]) raised PermissionError: sandbox: importing socket is not allowed"
    )
    assert not at_start.accept
    assert at_start.reason == (
        "the code did not run: PermissionError: sandbox: importing socket is not allowed"
    )


@pytest.mark.skipif(not HUMAN_EVAL.is_dir(), reason="the shared task data is not beside the repo")
async def test_human_eval_reference_solutions_pass_their_own_examples() -> None:
    rows = human_eval_rows()
    with_examples = [row for row in rows if find_examples(row["prompt"]) is not None]
    slots = asyncio.Semaphore(4)

    async def check(row: dict[str, str]) -> bool:
        async with slots:
            draft = row["prompt"] + row["canonical_solution"]
            return (await check_draft(row["prompt"], draft, seconds=20)).accept

    verdicts = await asyncio.gather(*(check(row) for row in with_examples))
    rejected = [
        row["task_id"] for row, accept in zip(with_examples, verdicts, strict=True) if not accept
    ]
    assert (len(rows), len(with_examples)) == (136, 97)
    assert rejected == ["HumanEval/116"]  # its docstring's first example is wrong


def test_input_too_deep_for_the_parser_has_no_examples() -> None:
    deep = "def f():\n    '''>>> f()\n    1\n    '''\nx = " + "-" * 100_000 + "1\n"
    nested = "def f():\n    '''\n    f(" + "(" * 3000 + "1" + ")" * 3000 + ") => 1\n    '''\n"
    assert find_examples(deep) is None and find_examples(nested) is None

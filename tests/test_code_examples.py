"""A code answer is checked against the examples in its own prompt's docstring."""

from __future__ import annotations

from podium.code_examples import answer_program, check_draft, find_examples

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
    assert ">>> below_zero([1, 2, 3])" in bare.docstring
    fenced = find_examples(f"Complete this function:\n```python\n{PROMPT}```\nThanks.")
    assert fenced is not None and fenced.name == "below_zero"
    assert fenced.code_prompt.startswith("from typing import List")


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
    assert verdict.accept and "passed" in verdict.reason


async def test_a_wrong_draft_is_rejected_naming_the_failed_example() -> None:
    verdict = await check_draft(PROMPT, WRONG, seconds=10)
    assert not verdict.accept
    assert verdict.reason == "failed: below_zero([1, 2, -4, 5])"


async def test_broken_looping_and_exampleless_drafts_are_rejected() -> None:
    broken = await check_draft(PROMPT, "```python\n    return (\n```", seconds=10)
    looping = await check_draft(PROMPT, "```python\n    while True:\n        pass\n```", seconds=1)
    no_examples = await check_draft("Write a haiku about autumn.", RIGHT, seconds=10)
    assert not broken.accept and broken.reason.startswith("error: SyntaxError")
    assert not looping.accept and looping.reason == "the examples did not finish in time"
    assert not no_examples.accept and "no docstring examples" in no_examples.reason


async def test_a_draft_that_reaches_out_fails_its_examples_at_the_guard() -> None:
    sneaky = "```python\n    import socket\n    return False\n```"
    at_import = "```python\nimport socket\n\ndef below_zero(operations):\n    return False\n```"
    in_example = await check_draft(PROMPT, sneaky, seconds=10)
    at_start = await check_draft(PROMPT, at_import, seconds=10)
    assert not in_example.accept and in_example.reason == "failed: below_zero([1, 2, 3])"
    assert not at_start.accept
    assert at_start.reason == "error: PermissionError: sandbox: importing socket is not allowed"

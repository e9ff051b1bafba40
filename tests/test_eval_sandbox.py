"""Model-written code runs against its tests in a limited subprocess."""

from __future__ import annotations

from podium.eval.live import score_answer
from podium.eval.sandbox import run_tests
from podium.eval.scoring import question_from

TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'


async def test_passing_code_passes() -> None:
    result = await run_tests("def add(a, b):\n    return a + b\n", TEST, "add")
    assert result.passed and not result.timed_out and result.returncode == 0


async def test_failing_code_fails_with_its_error() -> None:
    result = await run_tests("def add(a, b):\n    return a - b\n", TEST, "add")
    assert not result.passed and not result.timed_out
    assert "AssertionError" in result.output
    assert 'File "solution.py"' in result.output and "podium-sandbox-" not in result.output


async def test_syntax_errors_fail() -> None:
    result = await run_tests("def add(a, b) return a + b", TEST, "add")
    assert not result.passed and "SyntaxError" in result.output


async def test_an_infinite_loop_is_killed_at_the_time_limit() -> None:
    result = await run_tests(
        "def add(a, b):\n    while True:\n        pass\n", TEST, "add", seconds=1
    )
    assert result.timed_out and not result.passed


async def test_score_answer_runs_a_code_question() -> None:
    question = question_from(
        "human_eval", {"prompt": PROMPT, "test": TEST, "entry_point": "add"}, "he:1"
    )
    good = await score_answer(question, "```python\n    return a + b\n```")
    bad = await score_answer(question, "```python\n    return a * b\n```")
    loop = await score_answer(question, "```python\n    while True: pass\n```", code_timeout=1)
    empty = await score_answer(question, "")
    assert good.correct and not bad.correct and not loop.correct
    assert loop.detail == "timed out (killed)"
    assert not empty.parsed

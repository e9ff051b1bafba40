"""Model-written code runs against its tests in a limited subprocess."""

from __future__ import annotations

from podium.eval.live import score_answer
from podium.eval.sandbox import run_python, run_tests
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
    assert 'File "solution.py"' in result.output and "podium-eval-" not in result.output


async def test_syntax_errors_fail() -> None:
    result = await run_tests("def add(a, b) return a + b", TEST, "add")
    assert not result.passed and "SyntaxError" in result.output


async def test_an_infinite_loop_is_killed_at_the_time_limit() -> None:
    result = await run_tests(
        "def add(a, b):\n    while True:\n        pass\n", TEST, "add", seconds=1
    )
    assert result.timed_out and not result.passed


async def test_a_sleeping_child_process_is_killed_with_its_group() -> None:
    source = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    )
    result = await run_python(source, seconds=1)
    assert result.timed_out


async def test_the_code_gets_no_environment_and_an_empty_folder() -> None:
    import os

    os.environ["PODIUM_EVAL_SECRET_PROBE"] = "do-not-leak"
    try:
        source = (
            "import os, sys\n"
            "assert 'PODIUM_EVAL_SECRET_PROBE' not in os.environ\n"
            "assert os.listdir('.') == ['solution.py']\n"
            "assert sys.flags.isolated == 1\n"
        )
        result = await run_python(source)
    finally:
        del os.environ["PODIUM_EVAL_SECRET_PROBE"]
    assert result.passed, result.output


async def test_memory_is_limited() -> None:
    result = await run_python("x = bytearray(4 << 30)\n", seconds=5)
    assert not result.passed and "MemoryError" in result.output


async def test_imports_work_without_a_network() -> None:
    source = "import math, re, collections, itertools, functools, typing\nprint(math.pi)\n"
    result = await run_python(source)
    assert result.passed and "3.14" in result.output


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

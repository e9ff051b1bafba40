"""Model-written code runs in a limited subprocess that cannot run away or reach out."""

from __future__ import annotations

import pytest

from podium.eval.sandbox import program
from podium.sandbox import run_python
from tests.conftest import HUMAN_EVAL, human_eval_rows


async def test_a_sleeping_child_process_is_killed_with_its_group() -> None:
    source = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    )
    result = await run_python(source, seconds=1, audit_hook=False, kernel_limits=False)
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


@pytest.mark.parametrize(
    ("source", "refusal"),
    [
        ("print(open('/etc/hostname').read())", "reading outside Python"),
        ("import socket", "importing socket"),
        ("import urllib.request", "importing socket"),
        ("import os\nos.system('true')", "os.system"),
        ("import posix\nposix.system('true')", "os.system"),
        ("import os\nos.fork()", "os.fork"),
        ("import subprocess", "importing subprocess"),
        ("import ctypes", "importing ctypes"),
        ("import os\nos.listdir('/')", "listing outside"),
        ("open('/tmp/podium-sandbox-probe', 'w')", "writing outside"),
        ("import os\nos.chdir('/')", "os.chdir"),
    ],
)
async def test_the_guard_refuses_what_a_coding_answer_never_needs(
    source: str, refusal: str
) -> None:
    result = await run_python(source)
    assert not result.passed
    assert "PermissionError: sandbox:" in result.output and refusal in result.output


async def test_the_guard_lets_ordinary_code_work_in_its_folder() -> None:
    source = (
        "import hashlib, json, os, doctest\n"
        "with open('notes.txt', 'w') as out:\n"
        "    out.write(hashlib.md5(b'a').hexdigest())\n"
        "print(open('notes.txt').read(), sorted(os.listdir('.')), __name__)\n"
    )
    result = await run_python(source)
    assert result.passed, result.output
    assert "0cc175b9c0f1b6a831c399e269772661 ['notes.txt', 'solution.py'] __main__" in result.output


@pytest.mark.skipif(not HUMAN_EVAL.is_dir(), reason="the shared task data is not beside the repo")
async def test_every_human_eval_reference_solution_passes_under_the_guard() -> None:
    rows = human_eval_rows()
    source = "\n\n".join(
        program(row["prompt"] + row["canonical_solution"], row["test"], row["entry_point"])
        for row in rows
    )
    result = await run_python(source, seconds=60)
    assert len(rows) == 136 and result.passed, result.output


async def test_the_code_can_run_as_a_module_of_another_name() -> None:
    source = (
        "from __future__ import annotations\n"
        "import dataclasses, sys\n"
        "@dataclasses.dataclass\n"  # looks its module up in sys.modules
        "class Point:\n    x: int\n"
        "print(__name__, sys.modules[__name__].Point(1))\n"
        "if __name__ == '__main__':\n    raise SystemExit(5)\n"
    )
    as_main, as_module = await run_python(source), await run_python(source, module_name="solution")
    assert as_main.returncode == 5, as_main.output
    assert as_module.passed and "solution Point(x=1)" in as_module.output, as_module.output

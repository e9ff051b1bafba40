"""What each of the sandbox's guards adds to running one program (podium.sandbox.run_python).

Four configurations, asked in turn (round-robin, so the machine's noise falls on all of them
alike): nothing, the audit hook only (the only guard before the kernel's limits), the kernel's
limits only, and both (the default). The program is a draft checked against its docstring's
examples, as the ``examples`` checker runs it: start the interpreter, set the guards, define
the function, run the examples.

    .venv/bin/python -m benchmarks.sandbox_start [--runs 60] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

from podium import confinement
from podium.code_examples import check_program
from podium.sandbox import run_python

PROMPT = '''def add(a: int, b: int) -> int:
    """Add two numbers.
    >>> add(2, 3)
    5
    >>> add(-1, 1)
    0
    """
'''
DRAFT = "def add(a: int, b: int) -> int:\n    return a + b\n"
CONFIGURATIONS = {
    "nothing": (False, False),
    "audit hook only": (True, False),
    "kernel limits only": (False, True),
    "both (the default)": (True, True),
}


# The launcher imports ctypes in every configuration (podium.confinement needs it); these two
# rows show what that import costs against a bare interpreter start.
STARTS = {
    "bare interpreter start (python -I -B -c pass)": "pass",
    "start + import ctypes, struct": "import ctypes, struct",
}


async def interpreter(source: str) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-I", "-B", "-c", source)
    assert await process.wait() == 0


async def measure(runs: int) -> dict[str, list[float]]:
    found = check_program(PROMPT, DRAFT)
    assert found is not None
    program = found[0]
    times: dict[str, list[float]] = {name: [] for name in (*CONFIGURATIONS, *STARTS)}
    for turn in range(runs + 3):
        for name, source in STARTS.items():
            begun = time.perf_counter()
            await interpreter(source)
            if turn >= 3:
                times[name].append((time.perf_counter() - begun) * 1000)
        for name, (hook, kernel) in CONFIGURATIONS.items():
            start = time.perf_counter()
            result = await run_python(
                program, audit_hook=hook, kernel_limits=kernel, module_name="solution"
            )
            elapsed = (time.perf_counter() - start) * 1000
            assert result.passed, result.output
            if turn >= 3:  # the first turns warm the file cache
                times[name].append(elapsed)
    return times


def report(times: dict[str, list[float]], runs: int) -> str:
    base = statistics.median(times["audit hook only"])
    lines = [
        f"One examples check in the sandbox (start, guards, 2 examples), {runs} runs of each "
        f"configuration in turn, CPython {platform.python_version()} on {platform.machine()}, "
        f"kernel {platform.release()}; the kernel here sets: {', '.join(confinement.offered())}.",
        "",
        "| configuration | p50 ms | p95 ms | p50 vs the audit hook only |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        p50 = statistics.median(values)
        p95 = statistics.quantiles(values, n=20)[-1]
        lines.append(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / base:.2f}x |")
    extra = statistics.median(times["start + import ctypes, struct"]) - statistics.median(
        times["bare interpreter start (python -I -B -c pass)"]
    )
    lines += [
        "",
        "The guards themselves cost nothing measurable next to starting an interpreter. What the "
        f"kernel's limits add is the launcher's import of ctypes: {extra:.1f} ms at p50 (the "
        "last two rows), which the launcher before them did not pay.",
        "",
        "Rerun: `.venv/bin/python -m benchmarks.sandbox_start --out "
        "benchmarks/results/sandbox_start.md`",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = report(asyncio.run(measure(args.runs)), args.runs)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()

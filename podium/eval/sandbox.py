"""Running model-written code against its tests, in a subprocess that cannot run away.

The program (the model's code, the task's tests, then ``check(entry_point)``) runs as
``python -I`` (isolated: no user site, no PYTHON* variables, no current directory on the path)
in a fresh temporary directory with an empty environment, in its own process group, with
resource limits set before it starts: address space, CPU seconds, file size, open files. A
wall-clock timeout kills the whole group, so an answer that loops forever (or sleeps) is a
failure, never a hung evaluation. Nothing here needs the network; the code gets none of the
evaluator's secrets because it inherits no environment.

This contains honest mistakes of small models; it is not a security boundary against
deliberately hostile code (use a container or a VM for that).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 10.0
MEMORY_BYTES = 1 << 30  # 1 GiB of address space
FILE_BYTES = 16 << 20
OUTPUT_LIMIT = 4000


@dataclass(slots=True)
class RunResult:
    passed: bool
    timed_out: bool
    returncode: int | None
    output: str  # the tail of stdout+stderr, for the report


def _limits(cpu_seconds: int, memory: int) -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def program(code: str, test: str, entry_point: str) -> str:
    return f"{code}\n\n\n{test}\n\n\ncheck({entry_point})\n"


async def run_python(
    source: str, *, seconds: float = DEFAULT_TIMEOUT, memory: int = MEMORY_BYTES
) -> RunResult:
    """Run ``source`` as a script under the limits above, for at most ``seconds`` of wall
    time; passed = exit status 0."""
    cpu = max(1, int(seconds) + 1)
    with tempfile.TemporaryDirectory(prefix="podium-eval-") as folder:
        script = Path(folder) / "solution.py"
        script.write_text(source, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-B",
            str(script),
            cwd=folder,
            env={"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills its children too
            preexec_fn=lambda: _limits(cpu, memory),
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), seconds)
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            return RunResult(False, True, None, f"killed after {seconds:g} s (time limit)")
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                await process.wait()
        # the throwaway folder's name means nothing in a report: tracebacks name the file alone
        text = out.decode("utf-8", "replace").replace(f"{folder}{os.sep}", "")[-OUTPUT_LIMIT:]
        return RunResult(process.returncode == 0, False, process.returncode, text)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def run_tests(
    code: str, test: str, entry_point: str, *, seconds: float = DEFAULT_TIMEOUT
) -> RunResult:
    """The code passes when ``check(entry_point)`` from the task's tests raises nothing."""
    return await run_python(program(code, test, entry_point), seconds=seconds)

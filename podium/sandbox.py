"""Running model-written Python in a subprocess that cannot run away or reach out.

The evaluation runs code answers against their tests here, and the ``examples`` checker runs a
draft against its prompt's docstring examples (:mod:`podium.providers.examples`).

The program runs as ``python -I`` (isolated: no user site, no PYTHON* variables, no current
directory on the path) in a fresh temporary directory with an empty environment, in its own
process group, with resource limits set before it starts: address space, CPU seconds, file
size, open files. A wall-clock timeout kills the whole group, so code that loops forever (or
sleeps) is a failure, never a hung caller. It inherits none of the parent's secrets.

Two guards stand between the program and the machine, both on by default:

- The kernel's limits (:mod:`podium.confinement`, Linux): Landlock lets it read only Python's
  installation, the system's libraries and its own folder, change files only in its folder,
  open no TCP connection and signal no process outside the sandbox; seccomp refuses sockets,
  new processes and programs, ptrace, io_uring, namespaces and mounts. Nothing inside the
  process can lift them, C code included. Where the kernel offers one and setting it fails, the
  program does not run (exit status 125); where the kernel offers none, it is left out
  (:func:`podium.confinement.offered` says what this machine sets).
- An audit hook (PEP 578), installed before the program runs, refuses the same things at
  Python's level, with a readable reason (``PermissionError: sandbox: ...``), and a few more:
  importing ``ctypes``, ``mmap`` or ``subprocess``, changing directory.

With both, code a model wrote cannot read the gateway's configuration, reach the network or
start anything. The kernel shared with the gateway is still a boundary the code could attack
through a kernel bug; where callers are hostile, run the gateway in a container or a VM too.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from podium import confinement

DEFAULT_TIMEOUT = 10.0
MEMORY_BYTES = 1 << 30  # 1 GiB of address space
FILE_BYTES = 16 << 20
OUTPUT_LIMIT = 4000


# Run by ``python -I -B -c LAUNCHER HOOK KERNEL MODULE_NAME`` in the sandbox's folder, after
# podium/confinement.py's source (run_python joins the two): set the kernel's limits (KERNEL
# "1"), install the audit hook (HOOK "1"), clear every name the launcher used, then run
# solution.py as a module of that name. The hook's checks are plain string tests (it sees
# every event).
LAUNCHER = r"""
# the system's shared libraries (an extension module may load one) and the linker's cache
SYSTEM_LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib",
                    "/etc/ld.so.cache")


def _podium_guard(here, readable):
    modules = {"socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess",
               "multiprocessing", "_multiprocessing", "ctypes", "_ctypes", "pty", "mmap"}
    refused = ("socket.", "subprocess.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn",
               "os.fork", "os.forkpty", "os.system", "os.kill", "os.killpg", "os.chdir",
               "os.fchdir", "resource.")
    changes = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
               "os.symlink", "os.link", "os.truncate", "os.utime", "shutil.rmtree",
               "shutil.copyfile", "shutil.move"}
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    # the hook outlives the names cleared below: it keeps its own
    realpath, isdir, fsdecode, sep, PathLike = (
        os.path.realpath, os.path.isdir, os.fsdecode, os.sep, os.PathLike)

    def where(path):
        return realpath(fsdecode(path)) + (sep if isdir(path) else "")

    def hook(event, args):
        if event.startswith(refused):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0].partition(".")[0] in modules:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            target = where(path)
            if (mode and set(mode) & set("wax+")) or (flags or 0) & writing:
                if not target.startswith(here):
                    raise PermissionError("sandbox: writing outside the sandbox folder")
            elif not target.startswith(readable):
                raise PermissionError("sandbox: reading outside Python and the sandbox folder")
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            if not isinstance(args[0], int) and not where(args[0]).startswith(readable):
                raise PermissionError("sandbox: listing outside Python and the sandbox folder")
        elif event in changes:
            paths = [a for a in args if isinstance(a, (str, bytes, PathLike))]
            if not all(where(p).startswith(here) for p in paths):
                raise PermissionError(f"sandbox: {event} outside the sandbox folder")

    sys.addaudithook(hook)


def _podium_launch():
    hooked, limited, name = sys.argv[1] == "1", sys.argv[2] == "1", sys.argv[3]
    del sys.argv[1:]
    here = os.getcwd() + os.sep
    python = {os.path.realpath(p) for p in (*sys.path, sys.prefix, sys.base_prefix,
                                            sys.exec_prefix, sys.base_exec_prefix) if p}
    if limited:
        try:
            restrict_files([*python, *SYSTEM_LIBRARIES], [here, "/dev/null"])
            restrict_syscalls()
        except OSError as error:
            print(f"sandbox: the kernel's limits could not be set ({error})", file=sys.stderr)
            raise SystemExit(125) from None
    # the limits needed ctypes; the code gets it only by importing it, which the hook sees
    for loaded in [m for m in sys.modules if m.partition(".")[0] in ("ctypes", "_ctypes")]:
        del sys.modules[loaded]
    if hooked:
        _podium_guard(here, (*(p + os.sep for p in python), here, "/dev/null", "/dev/urandom"))
    with open("solution.py", encoding="utf-8") as file:
        source = file.read()
    # a real module in sys.modules, as a script has: dataclasses and pickle look their module up
    module = type(sys)(name)
    module.__file__ = "solution.py"
    sys.modules[name] = module
    main = sys.modules["__main__"].__dict__
    for used in [key for key in main if not key.startswith("__")]:
        del main[used]
    exec(compile(source, "solution.py", "exec"), module.__dict__)


_podium_launch()
"""


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


async def run_python(
    source: str,
    *,
    seconds: float = DEFAULT_TIMEOUT,
    memory: int = MEMORY_BYTES,
    audit_hook: bool = True,
    kernel_limits: bool = True,
    module_name: str = "__main__",
) -> RunResult:
    """Run ``source`` under the limits above, for at most ``seconds`` of wall time; passed =
    exit status 0. ``audit_hook=False`` and ``kernel_limits=False`` leave those out (for
    tests, and code that may start processes). ``module_name`` other than ``__main__`` keeps
    the code's own ``if __name__ == "__main__":`` block from running."""
    cpu = max(1, int(seconds) + 1)
    launcher = f"{inspect.getsource(confinement)}\n{LAUNCHER}"
    with tempfile.TemporaryDirectory(prefix="podium-sandbox-") as folder:
        script = Path(folder) / "solution.py"
        script.write_text(source, encoding="utf-8")
        flags = [str(int(audit_hook)), str(int(kernel_limits))]
        command = ["-c", launcher, *flags, module_name]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-B",
            *command,
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

"""The kernel's limits hold on their own: with the audit hook left out, code (C code included)
still cannot read outside, write outside, reach the network, start processes or signal the
gateway."""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys

import pytest

from podium import confinement
from podium.sandbox import run_python

OFFERED = confinement.offered()
needs = {
    name: pytest.mark.skipif(name not in OFFERED, reason=f"this kernel does not offer {name}")
    for name in confinement.EVERY_LIMIT
}


async def kernel_only(source: str) -> tuple[bool, str]:
    result = await run_python(source, audit_hook=False, seconds=5)
    return result.passed, result.output


def test_the_names_of_what_the_kernel_offers_are_known() -> None:
    known = confinement.EVERY_LIMIT
    assert list(OFFERED) == [name for name in known if name in OFFERED]


@needs["landlock-files"]
@pytest.mark.parametrize(
    "source",
    [
        "print(open('/etc/hostname').read())",
        "import os\nos.open('/etc/hostname', os.O_RDONLY)",
        "import os\nprint(open(f'/proc/{os.getppid()}/environ', 'rb').read())",
        "import os\nos.listdir('/etc')",
        "open('/tmp/podium-confinement-probe', 'w')",
        "import os\nos.mkdir('/tmp/podium-confinement-probe')",
    ],
)
async def test_files_outside_python_and_the_folder_are_out_of_reach(source: str) -> None:
    passed, output = await kernel_only(source)
    assert not passed and "PermissionError: [Errno 13] Permission denied" in output, output


@needs["landlock-files"]
async def test_c_code_is_bound_as_well() -> None:
    source = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.open(b'/etc/hostname', 0) == -1 and ctypes.get_errno() == 13\n"
        "print('refused')\n"
    )
    passed, output = await kernel_only(source)
    assert passed and "refused" in output, output


@needs["seccomp"]
@pytest.mark.parametrize(
    "source",
    [
        "import socket\nsocket.socket()",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "import socket\nsocket.socket(socket.AF_UNIX)",
        "import os\nos.fork()",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.execv('/bin/true', ['true'])",
    ],
)
async def test_no_sockets_and_no_new_processes(source: str) -> None:
    passed, output = await kernel_only(source)
    assert not passed and "PermissionError: [Errno 1] Operation not permitted" in output, output


@needs["landlock-signals"]
async def test_the_gateway_cannot_be_signalled() -> None:
    passed, output = await kernel_only("import os\nos.kill(os.getppid(), 0)")
    assert not passed and "PermissionError: [Errno 1]" in output, output


@needs["seccomp"]
async def test_ordinary_code_still_works_under_the_kernels_limits() -> None:
    source = (
        "import threading, hashlib, zlib, json, os\n"
        "found = []\n"
        "worker = threading.Thread(target=lambda: found.append(hashlib.md5(b'a').hexdigest()))\n"
        "worker.start()\n"
        "worker.join()\n"
        "with open('notes.txt', 'w') as out:\n"
        "    out.write(json.dumps(found))\n"
        "os.remove('notes.txt')\n"
        "print(found[0], zlib.crc32(b'a'), os.listdir('.'))\n"
    )
    passed, output = await kernel_only(source)
    assert passed, output
    assert "0cc175b9c0f1b6a831c399e269772661 3904355907 ['solution.py']" in output


@needs["landlock-tcp"]
def test_landlock_alone_refuses_a_tcp_connection() -> None:
    # seccomp refuses the socket itself; this checks the Landlock layer by itself
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # socket is imported before the limits: after them, no file could be read
        setup = inspect.getsource(confinement) + "\nimport socket\n"
        connect = f"\nsocket.create_connection(('127.0.0.1', {port}), 2).close()\n"
        opened = _run(setup + connect)
        refused = _run(setup + "restrict_files([], [])" + connect)
    assert opened.returncode == 0, opened.stderr
    assert refused.returncode != 0, refused.stderr
    assert "PermissionError: [Errno 13] Permission denied" in refused.stderr, refused.stderr


def _run(source: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-I", "-c", source]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_program_is_whole_instructions_within_bpf_limits(machine: str) -> None:
    program = confinement.seccomp_program(machine)
    assert len(program) % 8 == 0 and 0 < len(program) // 8 < 4096

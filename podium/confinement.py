"""Limits the kernel enforces on the sandbox's child process: Landlock and seccomp (Linux).

The sandbox's audit hook (:mod:`podium.sandbox`) refuses what Python code asks Python to do;
code that goes around Python (a C extension, crafted bytecode) is not bound by it. These limits
are the kernel's: once set, nothing in the process can lift them.

- Landlock (Linux 5.13+): files may be read only beneath the folders given (Python's
  installation, the system's libraries) and changed only in the sandbox's own folder; from
  Landlock ABI 4, no TCP bind or connect; from ABI 6, no signals to processes outside the
  sandbox and no abstract UNIX sockets beyond it.
- seccomp: no sockets at all, no new processes or programs (threads are allowed), and none of
  ptrace, io_uring, bpf, namespaces, mounts or keyrings.

This file uses the standard library only, because it runs in two places: imported by the
gateway, to say what this machine's kernel offers, and as source text at the top of the
sandbox's launcher, in the child, before the model's code runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Iterable

# Landlock's system calls have the same numbers on every architecture.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_RULESET_VERSION = 1  # landlock_create_ruleset flag: return the ABI version
_RULE_PATH_BENEATH = 1
_NO_NEW_PRIVS = 38  # prctl PR_SET_NO_NEW_PRIVS
_GET_SECCOMP, _SET_SECCOMP, _SECCOMP_FILTER = 21, 22, 2  # prctl options, SECCOMP_MODE_FILTER

_READ_FILE, _READ_DIR = 1 << 2, 1 << 3
_FILE_RIGHTS = 1 << 0 | 1 << 1 | 1 << 2  # execute, write, read: what a rule on a file may hold
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_TCP = 1 << 0 | 1 << 1  # bind, connect
_SCOPES = 1 << 0 | 1 << 1  # abstract UNIX sockets, signals

# seccomp filter: what the audit arch word says, and the calls refused, per architecture
# (x86_64: asm/unistd_64.h; aarch64: asm-generic/unistd.h).
_ARCHES = {
    "x86_64": (
        0xC000003E,
        "socket=41 socketpair=53 clone=56 fork=57 vfork=58 execve=59 ptrace=101 "
        "pivot_root=155 chroot=161 mount=165 umount2=166 kexec_load=246 add_key=248 "
        "request_key=249 keyctl=250 unshare=272 perf_event_open=298 open_by_handle_at=304 "
        "setns=308 process_vm_readv=310 process_vm_writev=311 kexec_file_load=320 bpf=321 "
        "execveat=322 userfaultfd=323 io_uring_setup=425 io_uring_enter=426 "
        "io_uring_register=427 clone3=435",
    ),
    "aarch64": (
        0xC00000B7,
        "umount2=39 mount=40 pivot_root=41 chroot=51 unshare=97 kexec_load=104 ptrace=117 "
        "socket=198 socketpair=199 add_key=217 request_key=218 keyctl=219 clone=220 "
        "execve=221 perf_event_open=241 open_by_handle_at=265 setns=268 "
        "process_vm_readv=270 process_vm_writev=271 bpf=280 execveat=281 userfaultfd=282 "
        "kexec_file_load=294 io_uring_setup=425 io_uring_enter=426 io_uring_register=427 "
        "clone3=435",
    ),
}
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000  # x86_64's x32 calls carry this bit: refused wholesale
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


class _Filter(ctypes.Structure):
    _fields_ = [("length", ctypes.c_ushort), ("program", ctypes.c_char_p)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _failed(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers; 0 when it offers none."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_CREATE_RULESET, None, 0, _RULESET_VERSION)
    return max(0, int(version))


def seccomp_offered() -> bool:
    if not sys.platform.startswith("linux") or os.uname().machine not in _ARCHES:
        return False
    return int(_libc().prctl(_GET_SECCOMP, 0, 0, 0, 0)) >= 0


# every limit by name, in the order offered() lists them
EVERY_LIMIT = ("landlock-files", "landlock-tcp", "landlock-signals", "seccomp")


def offered() -> tuple[str, ...]:
    """The kernel limits the sandbox sets on this machine, by name (of ``EVERY_LIMIT``)."""
    abi = landlock_abi()
    names = ["landlock-files"] if abi >= 1 else []
    names += ["landlock-tcp"] if abi >= 4 else []
    names += ["landlock-signals"] if abi >= 6 else []
    return (*names, "seccomp") if seccomp_offered() else tuple(names)


def _file_access(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute .. make symlink
    rights |= _REFER if abi >= 2 else 0
    rights |= _TRUNCATE if abi >= 3 else 0
    return rights | (_IOCTL_DEV if abi >= 5 else 0)


def restrict_files(readable: Iterable[str], writable: Iterable[str]) -> int:
    """Landlock: from now on this process (and anything it starts) reads files only beneath
    ``readable`` and ``writable``, changes them only beneath ``writable``, and, as the
    kernel allows, makes no TCP connections and signals no process outside. Paths that do not
    exist are skipped. Returns the ABI used (0: the kernel offers no Landlock; nothing set)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc, handled = _libc(), _file_access(abi)
    attr = struct.pack("=QQQ", handled, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = int(libc.syscall(_CREATE_RULESET, attr, size, 0))
    if ruleset < 0:
        raise _failed("landlock_create_ruleset")
    try:
        rules = [(path, _READ_FILE | _READ_DIR) for path in readable]
        rules += [(path, handled) for path in writable]
        for path, access in rules:
            try:
                folder = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            if not os.path.isdir(path):
                access &= _FILE_RIGHTS | (_TRUNCATE | _IOCTL_DEV) & handled
            rule = struct.pack("=Qi", access, folder)
            added = libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0)
            os.close(folder)
            if added != 0:
                raise _failed(f"landlock_add_rule({path})")
        if libc.prctl(_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _failed("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0) != 0:
            raise _failed("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _instruction(code: int, k: int, true: int = 0, false: int = 0) -> bytes:
    return struct.pack("=HBBI", code, true, false, k)


def seccomp_program(machine: str) -> bytes:
    """The BPF program :func:`restrict_syscalls` loads for ``machine``: EPERM for each refused
    call, ENOSYS for ``clone3`` (so the C library falls back to ``clone``, whose flags a
    filter can read), and ``clone`` allowed only for threads."""
    arch, table = _ARCHES[machine]
    calls = {name: int(number) for name, number in (word.split("=") for word in table.split())}
    refused = sorted(number for name, number in calls.items() if name not in ("clone", "clone3"))
    eperm, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    program = [
        _instruction(_LD_ABS_W, 4),  # seccomp_data.arch
        _instruction(_JEQ, arch, 1, 0),
        _instruction(_RET, _RET_KILL_PROCESS),  # a call made under another ABI (int 0x80)
        _instruction(_LD_ABS_W, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        program += [_instruction(_JGE, _X32_BIT, 0, 1), _instruction(_RET, eperm)]
    for number in refused:
        program += [_instruction(_JEQ, number, 0, 1), _instruction(_RET, eperm)]
    program += [
        _instruction(_JEQ, calls["clone3"], 0, 1),
        _instruction(_RET, enosys),
        _instruction(_JEQ, calls["clone"], 0, 3),
        _instruction(_LD_ABS_W, 16),  # the low word of clone's flags (args[0])
        _instruction(_JSET, _CLONE_THREAD, 1, 0),
        _instruction(_RET, eperm),
        _instruction(_RET, _RET_ALLOW),
    ]
    return b"".join(program)


def restrict_syscalls() -> bool:
    """seccomp: from now on this process cannot open a socket, start a process or a program,
    or make the other calls in this module's table. False: not offered here; nothing set."""
    if not seccomp_offered():
        return False
    libc, program = _libc(), seccomp_program(os.uname().machine)
    if libc.prctl(_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _failed("prctl(PR_SET_NO_NEW_PRIVS)")
    fprog = _Filter(len(program) // 8, program)
    if libc.prctl(_SET_SECCOMP, _SECCOMP_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise _failed("prctl(PR_SET_SECCOMP)")
    return True

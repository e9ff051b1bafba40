"""The audit log: append-only JSON lines, each entry chained to the one before by a hash.

Every entry carries ``seq`` (1, 2, 3...), ``prev_hash`` (the ``hash`` of the entry before it; 64
zeros for the first) and ``hash`` = SHA-256 of its own canonical JSON (sorted keys, no spaces,
without the ``hash`` field). Editing an entry breaks its hash; deleting, inserting or reordering
entries breaks the sequence and the chain, so :func:`verify` names the line where it happened.
As with Certificate Transparency, the chain proves integrity relative to a head you have seen:
``<log>.head`` holds the last ``seq`` and ``hash`` (catching entries cut off the end), and
``podium audit head`` prints it so it can be kept somewhere the log's writer cannot reach.

Writers in several processes (server workers, the CLI) take an exclusive ``flock`` on the log
for each append, so the chain never forks. The request path never waits on the disk:
:meth:`AuditTrail.record` queues the entry and a background thread writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import getpass
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("podium.audit")

GENESIS = "0" * 64
FIELDS = ("seq", "time", "actor", "action", "target", "details", "prev_hash", "hash")


def canonical(entry: dict[str, Any]) -> bytes:
    body = {name: value for name, value in entry.items() if name != "hash"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without a passwd entry)
        user = str(os.getuid())
    return f"cli:{user}"


@dataclass(slots=True)
class Head:
    seq: int = 0
    hash: str = GENESIS


@dataclass(slots=True)
class Pending:
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class AuditLog:
    """One JSONL file and its head; every method is synchronous and takes the file lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def head(self) -> Head:
        try:
            data = orjson.loads(self.head_path.read_bytes())
            return Head(seq=int(data["seq"]), hash=str(data["hash"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return self._head_from_log()

    def _head_from_log(self) -> Head:
        """The last well-formed entry of the log (when the head file is missing)."""
        last = Head()
        try:
            with self.path.open("rb") as handle:
                for line in handle:
                    try:
                        entry = orjson.loads(line)
                        last = Head(seq=int(entry["seq"]), hash=str(entry["hash"]))
                    except (ValueError, KeyError, TypeError):
                        continue
        except FileNotFoundError:
            pass
        return last

    def _write_head(self, head: Head) -> None:
        temporary = self.head_path.with_name(self.head_path.name + f".{os.getpid()}")
        temporary.write_bytes(orjson.dumps({"seq": head.seq, "hash": head.hash}))
        temporary.replace(self.head_path)

    def append_many(self, pending: list[Pending]) -> list[dict[str, Any]]:
        if not pending:
            return []
        with self._locked() as handle:
            head = self.head()
            written: list[dict[str, Any]] = []
            lines: list[bytes] = []
            for item in pending:
                entry: dict[str, Any] = {
                    "seq": head.seq + 1,
                    "time": round(item.time, 6),
                    "actor": item.actor,
                    "action": item.action,
                    "target": item.target,
                    "details": item.details,
                    "prev_hash": head.hash,
                }
                entry["hash"] = entry_hash(entry)
                head = Head(seq=entry["seq"], hash=entry["hash"])
                lines.append(orjson.dumps(entry) + b"\n")
                written.append(entry)
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            self._write_head(head)
        return written

    def append(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.append_many([Pending(actor, action, target, details or {})])[0]


class AuditTrail:
    """The running gateway's audit API: ``record`` never blocks the event loop."""

    def __init__(self, path: Path) -> None:
        self.log = AuditLog(path)
        self._queue: list[Pending] = []
        self._writing: asyncio.Future[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def path(self) -> Path:
        return self.log.path

    def record(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        """Queue an entry (who did what to what, and anything that explains it). Details must
        be JSON-serialisable and must not carry secrets or prompt text."""
        self._queue.append(Pending(actor, action, target, dict(details or {})))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_now()
            return
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._drain(loop))

    append = record  # the name other policy modules reach for

    def _write_now(self) -> None:
        batch, self._queue = self._queue, []
        self.log.append_many(batch)

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-audit")
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await loop.run_in_executor(self._executor, self.log.append_many, batch)
            except OSError:
                log.exception("could not write %d audit entries to %s", len(batch), self.path)

    async def flush(self) -> None:
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)

    async def aclose(self) -> None:
        await self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


# -- verification ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Problem:
    line: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (entry {self.seq})" if self.seq is not None else "")
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Report:
    entries: int = 0
    head: Head = field(default_factory=Head)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _parse(raw: bytes) -> dict[str, Any] | str:
    """The entry on one line, or what is wrong with the line."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not a JSON entry (garbage, or a line cut short)"
    if not isinstance(entry, dict):
        return "not a JSON object"
    missing = [name for name in FIELDS if name not in entry]
    if missing:
        return f"missing fields: {', '.join(missing)}"
    extra = sorted(set(entry) - set(FIELDS))
    if extra:
        return f"unexpected fields: {', '.join(extra)}"
    if not isinstance(entry["seq"], int) or isinstance(entry["seq"], bool):
        return "seq is not a number"
    return entry


def verify(path: Path, *, expect: Head | None = None, use_head_file: bool = True) -> Report:
    """Check every entry of the log at ``path``; each problem names its line and entry."""
    report = Report()
    expected_seq, previous = 1, GENESIS
    hashes: dict[int, str] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        report.problems.append(Problem(0, None, f"no audit log at {path}"))
        return report
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        report.problems.append(
            Problem(len(lines), None, "the last line has no newline: cut short while writing?")
        )
    for number, raw in enumerate(lines, start=1):
        parsed = _parse(raw)
        if isinstance(parsed, str):
            report.problems.append(Problem(number, None, parsed))
            continue
        seq = parsed["seq"]
        report.entries += 1
        if entry_hash(parsed) != parsed["hash"]:
            report.problems.append(
                Problem(number, seq, "contents changed: the hash does not match the entry")
            )
        if seq > expected_seq:
            gap = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            report.problems.append(
                Problem(number, seq, f"entry {gap} missing before it (deleted or reordered)")
            )
        elif seq < expected_seq:
            report.problems.append(
                Problem(number, seq, f"out of order: entry {expected_seq} was expected here")
            )
        if parsed["prev_hash"] != previous:
            report.problems.append(
                Problem(
                    number,
                    seq,
                    "does not chain to the line before it (an entry was inserted, deleted, "
                    "edited or moved)",
                )
            )
        # Resynchronise on this entry so one damaged line is reported once, not forever after.
        expected_seq, previous = seq + 1, parsed["hash"]
        report.head = Head(seq=seq, hash=parsed["hash"])
        hashes[seq] = parsed["hash"]
    anchor = expect
    if anchor is None and use_head_file:
        head_path = path.with_name(path.name + ".head")
        if head_path.exists():
            try:
                data = orjson.loads(head_path.read_bytes())
                anchor = Head(seq=int(data["seq"]), hash=str(data["hash"]))
            except (ValueError, KeyError, TypeError):
                report.problems.append(Problem(0, None, f"{head_path.name} is unreadable"))
    if anchor is not None and anchor.seq > 0:
        # The log may have grown since the head was noted; it must still hold that entry.
        if anchor.seq > report.head.seq:
            report.problems.append(
                Problem(
                    len(lines),
                    report.head.seq,
                    f"the log ends at entry {report.head.seq} but its head records entry "
                    f"{anchor.seq}: entries were removed from the end",
                )
            )
        elif hashes.get(anchor.seq) != anchor.hash:
            report.problems.append(
                Problem(
                    0,
                    anchor.seq,
                    f"the head records entry {anchor.seq} with hash {anchor.hash[:16]}..., "
                    "which the log does not hold: the log was rewritten",
                )
            )
    return report

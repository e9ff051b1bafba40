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
:meth:`AuditTrail.record` queues the entry and a background task hands batches to a sink, the
file (:class:`FileSink`) or the store's table (podium/policy/audit_store.py), whose chains are
built and checked by the same functions here.
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
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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


def chained(head: Head, pending: list[Pending]) -> list[dict[str, Any]]:
    """``pending`` as entries that continue the chain ending at ``head``."""
    entries: list[dict[str, Any]] = []
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
        entries.append(entry)
    return entries


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
            written = chained(self.head(), pending)
            handle.write(b"".join(orjson.dumps(entry) + b"\n" for entry in written))
            handle.flush()
            os.fsync(handle.fileno())
            self._write_head(Head(seq=written[-1]["seq"], hash=written[-1]["hash"]))
        return written

    def append(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.append_many([Pending(actor, action, target, details or {})])[0]


class AuditSink(Protocol):
    """Where a trail's batches go. ``write`` raises when it stored nothing (the trail keeps the
    batch and tries again); a batch is at most :data:`MAX_BATCH` entries."""

    async def write(self, batch: list[Pending]) -> None: ...

    def write_blocking(self, batch: list[Pending]) -> bool:
        """Write with no event loop running (a script); False when this sink cannot."""
        ...

    async def aclose(self) -> None: ...


MAX_BATCH = 100  # entries per write: one statement of 900 parameters for the store


class FileSink:
    """The file log, written on a thread of its own."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._executor: ThreadPoolExecutor | None = None

    async def write(self, batch: list[Pending]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="podium-audit")
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self.log.append_many, batch
        )

    def write_blocking(self, batch: list[Pending]) -> bool:
        self.log.append_many(batch)
        return True

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class AuditTrail:
    """The running gateway's audit API: ``record`` never blocks the event loop.

    Entries go to ``sink`` (default: the file log at ``path``). A batch the sink refuses (the
    store is down) stays queued and is tried again, backing off up to ``retry_max`` seconds.
    Past ``queue_limit`` queued entries, and for whatever is still queued ``close_timeout``
    seconds into :meth:`aclose`, the file log at ``path`` takes them instead, so an outage
    loses nothing and never reaches a request.
    """

    def __init__(
        self,
        path: Path,
        sink: AuditSink | None = None,
        *,
        retry_initial: float = 0.05,
        retry_max: float = 30.0,
        queue_limit: int = 100_000,
        close_timeout: float = 5.0,
    ) -> None:
        self.log = AuditLog(path)
        self.sink: AuditSink = sink if sink is not None else FileSink(self.log)
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.queue_limit = queue_limit
        self.close_timeout = close_timeout
        self.fallen_back = 0  # entries written to the file log because the sink was down
        self._queue: list[Pending] = []
        self._writing: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False

    @property
    def path(self) -> Path:
        return self.log.path

    @property
    def queued(self) -> int:
        return len(self._queue)

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
        if not self.sink.write_blocking(batch):
            self._queue[0:0] = batch  # the next drain on an event loop writes them

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        delay = self.retry_initial
        while self._queue:
            # The batch leaves the queue once written: a failed or cancelled write keeps it.
            batch = self._queue[:MAX_BATCH]
            try:
                await self.sink.write(batch)
            except Exception:  # the store or the disk said no: try again
                if len(self._queue) > self.queue_limit:
                    await self._fall_back(loop)
                    continue
                if self._closing:  # aclose waits close_timeout, then the file takes the rest
                    delay = self.retry_initial
                log.warning(
                    "could not write %d audit entries (%d queued); retrying in %.2g s",
                    len(batch),
                    len(self._queue),
                    delay,
                    exc_info=True,
                )
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                delay = min(delay * 2, self.retry_max)
            else:
                del self._queue[: len(batch)]
                delay = self.retry_initial

    async def _fall_back(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        try:
            await loop.run_in_executor(None, self.log.append_many, batch)
        except OSError:
            log.exception(
                "lost %d audit entries: neither the sink nor %s took them", len(batch), self.path
            )
            return
        self.fallen_back += len(batch)
        log.error(
            "wrote %d audit entries to %s: the audit sink is unreachable", len(batch), self.path
        )

    async def flush(self) -> None:
        while self._writing is not None and not self._writing.done():
            await asyncio.shield(self._writing)

    async def aclose(self) -> None:
        self._closing = True
        self._wake.set()  # a drain backing off retries now
        writing = self._writing
        if writing is not None and not writing.done():
            try:
                await asyncio.wait_for(asyncio.shield(writing), self.close_timeout)
            except TimeoutError:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writing
                await self._fall_back(asyncio.get_running_loop())
        await self.sink.aclose()


# -- verification ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Problem:
    line: int
    seq: int | None
    message: str
    unit: str = "line"  # the store's chains count rows

    def __str__(self) -> str:
        entry = f" (entry {self.seq})" if self.seq is not None else ""
        return f"{self.unit} {self.line}{entry}: {self.message}"


@dataclass(slots=True)
class Report:
    entries: int = 0
    head: Head = field(default_factory=Head)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_entry(raw: bytes) -> dict[str, Any] | str:
    """The entry in one line (or row), or what is wrong with it."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "not a JSON entry (garbage, or a line cut short)"
    return check_fields(entry)


def check_fields(entry: object) -> dict[str, Any] | str:
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


def check_chain(
    items: Iterable[dict[str, Any] | str], report: Report, *, unit: str = "line"
) -> dict[int, str]:
    """Check entries in the order they are stored (a string: what made one unreadable), adding
    each problem to ``report``; returns every entry's hash by ``seq``, for the anchor check."""
    expected_seq, previous = 1, GENESIS
    hashes: dict[int, str] = {}
    for number, parsed in enumerate(items, start=1):
        if isinstance(parsed, str):
            report.problems.append(Problem(number, None, parsed, unit))
            continue
        seq = parsed["seq"]
        report.entries += 1
        if entry_hash(parsed) != parsed["hash"]:
            report.problems.append(
                Problem(number, seq, "contents changed: the hash does not match the entry", unit)
            )
        if seq > expected_seq:
            gap = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
            report.problems.append(
                Problem(number, seq, f"entry {gap} missing before it (deleted or reordered)", unit)
            )
        elif seq < expected_seq:
            report.problems.append(
                Problem(number, seq, f"out of order: entry {expected_seq} was expected here", unit)
            )
        if parsed["prev_hash"] != previous:
            report.problems.append(
                Problem(
                    number,
                    seq,
                    f"does not chain to the {unit} before it (an entry was inserted, deleted, "
                    "edited or moved)",
                    unit,
                )
            )
        # Resynchronise on this entry so one damaged line is reported once, not forever after.
        expected_seq, previous = seq + 1, parsed["hash"]
        report.head = Head(seq=seq, hash=parsed["hash"])
        hashes[seq] = parsed["hash"]
    return hashes


def check_anchor(
    report: Report, hashes: dict[int, str], anchor: Head, *, last: int, unit: str = "line"
) -> None:
    """The chain must still hold the entry a head noted earlier (it may have grown since)."""
    if anchor.seq <= 0:
        return
    if anchor.seq > report.head.seq:
        report.problems.append(
            Problem(
                last,
                report.head.seq,
                f"the log ends at entry {report.head.seq} but its head records entry "
                f"{anchor.seq}: entries were removed from the end",
                unit,
            )
        )
    elif hashes.get(anchor.seq) != anchor.hash:
        report.problems.append(
            Problem(
                0,
                anchor.seq,
                f"the head records entry {anchor.seq} with hash {anchor.hash[:16]}..., "
                "which the log does not hold: the log was rewritten",
                unit,
            )
        )


def verify(path: Path, *, expect: Head | None = None, use_head_file: bool = True) -> Report:
    """Check every entry of the log at ``path``; each problem names its line and entry."""
    report = Report()
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
    hashes = check_chain((parse_entry(raw) for raw in lines), report)
    anchor = expect
    if anchor is None and use_head_file:
        head_path = path.with_name(path.name + ".head")
        if head_path.exists():
            try:
                data = orjson.loads(head_path.read_bytes())
                anchor = Head(seq=int(data["seq"]), hash=str(data["hash"]))
            except (ValueError, KeyError, TypeError):
                report.problems.append(Problem(0, None, f"{head_path.name} is unreadable"))
    if anchor is not None:
        check_anchor(report, hashes, anchor, last=len(lines))
    return report

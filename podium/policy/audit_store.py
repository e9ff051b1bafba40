"""The audit log in the store (``access.audit.backend: store``): SQLite or PostgreSQL, table
``podium_audit``, so replicas on several machines keep their evidence in one place.

One chain per writer: each server process appends to a chain of its own (``access.audit.chain``,
default ``<host>:<pid>:<start time>``), so replicas never wait on each other's row lock. Rows
hold exactly the fields of a file entry and are hashed the same way (:func:`chained`,
:func:`check_chain`), so a chain read back verifies like a file. The primary key
``(chain, seq)`` refuses a second row at a position: writers sharing a name cannot fork a chain
(the loser re-reads the head and re-chains its batch).

Against someone who can write to the database: an edited row breaks its hash; a row edited
with its hash recomputed, or rows cut from the end, still leave a consistent chain, which is
why ``podium audit heads`` prints every chain's head, to be kept outside the database, and
``podium audit verify --store --expect HEADS`` checks the chains against it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from podium.policy.audit import (
    AuditTrail,
    Head,
    Pending,
    Report,
    chained,
    check_anchor,
    check_chain,
    check_fields,
)
from podium.store.tables import SQLExecutor

if TYPE_CHECKING:
    from podium.policy.settings import AccessSettings

_COLUMNS = "chain, seq, created_at, actor, action, target, details, prev_hash, hash"
_ROW = "(" + ", ".join("?" for _ in _COLUMNS.split(", ")) + ")"
_HEAD = "SELECT seq, hash FROM podium_audit WHERE chain = ? ORDER BY seq DESC LIMIT 1"
_HEADS = (
    "SELECT a.chain, a.seq, a.hash FROM podium_audit a JOIN "
    "(SELECT chain, MAX(seq) AS seq FROM podium_audit GROUP BY chain) last "
    "ON a.chain = last.chain AND a.seq = last.seq ORDER BY a.chain"
)
_ALL = f"SELECT {_COLUMNS} FROM podium_audit ORDER BY chain, seq"


def process_chain() -> str:
    """A chain name no other process uses: host, process id and start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time())}"


class StoreAuditSink:
    """Appends batches to one chain in the store; a batch is one INSERT, so all or nothing."""

    def __init__(self, store: SQLExecutor, chain: str | None = None) -> None:
        self.store = store
        self._chain = chain
        self._head: Head | None = None  # None: read it from the store before the next write
        self._tried: tuple[list[Pending], Head] | None = None  # the write in flight, its head

    @property
    def chain(self) -> str:
        # Named on first use, in the process that writes (server workers are forked).
        if self._chain is None:
            self._chain = process_chain()
        return self._chain

    async def write(self, batch: list[Pending]) -> None:
        try:
            if self._head is None:
                rows = await self.store.execute(_HEAD, (self.chain,))
                self._head = Head(seq=int(rows[0][0]), hash=str(rows[0][1])) if rows else Head()
                batch = self._unwritten(batch)
            if not batch:
                return
            entries = chained(self._head, batch)
            self._tried = (batch, Head(seq=entries[-1]["seq"], hash=entries[-1]["hash"]))
            params: list[Any] = []
            for entry in entries:
                params += [
                    self.chain,
                    entry["seq"],
                    entry["time"],
                    entry["actor"],
                    entry["action"],
                    entry["target"],
                    orjson.dumps(entry["details"]).decode(),
                    entry["prev_hash"],
                    entry["hash"],
                ]
            await self.store.execute(
                f"INSERT INTO podium_audit ({_COLUMNS}) VALUES " + ", ".join(_ROW for _ in entries),
                tuple(params),
            )
        except Exception:
            # Unreachable, or another writer took these positions: re-read the head next time.
            self._head = None
            raise
        self._head, self._tried = self._tried[1], None

    def _unwritten(self, batch: list[Pending]) -> list[Pending]:
        """``batch`` less what a write reported as failed did store after all (the connection
        dropped after the commit): the chain's head is then exactly that write's last entry."""
        if self._tried is None or self._head != self._tried[1]:
            return batch
        tried, self._tried = self._tried[0], None
        done = len(tried)
        if len(batch) >= done and all(a is b for a, b in zip(batch, tried, strict=False)):
            return batch[done:]
        return batch

    def write_blocking(self, batch: list[Pending]) -> bool:
        return False  # the store is async: the trail writes once an event loop runs

    async def aclose(self) -> None:
        return None  # the store belongs to the app, which closes it


def build_trail(settings: AccessSettings, store: object, data_dir: Path) -> AuditTrail:
    """The trail ``access.audit`` asks for; the file log is also the store's fall-back."""
    path = settings.audit_path(data_dir)
    if settings.audit.backend == "store" and isinstance(store, SQLExecutor):
        return AuditTrail(path, StoreAuditSink(store, settings.audit.chain))
    return AuditTrail(path)


# -- heads and verification ------------------------------------------------------------------------


async def read_heads(store: SQLExecutor) -> dict[str, Head]:
    rows = await store.execute(_HEADS)
    return {str(row[0]): Head(seq=int(row[1]), hash=str(row[2])) for row in rows}


def parse_head(text: str) -> Head:
    """``SEQ:HASH`` as ``podium audit head`` prints it."""
    seq, sep, digest = text.strip().partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise ValueError(f"{text!r} is not SEQ:HASH (64 hex digits)")
    return Head(seq=int(seq), hash=digest)


def dump_heads(heads: dict[str, Head]) -> str:
    return orjson.dumps(
        {chain: f"{head.seq}:{head.hash}" for chain, head in heads.items()},
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
    ).decode()


def load_heads(text: str) -> dict[str, Head]:
    """Heads as :func:`dump_heads` wrote them."""
    data = orjson.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object of chain: SEQ:HASH")
    return {str(chain): parse_head(str(value)) for chain, value in data.items()}


async def latest_entries(store: SQLExecutor, count: int) -> list[dict[str, Any]]:
    """The last ``count`` entries of all chains, oldest first, each naming its chain."""
    if count <= 0:
        return []
    rows = await store.execute(
        f"SELECT {_COLUMNS} FROM podium_audit ORDER BY created_at DESC, chain, seq DESC LIMIT ?",
        (count,),
    )
    return [{"chain": row[0], **_as_dict(row)} for row in reversed(rows)]


def _as_dict(row: Any) -> dict[str, Any]:
    try:
        details = orjson.loads(row[6])
    except orjson.JSONDecodeError:
        details = row[6]
    return {
        "seq": row[1],
        "time": row[2],
        "actor": row[3],
        "action": row[4],
        "target": row[5],
        "details": details,
        "prev_hash": row[7],
        "hash": row[8],
    }


def _entry(row: Any) -> dict[str, Any] | str:
    try:
        orjson.loads(row[6])
    except orjson.JSONDecodeError:
        return "details are not JSON"
    return check_fields(_as_dict(row))


@dataclass(slots=True)
class StoreReport:
    chains: dict[str, Report] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # chains the heads name, absent from the store

    @property
    def ok(self) -> bool:
        return not self.missing and all(report.ok for report in self.chains.values())

    @property
    def entries(self) -> int:
        return sum(report.entries for report in self.chains.values())


async def verify_store(store: SQLExecutor, *, expect: dict[str, Head] | None = None) -> StoreReport:
    """Re-hash every chain in the store; with ``expect`` (heads noted earlier), each chain must
    still hold its noted head, and every chain noted must still be there."""
    rows_by_chain: dict[str, list[Any]] = {}
    for row in await store.execute(_ALL):
        rows_by_chain.setdefault(str(row[0]), []).append(row)
    result = StoreReport()
    for chain, rows in rows_by_chain.items():
        report = Report()
        hashes = check_chain((_entry(row) for row in rows), report, unit="row")
        if expect is not None and chain in expect:
            check_anchor(report, hashes, expect[chain], last=len(rows), unit="row")
        result.chains[chain] = report
    if expect is not None:
        result.missing = sorted(
            chain for chain, head in expect.items() if head.seq > 0 and chain not in rows_by_chain
        )
    return result

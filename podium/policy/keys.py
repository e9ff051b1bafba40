"""Virtual keys: random tokens shown once, stored only as a hash, each with an owner, scopes,
an expiry, a budget and rate limits.

A key reads ``pk-<id>-<secret>`` (application) or ``pa-<id>-<secret>`` (admin). The id names the
key in listings, logs and audit entries; the secret is 32 random bytes. The store keeps the
SHA-256 of the whole key, never the key. A slow password hash would buy nothing here: the
secret has 256 bits of entropy, so a leaked hash cannot be brute-forced, and a fast hash keeps
the per-request check in microseconds.

The request path never reads the database: :class:`KeyCache` holds a snapshot of the whole
table (it is small: one row per application) and reloads it after ``ttl`` seconds, so a revoked
key stops working at most ``ttl`` seconds later on every replica, and a flood of forged keys
costs one dictionary lookup each.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from podium.context import Caller
from podium.store.tables import SQLExecutor

APP_PREFIX = "pk"
ADMIN_PREFIX = "pa"
MAX_KEY_LENGTH = 128
# Anything else is refused before hashing: no lookup, no SQL, no log of the value.
KEY_PATTERN = re.compile(r"(p[ka])-([0-9a-f]{10})-([A-Za-z0-9_-]{43})")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{10}")
SCOPE_KINDS = ("model", "worker", "contract", "route")
Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")

log = logging.getLogger("podium.keys")


class KeyProblem(Exception):
    """A key operation that cannot be done (unknown id, bad scope); the message says why."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(*, admin: bool = False) -> tuple[str, str]:
    """A fresh ``(key_id, key)``."""
    key_id = secrets.token_hex(5)
    return key_id, mint(key_id, admin=admin)


def mint(key_id: str, *, admin: bool) -> str:
    prefix = ADMIN_PREFIX if admin else APP_PREFIX
    return f"{prefix}-{key_id}-{secrets.token_urlsafe(32)}"


def parse_key(presented: str) -> tuple[bool, str] | None:
    """``(is_admin, key_id)`` for a well-formed key, else None. Never raises."""
    if len(presented) > MAX_KEY_LENGTH:
        return None
    match = KEY_PATTERN.fullmatch(presented)
    if match is None:
        return None
    return match.group(1) == ADMIN_PREFIX, match.group(2)


def looks_like_podium_key(presented: str) -> bool:
    return presented.startswith((f"{APP_PREFIX}-", f"{ADMIN_PREFIX}-"))


def validate_scope(scope: str) -> str:
    if scope == "*":
        return scope
    kind, sep, pattern = scope.partition(":")
    if not sep or kind not in SCOPE_KINDS or not pattern or len(scope) > 200:
        raise KeyProblem(
            f"bad scope {scope!r}: use '*' or KIND:NAME with KIND one of "
            f"{', '.join(SCOPE_KINDS)} (NAME may use * and ? wildcards)"
        )
    return scope


def scope_allows(scopes: Sequence[str], kind: str, name: str) -> bool:
    """Scopes narrow per kind: a key that names no scope of ``kind`` is not restricted on it;
    one that names some may use only the names they match."""
    if "*" in scopes:
        return True
    patterns = [s.partition(":")[2] for s in scopes if s.partition(":")[0] == kind]
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    key_hash: str
    owner: str
    name: str = ""
    is_admin: bool = False
    scopes: list[str] = field(default_factory=lambda: ["*"])
    metadata: dict[str, str] = field(default_factory=dict)
    budget_usd: float | None = None
    budget_period: Period = "month"
    rpm: int | None = None
    tpm: int | None = None
    expires_at: float | None = None
    created_at: float = 0.0
    revoked_at: float | None = None
    previous_hash: str | None = None  # the secret before the last rotation...
    previous_expires_at: float | None = None  # ...accepted until then

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def has_limits(self) -> bool:
        return self.budget_usd is not None or self.rpm is not None or self.tpm is not None

    def caller(self) -> Caller:
        # By position (key_id, owner, scopes, metadata, is_admin): a keyword argument to a
        # dataclass costs ~0.5k instructions, and this runs on every request.
        return Caller(
            self.key_id, self.owner, list(self.scopes), dict(self.metadata), self.is_admin
        )

    def public(self, now: float | None = None) -> dict[str, Any]:
        """What listings show: everything but the hashes."""
        return {
            "key_id": self.key_id,
            "owner": self.owner,
            "name": self.name,
            "admin": self.is_admin,
            "scopes": self.scopes,
            "metadata": self.metadata,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "expires_at": self.expires_at,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "state": self.state(time.time() if now is None else now),
        }


# -- the store -------------------------------------------------------------------------------------


_COLUMNS = (
    "key_id, key_hash, owner, name, is_admin, scopes, metadata, budget_usd, budget_period, "
    "rpm, tpm, expires_at, created_at, revoked_at, previous_hash, previous_expires_at"
)


def _from_row(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        key_id=row[0],
        key_hash=row[1],
        owner=row[2],
        name=row[3],
        is_admin=bool(row[4]),
        scopes=list(orjson.loads(row[5])),
        metadata=dict(orjson.loads(row[6])),
        budget_usd=row[7],
        budget_period=row[8],
        rpm=row[9],
        tpm=row[10],
        expires_at=row[11],
        created_at=row[12],
        revoked_at=row[13],
        previous_hash=row[14],
        previous_expires_at=row[15],
    )


@dataclass(slots=True)
class NewKey:
    """What :meth:`KeyStore.create` takes; the secret is minted by the store."""

    owner: str
    name: str = ""
    admin: bool = False
    scopes: list[str] = field(default_factory=lambda: ["*"])
    metadata: dict[str, str] = field(default_factory=dict)
    budget_usd: float | None = None
    budget_period: Period = "month"
    rpm: int | None = None
    tpm: int | None = None
    expires_at: float | None = None

    def check(self) -> None:
        if not self.owner or len(self.owner) > 200:
            raise KeyProblem("a key needs an owner (a team or an application), up to 200 chars")
        self.scopes = [validate_scope(scope) for scope in self.scopes] or ["*"]
        if self.budget_period not in PERIODS:
            raise KeyProblem(f"budget period must be one of {', '.join(PERIODS)}")
        if self.budget_usd is not None and self.budget_usd < 0:
            raise KeyProblem("budget must be zero or more USD")
        for label, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and value < 1:
                raise KeyProblem(f"{label} must be at least 1")


class KeyStore:
    """Keys in the ``podium_keys`` table, through any :class:`SQLExecutor`."""

    def __init__(self, db: SQLExecutor, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def create(self, spec: NewKey) -> tuple[KeyRecord, str]:
        """The new record and the key itself, which is never stored and cannot be shown again."""
        spec.check()
        key_id, key = new_key(admin=spec.admin)
        record = KeyRecord(
            key_id=key_id,
            key_hash=hash_key(key),
            owner=spec.owner,
            name=spec.name,
            is_admin=spec.admin,
            scopes=spec.scopes,
            metadata=spec.metadata,
            budget_usd=spec.budget_usd,
            budget_period=spec.budget_period,
            rpm=spec.rpm,
            tpm=spec.tpm,
            expires_at=spec.expires_at,
            created_at=self._clock(),
        )
        await self._db.execute(
            f"INSERT INTO podium_keys ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.key_id,
                record.key_hash,
                record.owner,
                record.name,
                int(record.is_admin),
                orjson.dumps(record.scopes).decode(),
                orjson.dumps(record.metadata).decode(),
                record.budget_usd,
                record.budget_period,
                record.rpm,
                record.tpm,
                record.expires_at,
                record.created_at,
                None,
                None,
                None,
            ),
        )
        return record, key

    async def all(self) -> list[KeyRecord]:
        rows = await self._db.execute(f"SELECT {_COLUMNS} FROM podium_keys ORDER BY created_at")
        return [_from_row(row) for row in rows]

    async def get(self, key_id: str) -> KeyRecord | None:
        if not KEY_ID_PATTERN.fullmatch(key_id):
            return None
        rows = await self._db.execute(
            f"SELECT {_COLUMNS} FROM podium_keys WHERE key_id = ?", (key_id,)
        )
        return _from_row(rows[0]) if rows else None

    async def _existing(self, key_id: str) -> KeyRecord:
        record = await self.get(key_id)
        if record is None:
            raise KeyProblem(f"no key with id {key_id!r}")
        return record

    async def revoke(self, key_id: str) -> KeyRecord:
        record = await self._existing(key_id)
        if record.revoked_at is None:
            record.revoked_at = self._clock()
            await self._db.execute(
                "UPDATE podium_keys SET revoked_at = ? WHERE key_id = ?",
                (record.revoked_at, key_id),
            )
        return record

    async def rotate(self, key_id: str, *, grace_seconds: float = 0.0) -> tuple[KeyRecord, str]:
        """A new secret for the same key (same id, owner, scopes, limits and budget so far).
        The old secret keeps working for ``grace_seconds`` (0: stops at once)."""
        record = await self._existing(key_id)
        if record.revoked_at is not None:
            raise KeyProblem(f"key {key_id!r} is revoked; create a new one instead")
        key = mint(key_id, admin=record.is_admin)
        now = self._clock()
        updated = replace(
            record,
            key_hash=hash_key(key),
            previous_hash=record.key_hash if grace_seconds > 0 else None,
            previous_expires_at=now + grace_seconds if grace_seconds > 0 else None,
        )
        await self._db.execute(
            "UPDATE podium_keys SET key_hash = ?, previous_hash = ?, previous_expires_at = ? "
            "WHERE key_id = ?",
            (updated.key_hash, updated.previous_hash, updated.previous_expires_at, key_id),
        )
        return updated, key


# -- the cache the request path reads --------------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    by_hash: dict[str, KeyRecord]
    by_id: dict[str, KeyRecord]
    app_keys: int
    admin_keys: int
    loaded_at: float
    # Keys presented since this snapshot was read that matched a record -> (the record, True
    # unless it is the secret before a rotation). Checking a key's shape and hashing it are
    # half of a request's key check (15k instructions); a key seen before skips both. Only
    # matching keys are kept, so forged ones cannot grow it (at most two per record), and it
    # goes with the snapshot, after ``ttl`` seconds at most.
    seen: dict[str, tuple[KeyRecord, bool]] = field(default_factory=dict)


class KeyUnavailable(Exception):
    """The key table could not be read and no fresh snapshot is at hand."""


class KeyCache:
    def __init__(
        self,
        store: KeyStore,
        *,
        ttl: float,
        stale_limit: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.stale_limit = stale_limit
        self.stale_wait = 1.0  # seconds a request waits for a reload when older keys are at hand
        self._failed_at: float | None = None
        self._clock = clock
        self._wall = wall
        self._snapshot: Snapshot | None = None
        self._loading: asyncio.Future[Snapshot] | None = None

    def invalidate(self) -> None:
        self._snapshot = None

    def fresh(self) -> Snapshot | None:
        """The snapshot if it is within its TTL, else None (then :meth:`snapshot` reloads).
        The request path asks this first: most requests need no reload, and a plain call
        costs less than awaiting a coroutine (about 2k instructions a request per lookup)."""
        current = self._snapshot
        if current is not None and self._clock() - current.loaded_at < self.ttl:
            return current
        return None

    async def snapshot(self) -> Snapshot:
        current = self._snapshot
        now = self._clock()
        if current is not None and now - current.loaded_at < self.ttl:
            return current
        # The store is down (a PostgreSQL restart, say): keep answering from the last snapshot
        # read, for at most ``stale_limit`` seconds, rather than refuse every request; ask the
        # store again once per TTL, and never keep a request waiting long for it. Keys changed
        # meanwhile are seen once the store answers again.
        stale = (
            current if current is not None and now - current.loaded_at < self.stale_limit else None
        )
        if stale is not None and self._failed_at is not None and now - self._failed_at < self.ttl:
            return stale
        if self._loading is None:  # one reload at a time; concurrent callers share it
            self._loading = asyncio.ensure_future(self._load())
            # A reload nobody waits for any more (see below) must not log its error as lost.
            self._loading.add_done_callback(lambda done: done.cancelled() or done.exception())
        loading = self._loading
        try:
            if stale is None:
                fresh = await asyncio.shield(loading)
            else:
                async with asyncio.timeout(self.stale_wait):
                    fresh = await asyncio.shield(loading)
        except Exception as error:
            self._failed_at = self._clock()
            if stale is not None:
                log.warning("key store unavailable (%s); using keys read earlier", error)
                return stale
            raise KeyUnavailable(type(error).__name__) from None
        finally:
            if self._loading is loading and loading.done():
                self._loading = None
        self._failed_at = None
        return fresh

    async def _load(self) -> Snapshot:
        records = await self.store.all()
        by_hash: dict[str, KeyRecord] = {}
        now = self._wall()
        for record in records:
            by_hash[record.key_hash] = record
            if (
                record.previous_hash is not None
                and record.previous_expires_at is not None
                and record.previous_expires_at > now
            ):
                by_hash[record.previous_hash] = record
        live = [r for r in records if r.state(now) == "active"]
        snapshot = Snapshot(
            by_hash=by_hash,
            by_id={record.key_id: record for record in records},
            app_keys=sum(1 for r in live if not r.is_admin),
            admin_keys=sum(1 for r in live if r.is_admin),
            loaded_at=self._clock(),
        )
        self._snapshot = snapshot
        return snapshot

    async def find(self, presented: str) -> tuple[KeyRecord | None, str]:
        """The active record for ``presented`` and ``""``, or None and why it was refused."""
        if parse_key(presented) is None:  # refused before the store is asked
            return None, "malformed key"
        return self.find_in(self.fresh() or await self.snapshot(), presented)

    def find_in(self, snapshot: Snapshot, presented: str) -> tuple[KeyRecord | None, str]:
        """:meth:`find` in a snapshot already at hand."""
        seen = snapshot.seen.get(presented)
        if seen is not None:
            return self._check(*seen)
        parsed = parse_key(presented)
        if parsed is None:
            return None, "malformed key"
        return self._match(snapshot, presented, parsed[1])

    def _match(
        self, snapshot: Snapshot, presented: str, key_id: str
    ) -> tuple[KeyRecord | None, str]:
        digest = hash_key(presented)
        # A dictionary lookup by the hash: comparing hashes leaks nothing an attacker can use,
        # because they cannot choose inputs with a given hash prefix.
        record = snapshot.by_hash.get(digest)
        if record is None or record.key_id != key_id:
            return None, "unknown key"
        seen = snapshot.seen[presented] = (record, record.key_hash == digest)
        return self._check(*seen)

    def check(self, record: KeyRecord) -> tuple[KeyRecord | None, str]:
        """The record if its key is active now (not revoked or expired), found by its id."""
        return self._check(record, True)

    def _check(self, record: KeyRecord, current: bool) -> tuple[KeyRecord | None, str]:
        """The record, unless the key is a rotated-out secret past its grace, or the key is
        revoked or expired (checked on every request: time moves within a snapshot)."""
        now = self._wall()
        if not current and (
            record.previous_expires_at is None or record.previous_expires_at <= now
        ):
            return None, "rotated key"
        state = record.state(now)
        if state != "active":
            return None, f"{state} key"
        return record, ""

    async def by_id(self, key_id: str) -> KeyRecord | None:
        return (self.fresh() or await self.snapshot()).by_id.get(key_id)

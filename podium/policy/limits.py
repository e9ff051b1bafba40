"""Rate limits and budget reservations behind one small interface, kept in this process.

Requests per minute and tokens per minute are token buckets (capacity = the limit, refilled
continuously over a minute). A budget is money per period: a request reserves its estimated
cost before the upstream call, and settles with the real cost after; a reservation is refused
when spent + held + this request would pass the budget. Money is counted in integer nano-USD
so that sums are exact. :mod:`podium.policy.redis_limits` is the same interface shared by
replicas.

Check-and-take happens without an ``await`` in between, so concurrent requests on one event
loop cannot both take the last of a budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

NANO = 1_000_000_000


def to_nano(usd: float, *, up: bool = False) -> int:
    scaled = usd * NANO
    if not up:
        return round(scaled)
    # Rounded first so float noise (1.0000000000000002) does not round a reservation up.
    # round(scaled, 3) goes through decimal digits (3k instructions), and its answer is plain
    # away from the rounding boundary at 0.0005 above a whole number: it runs only near it.
    whole = math.floor(scaled)
    fraction = scaled - whole
    if fraction > 0.001:
        return whole + 1
    if fraction < 0.0004:
        return whole
    return math.ceil(round(scaled, 3))


def usd(nano: int) -> float:
    return nano / NANO


def period_of(period: str, now: float) -> tuple[str, float]:
    """The current period's label (UTC) and the seconds until it ends."""
    label, _, end = period_bounds(period, now)
    return label, end - now


def period_bounds(period: str, now: float) -> tuple[str, float, float]:
    """The label (UTC) of the period holding ``now``, and its start and end as timestamps."""
    moment = datetime.fromtimestamp(now, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
        label = start.strftime("%Y-%m-%d")
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
        iso = start.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    return label, start.timestamp(), end.timestamp()


class Periods:
    """:func:`period_of` for every request, computed once per period: the calendar work
    (datetime, strftime) is most of a budget reservation's CPU otherwise."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, float, float]] = {}

    def of(self, period: str, now: float) -> tuple[str, float]:
        known = self._known.get(period)
        if known is None or not known[1] <= now < known[2]:
            known = self._known[period] = period_bounds(period, now)
        return known[0], known[2] - now


class RateTake(NamedTuple):
    """What taking from a key's buckets gave: ``wait`` 0.0 when taken (otherwise the seconds
    until there would be room), and what each bucket holds now (None: no such limit)."""

    wait: float
    requests_left: float | None = None
    tokens_left: float | None = None


@dataclass(slots=True)
class BudgetVerdict:
    allowed: bool
    spent: int  # nano-USD settled this period
    held: int  # nano-USD reserved by requests in flight (before this one)


@dataclass(slots=True)
class Closing:
    """What a finished request gives back to its key's limits, in one trip to the store: the
    budget reservation settled at the real cost, and the token bucket corrected by the real
    token count. Either part may be absent (``reservation`` None, ``tpm`` 0). Not frozen: a
    frozen dataclass sets each field through object.__setattr__ (made on every request)."""

    key_id: str
    period: str | None = None
    reservation: str | None = None
    actual: int = 0  # nano-USD
    period_seconds: float = 0.0
    tpm: int = 0
    token_delta: int = 0  # real tokens - tokens taken


class LimitsUnavailable(Exception):
    """The shared limit store could not be reached."""


class LimitBackend(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def take_rate(
        self, key_id: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateTake:
        """Take one request and ``tokens`` from the key's buckets, or nothing."""

    async def adjust_tokens(self, key_id: str, *, tpm: int, delta: int) -> None:
        """Correct the token bucket once the real count is known (``delta`` = real - taken)."""

    async def reserve(
        self,
        key_id: str,
        period: str,
        *,
        budget: int,
        amount: int,
        reservation: str,
        hold_seconds: float,
        period_seconds: float,
    ) -> BudgetVerdict: ...

    async def settle(
        self, key_id: str, period: str, *, reservation: str, actual: int, period_seconds: float
    ) -> None:
        """Release ``reservation`` and add the real cost to the period's spend."""

    async def close(self, closing: Closing) -> None:
        """:meth:`settle` and :meth:`adjust_tokens` for a finished request, together."""

    async def usage(self, key_id: str, period: str) -> tuple[int, int]:
        """(spent, held) in nano-USD."""


@dataclass(slots=True)
class _Bucket:
    # Refilled continuously over a minute up to the capacity (_refilled).
    level: float
    stamp: float


def _refilled(buckets: dict[str, _Bucket], key_id: str, capacity: int, now: float) -> _Bucket:
    """The key's bucket (full when new), refilled up to ``now``."""
    bucket = buckets.get(key_id)
    if bucket is None:
        bucket = buckets[key_id] = _Bucket(float(capacity), now)
    # min(float(capacity), level) written out: the builtin costs more than the bucket.
    level = bucket.level + (now - bucket.stamp) * capacity / 60.0
    bucket.level = level if level < capacity else float(capacity)
    bucket.stamp = now
    return bucket


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    held: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (amount, expiry)
    # Kept with ``held`` so that a reservation neither sums nor scans it: the sum of its
    # amounts, and a time no hold expires before (the earliest expiry, or earlier).
    held_total: int = 0
    next_expiry: float = math.inf

    def release(self, reservation: str) -> None:
        released = self.held.pop(reservation, None)
        if released is not None:
            self.held_total -= released[0]

    def expire(self, now: float) -> None:
        """Forget the holds that expired (requests that never settled)."""
        for stale in [rid for rid, (_, expiry) in self.held.items() if expiry <= now]:
            del self.held[stale]
        self.held_total = sum(amount for amount, _ in self.held.values())
        self.next_expiry = min((expiry for _, expiry in self.held.values()), default=math.inf)


class MemoryLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Key id -> bucket, one table per kind: a string key is hashed once and kept, a
        # (key, kind) tuple is hashed on every lookup.
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}
        self._budgets: dict[str, tuple[str, _Budget]] = {}  # key -> (period, state)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def take_rate(
        self, key_id: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateTake:
        return self.take_now(key_id, rpm, tpm, tokens)

    # The plain methods below are the whole work of the async ones (which never wait): the
    # limits hook calls them directly for this backend, without a coroutine per call.

    def take_now(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> RateTake:
        """:meth:`take_rate`, as a plain call."""
        # The two buckets written out rather than looped over: this runs on every request.
        now = self._clock()
        wait = 0.0
        requests = token_bucket = None
        need = 0
        if rpm:
            requests = _refilled(self._requests, key_id, rpm, now)
            wait = (1 - requests.level) * 60.0 / rpm  # rpm >= 1: a request needs 1
        if tpm:
            token_bucket = _refilled(self._tokens, key_id, tpm, now)
            # A request larger than the whole limit waits for a full bucket, not forever.
            need = tokens if tokens < tpm else tpm
            token_wait = (need - token_bucket.level) * 60.0 / tpm
            if requests is None or token_wait > wait:
                wait = token_wait
        if wait > 0:
            return RateTake(
                wait,
                None if requests is None else requests.level,
                None if token_bucket is None else token_bucket.level,
            )
        if requests is not None:
            requests.level -= 1
        if token_bucket is not None:
            token_bucket.level -= need
        return RateTake(
            0.0,
            None if requests is None else requests.level,
            None if token_bucket is None else token_bucket.level,
        )

    async def adjust_tokens(self, key_id: str, *, tpm: int, delta: int) -> None:
        self.adjust_now(key_id, tpm, delta)

    def adjust_now(self, key_id: str, tpm: int, delta: int) -> None:
        """:meth:`adjust_tokens`, as a plain call."""
        bucket = _refilled(self._tokens, key_id, tpm, self._clock())
        # max(-float(tpm), min(float(tpm), level - delta)), written out
        level = bucket.level - delta
        if not level < tpm:
            level = float(tpm)
        bucket.level = level if level > -tpm else -float(tpm)

    async def reserve(
        self,
        key_id: str,
        period: str,
        *,
        budget: int,
        amount: int,
        reservation: str,
        hold_seconds: float,
        period_seconds: float,
    ) -> BudgetVerdict:
        return self.reserve_now(key_id, period, budget, amount, reservation, hold_seconds)

    def reserve_now(
        self,
        key_id: str,
        period: str,
        budget: int,
        amount: int,
        reservation: str,
        hold_seconds: float,
    ) -> BudgetVerdict:
        """:meth:`reserve`, as a plain call."""
        current = self._budgets.get(key_id)
        if current is None or current[0] != period:
            current = self._budgets[key_id] = (period, _Budget())
        state = current[1]
        now = self._clock()
        if now >= state.next_expiry:
            state.expire(now)
        held = state.held_total
        if state.spent + held + amount > budget:
            return BudgetVerdict(False, state.spent, held)
        state.release(reservation)  # the same id twice: the new hold replaces the old
        expiry = now + hold_seconds
        state.held[reservation] = (amount, expiry)
        state.held_total += amount
        if expiry < state.next_expiry:
            state.next_expiry = expiry
        return BudgetVerdict(True, state.spent, held)

    async def settle(
        self, key_id: str, period: str, *, reservation: str, actual: int, period_seconds: float
    ) -> None:
        self.settle_now(key_id, period, reservation, actual)

    def settle_now(self, key_id: str, period: str, reservation: str, actual: int) -> None:
        """:meth:`settle`, as a plain call."""
        current = self._budgets.get(key_id)
        if current is None or current[0] != period:
            return  # the period is over; its spend no longer matters
        state = current[1]
        state.release(reservation)
        state.spent += actual

    async def close(self, closing: Closing) -> None:
        self.close_now(
            closing.key_id,
            closing.period,
            closing.reservation,
            closing.actual,
            closing.tpm,
            closing.token_delta,
        )

    def close_now(
        self,
        key_id: str,
        period: str | None,
        reservation: str | None,
        actual: int,
        tpm: int,
        token_delta: int,
    ) -> None:
        """:meth:`close`, as a plain call, with the :class:`Closing`'s fields as arguments."""
        if reservation is not None and period is not None:
            self.settle_now(key_id, period, reservation, actual)
        if tpm and token_delta:
            self.adjust_now(key_id, tpm, token_delta)

    async def usage(self, key_id: str, period: str) -> tuple[int, int]:
        current = self._budgets.get(key_id)
        if current is None or current[0] != period:
            return 0, 0
        return current[1].spent, current[1].held_total

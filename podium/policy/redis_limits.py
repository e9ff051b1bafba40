"""Rate limits and budget reservations in Redis, so they hold across gateway replicas.

Each check-and-take is one Lua script, which Redis runs atomically: two replicas cannot both
take the last of a budget. Scripts read the time from Redis itself (``TIME``), so replicas with
skewed clocks still share one bucket. Keys carry the virtual key's id in braces (a hash tag), so
one key's state stays on one Redis Cluster slot.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from podium.policy.limits import BudgetVerdict, Closing, LimitsUnavailable, RateTake
from podium.state.redis_client import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_QUEUE_TIMEOUT,
    pooled_redis,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Seconds an interactive caller's mark as waiting for a shared slot lasts unless it looks again
# (it looks at least every 0.25 s, podium/capacity.py), so a caller that went away holds up
# background work no longer than this.
WAITING_MARK = 1.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS[1]: the key's bucket hash. ARGV: rpm, tpm (0 = no limit), tokens. Returns the wait in
# seconds (0 when taken) and each bucket's level after it ('' for no limit), as strings.
TAKE_RATE = (
    _NOW
    + """
local caps = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local needs = {1, tonumber(ARGV[3])}
local names = {'r', 't'}
local state = {}
local wait = 0
for i = 1, 2 do
  local cap = caps[i]
  if cap > 0 then
    local level = tonumber(redis.call('HGET', KEYS[1], names[i] .. 'l') or cap)
    local stamp = tonumber(redis.call('HGET', KEYS[1], names[i] .. 's') or now)
    level = math.min(cap, level + math.max(0, now - stamp) * cap / 60)
    local need = math.min(needs[i], cap)
    if level < need then wait = math.max(wait, (need - level) * 60 / cap) end
    state[i] = {level, need}
  end
end
local left = {'', ''}
for i = 1, 2 do
  if state[i] then
    local level = state[i][1]
    if wait == 0 then level = level - state[i][2] end
    redis.call('HSET', KEYS[1], names[i] .. 'l', tostring(level), names[i] .. 's', tostring(now))
    left[i] = tostring(level)
  end
end
redis.call('EXPIRE', KEYS[1], 180)
return {tostring(wait), left[1], left[2]}
"""
)

# KEYS: spent (integer nano-USD), held (hash id -> amount), expiry (zset id -> time).
# ARGV: budget, amount, reservation id, hold seconds, key ttl seconds.
RESERVE = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, rid in ipairs(expired) do
  redis.call('HDEL', KEYS[2], rid)
  redis.call('ZREM', KEYS[3], rid)
end
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local held = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[2])) do held = held + tonumber(amount) end
local amount = tonumber(ARGV[2])
if spent + held + amount > tonumber(ARGV[1]) then
  return {0, tostring(spent), tostring(held)}
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return {1, tostring(spent), tostring(held)}
"""
)

# A finished request, in one round trip: its reservation released and its real cost added to
# the period's spend (when ARGV[1], the reservation, is not empty), and its token bucket
# corrected by the real count (when ARGV[4], the TPM, is above 0). KEYS: spent, held, expiry,
# bucket. ARGV: reservation, actual nano-USD, key ttl seconds, tpm, delta (real - taken). The
# {key} hash tag keeps all four in one cluster slot.
CLOSE = (
    _NOW
    + """
if ARGV[1] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('INCRBY', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local cap = tonumber(ARGV[4])
if cap > 0 then
  local level = tonumber(redis.call('HGET', KEYS[4], 'tl') or cap)
  local stamp = tonumber(redis.call('HGET', KEYS[4], 'ts') or now)
  level = math.min(cap, level + math.max(0, now - stamp) * cap / 60)
  level = math.max(-cap, math.min(cap, level - tonumber(ARGV[5])))
  redis.call('HSET', KEYS[4], 'tl', tostring(level), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[4], 180)
end
return 1
"""
)

# A worker's slots shared by replicas (podium/capacity.py). KEYS[1]: the holders of its slots,
# KEYS[2]: those of them that are background work (zsets: holder -> lease expiry), KEYS[3]: the
# interactive callers waiting for one (holder -> expiry of the mark). ARGV: holder, lease
# seconds, limit, background (1 or 0), background limit, seconds a waiting mark lasts. Returns
# 1 when taken. An interactive caller turned away is marked as waiting, and background work is
# turned away while any such mark stands on any replica: interactive calls first, across the
# replicas too. A holder whose replica stopped drops out when its lease lapses, a waiting mark
# when its caller stops looking.
TAKE_SLOT = (
    _NOW
    + """
for i = 1, 3 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
local background = ARGV[4] == '1'
if background and redis.call('ZCARD', KEYS[3]) > 0 then return 0 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  if not background then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[1])
    redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[6]) * 2))
  end
  return 0
end
if background and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if background then redis.call('ZADD', KEYS[2], now + lease, ARGV[1]) end
if not background then redis.call('ZREM', KEYS[3], ARGV[1]) end
for i = 1, 2 do redis.call('EXPIRE', KEYS[i], math.ceil(lease * 2)) end
return 1
"""
)

# KEYS: the two holder sets of one worker. ARGV: lease seconds, then the holders to renew (each
# renewed in the sets that hold it: XX never adds one given back meanwhile).
RENEW_SLOTS = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  for k = 1, 2 do redis.call('ZADD', KEYS[k], 'XX', now + lease, ARGV[i]) end
end
for k = 1, 2 do redis.call('EXPIRE', KEYS[k], math.ceil(lease * 2)) end
return 1
"""
)

GIVE_SLOT = """
for i = 1, 3 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""

USAGE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local held = 0
for _, amount in ipairs(redis.call('HVALS', KEYS[2])) do held = held + tonumber(amount) end
return {tostring(spent), tostring(held)}
"""


class RedisLimits:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "podium:",
        timeout: float = 0.5,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.max_connections = max_connections
        self.queue_timeout = queue_timeout
        self._redis: Redis | None = None
        self._scripts: dict[str, Any] = {}

    async def start(self) -> None:
        self._redis = pooled_redis(
            self.url,
            timeout=self.timeout,
            max_connections=self.max_connections,
            queue_timeout=self.queue_timeout,
            name="podium-limits",
        )
        for name, source in (
            ("take", TAKE_RATE),
            ("reserve", RESERVE),
            ("close", CLOSE),
            ("usage", USAGE),
            ("take_slot", TAKE_SLOT),
            ("renew_slots", RENEW_SLOTS),
            ("give_slot", GIVE_SLOT),
        ):
            self._scripts[name] = self._redis.register_script(source)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        if self._redis is None:
            await self.start()
        from redis.exceptions import RedisError

        try:
            # A backstop past the pool's own bounds (the queue, then a connect and a read).
            async with asyncio.timeout(self.queue_timeout + self.timeout * 2):
                return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            raise LimitsUnavailable(type(error).__name__) from None

    def _bucket(self, key_id: str) -> str:
        return f"{self.prefix}rate:{{{key_id}}}"

    def _budget_keys(self, key_id: str, period: str) -> list[str]:
        base = f"{self.prefix}budget:{{{key_id}}}:{period}"
        return [f"{base}:spent", f"{base}:held", f"{base}:expiry"]

    async def take_rate(
        self, key_id: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateTake:
        wait, requests, tokens_left = await self._run(
            "take", [self._bucket(key_id)], [rpm or 0, tpm or 0, tokens]
        )
        return RateTake(
            float(wait),
            float(requests) if requests else None,
            float(tokens_left) if tokens_left else None,
        )

    async def adjust_tokens(self, key_id: str, *, tpm: int, delta: int) -> None:
        await self.close(Closing(key_id, tpm=tpm, token_delta=delta))

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
        ttl = int(period_seconds + 86_400)
        allowed, spent, held = await self._run(
            "reserve",
            self._budget_keys(key_id, period),
            [budget, amount, reservation, hold_seconds, ttl],
        )
        return BudgetVerdict(bool(int(allowed)), int(float(spent)), int(float(held)))

    async def settle(
        self, key_id: str, period: str, *, reservation: str, actual: int, period_seconds: float
    ) -> None:
        await self.close(
            Closing(
                key_id,
                period=period,
                reservation=reservation,
                actual=actual,
                period_seconds=period_seconds,
            )
        )

    async def close(self, closing: Closing) -> None:
        settles = closing.reservation is not None and closing.period is not None
        adjusts = bool(closing.tpm and closing.token_delta)
        if not settles and not adjusts:
            return
        # Without a reservation the budget keys are only named (same slot), never touched.
        period = closing.period if settles and closing.period is not None else "-"
        await self._run(
            "close",
            [*self._budget_keys(closing.key_id, period), self._bucket(closing.key_id)],
            [
                closing.reservation if settles else "",
                closing.actual,
                int(closing.period_seconds + 86_400),
                closing.tpm if adjusts else 0,
                closing.token_delta,
            ],
        )

    async def usage(self, key_id: str, period: str) -> tuple[int, int]:
        spent, held = await self._run("usage", self._budget_keys(key_id, period), [])
        return int(float(spent)), int(float(held))

    # -- a worker's slots, shared by replicas (podium/capacity.py) -------------------------------

    def _slots(self, worker_key: str) -> list[str]:
        key = f"{self.prefix}slots:{{{worker_key}}}"
        return [key, f"{key}:bg", f"{key}:waiting"]

    async def take_slot(
        self,
        worker_key: str,
        holder: str,
        *,
        limit: int,
        background_limit: int | None,
        lease: float,
    ) -> bool:
        background = background_limit is not None
        taken = await self._run(
            "take_slot",
            self._slots(worker_key),
            [holder, lease, limit, 1 if background else 0, background_limit or 0, WAITING_MARK],
        )
        return bool(int(taken))

    async def renew_slots(self, worker_key: str, holders: list[str], lease: float) -> None:
        if holders:
            await self._run("renew_slots", self._slots(worker_key), [lease, *holders])

    async def give_slot(self, worker_key: str, holder: str) -> None:
        await self._run("give_slot", self._slots(worker_key), [holder])

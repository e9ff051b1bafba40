"""Circuit-breaker state shared by replicas through Redis.

The engine asks its breaker synchronously on every call, so the shared state cannot be a Redis
round trip per request. Instead each replica keeps its own breaker (the same rules as
:class:`~podium.breaker.CircuitBreaker`) and they tell each other about transitions:

- a replica whose breaker opens writes ``<prefix>breaker:<worker>`` (the time it opened, expiring
  after ``reset_after``) and publishes it on ``<prefix>breakers``; every replica opens its own
  breaker for that worker at once, with the same reset time;
- a successful probe that closes a breaker deletes the key and publishes the closing, so peers
  close too; a replica starting up reads the keys still live.

When Redis is unreachable each replica's breaker goes on working alone (a failing worker is
still cut off, replica by replica); nothing on the request path waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from podium.breaker import CircuitBreaker
from podium.config import BreakerPolicy, WorkerConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("podium.breakers")


class SharedBreaker(CircuitBreaker):
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        hub: SharedBreakers,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(policy, clock=clock)
        self.name = name
        self.hub = hub
        self.policy = policy

    def record_failure(self) -> None:
        was_open = self._opened_at
        super().record_failure()
        if self._opened_at is not None and self._opened_at != was_open:
            self.hub.announce(self.name, opened=True, reset_after=self.policy.reset_after)

    def record_success(self) -> None:
        was_open = self._opened_at is not None
        super().record_success()
        if was_open:
            self.hub.announce(self.name, opened=False, reset_after=self.policy.reset_after)

    def open_from_peer(self, opened_epoch: float) -> None:
        """A peer opened this worker's circuit at ``opened_epoch`` (wall clock)."""
        ago = max(0.0, time.time() - opened_epoch)
        self._opened_at = self._clock() - ago
        self._probing = False

    def close_from_peer(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False


class SharedBreakers:
    """The breakers of one replica and its link to the others."""

    def __init__(self, url: str, *, prefix: str = "podium:", timeout: float = 0.25) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.channel = f"{prefix}breakers"
        self._breakers: dict[str, SharedBreaker] = {}
        self._redis: Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.published = 0
        self.received = 0
        self.errors = 0

    def factory(self, config: WorkerConfig) -> SharedBreaker:
        breaker = SharedBreaker(config.name, config.breaker, self)
        self._breakers[config.name] = breaker
        return breaker

    def _key(self, name: str) -> str:
        return f"{self.prefix}breaker:{name}"

    # -- telling the others ----------------------------------------------------------------------

    def announce(self, name: str, *, opened: bool, reset_after: float) -> None:
        if self._redis is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._announce(name, opened, reset_after))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _announce(self, name: str, opened: bool, reset_after: float) -> None:
        redis = self._redis
        if redis is None:
            return
        stamp = time.time()
        message = f"{'open' if opened else 'close'}|{stamp}|{name}"
        try:
            async with asyncio.timeout(self.timeout * 2):
                if opened:
                    await redis.set(self._key(name), str(stamp), px=int(reset_after * 1000))
                else:
                    await redis.delete(self._key(name))
                await redis.publish(self.channel, message)
            self.published += 1
        except Exception as error:  # Redis down: this replica's breaker still works alone
            self.errors += 1
            log.debug("could not share breaker state of %s: %s", name, type(error).__name__)

    # -- hearing from them ------------------------------------------------------------------------

    def apply(self, message: str) -> None:
        kind, _, rest = message.partition("|")
        stamp, _, name = rest.partition("|")
        breaker = self._breakers.get(name)
        if breaker is None:
            return
        self.received += 1
        if kind == "open":
            with contextlib.suppress(ValueError):
                breaker.open_from_peer(float(stamp))
        elif kind == "close":
            breaker.close_from_peer()

    async def _load_open(self, redis: Redis) -> None:
        for name, breaker in list(self._breakers.items()):
            stamp = await redis.get(self._key(name))
            if stamp is not None:
                with contextlib.suppress(ValueError):
                    breaker.open_from_peer(float(stamp))

    async def _listen(self) -> None:
        delay = 0.1
        while self._redis is not None:
            redis = self._redis
            try:
                pubsub = redis.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.channel)
                    await self._load_open(redis)
                    delay = 0.1
                    while True:
                        message: Any = await pubsub.get_message(timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            data = message["data"]
                            self.apply(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.errors += 1
                log.debug("breaker channel lost (%s); retrying", type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        # Imported here: redis is an optional extra, needed only when this is configured.
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            self.url, socket_timeout=None, socket_connect_timeout=self.timeout
        )
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if redis is not None:
            await redis.aclose()

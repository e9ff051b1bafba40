"""Providers' notes shared by replicas through Redis (:mod:`podium.shared_notes`): one key per
note, ``<prefix>notes:<key>``, set with its lifetime. A note is a hint, so a Redis that cannot
be reached is left alone for ``retry_after`` seconds (a dead server costs a request a clock
read, not a timeout) and every process goes on with what it knows itself."""

from __future__ import annotations

import logging

from podium.state.redis_client import RedisStrings, RedisUnavailable

log = logging.getLogger("podium.notes")


class RedisNotes(RedisStrings):
    space = "notes"
    label = "podium-notes"
    _told = 0  # failures already logged

    async def read(self, key: str) -> str | None:
        try:
            return await self.get(key)
        except RedisUnavailable:
            self._tell()
            return None

    async def write(self, key: str, value: str, seconds: float) -> None:
        try:
            await self.put(key, value, seconds)
        except RedisUnavailable:
            self._tell()

    async def claim(self, key: str, seconds: float) -> bool:
        try:
            return await self.put_new(key, "claimed", seconds)
        except RedisUnavailable:
            self._tell()
            return True

    async def release(self, key: str) -> None:
        try:
            await self.delete(key)
        except RedisUnavailable:
            self._tell()  # the claim lapses on its own

    def _tell(self) -> None:
        """Log a failure once: the calls while Redis is left alone after it add nothing."""
        if self.cooldown.errors != self._told:
            self._told = self.cooldown.errors
            log.warning(
                "shared notes: Redis unreachable (%s); each process keeps its own",
                self.cooldown.because,
            )

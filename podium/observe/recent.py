"""The traces this process finished recently, with the worker and route each went to.

Feedback for a trace the trace writer has not stored yet must not be refused as unknown, and
an automatic signal recorded before its trace is stored still needs the trace's worker and
route. Only that window matters: once a trace is stored, the store answers. So the memory is
sized to the writer's backlog, not to traffic, and kept small per entry: a Podium trace id
(32 hex digits) is held as one integer, and the (worker, route) pairs, few in any pool, are
shared rather than stored per trace.

Two generations instead of a least-recently-used list: new ids go into ``current``; when it
holds ``keep`` of them it becomes ``previous`` and the one before is dropped whole. So the
newest ``keep`` traces are always remembered, at most ``2 * keep`` are held, and nothing is
allocated per trace beyond its dictionary slot and its key.
"""

from __future__ import annotations

import re

_PODIUM_ID = re.compile(r"[0-9a-f]{32}")
# Distinct (worker, route) pairs shared before the table starts over (entries already made
# keep their pair; only sharing restarts), so a pool renamed over and over stays bounded.
MAX_SHARED_PAIRS = 4096

Route = tuple[str | None, str]


def _key(trace_id: str) -> int | str:
    # Ids Podium made are 128-bit numbers: 48 bytes as an int, against 81 as a string. Anything
    # else (ids from elsewhere) is kept as it came.
    return int(trace_id, 16) if _PODIUM_ID.fullmatch(trace_id) else trace_id


class RecentTraces:
    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.keep = keep
        self._current: dict[int | str, Route] = {}
        self._previous: dict[int | str, Route] = {}
        self._pairs: dict[Route, Route] = {}

    def add(self, trace_id: str, worker: str | None, route: str) -> None:
        pair = (worker, route)
        shared = self._pairs.get(pair)
        if shared is None:
            if len(self._pairs) >= MAX_SHARED_PAIRS:
                self._pairs.clear()
            shared = self._pairs[pair] = pair
        current = self._current
        current[_key(trace_id)] = shared
        if len(current) >= self.keep:
            self._previous, self._current = current, {}

    def get(self, trace_id: str) -> Route | None:
        key = _key(trace_id)
        found = self._current.get(key)
        return found if found is not None else self._previous.get(key)

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

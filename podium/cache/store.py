"""Where cached answers live: the backend socket, the in-process backend, and the entry format.

A backend keeps opaque text under a key for a while. Entries are encoded once, so the memory
backend holds exactly the bytes the Redis one would, and ``max_bytes`` means the same on both.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import astuple
from typing import Any, Protocol, cast, get_args

import orjson

from podium.types import ChatResponse, Citation, CitedSpan, FinishReason, ToolCall, Usage

FINISH_REASONS = frozenset(get_args(FinishReason))


class CacheUnavailable(Exception):
    """The backend cannot answer now; the request goes to the worker as if it were a miss."""


class ResponseCache(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl: float) -> None: ...

    async def clear(self) -> int:
        """Drop every entry; how many went (raises CacheUnavailable when it cannot)."""
        ...

    async def aclose(self) -> None: ...


class MemoryCache:
    """One process's entries, least recently used evicted first, bounded by count and bytes."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_total_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_total_bytes = max_total_bytes
        self.total_bytes = 0
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.total_bytes -= len(value)

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: str, ttl: float) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl, value)
        self.total_bytes += len(value)
        while len(self._entries) > self.max_entries or self.total_bytes > self.max_total_bytes:
            self._drop(next(iter(self._entries)))

    async def clear(self) -> int:
        removed = len(self._entries)
        self._entries.clear()
        self.total_bytes = 0
        return removed

    async def aclose(self) -> None:
        await self.clear()


def storable(response: ChatResponse) -> bool:
    """Only whole answers are kept: not a filtered or failed one, not an empty one."""
    return response.finish_reason in ("stop", "length", "tool_calls") and bool(
        response.text or response.tool_calls
    )


def encode_entry(response: ChatResponse) -> str:
    usage = response.usage
    return orjson.dumps(
        {
            "model": response.model,
            "text": response.text,
            "calls": [[call.id, call.name, call.arguments] for call in response.tool_calls],
            "finish": response.finish_reason,
            "stop": response.stop_sequence,
            "usage": [usage.input_tokens, usage.output_tokens, usage.cached_input_tokens],
            "cited": [
                [span.start, span.end, [astuple(citation) for citation in span.citations]]
                for span in response.citations
            ],
        }
    ).decode()


def decode_entry(value: str, *, id: str) -> ChatResponse | None:
    """The cached answer under a new ``id``; None for an entry this version cannot read."""
    try:
        data: Any = orjson.loads(value)
        finish = data["finish"]
        if finish not in FINISH_REASONS:
            return None
        return ChatResponse(
            id=id,
            model=str(data["model"]),
            text=str(data["text"]),
            tool_calls=[ToolCall(str(i), str(n), str(a)) for i, n, a in data["calls"]],
            finish_reason=cast(FinishReason, finish),
            usage=Usage(*(int(count) for count in data["usage"])),
            created=int(time.time()),
            stop_sequence=data.get("stop"),
            citations=[
                CitedSpan(int(start), int(end), [Citation(*fields) for fields in citations])
                for start, end, citations in data.get("cited", [])
            ],
        )
    except (ValueError, KeyError, TypeError):
        return None

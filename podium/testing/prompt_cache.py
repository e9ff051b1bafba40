"""Anthropic's prompt cache, as the fake Anthropic server keeps it.

What the documentation describes and clients see in ``usage``:

- A ``cache_control`` breakpoint on a block (a tool, a system text block, a message's content
  block, a tool result) makes the prompt up to and including it a cache entry; a top-level
  ``cache_control`` puts one on the last block. The prefix runs tools, then system, then
  messages, and belongs to one model.
- A prefix shorter than the model's minimum is not cached, and that is no error.
- A request reads the longest cached prefix that ends at one of its breakpoints or at one of
  the 20 blocks before each (so a conversation that moves its breakpoint forward each turn
  still finds the last turn's entry), writes the rest up to its last cacheable breakpoint, and
  pays full price for what follows.
- Entries live 5 minutes, or 1 hour with ``ttl: "1h"``, counted from their last use.
- At most 4 breakpoints; a 1-hour one may not follow a 5-minute one; ``ttl`` is ``5m`` or
  ``1h``. Breaking these is a 400.

Tokens are counted as the fake counts them: words.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podium.testing.fakes import Json, words

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
DEFAULT_MINIMUM = 1024  # tokens: Claude Sonnet 4, Opus 4 and 4.1


@dataclass(slots=True)
class CacheUse:
    read: int = 0
    written_5m: int = 0
    written_1h: int = 0

    @property
    def written(self) -> int:
        return self.written_5m + self.written_1h


class CacheRefusal(Exception):
    """A request the real API refuses for its cache_control blocks; the message is its words."""


@dataclass(slots=True)
class _Block:
    content: Any  # the block without its cache_control, for the prefix's identity
    tokens: int
    ttl: str | None  # set on a breakpoint


def _tokens(block: Any) -> int:
    if isinstance(block, dict) and block.get("type") == "text":
        return words(str(block.get("text", "")))
    if isinstance(block, dict) and block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return words(content)
        return sum(_tokens(item) for item in content or [])
    return 0  # images, tool calls and tool definitions: the fake counts only text


def _blocks(body: Json) -> list[_Block]:
    raw: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, str) and system:
        raw.append({"type": "text", "text": system})
    elif isinstance(system, list):
        raw.extend(system)
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            raw.append({"type": "text", "text": content, "role": message.get("role")})
        else:
            raw.extend({**block, "role": message.get("role")} for block in content or [])
    blocks: list[_Block] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        control = item.get("cache_control")
        ttl = None
        if isinstance(control, dict):
            ttl = control.get("ttl", "5m")
            if control.get("type") != "ephemeral" or ttl not in TTL_SECONDS:
                raise CacheRefusal(
                    "cache_control: Input should be {'type': 'ephemeral'} with 'ttl' '5m' or '1h'"
                )
        content = {key: value for key, value in item.items() if key != "cache_control"}
        blocks.append(_Block(content, _tokens(item), ttl))
    automatic = body.get("cache_control")
    if isinstance(automatic, dict) and blocks and blocks[-1].ttl is None:
        blocks[-1].ttl = automatic.get("ttl", "5m")
    return blocks


@dataclass
class PromptCache:
    """One fake server's cache. ``clock`` gives seconds; tests move it to expire entries."""

    minimum_tokens: int = DEFAULT_MINIMUM
    clock: Callable[[], float] = time.monotonic
    # prefix digest -> (expiry, lifetime in seconds)
    entries: dict[str, tuple[float, float]] = field(default_factory=dict)

    def use(self, body: Json) -> CacheUse:
        """Read and write ``body``'s prefixes; what it read and wrote, in tokens."""
        blocks = _blocks(body)
        marks = [index for index, block in enumerate(blocks) if block.ttl is not None]
        if len(marks) > MAX_BREAKPOINTS:
            raise CacheRefusal(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                f"Found {len(marks)}."
            )
        ttls = [blocks[index].ttl for index in marks]
        for earlier, later in itertools.pairwise(ttls):
            if earlier == "5m" and later == "1h":
                raise CacheRefusal(
                    "cache_control: a block with ttl '1h' cannot come after a block with ttl '5m'"
                )
        if not marks:
            return CacheUse()
        now = self.clock()
        digests = self._digests(str(body.get("model")), blocks)
        totals = [0]
        for block in blocks:
            totals.append(totals[-1] + block.tokens)
        # The longest live prefix at a breakpoint or within the blocks before one.
        hit = 0
        for mark in marks:
            for end in range(mark, max(-1, mark - LOOKBACK_BLOCKS), -1):
                entry = self.entries.get(digests[end])
                if entry is not None and entry[0] > now:
                    hit = max(hit, end + 1)
                    break
        if hit:  # a read refreshes the entry it read, for its own lifetime
            lifetime = self.entries[digests[hit - 1]][1]
            self.entries[digests[hit - 1]] = (now + lifetime, lifetime)
        use = CacheUse(read=totals[hit])
        covered = hit
        for mark in marks:
            end = mark + 1
            if totals[end] < self.minimum_tokens:
                continue
            ttl = blocks[mark].ttl or "5m"
            self.entries[digests[mark]] = (now + TTL_SECONDS[ttl], TTL_SECONDS[ttl])
            if end > covered:
                if ttl == "1h":
                    use.written_1h += totals[end] - totals[covered]
                else:
                    use.written_5m += totals[end] - totals[covered]
                covered = end
        return use

    @staticmethod
    def _digests(model: str, blocks: list[_Block]) -> list[str]:
        """The identity of each prefix: the model and every block up to and including it."""
        digest = hashlib.sha256(model.encode())
        out: list[str] = []
        for block in blocks:
            digest.update(json.dumps(block.content, sort_keys=True).encode())
            out.append(digest.copy().hexdigest())
        return out

"""Vendors' prompt caches, as the fake servers keep them.

One engine (:class:`PromptCache`) and a reader per wire format, which turns a request body
into the blocks of its prefix, in order, and says where its breakpoints are:

- **Anthropic** (:func:`anthropic_blocks`). A ``cache_control`` breakpoint on a tool, a system
  text block, a message's content block or a tool result makes the prompt up to and including
  it an entry; a top-level ``cache_control`` puts one on the last block. The prefix runs
  tools, then system, then messages. A request reads the longest live entry at one of its
  breakpoints or at one of the 20 blocks before each (so a conversation that moves its
  breakpoint forward each turn still finds the last turn's entry). Entries live 5 minutes, or
  1 hour with ``ttl: "1h"``. At most 4 breakpoints; a 1-hour one may not follow a 5-minute
  one; ``ttl`` is ``5m`` or ``1h``: breaking these is a 400.
- **OpenAI** Chat Completions and Responses (:func:`openai_chat_blocks`,
  :func:`responses_blocks`). ``prompt_cache_breakpoint: {"mode": "explicit", "ttl"}`` on a
  content part marks a breakpoint; unless ``prompt_cache_options.mode`` is ``explicit``, the
  API adds one implicit breakpoint at the end and writes the latest three explicit ones (four
  in explicit mode). Reads find any live entry that is a prefix of the request, however far
  back. Entries live at least 30 minutes, or 12 hours with ``ttl: "12h"``.

Both: a prefix shorter than the minimum (1,024 tokens) is not cached, and that is no error;
entries belong to one model and live from their last use; a request writes the part of its
prefix past the longest entry it read, up to its last cacheable breakpoint. Tokens are counted
as the fakes count them: words.
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

LIFETIMES = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "12h": 43200.0}
LONG = frozenset({"1h", "12h"})  # the lifetimes written at the higher price
DEFAULT_MINIMUM = 1024  # tokens: Claude Sonnet 4 and Opus 4; OpenAI's models
ANTHROPIC_BREAKPOINTS = 4
ANTHROPIC_LOOKBACK = 20


@dataclass(slots=True)
class CacheUse:
    read: int = 0
    written: int = 0  # at the standard lifetime (Anthropic 5 minutes, OpenAI 30 minutes)
    written_long: int = 0  # at the long one (Anthropic 1 hour, OpenAI 12 hours)

    @property
    def total_written(self) -> int:
        return self.written + self.written_long


class CacheRefusal(Exception):
    """A request the real API refuses for its cache breakpoints; the message is its words."""


@dataclass(slots=True)
class Block:
    content: Any  # the block without its breakpoint, for the prefix's identity
    tokens: int
    ttl: str | None = None  # set on a breakpoint


@dataclass(slots=True)
class Prefix:
    """A request's prefix as a cache sees it."""

    model: str
    blocks: list[Block]
    lookback: int | None  # blocks before a breakpoint searched for an entry; None: all


@dataclass
class PromptCache:
    """One fake server's cache. ``clock`` gives seconds; tests move it to expire entries."""

    minimum_tokens: int = DEFAULT_MINIMUM
    clock: Callable[[], float] = time.monotonic
    # prefix digest -> (expiry, lifetime in seconds)
    entries: dict[str, tuple[float, float]] = field(default_factory=dict)

    def use(self, prefix: Prefix) -> CacheUse:
        """Read and write the prefix's entries; what it read and wrote, in tokens."""
        blocks = prefix.blocks
        marks = [index for index, block in enumerate(blocks) if block.ttl is not None]
        if not marks:
            return CacheUse()
        now = self.clock()
        digests = _digests(prefix.model, blocks)
        totals = [0, *itertools.accumulate(block.tokens for block in blocks)]
        hit = 0
        for mark in marks:
            stop = -1 if prefix.lookback is None else max(-1, mark - prefix.lookback)
            for end in range(mark, stop, -1):
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
            self.entries[digests[mark]] = (now + LIFETIMES[ttl], LIFETIMES[ttl])
            if end > covered:
                if ttl in LONG:
                    use.written_long += totals[end] - totals[covered]
                else:
                    use.written += totals[end] - totals[covered]
                covered = end
        return use


def _digests(model: str, blocks: list[Block]) -> list[str]:
    """The identity of each prefix: the model and every block up to and including it."""
    digest = hashlib.sha256(model.encode())
    out: list[str] = []
    for block in blocks:
        digest.update(json.dumps(block.content, sort_keys=True).encode())
        out.append(digest.copy().hexdigest())
    return out


# -- Anthropic --------------------------------------------------------------------------------


def _anthropic_tokens(block: Any) -> int:
    if isinstance(block, dict) and block.get("type") == "text":
        return words(str(block.get("text", "")))
    if isinstance(block, dict) and block.get("type") == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return words(content)
        return sum(_anthropic_tokens(item) for item in content or [])
    return 0  # images, tool calls and tool definitions: the fake counts only text


def anthropic_blocks(body: Json) -> Prefix:
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
    blocks: list[Block] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        control = item.get("cache_control")
        ttl = None
        if isinstance(control, dict):
            ttl = control.get("ttl", "5m")
            if control.get("type") != "ephemeral" or ttl not in ("5m", "1h"):
                raise CacheRefusal(
                    "cache_control: Input should be {'type': 'ephemeral'} with 'ttl' '5m' or '1h'"
                )
        content = {key: value for key, value in item.items() if key != "cache_control"}
        blocks.append(Block(content, _anthropic_tokens(item), ttl))
    automatic = body.get("cache_control")
    if isinstance(automatic, dict) and blocks and blocks[-1].ttl is None:
        blocks[-1].ttl = automatic.get("ttl", "5m")
    ttls = [block.ttl for block in blocks if block.ttl is not None]
    if len(ttls) > ANTHROPIC_BREAKPOINTS:
        raise CacheRefusal(
            f"A maximum of {ANTHROPIC_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(ttls)}."
        )
    for earlier, later in itertools.pairwise(ttls):
        if earlier == "5m" and later == "1h":
            raise CacheRefusal(
                "cache_control: a block with ttl '1h' cannot come after a block with ttl '5m'"
            )
    return Prefix(str(body.get("model")), blocks, ANTHROPIC_LOOKBACK)


# -- OpenAI -----------------------------------------------------------------------------------

OPENAI_WRITES = 4


def _openai_part(part: Any, role: Any, default_ttl: str) -> Block:
    if not isinstance(part, dict):
        return Block(part, 0)
    mark = part.get("prompt_cache_breakpoint")
    ttl = None
    if isinstance(mark, dict):
        ttl = mark.get("ttl") or default_ttl
        if mark.get("mode") != "explicit" or ttl not in ("30m", "12h"):
            raise CacheRefusal(
                "Invalid value for 'prompt_cache_breakpoint': mode must be 'explicit' and ttl "
                "'30m' or '12h'."
            )
    content = {key: value for key, value in part.items() if key != "prompt_cache_breakpoint"}
    text = part.get("text")
    return Block({**content, "role": role}, words(text) if isinstance(text, str) else 0, ttl)


def _request_ttl(options: Any) -> str:
    ttl = options.get("ttl") if isinstance(options, dict) else None
    return ttl if isinstance(ttl, str) else "30m"


def _openai_prefix(model: Any, blocks: list[Block], options: Any) -> Prefix:
    options = options if isinstance(options, dict) else {}
    mode = options.get("mode", "implicit")
    ttl = options.get("ttl") or "30m"
    if mode not in ("implicit", "explicit") or ttl not in ("30m", "12h"):
        raise CacheRefusal(
            "Invalid value for 'prompt_cache_options': mode must be 'implicit' or 'explicit' "
            "and ttl '30m' or '12h'."
        )
    marks = [index for index, block in enumerate(blocks) if block.ttl is not None]
    kept = marks[-(OPENAI_WRITES - 1 if mode == "implicit" else OPENAI_WRITES) :]
    for index in marks:
        if index not in kept:
            blocks[index].ttl = None  # beyond what one request writes
    if mode == "implicit" and blocks and blocks[-1].ttl is None:
        blocks[-1].ttl = ttl
    return Prefix(str(model), blocks, None)


def openai_chat_blocks(body: Json) -> Prefix:
    options = body.get("prompt_cache_options")
    default_ttl = _request_ttl(options)
    blocks = [Block(tool, 0) for tool in body.get("tools") or []]
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role, content = message.get("role"), message.get("content")
        if isinstance(content, list):
            blocks.extend(_openai_part(part, role, default_ttl) for part in content)
        else:
            text = content if isinstance(content, str) else ""
            rest = {key: value for key, value in message.items() if key != "content"}
            blocks.append(Block({**rest, "text": text}, words(text) if text else 0))
    return _openai_prefix(body.get("model"), blocks, options)


def responses_blocks(body: Json) -> Prefix:
    options = body.get("prompt_cache_options")
    default_ttl = _request_ttl(options)
    blocks = [Block(tool, 0) for tool in body.get("tools") or []]
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        blocks.append(Block({"instructions": instructions}, words(instructions)))
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if isinstance(content, list):
            role = item.get("role")
            blocks.extend(_openai_part(part, role, default_ttl) for part in content)
        else:
            text = content if isinstance(content, str) else str(item.get("output") or "")
            blocks.append(Block(item, words(text) if text else 0))
    return _openai_prefix(body.get("model"), blocks, options)

"""OpenAI's prompt-cache fields, shared by the Chat Completions and Responses egresses.

OpenAI caches long prefixes unasked; GPT-5.6 and later also take explicit breakpoints on content
parts (``prompt_cache_breakpoint``), a request-level ``prompt_cache_options`` (implicit or
explicit mode), ``prompt_cache_key`` and ``prompt_cache_retention``, and report the writes.
OpenAI-compatible servers know none of these fields, so a worker sends them only when it takes
them: ``options.prompt_cache`` says, and by default a worker takes them when its base URL is
OpenAI's own API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from podium.types import CacheTTL, ChatRequest, JSONObject, Message, Usage, nearest_lifetime

OPENAI_HOST = "api.openai.com"
# The lifetimes OpenAI's breakpoints offer; another vendor's breakpoint takes the nearest.
LIFETIMES: tuple[CacheTTL, ...] = ("30m", "12h")


def takes_cache_fields(option: bool | None, base_url: str) -> bool:
    """Whether a worker is sent OpenAI's cache fields: as configured, else when it is OpenAI."""
    if option is not None:
        return option
    return urlsplit(base_url).hostname == OPENAI_HOST


def breakpoint_field(ttl: CacheTTL) -> JSONObject:
    """A ``prompt_cache_breakpoint``; 30 minutes is the request's default, so only 12 hours
    is said."""
    lifetime = nearest_lifetime(ttl, LIFETIMES)
    return {"mode": "explicit"} if lifetime == "30m" else {"mode": "explicit", "ttl": lifetime}


def marked_parts(parts: list[JSONObject], message: Message) -> list[JSONObject]:
    """``parts`` (one per content part of ``message``, in order) with their breakpoints; a
    breakpoint on the whole message goes on its last part."""
    for encoded, part in zip(parts, message.content, strict=True):
        if part.cache is not None:
            encoded["prompt_cache_breakpoint"] = breakpoint_field(part.cache)
    if message.cache is not None and parts:
        parts[-1]["prompt_cache_breakpoint"] = breakpoint_field(message.cache)
    return parts


def request_fields(request: ChatRequest) -> JSONObject:
    """The request-level fields: the mode (an asked-for implicit breakpoint, or explicit only),
    the key and the retention, each when the request set it."""
    fields: JSONObject = {}
    if request.cache_explicit:
        fields["prompt_cache_options"] = {"mode": "explicit"}
    elif request.cache is not None:
        fields["prompt_cache_options"] = {"mode": "implicit"}
    if request.cache_key is not None:
        fields["prompt_cache_key"] = request.cache_key
    if request.cache_retention is not None:
        fields["prompt_cache_retention"] = request.cache_retention
    return fields


def with_writes(usage: Usage, details: Any) -> Usage:
    """``usage`` with the cache writes ``details`` (``prompt_tokens_details`` or
    ``input_tokens_details``) report; 12-hour writes are the long ones."""
    if not isinstance(details, dict) or not details.get("cache_write_tokens"):
        return usage
    written = int(details["cache_write_tokens"])
    split = details.get("cache_write_tokens_details")
    long = int(split.get("ttl_12h_tokens") or 0) if isinstance(split, dict) else 0
    long = min(long, written)
    usage.cache_write_tokens = written - long
    usage.cache_write_long_tokens = long
    return usage


def only_long_writes(request: ChatRequest) -> bool:
    """Whether every prompt-cache write the request can make lasts 12 hours: explicit mode
    (no implicit breakpoint at the end, which lasts 30 minutes) and every breakpoint 12 hours.
    Chat Completions reports its writes as one total; such a request's are all long ones."""
    if not request.cache_explicit:
        return False
    marked = False
    for message in request.messages:
        for ttl in (message.cache, *(part.cache for part in message.content)):
            if ttl is not None:
                if nearest_lifetime(ttl, LIFETIMES) != "12h":
                    return False
                marked = True
    return marked


def as_long(usage: Usage) -> Usage:
    """``usage`` with writes reported as one total counted as 12-hour writes."""
    if usage.cache_write_tokens and not usage.cache_write_long_tokens:
        usage.cache_write_long_tokens, usage.cache_write_tokens = usage.cache_write_tokens, 0
    return usage

"""The request bodies every proxy in the gateway benchmark gets: a fixed system prompt and a
user message that is different in every request.

Real chat traffic resends the same system prompt (and history) every turn, and every turn
brings a message never seen before. A benchmark that sends one body over and over would let
any per-text memo (Podium keeps one for its screening results) answer from memory, and
report a cost no real client sees. So the user message carries the request's number; wrk
builds each body in a Lua ``request()`` function the same way for every proxy.
"""

from __future__ import annotations

import json

SYSTEM_PROMPT = (
    "You are the customer support assistant of an online shop that sells kitchen equipment. "
    "Answer politely and briefly, in the language the customer writes in. Never promise "
    "refunds or delivery dates; explain the policy and offer to open a ticket instead. "
    "Returns are accepted within 30 days of delivery when the item is unused and in its "
    "original packaging. If the customer is angry, acknowledge it before answering."
)
# The number goes in the middle: a different message every time, of constant shape.
USER_BEFORE = "Hi, about my order "
USER_AFTER = (
    ": the kettle arrived with a dented lid and the box was already open. Can I get a "
    "replacement, or should I send it back for a refund? How long would either take?"
)


def user_message(number: int) -> str:
    return f"{USER_BEFORE}{number}{USER_AFTER}"


def chat_body(model: str, number: int, *, stream: bool = False) -> str:
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_message(number)},
        ],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def wrk_request_lua(model: str, *, stream: bool = False) -> list[str]:
    """Lua for wrk: ``request()`` returns a body with a new number each call (threads start
    a billion apart, so no two requests of one run share a message)."""
    marker = 4242424242
    before, after = chat_body(model, marker, stream=stream).split(str(marker))
    return [
        "local thread_count = 0",
        "function setup(thread)",
        "  thread:set('first', thread_count * 1000000000)",
        "  thread_count = thread_count + 1",
        "end",
        "local counter = nil",
        "function request()",
        "  counter = (counter or first or 0) + 1",
        f"  local body = {_lua_string(before)} .. counter .. {_lua_string(after)}",
        "  return wrk.format(nil, nil, nil, body)",
        "end",
    ]


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

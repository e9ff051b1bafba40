"""Gemini's thought signatures, kept for the turns that must send them back.

Gemini (the 2.5 models with thinking, and every Gemini 3 model) puts an opaque
``thoughtSignature`` beside each ``functionCall`` it makes: its reasoning state at that step.
The next request's history must carry it unchanged, and Gemini 3 refuses a history whose
function call lacks it ("Function call is missing a thought_signature"). Podium's callers speak
OpenAI's or Anthropic's format, which have no place for it: they send the call back as an id, a
name and arguments. So the provider keeps each signature by the id Podium gave the call, and
puts it back when the call comes back.

A call whose signature is not here (made before a restart, by another replica, or by another
model) goes back, to a Gemini 3 model, with the sentinel Google documents for histories that
were not written by the model (``skip_thought_signature_validator``), on the first call of its
turn as Gemini's own parallel calls carry one; the model then reasons afresh from there.
"""

from __future__ import annotations

import re
from collections import OrderedDict

SKIP_VALIDATOR = "skip_thought_signature_validator"
_VERSION = re.compile(r"gemini-(\d+)")


def needs_signatures(model: str) -> bool:
    """Whether the model refuses a function call sent back without its signature (Gemini 3
    and later)."""
    match = _VERSION.search(model)
    return match is not None and int(match.group(1)) >= 3


class ThoughtSignatures:
    """The signatures of the last ``capacity`` calls a worker's model made, by call id."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._by_call: OrderedDict[str, str] = OrderedDict()

    def keep(self, call_id: str, signature: object) -> None:
        if not isinstance(signature, str) or not signature:
            return
        self._by_call[call_id] = signature
        self._by_call.move_to_end(call_id)
        while len(self._by_call) > self.capacity:
            self._by_call.popitem(last=False)

    def get(self, call_id: str) -> str | None:
        return self._by_call.get(call_id)

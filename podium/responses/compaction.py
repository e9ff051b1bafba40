"""Compaction items (``POST /v1/responses/compact``): a conversation's summary, written by a
worker, that stands for everything but its user messages in later requests.

The summary travels in the item's ``encrypted_content``, sealed with the deployment's master
key (AES-256-GCM, podium/policy/sealing.py) and bound to the owner of the key that made it: only
that owner's keys may send it back. Without a master key it is plain JSON, as stored responses
are plain text then: a client reads its own conversation's summary either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from podium.errors import PodiumError
from podium.policy.sealing import Sealer

ROW = "compaction"  # what a sealed summary is bound to, besides its owner (in the payload)

# Asked of the worker that compacts, after the conversation.
INSTRUCTION = (
    "Write a summary of the conversation so far, to be read in its place when it goes on: the "
    "user's goals and constraints, what was decided, the facts and results established (names, "
    "numbers, code, tool results that matter) and what remains to do. Be complete and brief, "
    "with no preamble."
)
# How a summary reads in a later request, as an assistant turn.
HEADING = "Summary of the conversation so far:\n"


def invalid(param: str, why: str) -> PodiumError:
    return PodiumError(
        "invalid_request",
        f"Invalid compaction item '{param}': {why}; send the items POST /v1/responses/compact "
        "returned, unchanged, with a key of the owner that made them.",
        param=param,
        code="invalid_compaction",
    )


class Compactions:
    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    def seal(self, owner: str, summary: str) -> str:
        return self.sealer.seal(orjson.dumps({"owner": owner, "summary": summary}), ROW)

    def reader(self) -> CompactionReader:
        return CompactionReader(self)


@dataclass(slots=True)
class CompactionReader:
    """Opens one request's compaction items, noting whose they are (checked once the caller
    is known: :class:`CompactionOwners`)."""

    compactions: Compactions
    owners: set[str] = field(default_factory=set)

    def open(self, content: str, param: str) -> str:
        try:
            payload = orjson.loads(self.compactions.sealer.open(content, ROW))
        except PodiumError:
            raise invalid(param, "it does not open with this gateway's key") from None
        except orjson.JSONDecodeError:
            raise invalid(param, "it is not one this gateway wrote") from None
        owner = payload.get("owner") if isinstance(payload, dict) else None
        summary = payload.get("summary") if isinstance(payload, dict) else None
        if not isinstance(owner, str) or not isinstance(summary, str):
            raise invalid(param, "it is not one this gateway wrote")
        self.owners.add(owner)
        return HEADING + summary

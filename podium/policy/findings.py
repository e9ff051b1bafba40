"""The Detector socket: ``inspect(text) -> list[Finding]``, each finding a span with a kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Finding:
    start: int
    end: int
    kind: str  # PERSON, EMAIL, CREDIT_CARD, ... or INJECTION
    score: float = 1.0
    source: str = ""  # which detector (or heuristic) found it

    def text(self, source: str) -> str:
        return source[self.start : self.end]


class Detector(Protocol):
    def inspect(self, text: str) -> list[Finding]: ...

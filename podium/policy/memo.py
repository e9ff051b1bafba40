"""A bounded memo of screening results per text, shared by the requests of one process.

Chat clients send the whole conversation every turn: the same system prompt and the same
earlier messages come back again and again, and only the newest message is new. The PII
detectors and the injection screen are pure functions of the text, so their answer for a
text seen before is reused instead of recomputed. Keys are 128-bit BLAKE2b digests of the
text (so memory per entry does not grow with the text, and no text is kept), entries are
evicted least recently used first, and a size of 0 turns the memo off.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Result = TypeVar("Result")


class TextMemo(Generic[Result]):
    def __init__(self, compute: Callable[[str], Result], size: int) -> None:
        self.compute = compute
        self.size = size
        self._entries: OrderedDict[bytes, Result] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __call__(self, text: str) -> Result:
        if self.size <= 0:
            return self.compute(text)
        key = _key(text)
        entries = self._entries
        found = entries.get(key)
        if found is not None:
            entries.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        result = entries[key] = self.compute(text)
        if len(entries) > self.size:
            entries.popitem(last=False)
        return result

    def known(self, text: str) -> Result | None:
        """The result for ``text`` if it is remembered, else None: for a caller that computes
        elsewhere (in a thread) and then :meth:`keep`s it."""
        if self.size <= 0:
            return None
        key = _key(text)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def keep(self, text: str, result: Result) -> None:
        if self.size <= 0:
            return
        self.misses += 1
        self._entries[_key(text)] = result
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _key(text: str) -> bytes:
    # surrogatepass: a JSON body may carry lone surrogates, which plain UTF-8 refuses.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

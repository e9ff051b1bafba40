"""Which of a few fixed words occur in a text, found in one pass over it.

The screens look for cheap evidence before an expensive regular expression: the injection
signals' words, the name tagger's trigger words, the label words of dates of birth and IDs.
``word in text`` for each costs a scan of the text per word, about seventy scans a message;
:class:`Needles` reads the text once (a compiled automaton, ``_needles.c``) and answers for
all the words at once, as the bits of an integer. Without the compiled module the same bits
come from ``in``.

The text is searched as UTF-8: a string occurs in another exactly when its UTF-8 bytes occur
in the other's (no character's bytes can start inside another character's), and lone
surrogates are kept (``surrogatepass``) so that this holds for every ``str``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

MAX_WORDS = 64


class Needles:
    """``found(text)``: bit ``i`` is set when ``words[i]`` occurs in ``text``."""

    def __init__(self, words: Sequence[str], *, compiled: bool = True) -> None:
        if len(words) > MAX_WORDS:
            raise ValueError(f"at most {MAX_WORDS} words, not {len(words)}")
        self.words = tuple(words)
        self.found: Callable[[str], int] = self._found_by_scanning
        self.compiled = False
        if compiled:
            try:
                from podium.policy import _needles
            except ImportError:  # built without a C compiler
                return
            automaton = _needles.compile(tuple(_utf8(word) for word in self.words))
            # The module reads an ASCII str in place and encodes any other one itself.
            self.found = functools.partial(_needles.found, automaton)
            self.compiled = True

    def _found_by_scanning(self, text: str) -> int:
        bits = 0
        for index, word in enumerate(self.words):
            if word in text:
                bits |= 1 << index
        return bits

    def bits(self, words: Iterable[str]) -> int:
        """The bits of ``words`` (each one of this set's)."""
        mask = 0
        for word in words:
            mask |= 1 << self.words.index(word)
        return mask


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")

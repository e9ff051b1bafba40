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

A set of words may instead be looked for in the text's *shape*: its UTF-8 bytes mapped
through a table of 256 bytes (``bytes.maketrans``), as ``bytes.translate`` would. A word then
stands for a class of strings: with a table that maps capitals to ``A`` and small letters to
``a``, ``"aaAa"`` is any two small letters, a capital and a small letter. The table folds into
the automaton's byte classes, so a shape costs nothing a byte.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

MAX_WORDS = 64


class Needles:
    """``found(text)``: bit ``i`` is set when ``words[i]`` occurs in ``text`` (in its shape,
    when ``shape`` is given)."""

    def __init__(
        self, words: Sequence[str], *, shape: bytes | None = None, compiled: bool = True
    ) -> None:
        if len(words) > MAX_WORDS:
            raise ValueError(f"at most {MAX_WORDS} words, not {len(words)}")
        if shape is not None and len(shape) != 256:
            raise ValueError("a shape is 256 bytes, as bytes.maketrans makes")
        self.words = tuple(words)
        self.found: Callable[[str], int] = self._found_by_scanning
        if shape is not None:
            self.found = functools.partial(_found_in_shape, self._utf8_words(), shape)
        self.compiled = False
        if compiled:
            try:
                from podium.policy import _needles
            except ImportError:  # built without a C compiler
                return
            automaton = _needles.compile(self._utf8_words(), shape)
            # The module reads an ASCII str in place and encodes any other one itself.
            self.found = functools.partial(_needles.found, automaton)
            self.compiled = True

    def _found_by_scanning(self, text: str) -> int:
        bits = 0
        for index, word in enumerate(self.words):
            if word in text:
                bits |= 1 << index
        return bits

    def _utf8_words(self) -> tuple[bytes, ...]:
        return tuple(_utf8(word) for word in self.words)

    def bits(self, words: Iterable[str]) -> int:
        """The bits of ``words`` (each one of this set's)."""
        mask = 0
        for word in words:
            mask |= 1 << self.words.index(word)
        return mask


def _found_in_shape(words: tuple[bytes, ...], shape: bytes, text: str) -> int:
    shaped = _utf8(text).translate(shape)
    bits = 0
    for index, word in enumerate(words):
        if word in shaped:
            bits |= 1 << index
    return bits


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")

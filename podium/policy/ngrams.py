"""Hashed n-gram features for the small text classifiers, computed with numpy.

Character n-grams and word unigrams and bigrams are hashed with vectorised polynomial
hashes over the UTF-8 bytes (no Python loop per token). The hashes are stable across
processes (Python's own ``hash`` is salted), so a model trained once works everywhere.

The screen runs on every request, mostly on short texts, where numpy's fixed cost per call
(a microsecond or more when the request path has pushed numpy out of the CPU's caches)
outweighs the work: the computation is about thirty array operations on small arrays,
written into one preallocated buffer. Only the set of indices matters, so the hashes may come
in any order and a slot may repeat another hash: the word runs are found with one
``bytes.translate``, all word sums come from one ``reduceat``, and the 64-to-32-bit fold is
one XOR of two strided views.

The classifier itself needs only the sum of the weights at those indices, and
:data:`weight_sum` gives it: from ``podium/policy/_ngrams.c`` when the package was built
with a C compiler (a walk over the bytes and one over their indices, more than ten times
fewer instructions on a short prompt), else from the numpy code here. Both give the same
indices; the test suite holds them to each other and to the first implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

CHAR_ORDERS = (3, 4, 5)
_PRIME = 1_000_003
_ORDER_SALTS = np.array([0xA5A5, 4 * 0x9E37, 5 * 0x9E37], dtype=np.uint64)
_WORD_SALT = np.uint64(0x5BD1E995)
_PAIR_PRIME = np.uint64(0x9E3779B97F4A7C15)
_P1 = np.uint64(_PRIME)
_P2 = np.uint64(_PRIME**2)
_MIX = np.uint32(0x2C1B3C6D)
_WORD_PRIME = 0x100000001B3  # odd, so invertible modulo 2**64
_LIMIT = 1 << 16  # bytes hashed at most (max_chars is checked first)
# _INVERSES[k] = P**-k; _POWERS_BEFORE[e] = P**(e - 1), indexed by a word's end.
_INVERSES = np.cumprod(
    np.full(_LIMIT + 1, pow(_WORD_PRIME, -1, 1 << 64), dtype=np.uint64), dtype=np.uint64
)
_INVERSES = np.concatenate([np.ones(1, dtype=np.uint64), _INVERSES[:-1]])
_POWERS_BEFORE = np.cumprod(np.full(_LIMIT, _WORD_PRIME, dtype=np.uint64), dtype=np.uint64)
_POWERS_BEFORE = np.concatenate(
    [np.zeros(1, dtype=np.uint64), np.ones(1, dtype=np.uint64), _POWERS_BEFORE[:-1]]
)
# 1 for the bytes of a word, ``[a-z0-9']``, else 0: one table lookup per text.
_WORD_BYTE = bytes(
    1 if chr(code) in "abcdefghijklmnopqrstuvwxyz0123456789'" else 0 for code in range(256)
)
# Above this many hashes a bitmap of 2**bits finds the distinct ones faster than a sort.
_SORT_LIMIT_SHARE = 5


def _word_spans(encoded: bytes) -> npt.NDArray[np.intp]:
    """Start and end offsets of every run of ``[a-z0-9']`` bytes, interleaved."""
    flags = np.frombuffer(b"\0" + encoded.translate(_WORD_BYTE) + b"\0", dtype=np.int8)
    # Edges alternate: a run opens (+1), then closes (-1).
    return (flags[1:] - flags[:-1]).nonzero()[0]


def feature_indices(text: str, bits: int, *, max_chars: int = 20_000) -> npt.NDArray[np.int64]:
    """The distinct hashed feature indices of ``text`` in ``[0, 2**bits)``, ascending.

    Character 3-, 4- and 5-grams, every run of ``[a-z0-9']`` bytes and every pair of
    neighbouring runs, hashed, folded to 32 bits, mixed and masked. Only the first and last
    ``max_chars / 2`` characters of a very long text are read: enough to see an attack's
    framing, and the cost stays bounded."""
    return distinct_indices(text, bits, max_chars=max_chars).astype(np.int64)


def distinct_indices(
    text: str, bits: int, *, max_chars: int = 20_000
) -> npt.NDArray[np.integer[Any]]:
    """:func:`feature_indices` in whatever integer type they were computed in: enough for a
    weight lookup, without the conversion to int64."""
    encoded = prepared(text, max_chars)
    raw = np.frombuffer(encoded, dtype=np.uint8)
    size = raw.shape[0]
    spans = _word_spans(encoded[:_LIMIT])
    words = spans.shape[0] // 2
    rows = max(0, size - 2)  # 3-grams; there are fewer 4- and 5-grams, 3 * rows slots for all
    hashes = np.empty(3 * rows + max(0, 2 * words - 1), dtype=np.uint64)
    # Two zero bytes after the text: reduceat needs an index past the last word's end.
    data = np.zeros(size + 2, dtype=np.uint64)
    data[:size] = raw
    if rows:
        # value(i, n) = value(i, n - 1) * P + byte(i + n - 1), modulo 2**64.
        value = data[:rows] * _P2
        value += data[1 : rows + 1] * _P1
        value += data[2 : rows + 2]
        np.bitwise_xor(value, _ORDER_SALTS[0], out=hashes[:rows])
        offset = rows
        for order, salt in ((4, _ORDER_SALTS[1]), (5, _ORDER_SALTS[2])):
            if size < order:
                break
            value = value[:-1] * _P1
            value += data[order - 1 : size]
            np.bitwise_xor(value, salt, out=hashes[offset : offset + size - order + 1])
            offset += size - order + 1
        hashes[offset : 3 * rows] = hashes[0]  # the slots short texts leave: a repeat
    if words:
        # hash(s, e) = P**(e-1) * sum(b[k] * P**-k for s <= k < e): the interleaved spans
        # make reduceat's even segments the words (the last end is below size + 1).
        last = spans[-1] + 1
        scaled = data[:last] * _INVERSES[:last]
        runs = np.add.reduceat(scaled, spans)[0::2]
        runs *= _POWERS_BEFORE[spans[1::2]]
        offset = 3 * rows
        np.bitwise_xor(runs, _WORD_SALT, out=hashes[offset : offset + words])
        pairs = hashes[offset + words :]
        np.multiply(runs[:-1], _PAIR_PRIME, out=pairs)
        pairs ^= runs[1:]
    # Fold 64-bit hashes to 32 (the XOR of each hash's two halves, whatever the byte order),
    # then mix the high bits in before masking: the polynomial hash's low bits are weak.
    # uint32 arithmetic wraps, which is the ``& 0xFFFFFFFF``.
    halves = hashes.view(np.uint32)
    mixed = np.bitwise_xor(halves[0::2], halves[1::2])
    mixed ^= mixed >> np.uint32(15)
    mixed *= _MIX
    mixed ^= mixed >> np.uint32(12)
    return _distinct(mixed, bits)


def prepared(text: str, max_chars: int = 20_000) -> bytes:
    """What the features are computed from: the text lower-cased, cut to its first and last
    ``max_chars / 2`` characters, as UTF-8."""
    lowered = text.lower()
    if len(lowered) > max_chars:
        half = max_chars // 2
        lowered = lowered[:half] + " " + lowered[-half:]
    return lowered.encode("utf-8", "replace")


WeightSum = Callable[[str, int, npt.NDArray[np.float32]], tuple[float, int]]


def numpy_weight_sum(text: str, bits: int, weights: npt.NDArray[np.float32]) -> tuple[float, int]:
    """The sum of ``weights`` at the text's distinct feature indices, and how many there are."""
    indices = distinct_indices(text, bits)
    if indices.size == 0:
        return 0.0, 0
    # take() and add.reduce: what ``weights[indices].sum()`` does, without the wrappers.
    return float(np.add.reduce(weights.take(indices))), int(indices.size)


def _compiled() -> WeightSum | None:
    try:
        from podium.policy import _ngrams
    except ImportError:  # built without a C compiler
        return None
    # The module prepares a str itself, as prepared() does; an ASCII one without a copy (its
    # characters are its UTF-8 bytes, and lower-casing them is arithmetic).
    return _ngrams.weight_sum


compiled_weight_sum = _compiled()
weight_sum: WeightSum = compiled_weight_sum or numpy_weight_sum


def _distinct(mixed: npt.NDArray[np.uint32], bits: int) -> npt.NDArray[np.integer[Any]]:
    """The distinct values of ``mixed`` masked to ``bits``, ascending."""
    if bits == 16:
        indices: npt.NDArray[np.integer[Any]] = mixed.astype(np.uint16)  # the mask
    else:
        mixed &= np.uint32((1 << bits) - 1)
        indices = mixed.astype(np.uint16) if bits < 16 else mixed
    if indices.shape[0] * _SORT_LIMIT_SHARE > (1 << bits):
        seen = np.zeros(1 << bits, dtype=np.bool_)
        seen[indices] = True
        return np.flatnonzero(seen)
    # The default sort: numpy's vectorised quicksort where the CPU has it (2.3 times faster
    # than the radix sort on 750 16-bit values here); integers sort the same either way.
    ordered = np.sort(indices)
    if ordered.shape[0] < 2:
        return ordered
    keep = np.empty(ordered.shape[0], dtype=np.bool_)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]

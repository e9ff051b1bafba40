"""Hashed n-gram features for the small text classifiers, computed with numpy.

Character n-grams and word unigrams and bigrams are hashed with vectorised polynomial
hashes over the UTF-8 bytes (no Python loop per token). The hashes are stable across
processes (Python's own ``hash`` is salted), so a model trained once works everywhere.

The screen runs on every request, mostly on short texts, where numpy's fixed cost per call
(about a microsecond) outweighs the work: the whole computation is a few dozen array
operations on small arrays, written into one preallocated buffer, and the distinct indices
come from a sort of that small array rather than a ``2**bits`` bitmap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CHAR_ORDERS = (3, 4, 5)
_PRIME = np.uint64(1_000_003)
_PRIME2 = np.uint64(1_000_003**2)
_ORDER_SALTS = (np.uint64(0xA5A5), np.uint64(4 * 0x9E37), np.uint64(5 * 0x9E37))
_WORD_SALT = np.uint64(0x5BD1E995)
_PAIR_PRIME = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint32(0x2C1B3C6D)


_WORD_PRIME = 0x100000001B3  # odd, so invertible modulo 2**64
_LIMIT = 1 << 16  # bytes hashed at most (max_chars is checked first)
_POWERS = np.cumprod(np.full(_LIMIT, _WORD_PRIME, dtype=np.uint64), dtype=np.uint64)
_POWERS = np.concatenate([np.ones(1, dtype=np.uint64), _POWERS[:-1]])
_INVERSES = np.cumprod(
    np.full(_LIMIT, pow(_WORD_PRIME, -1, 1 << 64), dtype=np.uint64), dtype=np.uint64
)
_INVERSES = np.concatenate([np.ones(1, dtype=np.uint64), _INVERSES[:-1]])
# 1 for the bytes of a word, ``[a-z0-9']``, else 0: one table lookup per text.
_WORD_BYTE = np.zeros(256, dtype=np.int8)
_WORD_BYTE[list(b"abcdefghijklmnopqrstuvwxyz0123456789'")] = 1
# Above this many hashes a bitmap of 2**bits finds the distinct ones faster than a sort.
_SORT_LIMIT_SHARE = 5


def _word_spans(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """Start and end offsets of every run of ``[a-z0-9']`` bytes, interleaved."""
    padded = np.zeros(raw.shape[0] + 2, dtype=np.int8)
    np.take(_WORD_BYTE, raw, out=padded[1:-1], mode="clip")
    # Edges alternate: a run opens (+1), then closes (-1).
    return np.flatnonzero(padded[1:] - padded[:-1])


def feature_indices(text: str, bits: int, *, max_chars: int = 20_000) -> npt.NDArray[np.int64]:
    """The distinct hashed feature indices of ``text`` in ``[0, 2**bits)``, ascending.

    Character 3-, 4- and 5-grams (each order extends the one before), every run of
    ``[a-z0-9']`` bytes and every pair of neighbouring runs, hashed, folded to 32 bits, mixed
    and masked. Only the first and last ``max_chars / 2`` characters of a very long text are
    read: enough to see an attack's framing, and the cost stays bounded."""
    lowered = text.lower()
    if len(lowered) > max_chars:
        half = max_chars // 2
        lowered = lowered[:half] + " " + lowered[-half:]
    raw = np.frombuffer(lowered.encode("utf-8", "replace"), dtype=np.uint8)
    size = raw.shape[0]
    spans = _word_spans(raw[:_LIMIT]) if size else np.empty(0, dtype=np.intp)
    words = spans.shape[0] // 2
    grams = max(0, size - 2) + max(0, size - 3) + max(0, size - 4)
    hashes = np.empty(grams + max(0, 2 * words - 1), dtype=np.uint64)
    data = raw.astype(np.uint64)
    if size >= CHAR_ORDERS[0]:
        # value(i, n) = value(i, n - 1) * P + byte(i + n - 1), modulo 2**64.
        value = data[: size - 2] * _PRIME2
        value += data[1 : size - 1] * _PRIME
        value += data[2:]
        np.bitwise_xor(value, _ORDER_SALTS[0], out=hashes[: size - 2])
        offset = size - 2
        for order, salt in zip(CHAR_ORDERS[1:], _ORDER_SALTS[1:], strict=True):
            if size < order:
                break
            value = value[:-1] * _PRIME
            value += data[order - 1 :]
            np.bitwise_xor(value, salt, out=hashes[offset : offset + size - order + 1])
            offset += size - order + 1
    if words:
        # hash(s, e) = P**(e-1) * sum(b[k] * P**-k for s <= k < e), from prefix sums.
        starts, ends = spans[0::2], spans[1::2]
        scaled = data[: ends[-1]] * _INVERSES[: ends[-1]]
        prefix = np.empty(ends[-1] + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(scaled, out=prefix[1:])
        runs = prefix[ends]
        runs -= prefix[starts]
        runs *= _POWERS[ends - 1]
        np.bitwise_xor(runs, _WORD_SALT, out=hashes[grams : grams + words])
        pairs = hashes[grams + words :]
        np.multiply(runs[:-1], _PAIR_PRIME, out=pairs)
        pairs ^= runs[1:]
    # Fold 64-bit hashes to 32, then mix the high bits in before masking: the polynomial
    # hash's low bits are weak. uint32 arithmetic wraps, which is the ``& 0xFFFFFFFF``.
    hashes ^= hashes >> np.uint64(32)
    mixed = hashes.astype(np.uint32)
    mixed ^= mixed >> np.uint32(15)
    mixed *= _MIX
    mixed ^= mixed >> np.uint32(12)
    mixed &= np.uint32((1 << bits) - 1)
    return _distinct(mixed, bits)


def _distinct(indices: npt.NDArray[np.uint32], bits: int) -> npt.NDArray[np.int64]:
    """The distinct values of ``indices`` (all below ``2**bits``), ascending."""
    if indices.shape[0] * _SORT_LIMIT_SHARE > (1 << bits):
        seen = np.zeros(1 << bits, dtype=np.bool_)
        seen[indices] = True
        return np.flatnonzero(seen).astype(np.int64)
    # Radix sort (kind="stable") for 16-bit values: linear in the size of the small array.
    ordered = np.sort(indices.astype(np.uint16), kind="stable") if bits <= 16 else np.sort(indices)
    if ordered.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    keep = np.empty(ordered.shape[0], dtype=np.bool_)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep].astype(np.int64)

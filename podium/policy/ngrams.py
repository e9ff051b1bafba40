"""Hashed n-gram features for the small text classifiers, computed with numpy.

Character n-grams and word unigrams and bigrams are hashed with vectorised polynomial
hashes over the UTF-8 bytes (no Python loop per token), so a 1 KB prompt costs tens of
microseconds. The hashes are stable across processes (Python's own ``hash`` is salted), so a
model trained once works everywhere.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CHAR_ORDERS = (3, 4, 5)
_PRIME = np.uint64(1_000_003)
_MASK = np.uint64(0xFFFFFFFF)


def _char_hashes(data: npt.NDArray[np.uint64]) -> list[npt.NDArray[np.uint64]]:
    """Hashes of every character 3-, 4- and 5-gram; each order extends the one before."""
    size = data.shape[0]
    out: list[npt.NDArray[np.uint64]] = []
    if size < CHAR_ORDERS[0]:
        return out
    value = (data[: size - 2] * _PRIME + data[1 : size - 1]) * _PRIME + data[2:]
    out.append(value ^ np.uint64(0xA5A5))
    for order in CHAR_ORDERS[1:]:
        if size < order:
            break
        value = value[:-1] * _PRIME + data[order - 1 :]
        out.append(value ^ np.uint64(order * 0x9E37))
    return out


_WORD_PRIME = 0x100000001B3  # odd, so invertible modulo 2**64
_LIMIT = 1 << 16  # bytes hashed at most (max_chars is checked first)
_POWERS = np.cumprod(np.full(_LIMIT, _WORD_PRIME, dtype=np.uint64), dtype=np.uint64)
_POWERS = np.concatenate([np.ones(1, dtype=np.uint64), _POWERS[:-1]])
_INVERSES = np.cumprod(
    np.full(_LIMIT, pow(_WORD_PRIME, -1, 1 << 64), dtype=np.uint64), dtype=np.uint64
)
_INVERSES = np.concatenate([np.ones(1, dtype=np.uint64), _INVERSES[:-1]])


def _word_hashes(data: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Hashes of every run of ``[a-z0-9']`` bytes and of every pair of neighbouring runs,
    from prefix sums: hash(s, e) = P**(e-1) * sum(b[k] * P**-k for s <= k < e) mod 2**64."""
    size = data.shape[0]
    if size == 0:
        return np.empty(0, dtype=np.uint64)
    word = ((data >= 97) & (data <= 122)) | ((data >= 48) & (data <= 57)) | (data == 39)
    edges = np.diff(np.concatenate([[False], word, [False]]).astype(np.int8))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return np.empty(0, dtype=np.uint64)
    prefix = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(data * _INVERSES[:size])])
    words = (prefix[ends] - prefix[starts]) * _POWERS[ends - 1]
    pairs = words[:-1] * np.uint64(0x9E3779B97F4A7C15) ^ words[1:]
    return np.concatenate([words ^ np.uint64(0x5BD1E995), pairs])


def feature_indices(text: str, bits: int, *, max_chars: int = 20_000) -> npt.NDArray[np.int64]:
    """The distinct hashed feature indices of ``text`` in ``[0, 2**bits)``.

    Only the first and last ``max_chars / 2`` characters of a very long text are read: enough
    to see an attack's framing, and the cost stays bounded."""
    lowered = text.lower()
    if len(lowered) > max_chars:
        half = max_chars // 2
        lowered = lowered[:half] + " " + lowered[-half:]
    data = np.frombuffer(lowered.encode("utf-8", "replace"), dtype=np.uint8).astype(np.uint64)
    parts = _char_hashes(data)
    data = data[:_LIMIT]
    parts.append(_word_hashes(data))
    mask = np.uint64((1 << bits) - 1)
    merged = np.concatenate(parts)
    merged = (merged ^ (merged >> np.uint64(32))) & _MASK  # fold 64-bit hashes to 32
    # Mix the high bits in before masking: the polynomial hash's low bits are weak.
    merged = (merged ^ (merged >> np.uint64(15))) * np.uint64(0x2C1B3C6D) & _MASK
    merged = merged ^ (merged >> np.uint64(12))
    # Distinct indices through a bitmap: several times faster than np.unique's sort here.
    seen = np.zeros(1 << bits, dtype=np.bool_)
    seen[(merged & mask).astype(np.intp)] = True
    return np.flatnonzero(seen).astype(np.int64)

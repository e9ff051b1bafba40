"""Hashed n-gram features for the small text classifiers, computed with numpy.

Character n-grams are hashed with a vectorised polynomial hash over the UTF-8 bytes, so a
1 KB prompt costs tens of microseconds; word unigrams and bigrams use CRC-32. Both hashes are
stable across processes (Python's own ``hash`` is salted), so a model trained once works
everywhere.
"""

from __future__ import annotations

import re
import zlib
from itertools import pairwise

import numpy as np
import numpy.typing as npt

WORD = re.compile(r"[a-z0-9']+")
CHAR_ORDERS = (3, 4, 5)
_PRIME = np.uint64(1_000_003)
_MASK = np.uint64(0xFFFFFFFF)


def _char_hashes(data: npt.NDArray[np.uint64], order: int) -> npt.NDArray[np.uint64]:
    count = data.shape[0] - order + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    value = np.full(count, np.uint64(order * 7919), dtype=np.uint64)
    for offset in range(order):
        value = (value * _PRIME + data[offset : offset + count]) & _MASK
    return value


def feature_indices(text: str, bits: int, *, max_chars: int = 20_000) -> npt.NDArray[np.int64]:
    """The distinct hashed feature indices of ``text`` in ``[0, 2**bits)``.

    Only the first and last ``max_chars / 2`` characters of a very long text are read: enough
    to see an attack's framing, and the cost stays bounded."""
    lowered = text.lower()
    if len(lowered) > max_chars:
        half = max_chars // 2
        lowered = lowered[:half] + " " + lowered[-half:]
    data = np.frombuffer(lowered.encode("utf-8", "replace"), dtype=np.uint8).astype(np.uint64)
    parts = [_char_hashes(data, order) for order in CHAR_ORDERS]
    words = WORD.findall(lowered)
    hashed = [zlib.crc32(word.encode()) for word in words]
    hashed.extend(zlib.crc32(f"{a} {b}".encode()) ^ 0x5BD1E995 for a, b in pairwise(words))
    parts.append(np.asarray(hashed, dtype=np.uint64) if hashed else np.empty(0, dtype=np.uint64))
    mask = np.uint64((1 << bits) - 1)
    merged = np.concatenate(parts)
    # Mix the high bits in before masking: the polynomial hash's low bits are weak.
    merged = (merged ^ (merged >> np.uint64(15))) * np.uint64(0x2C1B3C6D) & _MASK
    merged = merged ^ (merged >> np.uint64(12))
    return np.unique((merged & mask).astype(np.int64))

"""Nearest-neighbour quality estimates over sentence embeddings.

For a prompt, the ``k`` most similar training prompts (cosine over unit-length embeddings)
vote on each model's chance of a good answer, shrunk towards that model's mean with
``shrink`` pseudo-counts so a small or mixed neighbourhood says little. Unknown outcomes
(NaN, e.g. trace rows where another worker answered) are left out of the vote.

Stored as float16 (vectors and outcomes) to keep artifacts small; held as float32 in memory
because a float16 matrix product in numpy is many times slower. A single request's
similarities are computed in blocks of rows: one product over the whole table is big enough for
OpenBLAS to split it across threads, which stalls for milliseconds on a busy machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BLOCK_ROWS = 1024  # small enough that one block's product stays on the calling thread
FEW_QUERIES = 8
FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclass
class NeighbourTable:
    vectors: F32  # (rows, dim), unit length
    outcomes: F32  # (rows, models), NaN where unknown
    mean_quality: FloatArray  # (models,): what an empty neighbourhood predicts
    k: int = 100
    shrink: float = 10.0

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self.outcomes = np.asarray(self.outcomes, dtype=np.float32)
        known = ~np.isnan(self.outcomes)
        self._known = known.astype(np.float32)
        self._values = np.where(known, self.outcomes, 0.0).astype(np.float32)
        rows = self.vectors.shape[0]
        self._blocks = [self.vectors[i : i + BLOCK_ROWS] for i in range(0, rows, BLOCK_ROWS)]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def similarities(self, q: F32) -> F32:
        if q.shape[0] > FEW_QUERIES:
            out: F32 = q @ self.vectors.T
            return out
        return np.concatenate([q @ block.T for block in self._blocks], axis=1)

    def predict(self, queries: npt.NDArray[np.floating]) -> FloatArray:
        """Per query row (unit length), the shrunk neighbourhood mean of every model."""
        q = np.asarray(queries, dtype=np.float32)
        rows = self.vectors.shape[0]
        if rows == 0:
            return np.broadcast_to(self.mean_quality, (q.shape[0], self.mean_quality.size)).copy()
        k = max(1, min(self.k, rows))
        if k >= rows:  # every row is a neighbour
            total = np.broadcast_to(self._values.sum(axis=0), (q.shape[0], self._values.shape[1]))
            count = np.broadcast_to(self._known.sum(axis=0), total.shape)
        else:
            sims = self.similarities(q)
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            total = self._values[top].sum(axis=1)
            count = self._known[top].sum(axis=1)
        out: FloatArray = (total + self.shrink * self.mean_quality) / (count + self.shrink)
        return out

    def arrays(self, prefix: str) -> dict[str, npt.NDArray[np.floating]]:
        return {
            f"{prefix}_vectors": self.vectors.astype(np.float16),
            f"{prefix}_outcomes": self.outcomes.astype(np.float16),
        }

    @classmethod
    def from_arrays(
        cls,
        data: dict[str, npt.NDArray[np.floating]],
        prefix: str,
        mean_quality: FloatArray,
        k: int,
        shrink: float,
    ) -> NeighbourTable | None:
        if f"{prefix}_vectors" not in data:
            return None
        return cls(
            vectors=data[f"{prefix}_vectors"].astype(np.float32),
            outcomes=data[f"{prefix}_outcomes"].astype(np.float32),
            mean_quality=mean_quality,
            k=k,
            shrink=shrink,
        )

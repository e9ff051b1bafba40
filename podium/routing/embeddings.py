"""Sentence embeddings for routing: a small interface and the static model Podium ships.

The shipped model (``podium/data/embeddings/minilm-l6-static256``) was distilled from
all-MiniLM-L6-v2 with model2vec (``scripts/distill_embeddings.py``): a table of one 256-dim vector
per token. A text's embedding is the mean of its tokens' rows, L2-normalised, so encoding costs a
tokenizer call and a numpy gather (tens of microseconds) and needs neither torch nor a GPU.

Anything with ``dim`` and ``encode`` is an :class:`Embedder`; routers take one, so a test can pass
a toy embedder and a deployment can plug in a bigger model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_MODEL = "minilm-l6-static256"
# Texts longer than this (in characters) are cut before tokenising: a 1 MB prompt costs no more
# than a long one, and the model only reads its first ``max_tokens`` tokens anyway.
DEFAULT_MAX_CHARS = 4096

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into rows of unit length (all zeros for a text with no known token)."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors:
        """A ``(len(texts), dim)`` float32 array, one L2-normalised row per text."""
        ...


class EmbeddingsUnavailable(RuntimeError):
    """The embedding model's files are missing or unreadable."""


def models_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "embeddings"


def default_model_path() -> Path:
    return models_dir() / DEFAULT_MODEL


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    dim: int
    vocab: int
    unk_token_id: int | None
    max_tokens: int
    median_token_length: int
    source: str


class StaticEmbedder:
    """Mean of per-token vectors, as model2vec computes it, with numpy and ``tokenizers``."""

    def __init__(
        self,
        vectors: NDArray[np.floating],
        tokenizer: Tokenizer,
        info: ModelInfo,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        # Held as float32 (twice the file's size in memory): gathering float16 rows and
        # converting them costs several times more than the gather itself.
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._tokenizer = tokenizer
        self.info = info
        # model2vec cuts a text at max_tokens x the median token length before tokenising.
        self._max_chars = min(max_chars, info.max_tokens * max(1, info.median_token_length))
        self._max_tokens = info.max_tokens
        self._unk = info.unk_token_id
        # Truncation is done on the ids below: the tokenizer's own truncation also computes
        # the overflowing tokens, which doubles the cost of a long text.
        tokenizer.no_padding()
        tokenizer.no_truncation()

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, max_chars: int = DEFAULT_MAX_CHARS
    ) -> StaticEmbedder:
        """Load a model directory (``vectors.npy``, ``tokenizer.json``, ``meta.json``)."""
        from tokenizers import Tokenizer  # imported here: only routers that embed pay for it

        folder = Path(path) if path is not None else default_model_path()
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as error:  # tokenizers raises plain Exception
            raise EmbeddingsUnavailable(
                f"cannot load the embedding model {folder.name!r}: {type(error).__name__}: {error}"
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != tokenizer.get_vocab_size():
            raise EmbeddingsUnavailable(
                f"embedding model {folder.name!r}: {vectors.shape} vectors do not fit a "
                f"vocabulary of {tokenizer.get_vocab_size()} tokens"
            )
        info = ModelInfo(
            name=str(meta.get("name", folder.name)),
            dim=int(vectors.shape[1]),
            vocab=int(vectors.shape[0]),
            unk_token_id=meta.get("unk_token_id"),
            max_tokens=int(meta.get("max_tokens", 512)),
            median_token_length=int(meta.get("median_token_length", 4)),
            source=str(meta.get("source", "")),
        )
        return cls(vectors, tokenizer, info, max_chars=max_chars)

    def token_ids(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer.encode(
            text[: self._max_chars], add_special_tokens=False
        ).ids[: self._max_tokens]
        if self._unk is not None:
            ids = [token for token in ids if token != self._unk]
        return ids

    def encode(self, texts: Sequence[str]) -> Vectors:
        return self.encode_counted(texts)[0]

    def encode_counted(self, texts: Sequence[str]) -> tuple[Vectors, list[int]]:
        """The rows, and how many tokens of each text they were made from."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        counts: list[int] = []
        if not texts:
            return out, counts
        encodings = self._tokenizer.encode_batch(
            [text[: self._max_chars] for text in texts], add_special_tokens=False
        )
        for row, encoding in enumerate(encodings):
            ids = encoding.ids[: self._max_tokens]
            if self._unk is not None:
                ids = [token for token in ids if token != self._unk]
            counts.append(len(ids))
            if ids:
                out[row] = self._vectors.take(ids, axis=0).mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out, counts

    def encode_one(self, text: str) -> NDArray[np.float32]:
        """One text's row: the per-request path, without batch overhead."""
        ids = self.token_ids(text)
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        # The sum, not the mean: the row is normalised anyway, and the division is one less pass.
        row: NDArray[np.float32] = self._vectors.take(ids, axis=0).sum(axis=0)
        norm = float(np.sqrt(row @ row))
        return row / norm if norm > 0 else row


def load_embedder(path: str | Path | None = None) -> StaticEmbedder:
    """The shipped static model (or the model directory at ``path``)."""
    return StaticEmbedder.load(path)

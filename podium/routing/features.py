"""Prompt features for the learned router: cheap, deterministic, numpy only.

Three blocks, each scaled on its own so none drowns the others:

- cues: length, lines, digits, code and maths markers, multiple-choice options, few-shot
  markers, non-ASCII share (standardised with the training set's mean and spread);
- hashed word unigrams and bigrams and hashed character 4-grams (log counts, L2-normalised),
  with a stable hash (CRC-32) so a feature means the same thing in every process;
- optionally a sentence embedding (any object with ``encode(texts) -> array``, L2-normalised).

Huge prompts are read as their head and tail only, so the cost of a decision is bounded.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

HEAD_CHARS = 3000
TAIL_CHARS = 1000
WORD = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)
CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|\bimport |[{};]\s*$|=>|\bfunction\b", re.M)
MATH = re.compile(r"[=+\-*/^]\s*\d|\d\s*[=+\-*/^]|\\frac|\\sqrt|\$[^$]+\$|\bsolve\b|\bequation")
DIGIT = re.compile(r"\d")
PUNCT = re.compile(r"[^\w\s]|_")
OPTION = re.compile(r"^\s*(?:\(?[A-J][).:]|[A-J]\s*[-–])\s", re.M)
CUE_NAMES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_share",
    "upper_share",
    "non_ascii_share",
    "punct_share",
    "code_marks",
    "math_marks",
    "options",
    "questions",
    "answer_marks",
    "mean_word_len",
    "log_longest_line",
    "blank_blocks",
    "turns",
)


class Embedder(Protocol):
    def encode(self, texts: Sequence[str]) -> npt.NDArray[Any]: ...


def clip_text(text: str) -> str:
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def _codes(text: str) -> npt.NDArray[np.uint32]:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _upper(text: str) -> int:
    """Upper-case letters, counted in C: the characters that lower-casing changes."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few letters lower-case to two characters
        return sum(ch.isupper() for ch in text)
    return int((_codes(text) != _codes(lowered)).sum())


def cues(text: str) -> list[float]:
    """Dense hand-made signals; computed on the whole prompt where they are cheap (length)."""
    n = max(1, len(text))
    clipped = clip_text(text)
    c = max(1, len(clipped))
    words = clipped.split()
    lines = clipped.splitlines() or [""]
    # Whole-text counts only where they are cheap (len, count); the word count of a huge
    # prompt is scaled up from its clipped window instead of splitting megabytes.
    scale = len(text) / c if len(text) > c else 1.0
    return [
        float(np.log1p(len(text))),
        float(np.log1p(len(words) * scale)),
        float(np.log1p(text.count("\n") + 1)),
        len(DIGIT.findall(clipped)) / c,
        _upper(clipped) / c,
        int((_codes(clipped) > 127).sum()) / c,
        len(PUNCT.findall(clipped)) / c,
        float(np.log1p(len(CODE.findall(clipped)))),
        float(np.log1p(len(MATH.findall(clipped)))),
        float(np.log1p(len(OPTION.findall(clipped)))),
        float(np.log1p(clipped.count("?"))),
        float(np.log1p(clipped.lower().count("answer"))),
        (sum(len(w) for w in words) / len(words)) if words else 0.0,
        float(np.log1p(max(len(line) for line in lines))),
        float(np.log1p(clipped.count("\n\n"))),
        float(np.log1p(n // max(1, HEAD_CHARS))),
    ]


def _hash(token: str, salt: int) -> int:
    return zlib.crc32(token.encode("utf-8", "surrogatepass"), salt)


def hashed_words(text: str, dim: int) -> FloatArray:
    out = np.zeros(dim, dtype=np.float64)
    tokens = WORD.findall(clip_text(text).lower())
    prev = ""
    for token in tokens:
        out[_hash(token, 1) % dim] += 1.0
        if prev:
            out[_hash(prev + " " + token, 2) % dim] += 1.0
        prev = token
    return out


def hashed_chars(text: str, dim: int, n: int = 4) -> FloatArray:
    """Character n-grams by a rolling polynomial hash over the UTF-8 bytes, vectorised."""
    data = np.frombuffer(clip_text(text).lower().encode("utf-8", "replace"), dtype=np.uint8)
    out = np.zeros(dim, dtype=np.float64)
    if data.size < n:
        return out
    h = np.zeros(data.size - n + 1, dtype=np.uint64)
    for k in range(n):
        h = h * np.uint64(1_000_003) + data[k : data.size - n + 1 + k].astype(np.uint64)
    h ^= h >> np.uint64(29)
    np.add.at(out, (h % np.uint64(dim)).astype(np.intp), 1.0)
    return out


def _unit(block: FloatArray) -> FloatArray:
    logged: FloatArray = np.log1p(block)
    norm = np.linalg.norm(logged, axis=-1, keepdims=True)
    out: FloatArray = logged / np.maximum(norm, 1e-12)
    return out


@dataclass(slots=True)
class FeatureSpec:
    """What a trained model expects; stored in its artifact so run time matches training."""

    word_dim: int = 2048
    char_dim: int = 2048
    embedding_dim: int = 0  # 0: no embedding block
    cue_mean: list[float] = field(default_factory=list)
    cue_std: list[float] = field(default_factory=list)
    block_weights: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.0, 1.0])

    @property
    def dim(self) -> int:
        return len(CUE_NAMES) + self.word_dim + self.char_dim + self.embedding_dim + 1


class Featurizer:
    """Prompts to feature rows under one :class:`FeatureSpec` (the last column is a bias)."""

    def __init__(self, spec: FeatureSpec, embedder: Embedder | None = None) -> None:
        if spec.embedding_dim and embedder is None:
            raise ValueError("this model was trained with embeddings; give it the embedder")
        self.spec = spec
        self.embedder = embedder if spec.embedding_dim else None

    def fit_cues(self, texts: Sequence[str]) -> None:
        raw = np.asarray([cues(t) for t in texts], dtype=np.float64)
        self.spec.cue_mean = raw.mean(axis=0).tolist()
        self.spec.cue_std = np.maximum(raw.std(axis=0), 1e-6).tolist()

    def transform(self, texts: Sequence[str]) -> FloatArray:
        spec = self.spec
        if not spec.cue_mean:
            self.fit_cues(texts)
        rows = len(texts)
        w_cue, w_word, w_char, w_emb = spec.block_weights
        cue = (np.asarray([cues(t) for t in texts], dtype=np.float64) - spec.cue_mean) / (
            spec.cue_std
        )
        blocks: list[FloatArray] = [np.clip(cue, -6, 6) * (w_cue / np.sqrt(len(CUE_NAMES)))]
        blocks.append(_unit(np.stack([hashed_words(t, spec.word_dim) for t in texts])) * w_word)
        blocks.append(_unit(np.stack([hashed_chars(t, spec.char_dim) for t in texts])) * w_char)
        if self.embedder is not None:
            vectors = np.asarray(
                self.embedder.encode([clip_text(t) for t in texts]), dtype=np.float64
            )
            if vectors.shape != (rows, spec.embedding_dim):
                raise ValueError(
                    f"the embedder gives {vectors.shape[-1]} dimensions, "
                    f"the model expects {spec.embedding_dim}"
                )
            norm = np.linalg.norm(vectors, axis=1, keepdims=True)
            blocks.append(vectors / np.maximum(norm, 1e-12) * w_emb)
        blocks.append(np.ones((rows, 1)))
        return np.concatenate(blocks, axis=1)

    def one(self, text: str) -> FloatArray:
        row: FloatArray = self.transform([text])[0]
        return row

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from podium.routing.embeddings import (
    EmbeddingsUnavailable,
    StaticEmbedder,
    default_model_path,
    load_embedder,
)


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return load_embedder()


def test_the_shipped_model_matches_its_recorded_checksums() -> None:
    folder = default_model_path()
    meta = json.loads((folder / "meta.json").read_text())
    for name, key in (("vectors.npy", "vectors_sha256"), ("tokenizer.json", "tokenizer_sha256")):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == meta[key]
    assert meta["dim"] == 256
    assert (folder / "vectors.npy").stat().st_size < 20_000_000


def test_rows_are_unit_length_and_similar_texts_are_closer(embedder: StaticEmbedder) -> None:
    rows = embedder.encode(
        [
            "Write a Python function that sorts a list",
            "Implement quicksort in Python",
            "What is a good recipe for banana bread?",
        ]
    )
    assert rows.shape == (3, 256) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert rows[0] @ rows[1] > rows[0] @ rows[2] + 0.2


def test_one_text_and_a_batch_agree(embedder: StaticEmbedder) -> None:
    text = "Extract every email address from this page"
    assert np.allclose(embedder.encode_one(text), embedder.encode([text])[0], atol=1e-6)


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01", "🙂🙃"])
def test_texts_with_no_known_token_embed_to_zeros(embedder: StaticEmbedder, text: str) -> None:
    row = embedder.encode([text])[0]
    assert not np.isnan(row).any()
    assert float(np.linalg.norm(row)) in (0.0, pytest.approx(1.0))


def test_any_script_and_huge_texts_embed(embedder: StaticEmbedder) -> None:
    rows = embedder.encode(["量子计算是什么", "Что такое квантовые вычисления", "x " * 500_000])
    assert rows.shape == (3, 256)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_an_empty_batch_is_an_empty_array(embedder: StaticEmbedder) -> None:
    assert embedder.encode([]).shape == (0, 256)


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingsUnavailable, match="cannot load the embedding model"):
        StaticEmbedder.load(tmp_path)

"""``provider: static``: the static MiniLM that ships with Podium, as an embedding worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from podium.config import ConfigError, WorkerConfig
from podium.errors import ProviderError
from podium.providers.base import ProviderContext
from podium.providers.egress import Egress
from podium.providers.static_embeddings import LOOP_BATCH, StaticEmbeddingProvider
from podium.routing.embeddings import load_embedder
from podium.secrets import EnvironmentSecrets
from podium.types import EmbedRequest


def make(tmp_path: Path, **fields: Any) -> StaticEmbeddingProvider:
    config = WorkerConfig(
        **{"name": "vectors", "provider": "static", "model": "minilm-l6-static256", "role": "embed"}
        | fields
    )
    context = ProviderContext(
        worker=config, http=Egress(), secrets=EnvironmentSecrets({}), data_dir=tmp_path
    )
    return StaticEmbeddingProvider(context)


async def test_vectors_are_the_routers_own_and_tokens_are_counted(tmp_path: Path) -> None:
    provider = make(tmp_path)
    texts = ["refund my order", "the weather in Paris"]
    answer = await provider.embed(EmbedRequest("vectors", texts))
    expected = load_embedder().encode(texts)
    assert [len(vector) for vector in answer.vectors] == [256, 256]
    assert np.allclose(answer.vectors, expected, atol=1e-6)
    assert answer.usage.input_tokens >= 6


async def test_a_large_batch_is_encoded_off_the_event_loop_with_the_same_vectors(
    tmp_path: Path,
) -> None:
    provider = make(tmp_path)
    texts = [f"text number {n}" for n in range(LOOP_BATCH + 1)]
    answer = await provider.embed(EmbedRequest("vectors", texts))
    assert np.allclose(answer.vectors, load_embedder().encode(texts), atol=1e-6)


async def test_it_cannot_shorten_its_vectors_or_answer_chat(tmp_path: Path) -> None:
    provider = make(tmp_path)
    with pytest.raises(ProviderError, match="256-dimensional"):
        await provider.embed(EmbedRequest("vectors", ["x"], dimensions=64))
    answer = await provider.embed(EmbedRequest("vectors", ["x"], dimensions=256))
    assert len(answer.vectors[0]) == 256


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"role": "answer"}, "only embeds text; give it role: embed"),
        ({"model": "text-embedding-3-small"}, "give options.path"),
        ({"options": {"dims": 8}}, "options.dims"),
    ],
)
def test_mistakes_are_caught_at_start(tmp_path: Path, fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make(tmp_path, **fields)

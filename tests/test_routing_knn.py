"""k-NN quality estimates over sentence embeddings: the neighbourhood vote, the blend with the
quality heads, the float16 artifact and the router using it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from podium.config import WorkerConfig
from podium.eval.data import read_csv
from podium.routing.artifacts import ArtifactStore
from podium.routing.knn import NeighbourTable
from podium.routing.learned import QualityCostModel, TrainOptions, fit
from podium.routing.learned_router import LearnedConfig, ModelHandle, WorkerScorer
from podium.types import ChatRequest, Message, TextPart
from tests.learned_helpers import easy_prompt, hard_prompt, write_csv

OPTIONS = TrainOptions(steps=60, knn=20, knn_weight=0.5, knn_shrink=2.0, knn_space="embedding")


class WordEmbedder:
    """A toy embedder: "hard" prompts point one way, everything else another."""

    dim = 2

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = [[1.0, 0.1] if "integral" in t or "proof" in t else [0.1, 1.0] for t in texts]
        out = np.asarray(rows, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_the_vote_is_the_neighbourhood_mean_shrunk_towards_the_model_mean() -> None:
    vectors = np.asarray([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    outcomes = np.asarray([[1, 0], [1, np.nan], [0, 1], [0, 1]], dtype=np.float32)
    table = NeighbourTable(vectors, outcomes, np.asarray([0.5, 0.5]), k=2, shrink=2.0)
    near_first = table.predict(np.asarray([[1.0, 0.0]]))[0]
    # model 0: two wins and the mean's two pseudo-counts; model 1: the NaN is not a vote
    assert np.allclose(near_first, [(2 + 1) / 4, (0 + 1) / 3])
    everyone = NeighbourTable(vectors, outcomes, np.asarray([0.5, 0.5]), k=50, shrink=0.0)
    assert np.allclose(everyone.predict(np.asarray([[0.0, 1.0]]))[0], [0.5, 2 / 3])


def test_the_blend_uses_neighbours_and_falls_back_to_the_heads_without_an_embedder(
    tmp_path: Path,
) -> None:
    data = read_csv(write_csv(tmp_path / "train.csv", rows=160))
    model = fit(
        data.prompts,
        data.quality,
        data.cost,
        data.models,
        options=OPTIONS,
        neighbour_embedder=WordEmbedder(),
    )
    assert model.neighbours is not None and model.needs_embedder
    assert model.spec.embedding_dim == 0  # the table is not part of the features
    prompts = [hard_prompt(3), easy_prompt(3)]
    blended = model.predict_quality(prompts, WordEmbedder())
    heads = model.predict_quality(prompts)
    assert blended.shape == heads.shape == (2, len(data.models))
    assert not np.allclose(blended, heads)
    assert ((blended >= 0) & (blended <= 1)).all()


def test_the_table_round_trips_as_float16_and_the_router_uses_it(tmp_path: Path) -> None:
    data = read_csv(write_csv(tmp_path / "train.csv", rows=160))
    model = fit(
        data.prompts,
        data.quality,
        data.cost,
        data.models,
        options=OPTIONS,
        neighbour_embedder=WordEmbedder(),
    )
    store = ArtifactStore(tmp_path / "routers")
    version = store.save(model)
    with np.load(version.path) as arrays:
        assert arrays["nn_vectors"].dtype == np.float16
    loaded = QualityCostModel.load(version.path)
    assert loaded.neighbours is not None and loaded.options.knn_space == "embedding"
    prompts = [hard_prompt(5), easy_prompt(5)]
    assert np.allclose(
        loaded.predict_quality(prompts, WordEmbedder()),
        model.predict_quality(prompts, WordEmbedder()),
        atol=2e-3,
    )
    store.promote(version.number)
    handle = ModelHandle(store, None, WordEmbedder, reload_seconds=0)
    scorer = WorkerScorer(LearnedConfig(), handle)
    workers = [
        WorkerConfig(name=name, provider="openai", model=name, base_url="http://127.0.0.1:9")
        for name in data.models
    ]
    request = ChatRequest(model="podium/auto", messages=[Message("user", [TextPart(prompts[0])])])
    estimates, _ = scorer.estimates(request, workers)
    expected = loaded.predict_quality([prompts[0]], WordEmbedder())[0]
    assert np.allclose([e.quality for e in estimates], expected, atol=1e-6)


def test_one_request_is_scored_in_blocks_with_the_same_result() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2500, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = NeighbourTable(vectors, rng.random((2500, 3)), np.full(3, 0.5), k=30, shrink=1.0)
    queries = vectors[:20] + 0.01
    together = table.predict(queries)  # many queries: one product
    alone = np.concatenate([table.predict(queries[i : i + 1]) for i in range(20)])
    assert np.allclose(together, alone, atol=1e-6)

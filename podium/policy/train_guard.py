"""Train the injection classifier shipped in ``podium/data/policy/injection.npz``.

    python -m podium.policy.train_guard \
        ../shared/data/security/injection/jailbreak_classification_train.csv

Rows are split by the data's rule, ``int(sha256(normalised prompt)[:8], 16) % 10``: buckets
0-6 train, the rest is held out and only scored. The decision threshold is chosen on
out-of-fold predictions over the training buckets for a false-positive rate of at most
``--target-fpr`` (so it is not tuned on held-out data).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from podium.policy.ngrams import feature_indices

BITS = 16


def bucket(prompt: str) -> int:
    normalised = " ".join(prompt.split()).lower()
    return int(hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:8], 16) % 10


def read_rows(path: Path) -> list[tuple[str, int]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            (row["prompt"], 1 if row["type"].strip().lower() != "benign" else 0)
            for row in csv.DictReader(handle)
        ]


class Rows:
    """Sparse binary rows, L2-normalised, as flat index/value arrays."""

    def __init__(self, texts: list[str], bits: int) -> None:
        rows = [feature_indices(text, bits) for text in texts]
        self.count = len(rows)
        self.indices = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        self.owner = np.repeat(np.arange(self.count), [row.size for row in rows])
        self.values = np.concatenate(
            [np.full(row.size, 1.0 / math.sqrt(max(1, row.size))) for row in rows]
        )

    def logits(self, weights: npt.NDArray[np.float64], bias: float) -> npt.NDArray[np.float64]:
        return np.asarray(
            np.bincount(
                self.owner, weights=weights[self.indices] * self.values, minlength=self.count
            )
            + bias,
            dtype=np.float64,
        )


def fit(
    rows: Rows, labels: npt.NDArray[np.float64], *, dims: int, l2: float = 1e-4, steps: int = 400
) -> tuple[npt.NDArray[np.float64], float]:
    """Full-batch Adam on the logistic loss; positives weighted to balance the classes."""
    weights = np.zeros(dims)
    bias = 0.0
    positive = max(1.0, labels.sum())
    sample_weight = np.where(
        labels > 0, len(labels) / (2 * positive), len(labels) / (2 * (len(labels) - positive))
    )
    m_w, v_w = np.zeros(dims), np.zeros(dims)
    m_b = v_b = 0.0
    rate, beta1, beta2 = 0.05, 0.9, 0.999
    for step in range(1, steps + 1):
        probability = 1.0 / (1.0 + np.exp(-np.clip(rows.logits(weights, bias), -30, 30)))
        error = (probability - labels) * sample_weight / len(labels)
        counts = np.bincount(rows.indices, weights=error[rows.owner] * rows.values, minlength=dims)
        grad_w: npt.NDArray[np.float64] = np.asarray(counts, dtype=np.float64) + l2 * weights
        grad_b = float(error.sum())
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        correction1, correction2 = 1 - beta1**step, 1 - beta2**step
        weights -= rate * (m_w / correction1) / (np.sqrt(v_w / correction2) + 1e-8)
        bias -= rate * (m_b / correction1) / (math.sqrt(v_b / correction2) + 1e-8)
    return weights, bias


def probabilities(
    rows: Rows, weights: npt.NDArray[np.float64], bias: float
) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(rows.logits(weights, bias), -30, 30)))


def threshold_for(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.float64], fpr: float
) -> float:
    benign = np.sort(scores[labels == 0])
    if benign.size == 0:
        return 0.5
    allowed = math.floor(fpr * benign.size)
    # The smallest threshold that lets at most ``allowed`` benign prompts through.
    return float(benign[benign.size - allowed - 1]) + 1e-6 if allowed < benign.size else 0.0


def rates(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.float64], threshold: float
) -> dict[str, float]:
    flagged = scores >= threshold
    attacks = labels > 0
    return {
        "detection": float(flagged[attacks].mean()) if attacks.any() else float("nan"),
        "false_positive_rate": float(flagged[~attacks].mean())
        if (~attacks).any()
        else float("nan"),
        "attacks": int(attacks.sum()),
        "benign": int((~attacks).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent.parent / "data" / "policy" / "injection.npz",
    )
    parser.add_argument("--target-fpr", type=float, default=0.03)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)

    data = read_rows(args.data)
    train = [(text, label) for text, label in data if bucket(text) <= 6]
    held = [(text, label) for text, label in data if bucket(text) > 6]
    dims = 1 << BITS
    texts = [text for text, _ in train]
    labels = np.array([label for _, label in train], dtype=np.float64)

    # Out-of-fold scores for choosing the threshold honestly.
    folds = np.array(
        [int(hashlib.sha256(t.encode()).hexdigest()[8:16], 16) % args.folds for t in texts]
    )
    out_of_fold = np.zeros(len(texts))
    for fold in range(args.folds):
        inside = [i for i in range(len(texts)) if folds[i] != fold]
        outside = [i for i in range(len(texts)) if folds[i] == fold]
        weights, bias = fit(Rows([texts[i] for i in inside], BITS), labels[inside], dims=dims)
        out_of_fold[outside] = probabilities(Rows([texts[i] for i in outside], BITS), weights, bias)
    threshold = threshold_for(out_of_fold, labels, args.target_fpr)

    weights, bias = fit(Rows(texts, BITS), labels, dims=dims)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        weights=weights.astype(np.float16),
        bias=np.float64(bias),
        bits=np.int64(BITS),
        threshold=np.float64(threshold),
    )
    held_labels = np.array([label for _, label in held], dtype=np.float64)
    held_scores = probabilities(
        Rows([text for text, _ in held], BITS), weights.astype(np.float16).astype(np.float64), bias
    )
    report = {
        "train_rows": len(train),
        "held_out_rows": len(held),
        "threshold": threshold,
        "out_of_fold": rates(out_of_fold, labels, threshold),
        "held_out_classifier_only": rates(held_scores, held_labels, threshold),
        "artifact": str(args.out.name),
        "artifact_bytes": args.out.stat().st_size,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

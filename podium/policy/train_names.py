"""Train the name and address tagger shipped in ``podium/data/policy/names.json.gz``.

    python -m podium.policy.train_names ../shared/data/security/pii/presidio_synth_train.json \
        --lexicon-from ../shared/data/tasks

The corpus is split by ``int(sha256(normalised text)[:8], 16) % 10`` (normalised: whitespace
collapsed, lower case). The train file holds buckets 0-6; this trains on 0-5 and keeps
bucket 6 aside as a development set that ``podium policy eval-pii --split dev`` scores.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from podium.policy.names import LABELS, Token, features, is_candidate, tokenize

# The corpus's entity types the tagger learns; the rest are ``O``. ORG and GPE are learned
# only so that the tagger can tell them apart from names and addresses.
GOLD_LABEL = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "ADDRESS",
    "ZIP_CODE": "ADDRESS",
    "ORGANIZATION": "ORG",
    "GPE": "GPE",
}
DEV_BUCKET = 6


def bucket(text: str) -> int:
    normalised = " ".join(text.split()).lower()
    return int(hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:8], 16) % 10


def split(records: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    """``train`` (buckets below 6), ``dev`` (bucket 6) or ``all``."""
    if part == "all":
        return records
    if part == "dev":
        return [r for r in records if bucket(r["full_text"]) == DEV_BUCKET]
    return [r for r in records if bucket(r["full_text"]) < DEV_BUCKET]


def gold_labels(record: dict[str, Any], tokens: list[Token]) -> list[str]:
    labels = ["O"] * len(tokens)
    for span in record.get("spans") or []:
        label = GOLD_LABEL.get(span["entity_type"])
        if label is None:
            continue
        for index, token in enumerate(tokens):
            if token.start < span["end_position"] and token.end > span["start_position"]:
                labels[index] = label
    return labels


class Perceptron:
    """Averaged perceptron with lazy averaging."""

    def __init__(self) -> None:
        self.weights: dict[str, list[float]] = {}
        self.totals: dict[str, list[float]] = {}
        self.stamps: dict[str, list[int]] = {}
        self.clock = 0

    def predict(self, feats: list[str]) -> int:
        scores = [0.0] * len(LABELS)
        for feature in feats:
            row = self.weights.get(feature)
            if row is not None:
                for label, value in enumerate(row):
                    scores[label] += value
        return max(range(len(LABELS)), key=scores.__getitem__)

    def update(self, feats: list[str], truth: int, guess: int) -> None:
        self.clock += 1
        if truth == guess:
            return
        for feature in feats:
            row = self.weights.setdefault(feature, [0.0] * len(LABELS))
            total = self.totals.setdefault(feature, [0.0] * len(LABELS))
            stamp = self.stamps.setdefault(feature, [0] * len(LABELS))
            for label, delta in ((truth, 1.0), (guess, -1.0)):
                total[label] += (self.clock - stamp[label]) * row[label]
                stamp[label] = self.clock
                row[label] += delta

    def averaged(self, prune: float) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for feature, row in self.weights.items():
            total, stamp = self.totals[feature], self.stamps[feature]
            averaged = [
                (total[i] + (self.clock - stamp[i]) * row[i]) / max(1, self.clock)
                for i in range(len(LABELS))
            ]
            if max(abs(value) for value in averaged) >= prune:
                out[feature] = [round(value, 4) for value in averaged]
        return out


def common_words(folder: Path, *, minimum: int = 3) -> frozenset[str]:
    """Words written in lower case at least ``minimum`` times and at least twice as often as
    capitalised mid-sentence, over every string in ``folder/*/train.jsonl`` (the task
    questions: ordinary English, no PII labels needed)."""
    lower: Counter[str] = Counter()
    capital: Counter[str] = Counter()
    for path in sorted(folder.glob("*/train.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for text in _strings(json.loads(line)):
                for capitalised, plain in _WORDS.findall(text):
                    if capitalised:
                        capital[capitalised.lower()] += 1
                    else:
                        lower[plain] += 1
    return frozenset(w for w, n in lower.items() if n >= minimum and n >= 2 * capital[w])


_WORDS = re.compile(r"(?<=[a-z,;] )([A-Z][a-z']+)|\b([a-z][a-z']+)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# Task sets whose questions are ordinary English with (almost) no people in them: sentences
# without any PII, so the tagger also sees capitalised words that are not names.
NEGATIVE_SETS = ("copa", "arc_easy", "arc_challenge", "openbook_qa")
# Prompts start with imperatives the PII corpus never shows ("Pretend", "Summarise"): a few
# hand-written ones, every token outside any entity.
IMPERATIVES = [
    "Pretend",
    "Roleplay",
    "Imagine",
    "Write",
    "Explain",
    "Describe",
    "Summarise",
    "Summarize",
    "Translate",
    "List",
    "Give",
    "Tell",
    "Create",
    "Generate",
    "Classify",
    "Answer",
    "Solve",
    "Compute",
    "Calculate",
    "Compare",
    "Rewrite",
    "Draft",
    "Plan",
    "Suggest",
    "Recommend",
    "Outline",
    "Define",
    "Premise",
    "Hypothesis",
    "Context",
    "Question",
    "Options",
    "Choose",
    "Read",
    "Consider",
    "Determine",
    "Identify",
    "Find",
    "Complete",
    "Continue",
    "Repeat",
    "Act",
    "Play",
    "Assume",
    "Suppose",
    "Provide",
    "Hey",
    "Hi",
    "Hello",
    "Thanks",
    "Please",
    "Review",
    "Edit",
    "Fix",
    "Debug",
    "Convert",
    "Format",
    "Sort",
    "Count",
    "Name",
    "Predict",
]
TOPICS = (
    "a short story about a dragon.",
    "the following paragraph in two sentences.",
    "to be a pirate and describe the sea.",
    "why the sky is blue, step by step.",
    "the main idea of the text below:",
    "a poem about the ocean at night.",
)


def negatives(folder: Path) -> list[dict[str, Any]]:
    texts: list[str] = []
    for name in NEGATIVE_SETS:
        path = folder / name / "train.jsonl"
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                query = json.loads(line).get("query")
                if isinstance(query, str):
                    texts.append(query)
    for index, verb in enumerate(IMPERATIVES):
        texts.append(f"{verb} {TOPICS[index % len(TOPICS)]}")
        texts.append(f"{verb}: {TOPICS[(index + 3) % len(TOPICS)]}")
    return [{"full_text": text, "spans": []} for text in texts]


def train(
    records: list[dict[str, Any]], epochs: int, seed: int, common: frozenset[str] = frozenset()
) -> Perceptron:
    model = Perceptron()
    examples = []
    for record in records:
        tokens = tokenize(record["full_text"])
        if tokens:
            truth = [LABELS.index(x) for x in gold_labels(record, tokens)]
            examples.append(([token.text for token in tokens], truth))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(examples)
        for words, truth in examples:
            previous = previous2 = "O"
            for index, word in enumerate(words):
                before = words[index - 1] if index else ""
                if not is_candidate(word, previous, before):
                    label = "O"
                else:
                    feats = features(words, index, previous, previous2, common)
                    guess = model.predict(feats)
                    model.update(feats, truth[index], guess)
                    label = LABELS[guess]
                previous2, previous = previous, label
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent.parent / "data" / "policy" / "names.json.gz",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--prune", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--lexicon-from",
        type=Path,
        help="the tasks folder (../shared/data/tasks): common lower-case words, and PII-free "
        "sentences as negatives",
    )
    args = parser.parse_args(argv)
    records = json.loads(args.data.read_text(encoding="utf-8"))
    chosen = split(records, "train")
    common = common_words(args.lexicon_from) if args.lexicon_from else frozenset()
    extra = negatives(args.lexicon_from) if args.lexicon_from else []
    model = train(chosen + extra, args.epochs, args.seed, common)
    weights = model.averaged(args.prune)
    blob = json.dumps(
        {"weights": weights, "common": sorted(common)}, separators=(",", ":"), sort_keys=True
    ).encode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(gzip.compress(blob, mtime=0))
    print(
        json.dumps(
            {
                "train_records": len(chosen),
                "negative_records": len(extra),
                "features": len(weights),
                "common_words": len(common),
                "artifact_bytes": args.out.stat().st_size,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

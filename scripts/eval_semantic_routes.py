"""Where the shipped semantic routes send real task prompts (a sanity check, not a benchmark).

Reads the dev split of ../shared/data/tasks (or --tasks DIR): gsm8k and svamp should go to
``math``, human_eval to ``code``, and trivia, science and yes/no questions (triviaqa, arc_easy,
boolq) to no route at all (the next router decides). Prints, per task, the share of prompts each
route took.

    python scripts/eval_semantic_routes.py [--tasks ../shared/data/tasks] [--split dev]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from podium.config import parse_config
from podium.plugins import load_plugins
from podium.routing.chain import build_routing
from podium.routing.semantic import SemanticRouter

EXPECTED = {
    "gsm8k": "math",
    "svamp": "math",
    "human_eval": "code",
    "triviaqa_sm_sub": "none",
    "arc_easy": "none",
    "boolq": "none",
}
POOL = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


def prompt(task: str, item: dict[str, object]) -> str:
    for key in ("prompt", "context", "query", "question"):
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return json.dumps(item)[:500]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=Path, default=Path("../shared/data/tasks"))
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()
    config = parse_config(
        {
            "workers": [{"name": n, "provider": "local", "model": n} for n in POOL],
            "routing": {"chain": ["semantic"], "semantic": {"use_default_routes": True}},
        }
    )
    router = build_routing(config, load_plugins()).router("semantic")
    assert isinstance(router, SemanticRouter)
    names = [route.name for route in router.routes]
    thresholds = router.thresholds()
    print(f"| task ({args.split}) | n | expected | " + " | ".join(names) + " | none |")
    print("|---" * (len(names) + 4) + "|")
    for task, expected in EXPECTED.items():
        path = args.tasks / task / f"{args.split}.jsonl"
        if not path.is_file():
            continue
        texts = [prompt(task, json.loads(line)) for line in path.read_text().splitlines() if line]
        scores = router.score_matrix(texts)
        counts: Counter[str] = Counter()
        for row in scores:
            best = int(row.argmax())
            hit = row[best] >= thresholds[names[best]]
            counts[names[best] if hit else "none"] += 1
        shares = " | ".join(f"{counts[n] / len(texts):.2f}" for n in [*names, "none"])
        print(f"| {task} | {len(texts)} | {expected} | {shares} |")


if __name__ == "__main__":
    main()

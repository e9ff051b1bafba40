"""Synthetic RouterBench-format data for the learned-router tests: two kinds of prompts, a
cheap model that is good only on the easy kind, a strong dear one good on both."""

from __future__ import annotations

import csv
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from podium.routing.learned import QualityCostModel, fit
from podium.store.traces import TraceRecord

MODELS = {"cheap": 0.0001, "strong": 0.01, "middling": 0.001}
EASY_TOPICS = [
    "capital of France",
    "colour of the sky",
    "opposite of hot",
    "number of legs of a cat",
]
HARD_TOPICS = [
    "the integral of x^2 sin(x)",
    "a proof that sqrt(2) is irrational",
    "the eigenvalues of [[2,1],[1,2]]",
    "the derivative of x^x",
]


def easy_prompt(i: int) -> str:
    return f"Quick trivia {i}: what is the {EASY_TOPICS[i % len(EASY_TOPICS)]}? One word."


def hard_prompt(i: int) -> str:
    topic = HARD_TOPICS[i % len(HARD_TOPICS)]
    return f"Solve step by step, showing every equation = {i}: compute {topic} and explain."


def write_csv(path: Path, rows: int = 240, seed: int = 0, *, list_prompts: bool = False) -> Path:
    rng = random.Random(seed)
    header = ["sample_id", "prompt", "eval_name"]
    header += list(MODELS)
    header += [f"{m}|total_cost" for m in MODELS]
    header += ["cheap|model_response"]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for i in range(rows):
            hard = i % 2 == 1
            prompt = hard_prompt(i) if hard else easy_prompt(i)
            if list_prompts and i % 3 == 0:
                prompt = repr([prompt, "Answer:"])
            p = {"cheap": 0.1 if hard else 0.95, "strong": 0.95, "middling": 0.5}
            scores = [1.0 if rng.random() < p[m] else 0.0 for m in MODELS]
            costs = [price * (1 + len(prompt) / 400) for price in MODELS.values()]
            writer.writerow(
                [f"s{seed}.{i}", prompt, "hard" if hard else "easy", *scores, *costs, "an answer"]
            )
    return path


def measured_cascade() -> QualityCostModel:
    """The synthetic workers plus a cascade the traces measured: as good as the strong
    worker everywhere, at half its cost (the cheap draft is checked, and often stands)."""
    rng = random.Random(1)
    models = ["cheap", "strong", "middling", "cascade(cheap,strong)"]
    prompts, quality, cost = [], [], []
    for i in range(240):
        hard = i % 2 == 1
        prompts.append(hard_prompt(i) if hard else easy_prompt(i))
        chance = [0.1 if hard else 0.95, 0.95, 0.5, 0.95]
        quality.append([1.0 if rng.random() < p else 0.0 for p in chance])
        cost.append([0.0001, 0.01, 0.001, 0.005])
    return fit(prompts, np.asarray(quality), np.asarray(cost), models)


def served_trace(prompt: str, worker: str, when: float, **fields: Any) -> TraceRecord:
    """A trace of ``worker`` answering ``prompt`` through the learned router."""
    values: dict[str, Any] = {
        "trace_id": uuid.uuid4().hex,
        "created_at": when,
        "ingress": "openai",
        "caller": "anonymous",
        "owner": "anonymous",
        "requested_model": "podium/auto",
        "route": "learned",
        "status": "ok",
        "http_status": 200,
        "worker": worker,
        "workers": worker,
        "output_tokens": 40,
        "cost_usd": 0.001 if worker == "strong" else 0.00001,
        "steps": [
            {"step": 0, "role": "answer", "worker": worker, "status": "ok", "cost_usd": 0.001}
        ],
        "prompt": prompt,
    }
    return TraceRecord(**{**values, **fields})

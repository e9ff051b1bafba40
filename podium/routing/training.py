"""Training data for the learned router from Podium's own traces.

A trace becomes an example when its prompt was captured (trace content capture on), it ended
well, one worker answered it or a template's workflow did (then the example is that
workflow's, named ``template(worker,...)``, at the whole trace's cost, so the router learns
what the workflow achieves as it learns what a worker does), and some quality signal exists
for it: the ``feedback`` table's ``score`` (0..1; from applications, people, contract
evaluators, verifier steps and the judge, averaged per trace). Traces without a signal teach
nothing about quality and are skipped. Examples become RouterBench-format rows, one per
distinct prompt: the traces of one prompt on several workers fill that row's cells (repeats
averaged), so a held-out row shows what each worker did on the same question; the cells of
workers never asked stay unknown (NaN), which the trainer masks out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from podium.eval.data import RoutingData

PAGE = 1000
FEEDBACK_SQL = (
    "SELECT t.trace_id, t.created_at, t.prompt, t.worker, t.workflow, t.steps, t.output_tokens, "
    "t.cost_usd, q.quality FROM traces t JOIN ("
    "  SELECT trace_id, AVG(score) AS quality FROM feedback WHERE score IS NOT NULL "
    "  GROUP BY trace_id) q ON q.trace_id = t.trace_id "
    "WHERE t.created_at > ? AND t.status = 'ok' AND t.prompt IS NOT NULL AND t.worker IS NOT NULL "
    "ORDER BY t.created_at LIMIT ?"
)


class Rows(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


@dataclass(slots=True)
class TrainingExample:
    trace_id: str
    created_at: float
    prompt: str
    worker: str
    quality: float  # 0 (bad) .. 1 (good)
    cost_usd: float
    output_tokens: int


def _answer_cost(steps: list[dict[str, Any]], worker: str, total: float) -> tuple[float, bool]:
    """The answering worker's own cost, and whether one worker did the whole job."""
    answered = [s for s in steps if s.get("status") == "ok"]
    single = len({s.get("worker") for s in answered}) <= 1
    own = sum(float(s.get("cost_usd") or 0.0) for s in answered if s.get("worker") == worker)
    return (own if answered else total), single


async def iter_training_examples(
    store: Rows,
    since: float | None = None,
    *,
    single_worker_only: bool = True,
    workflows: bool = True,
) -> AsyncIterator[TrainingExample]:
    """Traces with a quality signal, oldest first, read a page at a time; ``workflows``:
    a templated workflow's trace is an example of that workflow."""
    cursor = since if since is not None else float("-inf")
    while True:
        try:
            rows = await store.execute(FEEDBACK_SQL, (cursor, PAGE))
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return  # no feedback table yet: no quality signals to learn from
            raise
        if not rows:
            return
        for row in rows:
            steps = orjson.loads(row["steps"] or "[]")
            if any(step.get("role") == "cache" for step in steps):
                continue  # answered from the response cache: its cost (0) says nothing
            total = float(row["cost_usd"] or 0.0)
            cost, single = _answer_cost(steps, row["worker"], total)
            answered_by = row["worker"]
            if workflows and row["workflow"]:
                answered_by, cost = row["workflow"], total
            elif single_worker_only and not single:
                continue
            yield TrainingExample(
                trace_id=row["trace_id"],
                created_at=float(row["created_at"]),
                prompt=row["prompt"],
                worker=answered_by,
                quality=float(np.clip(row["quality"], 0.0, 1.0)),
                cost_usd=cost,
                output_tokens=int(row["output_tokens"] or 0),
            )
        cursor = float(rows[-1]["created_at"])
        if len(rows) < PAGE:
            return


def write_examples(path: Path, examples: Sequence[TrainingExample]) -> None:
    """Examples as JSON lines (the file ``podium router train --examples`` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (orjson.dumps(asdict(example)).decode() for example in examples)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def read_examples(path: Path) -> list[TrainingExample]:
    """Examples from JSON lines: prompt, worker and quality (0..1) are required; cost_usd,
    output_tokens, trace_id and created_at are optional."""
    found: list[TrainingExample] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            found.append(
                TrainingExample(
                    trace_id=str(item.get("trace_id") or f"{path.name}:{number}"),
                    created_at=float(item.get("created_at") or 0.0),
                    prompt=str(item["prompt"]),
                    worker=str(item["worker"]),
                    quality=float(np.clip(float(item["quality"]), 0.0, 1.0)),
                    cost_usd=float(item.get("cost_usd") or 0.0),
                    output_tokens=int(item.get("output_tokens") or 0),
                )
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            raise ValueError(
                f"{path.name}:{number}: not a training example (a JSON object with prompt, "
                "worker and quality)"
            ) from None
    return found


def examples_to_data(examples: Sequence[TrainingExample]) -> tuple[RoutingData, dict[str, float]]:
    """Examples as RouterBench-shaped data (one row per distinct prompt, first seen first),
    and each worker's mean output tokens."""
    workers = sorted({e.worker for e in examples})
    column = {w: j for j, w in enumerate(workers)}
    row: dict[str, int] = {}
    first: list[TrainingExample] = []
    for example in examples:
        if example.prompt not in row:
            row[example.prompt] = len(first)
            first.append(example)
    shape = (len(first), len(workers))
    quality_sum, cost_sum, seen = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    tokens: dict[str, list[int]] = {w: [] for w in workers}
    for example in examples:
        i, j = row[example.prompt], column[example.worker]
        quality_sum[i, j] += example.quality
        cost_sum[i, j] += example.cost_usd
        seen[i, j] += 1
        tokens[example.worker].append(example.output_tokens)
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = np.where(seen > 0, quality_sum / seen, np.nan)
        cost = np.where(seen > 0, cost_sum / seen, np.nan)
    data = RoutingData(
        sample_ids=[e.trace_id for e in first],
        prompts=[e.prompt for e in first],
        eval_names=["traces"] * len(first),
        models=workers,
        quality=quality,
        cost=cost,
        sources=["traces"],
    )
    return data, {w: float(np.mean(v)) for w, v in tokens.items() if v}


def union(parts: Sequence[RoutingData]) -> RoutingData:
    """Rows of every part over the union of their models (unknown cells are NaN)."""
    models = list(dict.fromkeys(m for part in parts for m in part.models))
    quality_rows, cost_rows = [], []
    for part in parts:
        q = np.full((len(part), len(models)), np.nan)
        c = np.full((len(part), len(models)), np.nan)
        for j, model in enumerate(part.models):
            q[:, models.index(model)] = part.quality[:, j]
            c[:, models.index(model)] = part.cost[:, j]
        quality_rows.append(q)
        cost_rows.append(c)
    return RoutingData(
        sample_ids=[s for part in parts for s in part.sample_ids],
        prompts=[p for part in parts for p in part.prompts],
        eval_names=[e for part in parts for e in part.eval_names],
        models=models,
        quality=np.concatenate(quality_rows) if quality_rows else np.zeros((0, len(models))),
        cost=np.concatenate(cost_rows) if cost_rows else np.zeros((0, len(models))),
        sources=[s for part in parts for s in part.sources],
    )


def rename_models(data: RoutingData, mapping: dict[str, str]) -> RoutingData:
    """Call data models by worker names (``mapping``: model -> worker)."""
    data.models = [mapping.get(m, m) for m in data.models]
    data.responses = {mapping.get(m, m): r for m, r in data.responses.items()}
    return data

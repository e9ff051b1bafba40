"""Shadow scoring: what a candidate learned-router version would have chosen for recent
requests, against what was served, with the candidate's predicted quality and cost of both.

It reads traces (their captured prompts) and never calls a worker. Eligibility is taken as the
configured pool: per-request policy filters are not replayed, so treat the comparison as
an estimate for requests whose data class every worker may see.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from podium.config import PodiumConfig
from podium.context import Caller
from podium.routing.base import RouteContext
from podium.routing.learned_router import LearnedConfig, LearnedRouter, ModelHandle
from podium.types import ChatRequest, Message, TextPart


async def shadow_report(
    config: PodiumConfig, db_path: Path, artifact: Path, since: float | None, limit: int
) -> dict[str, Any]:
    from podium.store.sqlite import SQLiteStore

    store = SQLiteStore(db_path)
    await store.open()
    try:
        traces = await store.list_traces(limit=limit, since=since)
    finally:
        await store.close()
    handle = ModelHandle(None, artifact, _embedder, reload_seconds=3600)
    router = LearnedRouter(LearnedConfig(), handle, name="shadow")
    workers = list(config.workers)
    context = RouteContext(caller=Caller(), eligible=workers)
    scored = agree = skipped = 0
    totals = {"served_q": 0.0, "served_c": 0.0, "actual_c": 0.0, "cand_q": 0.0, "cand_c": 0.0}
    changes: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    for trace in traces:
        if not trace.prompt or not trace.worker:
            skipped += 1
            continue
        request = ChatRequest(
            model="podium/auto", messages=[Message("user", [TextPart(trace.prompt)])]
        )
        decision = await router.plan(request, context)
        if decision is None:
            skipped += 1
            continue
        # a choice is a worker or a measured workflow (its candidate's label, its trace's key)
        chosen = decision.workflow.key or decision.workflow.steps[-1].worker
        by_choice = {c.label or c.worker: c for c in decision.candidates}
        was = trace.workflow or trace.worker
        served = by_choice.get(was)
        candidate = by_choice[chosen]
        scored += 1
        totals["cand_q"] += candidate.quality or 0.0
        totals["cand_c"] += candidate.cost_usd or 0.0
        totals["served_q"] += (served.quality or 0.0) if served else 0.0
        totals["served_c"] += (served.cost_usd or 0.0) if served else trace.cost_usd
        totals["actual_c"] += trace.cost_usd
        if chosen == was:
            agree += 1
        else:
            changes[f"{was} -> {chosen}"] += 1
            if len(examples) < 10:
                examples.append({"trace_id": trace.trace_id, "served": was, "candidate": chosen})
    n = max(scored, 1)
    return {
        "scored": scored,
        "skipped": skipped,
        "agree": agree,
        "served": {
            "quality": totals["served_q"] / n,
            "cost": totals["served_c"] / n,
            "actual_cost": totals["actual_c"] / n,
        },
        "candidate_choice": {"quality": totals["cand_q"] / n, "cost": totals["cand_c"] / n},
        "changes": dict(changes),
        "examples": examples,
    }


def _embedder() -> Any:
    try:
        from podium.routing.embeddings import load_embedder

        return load_embedder()
    except Exception:
        return None

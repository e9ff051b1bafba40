"""Decision latency of the learned router and the workflow router (target: learned < 3 ms p50),
side by side in one run, on the same prompt mix as ``benchmarks.routing_latency``.

The artifact is trained first on RouterBench-format data (``--data``, default the shared
routerbench train split) and promoted into a temporary data directory; eleven workers carry the
data's model names. Only ``router.plan`` is timed: features, the quality heads, costing every
worker and the policy (and, for the workflow router, scoring the templates).

    .venv/bin/python -m benchmarks.routing_learned_latency \
        [--data ../shared/data/routing/routerbench/train.csv] \
        [--out benchmarks/results/routing_learned_latency.md]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.routing_latency import _load, machine, prompts, request
from podium.config import PodiumConfig, parse_config
from podium.context import Caller
from podium.eval.data import read_csv
from podium.eval.offline import knn_options
from podium.plugins import load_plugins
from podium.routing.artifacts import ArtifactStore
from podium.routing.base import RouteContext, Router
from podium.routing.chain import build_routing
from podium.routing.embeddings import load_embedder
from podium.routing.learned import TrainOptions, fit

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/routing/routerbench/train.csv"
TARGET_MS = 3.0


VARIANTS = {  # label: (embeddings in the features, k-NN table over embeddings, workflows)
    "hashed features": (False, False, False),
    "hashed features + 3 measured workflows": (False, False, True),
    "hashed features + embeddings": (True, False, False),
    "hashed features + k-NN over embeddings": (False, True, False),
}
# three workflow columns over the data's workers, for the latency of offering measured
# workflows (their outcomes are borrowed from the strongest model's: only the timing counts)
WORKFLOWS = ("cascade({0},{1})", "solve_verify({0},{1})", "plan_solve({0},{1})")


def worker_name(model: str) -> str:
    return model.replace("/", "-")


def build(
    data_path: Path, data_dir: Path, embeddings: bool, knn: bool = False, workflows: bool = False
) -> tuple[PodiumConfig, dict[str, Router]]:
    data = read_csv(data_path)
    models, quality, cost = list(data.models), data.quality, data.cost
    if workflows:
        strong = int(np.nanargmax(np.nanmean(quality, axis=0)))
        cheap = int(np.nanargmin(np.nanmean(cost, axis=0)))
        pair = (worker_name(models[cheap]), worker_name(models[strong]))
        models += [key.format(*pair) for key in WORKFLOWS]
        quality = np.hstack([quality] + [quality[:, [strong]]] * len(WORKFLOWS))
        cost = np.hstack([cost] + [cost[:, [strong]] * 0.6] * len(WORKFLOWS))
    model = fit(
        data.prompts,
        quality,
        cost,
        models,
        options=knn_options() if knn else TrainOptions(),
        embedder=load_embedder() if embeddings else None,
        neighbour_embedder=load_embedder() if knn else None,
    )
    store = ArtifactStore(data_dir / "routers")
    store.promote(store.save(model).number)
    workers = [
        {
            "name": worker_name(name),
            "provider": "openai",
            "model": name,
            "base_url": "http://127.0.0.1:9",
        }
        for name in data.models
    ]
    cfg = parse_config(
        {
            "data_dir": str(data_dir),
            "workers": workers,
            "routing": {
                "chain": ["learned", "workflow"],
                "routers": {
                    "learned": {"lam": 200},
                    "workflow": {"lam": 200, "templates": ["single", "cascade", "solve_verify"]},
                },
            },
        }
    )
    routing = build_routing(cfg, load_plugins())
    return cfg, {"learned": routing.router("learned"), "workflow": routing.router("workflow")}


async def measure(
    routers: dict[str, Router], cfg: PodiumConfig, rounds: int, block: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved blocks over the prompt mix, then the 1 MB prompt."""
    context = RouteContext(caller=Caller(), eligible=list(cfg.workers))
    requests = [request(text, i) for i, text in enumerate(prompts())]
    timings: dict[str, list[float]] = {name: [] for name in routers}
    clock = time.perf_counter_ns
    for router in routers.values():  # warm up: lazy loads, caches
        for req in requests:
            await router.plan(req, context)
    for round_ in range(rounds):
        for name, router in routers.items():
            for i in range(block):
                req = requests[(round_ * block + i) % len(requests)]
                started = clock()
                await router.plan(req, context)
                timings[name].append((clock() - started) / 1000.0)
    huge = request("lorem ipsum dolor sit amet " * 40_000, 1)  # ~1 MB
    big: dict[str, list[float]] = {name: [] for name in routers}
    for _ in range(11):
        for name, router in routers.items():
            started = clock()
            await router.plan(huge, context)
            big[name].append((clock() - started) / 1000.0)
    return timings, big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        routers: dict[str, Router] = {}
        cfg: PodiumConfig | None = None
        for label, (embeddings, knn, workflows) in VARIANTS.items():
            folder = Path(tmp) / label.replace(" ", "_").replace("+", "and")
            cfg, built = build(args.data, folder, embeddings, knn, workflows)
            routers.update({f"{kind} ({label})": router for kind, router in built.items()})
        assert cfg is not None
        timings, huge = asyncio.run(measure(routers, cfg, args.rounds, args.block))
    text = report(timings, huge, args)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


def report(timings: dict[str, list[float]], huge: dict[str, list[float]], args: Any) -> str:
    lines = [
        "# Learned-router decision latency",
        "",
        f"Machine: {machine()}; one process, shared with other work "
        f"(1-minute load average at the end: {_load()}).",
        f"{args.rounds} interleaved rounds x {args.block} decisions per router over "
        f"{len(prompts())} prompts (the mix of `benchmarks.routing_latency`); artifact trained "
        f"on {args.data.name} of routerbench (11 models, 11 workers); `router.plan` only.",
        "",
        "| router | p50 us | p90 us | p99 us | mean us | target p50 | p50 / target "
        "| 1 MB prompt p50 us |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, samples in timings.items():
        qs = np.percentile(samples, [50, 90, 99])
        target = f"{TARGET_MS * 1000:.0f} us" if name.startswith("learned") else "-"
        ratio = f"{qs[0] / (TARGET_MS * 1000):.2f}" if name.startswith("learned") else "-"
        lines.append(
            f"| {name} | {qs[0]:.1f} | {qs[1]:.1f} | {qs[2]:.1f} | "
            f"{statistics.fmean(samples):.1f} | {target} | {ratio} | "
            f"{statistics.median(huge[name]):.1f} |"
        )
    lines += [
        "",
        "The workflow router runs the learned router's predictions and then scores single, "
        "cascade and solve-verify plans over the eligible workers. With measured workflows, "
        "the artifact has three more columns (`cascade(a,b)`, `solve_verify(a,b)`, "
        "`plan_solve(a,b)`) that both routers offer as candidates. A huge prompt is read as its "
        "head and tail only (features), so its cost is bounded.",
        "",
        "Rerun: `.venv/bin/python -m benchmarks.routing_learned_latency --out "
        "benchmarks/results/routing_learned_latency.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

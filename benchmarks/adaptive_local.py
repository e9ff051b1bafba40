"""Concurrency limits on a real server: the embedded SmolLM2-135M in llama.cpp, run inside
Podium with ``parallel: 2`` (two slots; llama.cpp queues the rest). ``--clients`` (8) callers
each ask ``--questions`` (12) short questions at once, over HTTP; the same load with a local
worker's default limit (its slots), with no limit (``concurrency: 64``, more than the callers:
every call waits in llama.cpp's line) and learned (``adaptive: {}``), ``--repeats`` (3) times
each, in order and reversed by turns. Reported: the wall time of the load, the latency of a
question (p50, p95), and the limit at the end.

The load is interactive only, so the limit buys no priority here (the benchmark beside a batch,
``benchmarks.worker_capacity``, measures that); this one shows what it learns of a real server
and what learning costs.

    .venv/bin/python -m benchmarks.adaptive_local [--out benchmarks/results/adaptive_local.md]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from podium.app import create_podium
from podium.config import parse_config
from podium.testing.server import serve

KINDS: dict[str, dict[str, Any]] = {
    "its slots (default)": {},
    "no limit": {"concurrency": 64},
    "adaptive": {"adaptive": {}},
}


async def one_run(limits: dict[str, Any], clients: int, questions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        config = parse_config(
            {
                "data_dir": data_dir,
                "workers": [
                    {
                        "name": "smol",
                        "provider": "local",
                        "model": "SmolLM2-135M-Instruct",
                        "context_window": 2048,
                        "capabilities": ["streaming"],
                        "options": {"model": "smollm2-135m", "n_ctx": 2048, "parallel": 2},
                        # No call turned away for waiting on a busy machine: this measures
                        # time, not refusals.
                        "limits": {"queue_seconds": 300, **limits},
                    }
                ],
            }
        )
        podium = create_podium(config)
        async with serve(podium.app) as url, httpx.AsyncClient(base_url=url, timeout=600) as http:
            latencies: list[float] = []

            async def caller(number: int) -> None:
                for question in range(questions):
                    content = f"Name a colour, number {number * 100 + question}."
                    sent = time.perf_counter()
                    answer = await http.post(
                        "/v1/chat/completions",
                        json={
                            "model": "smol",
                            "max_tokens": 24,
                            "messages": [{"role": "user", "content": content}],
                        },
                    )
                    assert answer.status_code == 200, answer.text[:300]
                    latencies.append(time.perf_counter() - sent)

            started = time.perf_counter()
            await asyncio.gather(*(caller(number) for number in range(clients)))
            wall = time.perf_counter() - started
            health = (await http.get("/admin/workers/smol")).json()["health"]
    latencies.sort()
    return {
        "wall": wall,
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "slots": float(health["slots"] or 0),
    }


async def measure(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for repeat in range(args.repeats):
        order = list(KINDS) if repeat % 2 == 0 else list(reversed(KINDS))
        for kind in order:
            results[kind].append(await one_run(KINDS[kind], args.clients, args.questions))
    return results


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    lines = [
        "# Concurrency limits on llama.cpp (SmolLM2-135M, parallel 2)",
        "",
        f"`.venv/bin/python -m benchmarks.adaptive_local --clients {args.clients} "
        f"--questions {args.questions} --repeats {args.repeats}` (see the module's docstring).",
        "",
        f"{args.clients} callers at once, {args.questions} questions each (at most 24 tokens "
        f"an answer); each kind {args.repeats} times, in order and reversed by turns. Every "
        "run's figures, in seconds.",
        "",
        "| worker limits | wall time per run | question p50 | question p95 | limit at the end |",
        "|---|---|---|---|---|",
    ]
    for kind, runs in results.items():

        def column(key: str, runs: list[dict[str, float]] = runs) -> str:
            return ", ".join(
                f"{run[key]:.1f}" if key == "wall" else f"{run[key]:.2f}" for run in runs
            )

        limits = ", ".join(f"{run['slots']:.0f}" for run in runs) if runs[0]["slots"] else "-"
        lines.append(
            f"| {kind} | {column('wall')} | {column('p50')} | {column('p95')} | {limits} |"
        )
    # The median: one run slowed by another job on the machine moves it least.
    walls = {kind: statistics.median(run["wall"] for run in runs) for kind, runs in results.items()}
    lines += [
        "",
        "Median wall time against no limit: "
        + ", ".join(
            f"{kind} {walls[kind]:.1f} s ({walls[kind] / walls['no limit']:.2f}x)"
            for kind in KINDS
            if kind != "no limit"
        )
        + f"; no limit {walls['no limit']:.1f} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = report(asyncio.run(measure(args)), args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

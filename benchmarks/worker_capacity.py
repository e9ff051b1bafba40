"""What a worker's ``limits`` cost and what they buy (podium/capacity.py).

**Cost.** CPU per ``POST /v1/chat/completions`` in one Podium on its embedded defaults (SQLite
store, content policy on, traces recorded) over the fast mock upstream (a process of its own),
called through the ASGI app, one request at a time, kinds side by side in rounds that alternate
their order (the harness of ``benchmarks.responses_store``), the least of the rounds:

- ``no limits``: the worker as before;
- ``concurrency``: ``limits: {concurrency: 64}`` (a slot taken and given back per call);
- ``concurrency, rpm, tpm``: and ``rpm`` and ``tpm`` high enough never to wait (two token
  buckets charged per call, the tokens corrected when it ends).

**What they buy: interactive calls beside a batch.** The mock upstream becomes a server of
``--slots`` slots (4): that many requests are answered at once, ``--delay-ms`` (50) each, and
the rest wait in line at the server, as on a GPU server whose batch is full. ``--flood`` (24)
background clients (``x-podium-priority: background``, as a batch's requests are) ask without
pause while one interactive client asks ``--probes`` (40) questions, one every 100 ms; the
interactive latencies and the background throughput are measured for three configurations of
the worker, each run ``--repeats`` (3) times in alternating order:

- ``no limits``: Podium passes everything on; interactive calls queue at the server behind the
  background ones;
- ``concurrency 4, share 1``: Podium holds what the server cannot take; interactive calls are
  served first from its queue, but background work may hold every slot;
- ``concurrency 4, share 0.5`` (the default share): background work holds at most 2 slots;
- ``adaptive``, ``adaptive, share 1``, ``adaptive, tolerance 1.5``: the concurrency learned
  from how fast the server answers (``limits: {adaptive: {}}``, podium/adaptive.py), nobody
  having told Podium it has 4 slots; the limit it stands at when each run ends is reported.

Every run starts with ``--warmup`` (3) seconds of the background clients alone, in which the
server's line fills and a learned limit finds its level.

    .venv/bin/python -m benchmarks.worker_capacity [--rounds 15] [--requests 300] \\
        [--out benchmarks/results/worker_capacity.md]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.gateway.profile import lifespan
from benchmarks.responses_harness import (
    call,
    cpu_rows,
    interleaved,
    mock_config,
    mock_upstream,
)
from podium.app import create_podium

QUESTION = {"model": "mock", "messages": [{"role": "user", "content": "Say hello, please."}]}
CPU_KINDS: dict[str, dict[str, Any]] = {
    "no limits": {},
    "concurrency": {"concurrency": 64},
    "concurrency, rpm, tpm": {"concurrency": 64, "rpm": 10**8, "tpm": 10**10},
    "adaptive": {"adaptive": {}},
}
CPU_PAIRS = {
    "concurrency": "no limits",
    "concurrency, rpm, tpm": "no limits",
    "adaptive": "no limits",
}
BACKGROUND = {"x-podium-priority": "background"}


async def ask(app: Any, headers: dict[str, str] | None = None) -> None:
    status, raw = await call(app, QUESTION, path="/v1/chat/completions", headers=headers)
    assert status == 200, raw[:300]
    assert orjson.loads(raw)["choices"][0]["message"]["content"]


async def measure_cpu(upstream: int, base: Path, rounds: int, requests: int) -> Any:
    apps = {}
    for index, (kind, limits) in enumerate(CPU_KINDS.items()):
        podium = create_podium(mock_config(upstream, base / f"cpu{index}", limits=limits))
        await lifespan(podium.app, "startup")
        apps[kind] = podium

    async def one(kind: str) -> None:
        await ask(apps[kind].app)

    async def settle() -> None:
        for podium in apps.values():
            await podium.gateway.drain_background()
            await podium.recorder.flush()

    cpu = await interleaved(tuple(CPU_KINDS), rounds, requests, one, settle)
    for podium in apps.values():
        await lifespan(podium.app, "shutdown")
    return cpu


async def flood_run(
    upstream: int,
    data_dir: Path,
    limits: dict[str, Any],
    flood: int,
    probes: int,
    warmup: float,
) -> dict[str, float]:
    podium = create_podium(mock_config(upstream, data_dir, limits=limits))
    await lifespan(podium.app, "startup")
    stop = asyncio.Event()
    answered = 0

    async def background() -> None:
        nonlocal answered
        while not stop.is_set():
            await ask(podium.app, BACKGROUND)
            answered += 1

    workers = [asyncio.ensure_future(background()) for _ in range(flood)]
    await asyncio.sleep(warmup)  # the server's line fills; a learned limit finds its level
    latencies: list[float] = []
    counted_from, started = answered, time.perf_counter()
    for _ in range(probes):
        sent = time.perf_counter()
        await ask(podium.app)
        latencies.append((time.perf_counter() - sent) * 1000)
        await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - sent)))
    throughput = (answered - counted_from) / (time.perf_counter() - started)
    mock = podium.pool.get("mock")
    slots = None if mock is None else mock.capacity.slots
    stop.set()
    await asyncio.gather(*workers)
    await podium.gateway.drain_background()
    await lifespan(podium.app, "shutdown")
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "max": latencies[-1],
        "throughput": throughput,
        "slots": float(slots or 0),
    }


FLOOD_KINDS: dict[str, dict[str, Any]] = {
    "no limits": {},
    "concurrency 4, share 1": {"concurrency": 4, "background_share": 1.0},
    "concurrency 4, share 0.5": {"concurrency": 4},
    "adaptive, share 1": {"adaptive": {}, "background_share": 1.0},
    "adaptive": {"adaptive": {}},
    "adaptive, tolerance 1.5": {"adaptive": {"tolerance": 1.5}},
}


async def measure_flood(
    upstream: int, base: Path, args: argparse.Namespace
) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in FLOOD_KINDS}
    for repeat in range(args.repeats):
        order = list(FLOOD_KINDS) if repeat % 2 == 0 else list(reversed(FLOOD_KINDS))
        for kind in order:
            data_dir = base / f"flood{repeat}-{len(results[kind])}-{kind.replace(' ', '_')}"
            limits = FLOOD_KINDS[kind]
            results[kind].append(
                await flood_run(upstream, data_dir, limits, args.flood, args.probes, args.warmup)
            )
    return results


def report(
    cpu: dict[str, list[float]],
    flood: dict[str, list[dict[str, float]]],
    args: argparse.Namespace,
) -> str:
    lines = [
        "# Worker capacity: what limits cost and what they buy",
        "",
        "`.venv/bin/python -m benchmarks.worker_capacity "
        f"--rounds {args.rounds} --requests {args.requests} --flood {args.flood} "
        f"--probes {args.probes} --repeats {args.repeats} --warmup {args.warmup:g}` (see the "
        "module's docstring).",
        "",
        "## CPU per request",
        "",
        f"{args.requests} requests a round, one at a time, {args.rounds} rounds; CPU of the "
        "whole process per request in us, the least round (the median in brackets).",
        "",
        "| kind | CPU per request, us | against no limits |",
        "|---|---:|---|",
        *cpu_rows(cpu, CPU_PAIRS),
        "",
        "## Interactive calls beside a batch",
        "",
        f"A server of {args.slots} slots, {args.delay_ms:g} ms an answer; {args.flood} "
        f"background clients asking without pause ({args.warmup:g} s alone first); "
        f"{args.probes} interactive questions, one every 100 ms. Each configuration run "
        f"{args.repeats} times; the median run's figures (by p95), and the range of p95 over "
        "the runs. Concurrency: the limit at the end of each run.",
        "",
        "| worker limits | interactive p50 ms | p95 ms | max ms | p95 range, ms | "
        "background answers/s | concurrency |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for kind, runs in flood.items():
        ranked = sorted(runs, key=lambda run: run["p95"])
        middle = ranked[len(ranked) // 2]
        learned = ", ".join(f"{run['slots']:.0f}" for run in runs)
        lines.append(
            f"| {kind} | {middle['p50']:.0f} | {middle['p95']:.0f} | {middle['max']:.0f} | "
            f"{ranked[0]['p95']:.0f}-{ranked[-1]['p95']:.0f} | {middle['throughput']:.1f} | "
            f"{learned if any(run['slots'] for run in runs) else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--flood", type=int, default=24)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        with mock_upstream() as fast:
            cpu = asyncio.run(measure_cpu(fast, base, args.rounds, args.requests))
        with mock_upstream("--slots", str(args.slots), "--delay-ms", str(args.delay_ms)) as slow:
            flood = asyncio.run(measure_flood(slow, base, args))
    text = report(cpu, flood, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

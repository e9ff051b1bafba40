"""How many traces a second the trace writer stores, on SQLite and on PostgreSQL.

Rows like the gateway's (one workflow step, two router candidates, a policy action, ten
callers, three workers, 2,000 requests a second of ``created_at``) go the way the gateway
sends them: ``podium.recorder.record(trace)``, the writer's batches, the dashboard's rollup.
The queue is kept topped up, so the writer always has work: its pace is the most the store
can sustain. The rate is given for the whole run and for its last fifth (the table is then
largest, and index inserts cost most). CPU is this process's, per trace: all threads, the
event loop's thread alone (what the writer takes from requests), and ``record()`` itself (the
request's own cost). PostgreSQL's server processes are not counted.

    .venv/bin/python -m benchmarks.trace_writer [--traces 200000] [--compare REV]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--stores sqlite,postgres]

``--compare REV`` first runs the same measurement on a git revision (checked out in a
temporary worktree), so before and after are side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ("gpt-small", "claude-mid", "local-qwen")
CALLERS = tuple(f"key{n:02d}" for n in range(10))
REQUESTS_PER_SECOND = 2000  # spacing of created_at, like the gateway soak


def sample_trace(i: int, start: float) -> Any:
    from podium.context import new_trace_id  # the gateway's ids, whatever their layout
    from podium.store.traces import TraceRecord

    worker = WORKERS[i % len(WORKERS)]
    other = WORKERS[(i + 1) % len(WORKERS)]
    ok = i % 50 != 0
    latency = 18.0 + (i % 97) * 0.7
    step = {
        "step": 0,
        "role": "answer",
        "worker": worker,
        "status": "ok" if ok else "error",
        "error": None if ok else "upstream answered 502",
        "error_kind": None if ok else "upstream",
        "latency_ms": round(latency - 1.3, 3),
        "ttft_ms": round(latency / 3, 3),
        "input_tokens": 42 + i % 300,
        "output_tokens": 17 + i % 120,
        "cost_usd": 0.000021 * (1 + i % 7),
    }
    candidates = [
        {"worker": worker, "score": 0.82, "quality": 0.79, "cost_usd": 0.00012},
        {"worker": other, "score": 0.64, "quality": 0.81, "cost_usd": 0.00094},
    ]
    return TraceRecord(
        trace_id=new_trace_id(),
        created_at=start + i / REQUESTS_PER_SECOND,
        ingress="openai",
        caller=CALLERS[i % len(CALLERS)],
        owner="bench",
        requested_model="podium/auto",
        route="semantic:chat",
        router="semantic",
        rule="chat",
        reason="closest category chat (0.71)",
        worker=worker,
        workers=worker,
        input_tokens=42 + i % 300,
        output_tokens=17 + i % 120,
        cost_usd=0.000021 * (1 + i % 7),
        latency_ms=latency,
        ttft_ms=latency / 3 if ok else None,
        status="ok" if ok else "error",
        http_status=200 if ok else 502,
        error=None if ok else "upstream answered 502",
        error_kind=None if ok else "upstream",
        stream=i % 4 == 0,
        data_class="internal",
        contract="summarise" if i % 5 == 0 else None,
        steps=[step],
        candidates=candidates,
        policy_actions=["pii:EMAIL:pseudonymised"] if i % 3 == 0 else [],
    )


async def measure(kind: str, traces: int, url: str, data_dir: Path) -> dict[str, Any]:
    from podium.app import create_podium
    from podium.config import parse_config

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    store: dict[str, Any] = {"kind": kind}
    if kind == "postgres":
        store.update(url=url, pg_schema=schema)
    podium = create_podium(parse_config({"data_dir": str(data_dir), "store": store}))
    for hook in podium.app.on_startup:
        await hook()
    recorder = podium.recorder
    start = time.time()
    records = [sample_trace(i, start) for i in range(traces)]  # built beforehand: the gateway's
    refill, high_water = 2000, 8000
    marks: list[tuple[int, float]] = []
    fed = 0
    enqueue_cpu = 0.0
    wall0, cpu0, loop0 = time.perf_counter(), time.process_time(), time.thread_time()
    while recorder.written < traces:
        if fed < traces and recorder.depth < high_water:
            t0 = time.thread_time()
            for record in records[fed : fed + refill]:
                recorder.record(record)
            enqueue_cpu += time.thread_time() - t0
            fed = min(traces, fed + refill)
        marks.append((recorder.written, time.perf_counter()))
        await asyncio.sleep(0.002)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    loop_cpu = time.thread_time() - loop0 - enqueue_cpu
    for hook in reversed(podium.app.on_shutdown):
        await hook()
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
    tail_from = next(m for m in marks if m[0] >= traces * 4 // 5)
    return {
        "store": kind,
        "traces": traces,
        "traces_per_s": traces / wall,
        "last_fifth_per_s": (traces - tail_from[0]) / (marks[-1][1] - tail_from[1] or 1e-9),
        "cpu_us_per_trace": cpu / traces * 1e6,
        "loop_us_per_trace": loop_cpu / traces * 1e6,
        "enqueue_us_per_trace": enqueue_cpu / traces * 1e6,
        "spilled": recorder.spilled,
    }


def run_here(args: argparse.Namespace) -> list[dict[str, Any]]:
    import uvloop

    results = []
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(uvloop.run(measure(kind, args.traces, args.postgres, Path(tmp))))
    return results


def run_revision(revision: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same measurement (this file) with ``podium`` imported from ``revision``."""
    from benchmarks.revision import run_at_revision

    options = ["--json", "--traces", str(args.traces), "--stores", args.stores]
    out = run_at_revision(revision, Path(__file__), [*options, "--postgres", args.postgres])
    result: list[dict[str, Any]] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--compare", metavar="REV", help="measure this git revision first")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(run_here(args)))
        return
    rows: list[tuple[str, dict[str, Any]]] = []
    if args.compare:
        rows += [(args.compare, result) for result in run_revision(args.compare, args)]
    rows += [("this tree", result) for result in run_here(args)]
    print(f"{args.traces} traces per store, queue kept topped up; load average "
          f"{os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print(
        "| code | store | traces/s | last fifth, traces/s | CPU us/trace (all threads) "
        "| event loop's share | enqueue us/trace | spilled |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for code, r in rows:
        print(
            f"| {code} | {r['store']} | {r['traces_per_s']:,.0f} | {r['last_fifth_per_s']:,.0f} "
            f"| {r['cpu_us_per_trace']:.1f} | {r['loop_us_per_trace']:.1f} "
            f"| {r['enqueue_us_per_trace']:.2f} | {r['spilled']} |"
        )


if __name__ == "__main__":
    main()

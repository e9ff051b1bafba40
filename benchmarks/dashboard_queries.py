"""How fast the dashboard's queries answer over a million trace rows.

Generates ROWS traces (spread over DAYS, 6 workers, 40 callers, 5 contracts, realistic step
and candidate JSON) plus feedback on 5% of them into a fresh SQLite file, through the same
rollup code the trace writer uses, then runs every query the dashboard makes over the last 30
days, 24 hours and 6 hours, three times each, and reports the slowest of the three.

    .venv/bin/python -m benchmarks.dashboard_queries [--rows 1000000] [--days 30] [--keep FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from podium.config import Price
from podium.observe import stats
from podium.observe.rollup import rollup_rows, upsert_statements
from podium.store.sqlite import SQLiteStore, _row_values, apply_migrations
from podium.store.traces import COLUMNS, TraceRecord

WORKERS = {
    "gpt-large": Price(input=2.5, output=10.0),
    "gpt-small": Price(input=0.15, output=0.6),
    "claude-mid": Price(input=3.0, output=15.0),
    "gemini-flash": Price(input=0.1, output=0.4),
    "local-qwen": Price(input=0.0, output=0.0),
    "local-smol": Price(input=0.0, output=0.0),
}
ROUTES = ["direct", "rules:code", "rules:short", "learned", "cascade"]
TARGET_MS = 500.0


def generate(path: Path, rows: int, days: float = 30.0, seed: int = 7) -> float:
    """Fill ``path`` with ``rows`` traces ending now; returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    apply_migrations(db)
    now = time.time()
    names = list(WORKERS)
    callers = [f"key-{i:02d}" for i in range(40)]
    contracts = [None, None, "summarise", "extract-invoice", "classify", "sql"]
    placeholders = ", ".join("?" for _ in COLUMNS)
    insert = f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    feedback = (
        "INSERT INTO feedback (feedback_id, trace_id, created_at, name, source, kind, value, "
        "label, score, comment, caller, worker, route) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    chunk = 50_000
    for start in range(0, rows, chunk):
        batch: list[TraceRecord] = []
        signals: list[tuple[Any, ...]] = []
        for i in range(start, min(rows, start + chunk)):
            created = now - days * 86400 * (1 - i / rows)
            worker = rng.choice(names)
            price = WORKERS[worker]
            tin, tout = rng.randint(20, 4000), rng.randint(5, 800)
            cost = (tin * price.input + tout * price.output) / 1e6
            latency = rng.lognormvariate(6.0, 0.8)
            ok = rng.random() > 0.03
            trace_id = f"{i:032x}"
            record = TraceRecord(
                trace_id=trace_id, created_at=created, ingress="openai",
                caller=rng.choice(callers), owner="owner", requested_model="podium/auto",
                route=rng.choice(ROUTES), status="ok" if ok else "error",
                http_status=200 if ok else 502, router="rules",
                reason="cheapest cleared worker", worker=worker, workers=worker,
                input_tokens=tin, output_tokens=tout, cost_usd=cost, latency_ms=latency,
                ttft_ms=latency / 4, contract=rng.choice(contracts),
            )  # fmt: skip
            step = {
                "step": 0,
                "role": "answer",
                "worker": worker,
                "status": "ok" if ok else "error",
                "latency_ms": latency,
                "ttft_ms": latency / 4,
                "input_tokens": tin,
                "output_tokens": tout,
                "cost_usd": cost,
            }
            candidates = [{"worker": w, "score": rng.random()} for w in names[:3]]
            record.steps = [step]
            record.candidates = candidates
            batch.append(record)
            if rng.random() < 0.05:
                good = rng.random() < 0.8
                signals.append(
                    (f"f{i:031x}", trace_id, created + 5, "user", "app", "boolean",
                     float(good), None, float(good), None, "key-00", worker, record.route)
                )  # fmt: skip
        # The same rows and rollup increments the trace writer produces, in bigger batches.
        with db:
            db.executemany(insert, [_row_values(record) for record in batch])
            for sql, params in upsert_statements(rollup_rows(batch)):
                db.execute(sql, params)
            db.executemany(feedback, signals)
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - started


async def measure(path: Path, repeat: int = 3) -> list[tuple[str, str, float]]:
    store = SQLiteStore(path)
    await store.open()
    results: list[tuple[str, str, float]] = []
    try:
        for label, days in (("30 days", 30.0), ("24 hours", 1.0), ("6 hours", 0.25)):
            now = time.time()
            w = stats.window(now - days * 86400, now, max_range_days=90, max_buckets=120)
            queries: dict[str, Callable[[], Awaitable[Any]]] = {
                "overview": lambda w=w: stats.overview(store, w),
                "spend by worker": lambda w=w: stats.spend(store, w, "worker"),
                "spend by caller": lambda w=w: stats.spend(store, w, "caller"),
                "spend by contract": lambda w=w: stats.spend(store, w, "contract"),
                "routing mix": lambda w=w: stats.routing(store, w, 500),
                "quality": lambda w=w: stats.quality(store, w, 500),
                "latency percentiles": lambda w=w: stats.latency(store, w),
                "savings": lambda w=w: stats.savings(store, w, "gpt-large", WORKERS),
                "trace list": lambda w=w: stats.traces(store, w, limit=100),
                "trace list (filtered)": lambda w=w: stats.traces(
                    store, w, limit=100, filters={"caller": "key-07", "worker": "gpt-small"}
                ),
            }
            for name, query in queries.items():
                slowest = 0.0
                for _ in range(repeat):
                    started = time.perf_counter()
                    await query()
                    slowest = max(slowest, time.perf_counter() - started)
                results.append((label, name, slowest * 1000))
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0, help="spread the rows over this")
    parser.add_argument("--keep", type=Path, help="write the database here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "traces.db"
        if path.exists():
            path.unlink()
        took = generate(path, args.rows, days=args.days)
        size = path.stat().st_size / 1e6
        print(
            f"generated {args.rows:,} traces over {args.days:g} days in {took:.1f} s "
            f"({size:.0f} MB)"
        )
        results = asyncio.run(measure(path))
    print(f"\n| range | query | slowest of 3 (ms) | under {TARGET_MS:.0f} ms |")
    print("|---|---|---:|---|")
    for label, name, ms in results:
        print(f"| {label} | {name} | {ms:.1f} | {'yes' if ms < TARGET_MS else 'NO'} |")


if __name__ == "__main__":
    main()

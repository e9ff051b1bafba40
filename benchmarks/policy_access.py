"""What the access layer (key check, RPM/TPM, budget reserve and settle) adds to one request.

Drives the hooks directly, the way the gateway calls them, on a 1 KB prompt: authenticate the
key, take from the rate buckets, reserve the estimated cost against the budget, settle the real
cost. Three configurations side by side in one run: no keys (open), memory limits, and Redis
limits (skipped when no Redis answers on 127.0.0.1:6379).

    .venv/bin/python -m benchmarks.policy_access [--requests 5000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import tempfile
import time
import uuid
from pathlib import Path

from podium.app import Podium, create_podium
from podium.config import parse_config
from podium.context import RequestContext
from podium.policy.keys import KeyCache, NewKey
from podium.routing.base import Decision
from podium.store.traces import TraceRecord
from podium.types import ChatRequest, Message, TextPart
from podium.workflow import Workflow

PROMPT = ("The quarterly report shows revenue up four percent on the year. " * 16)[:1024]


def request() -> ChatRequest:
    return ChatRequest(
        model="alpha", messages=[Message(role="user", content=[TextPart(PROMPT)])], max_tokens=256
    )


def trace(context: RequestContext) -> TraceRecord:
    return TraceRecord(
        trace_id=context.trace_id,
        created_at=context.started_at,
        ingress="openai",
        caller=context.caller.key_id,
        owner=context.caller.owner,
        requested_model="alpha",
        route="direct",
        status="ok",
        http_status=200,
        input_tokens=256,
        output_tokens=200,
        cost_usd=0.0006,
    )


async def build(data_dir: Path, access: dict[str, object], keyed: bool) -> tuple[Podium, str]:
    config = parse_config(
        {
            "data_dir": str(data_dir),
            "access": access,
            "workers": [
                {
                    "name": "alpha",
                    "provider": "openai",
                    "model": "m",
                    "base_url": "http://127.0.0.1:9",
                    "price": {"input": 1.0, "output": 2.0},
                }
            ],
        }
    )
    podium = create_podium(config, start_workers=False)
    await podium.store.open()
    await podium.extras["limits"].start()
    key = "unused"
    if keyed:
        cache = podium.extras["keys"]
        assert isinstance(cache, KeyCache)
        _, key = await cache.store.create(
            NewKey(owner="bench", rpm=10**9, tpm=10**12, budget_usd=10**9)
        )
        cache.ttl = 3600.0
        cache.invalidate()
    return podium, key


Samples = tuple[list[float], list[float]]  # (before the upstream call, settling after it)


async def measure(podium: Podium, key: str, count: int) -> Samples:
    hooks = podium.gateway.hooks[:2]
    decision = Decision(workflow=Workflow.single("alpha"), router="direct", reason="bench")
    chat = request()
    before: list[float] = []
    after: list[float] = []
    for index in range(count + 200):
        context = RequestContext(ingress="openai", headers={"authorization": f"Bearer {key}"})
        started = time.perf_counter_ns()
        for hook in hooks:
            await hook.admit(chat, context)
        for hook in hooks:
            await hook.decided(chat, decision, context)
        admitted = time.perf_counter_ns()
        done = trace(context)
        for hook in hooks:
            await hook.finish(done, context)
        settled = time.perf_counter_ns()
        if index >= 200:  # warm-up excluded
            before.append((admitted - started) / 1000.0)
            after.append((settled - admitted) / 1000.0)
    return before, after


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


async def run(count: int) -> list[tuple[str, Samples]]:
    results: list[tuple[str, Samples]] = []
    configurations: list[tuple[str, dict[str, object], bool]] = [
        ("open (no keys)", {}, False),
        ("key + limits + budget, memory", {}, True),
    ]
    if redis_up():
        prefix = f"podium-bench:{uuid.uuid4().hex[:8]}:"
        configurations.append(
            (
                "key + limits + budget, Redis",
                {"limits": {"backend": "redis", "prefix": prefix}},
                True,
            )
        )
    for label, access, keyed in configurations:
        with tempfile.TemporaryDirectory() as folder:
            podium, key = await build(Path(folder), access, keyed)
            try:
                results.append((label, await measure(podium, key, count)))
            finally:
                await podium.gateway.drain_background()
                await podium.extras["limits"].aclose()
                if podium.audit is not None:
                    await podium.audit.aclose()
                await podium.store.close()
    return results


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def table(results: list[tuple[str, Samples]]) -> str:
    lines = [
        "| configuration | before upstream p50 µs | p99 µs | settle after answer p50 µs | p99 µs |",
        "|---|---|---|---|---|",
    ]
    for label, (before, after) in results:
        lines.append(
            f"| {label} | {_p(before, 0.5):.1f} | {_p(before, 0.99):.1f} | "
            f"{_p(after, 0.5):.1f} | {_p(after, 0.99):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests))
    text = (
        f"Access layer per request (auth + RPM/TPM + budget reserve/settle), 1 KB prompt, "
        f"{args.requests} requests after 200 warm-up, one process, "
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.machine()}.\n\n{table(results)}\n\n"
        "Before upstream = authenticate + rate buckets + budget reservation (what a caller waits "
        "for); settle runs after the answer has gone back. Target for the whole policy layer: "
        "p50 < 2 ms (2000 µs).\n\n"
        "Rerun: `.venv/bin/python -m benchmarks.policy_access --out "
        "benchmarks/results/policy_access.md`\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

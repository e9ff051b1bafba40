"""What the Responses benchmarks share (``responses_store``, ``responses_background``): one
Podium on its embedded defaults over the fast mock upstream (a process of its own), called
through its ASGI app (no HTTP client's cost in the figures), kinds of request measured in
interleaved rounds, the whole process's CPU per request, the least of the rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from benchmarks.tracing_overhead import free_port, wait_for
from podium.config import PodiumConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent


async def call(
    app: Any,
    body: dict[str, Any],
    *,
    path: str = "/v1/responses",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One ``POST path`` through the ASGI app: its status and whole body (a streamed answer's
    SSE read to its end)."""
    raw = orjson.dumps(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            *((name.encode(), value.encode()) for name, value in (headers or {}).items()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8400),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def post(app: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One ``POST /v1/responses`` through the ASGI app; the decoded answer."""
    status, raw = await call(app, body)
    answer: dict[str, Any] = orjson.loads(raw)
    assert status == 200, answer
    return answer


def mock_config(upstream: int, data_dir: Path, **worker: Any) -> PodiumConfig:
    """Podium's embedded defaults (SQLite store, content policy on, traces recorded) with one
    worker, the mock upstream (and ``worker``'s fields, such as its ``limits``)."""
    return parse_config(
        {
            "data_dir": str(data_dir),
            "workers": [
                {
                    "name": "mock",
                    "provider": "openai",
                    "model": "mock",
                    "base_url": f"http://127.0.0.1:{upstream}/v1",
                    "price": {"input": 1.0, "output": 2.0},
                    **worker,
                }
            ],
        }
    )


@contextmanager
def mock_upstream(*options: str) -> Iterator[int]:
    """The mock upstream (``benchmarks.gateway.mock_upstream``, given ``options``) in a process
    of its own while the block runs; its port."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    upstream = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gateway.mock_upstream", "--port", str(port), *options],
        env=env,
    )
    try:
        wait_for(port)
        yield port
    finally:
        upstream.terminate()
        upstream.wait()


async def interleaved(
    kinds: Sequence[str],
    rounds: int,
    requests: int,
    one: Callable[[str], Awaitable[None]],
    settle: Callable[[], Awaitable[None]],
) -> dict[str, list[float]]:
    """CPU per request (us) of each kind, one figure a round: ``requests`` calls of ``one(kind)``
    then ``settle()`` (what a batch leaves to finish, paid by that batch). The kinds take turns,
    their order reversed every other round; a first round warms up and is not counted. The CPU
    is the whole process's (``time.process_time``: the event loop and the store's thread)."""
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_number in range(rounds + 1):
        order = kinds if round_number % 2 else tuple(reversed(kinds))
        for kind in order:
            started = time.process_time()
            for _ in range(requests):
                await one(kind)
            await settle()
            if round_number:
                cpu[kind].append((time.process_time() - started) / requests * 1e6)
    return cpu


def cpu_rows(cpu: dict[str, list[float]], pairs: dict[str, str]) -> list[str]:
    """Markdown rows: each kind's least CPU per request (the median in brackets) and its ratio
    to the kind ``pairs`` names for it."""
    best = {kind: min(values) for kind, values in cpu.items()}
    lines = []
    for kind, values in cpu.items():
        against = pairs.get(kind)
        ratio = f"{best[kind] / best[against]:.2f}x" if against else ""
        lines.append(f"| {kind} | {best[kind]:,.0f} ({statistics.median(values):,.0f}) | {ratio} |")
    return lines

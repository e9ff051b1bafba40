"""What keeping responses costs: CPU per ``POST /v1/responses`` request in one Podium on its
embedded defaults (SQLite store, content policy on, traces recorded), over a fast mock upstream,
four kinds of request side by side, rounds alternating their order:

- ``fresh, not kept``: one question, ``store: false`` (what every request cost before);
- ``fresh, kept``: the same, kept (``store`` unset, as OpenAI's default): one INSERT more;
- ``turn N, sent whole``: the N-th turn of a conversation, the client sending every earlier
  turn in ``input`` with ``store: false`` (how a client continued a conversation before);
- ``turn N, continued``: the same turn by ``previous_response_id``, kept: the earlier turns are
  read back from the store in one query and the answer is kept.

CPU is the whole process's (``time.process_time``: the event loop and SQLite's thread), per
request, the least of the rounds (the least disturbed by other work on a shared machine). The
ASGI app is called directly, so no HTTP client's cost is in the figures; the upstream runs in a
process of its own.

    .venv/bin/python -m benchmarks.responses_store [--rounds 7] [--requests 200] [--turns 10] \\
        [--out benchmarks/results/responses_store.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.gateway.profile import lifespan
from benchmarks.tracing_overhead import free_port, wait_for
from podium.app import create_podium
from podium.config import parse_config

KINDS = ("fresh, not kept", "fresh, kept", "turn N, sent whole", "turn N, continued")
QUESTION = "Summarise the last message in one line, please."


async def post(app: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One ``POST /v1/responses`` through the ASGI app; the decoded answer."""
    raw = orjson.dumps(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/responses",
        "raw_path": b"/v1/responses",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
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
    answer: dict[str, Any] = orjson.loads(b"".join(chunks))
    assert status == 200, answer
    return answer


async def measure(upstream: int, data_dir: Path, rounds: int, requests: int, turns: int) -> Any:
    config = parse_config(
        {
            "data_dir": str(data_dir),
            "workers": [
                {
                    "name": "mock",
                    "provider": "openai",
                    "model": "mock",
                    "base_url": f"http://127.0.0.1:{upstream}/v1",
                    "price": {"input": 1.0, "output": 2.0},
                }
            ],
        }
    )
    podium = create_podium(config)
    await lifespan(podium.app, "startup")
    # A conversation of turns - 1 kept responses, and the same turns as a client would send them.
    previous: str | None = None
    whole: list[dict[str, Any]] = []
    for turn in range(turns - 1):
        text = f"Turn {turn}: here is a paragraph of the ongoing discussion. " * 8
        answer = await post(
            podium.app,
            {"model": "mock", "input": text, "previous_response_id": previous},
        )
        previous = answer["id"]
        whole += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer["output"][0]["content"][0]["text"]},
        ]
    bodies = {
        "fresh, not kept": {"model": "mock", "input": QUESTION, "store": False},
        "fresh, kept": {"model": "mock", "input": QUESTION},
        "turn N, sent whole": {
            "model": "mock",
            "input": [*whole, {"role": "user", "content": QUESTION}],
            "store": False,
        },
        "turn N, continued": {
            "model": "mock",
            "input": QUESTION,
            "previous_response_id": previous,
        },
    }
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for round_number in range(rounds + 1):  # the first round warms up
        order = KINDS if round_number % 2 else tuple(reversed(KINDS))
        for kind in order:
            started = time.process_time()
            for _ in range(requests):
                await post(podium.app, bodies[kind])
            await podium.gateway.drain_background()
            await podium.recorder.flush()  # each kind pays for writing its own traces
            if round_number:
                cpu[kind].append((time.process_time() - started) / requests * 1e6)
    sizes = await podium.store.execute(  # type: ignore[attr-defined]
        "SELECT AVG(LENGTH(input_items) + LENGTH(response)), COUNT(*) FROM responses"
    )
    await lifespan(podium.app, "shutdown")
    return cpu, sizes[0]


def report(cpu: dict[str, list[float]], sizes: Any, args: argparse.Namespace) -> str:
    best = {kind: min(values) for kind, values in cpu.items()}
    lines = [
        "# Stored responses: CPU per request",
        "",
        f"`.venv/bin/python -m benchmarks.responses_store --rounds {args.rounds} "
        f"--requests {args.requests} --turns {args.turns}`, on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}. Podium on its embedded defaults over a fast mock "
        "upstream; the whole process's CPU per request, the least of the rounds (median in "
        "brackets). Turn N is turn "
        f"{args.turns} of a conversation whose earlier turns hold about 100 words each.",
        "",
        "| request | CPU per request (us) | against its pair |",
        "|---|---|---|",
    ]
    pairs = {
        "fresh, kept": "fresh, not kept",
        "turn N, continued": "turn N, sent whole",
    }
    for kind in KINDS:
        against = pairs.get(kind)
        ratio = f"{best[kind] / best[against]:.2f}x" if against else ""
        lines.append(
            f"| {kind} | {best[kind]:,.0f} ({statistics.median(cpu[kind]):,.0f}) | {ratio} |"
        )
    lines += [
        "",
        f"Kept: {sizes[1]:,} responses, {sizes[0]:,.0f} bytes of JSON each on average.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    upstream = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gateway.mock_upstream", "--port", str(port)], env=env
    )
    try:
        wait_for(port)
        with tempfile.TemporaryDirectory() as tmp:
            cpu, sizes = asyncio.run(
                measure(port, Path(tmp), args.rounds, args.requests, args.turns)
            )
    finally:
        upstream.terminate()
        upstream.wait()
    text = report(cpu, sizes, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

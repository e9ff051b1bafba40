"""What a streamed Responses answer costs the gateway over a WebSocket against over HTTP: one
Podium server process (uvicorn, as ``podium serve`` runs it) over the fast mock upstream, the
same streamed request asked both ways from one client process, batches alternating.

- ``HTTP``: ``POST /v1/responses`` with ``stream: true`` on a keep-alive connection, the SSE
  read to its end;
- ``WebSocket``: one ``response.create`` message on one open connection, read to
  ``response.completed``.

Measured: the server process's CPU per answer (user + system, from /proc, so the client's own
work is not in it), the least of the rounds, and the wall time per answer, median.

    .venv/bin/python -m benchmarks.responses_socket [--rounds 5] [--requests 1000] \\
        [--out benchmarks/results/responses_socket.md]
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

import aiohttp
import orjson
import yaml

from benchmarks.tracing_overhead import free_port, wait_for

BODY = {"model": "mock", "input": "Say hello in one short sentence.", "store": False}
TICKS = os.sysconf("SC_CLK_TCK")
CHUNKS = 20  # the mock upstream's stream: 20 text chunks, sent as fast as it can


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def over_http(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    times = []
    body = orjson.dumps({**BODY, "stream": True})
    for _ in range(count):
        started = time.perf_counter()
        async with session.post(
            f"{url}/v1/responses", data=body, headers={"content-type": "application/json"}
        ) as response:
            assert response.status == 200, response.status
            text = await response.read()
        assert b"response.completed" in text
        times.append(time.perf_counter() - started)
    return times


async def over_socket(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    """``count`` answers on one connection, opened for the batch: a client that is not reading
    does not answer the server's pings, so one left idle through an HTTP batch is closed."""
    times = []
    message = orjson.dumps({"type": "response.create", **BODY}).decode()
    async with session.ws_connect(url.replace("http", "ws") + "/v1/responses") as socket:
        for _ in range(count):
            started = time.perf_counter()
            await socket.send_str(message)
            while True:
                event = orjson.loads((await socket.receive()).data)
                if event["type"] in ("response.completed", "error", "response.failed"):
                    break
            assert event["type"] == "response.completed", event
            times.append(time.perf_counter() - started)
    return times


async def measure(url: str, pid: int, rounds: int, requests: int) -> dict[str, tuple[list, list]]:
    cpu: dict[str, list[float]] = {"HTTP": [], "WebSocket": []}
    wall: dict[str, list[float]] = {"HTTP": [], "WebSocket": []}
    async with aiohttp.ClientSession() as session:
        await over_http(session, url, 50)  # warm-up
        await over_socket(session, url, 50)
        for number in range(rounds):
            for kind in ("HTTP", "WebSocket") if number % 2 else ("WebSocket", "HTTP"):
                before = cpu_seconds(pid)
                if kind == "HTTP":
                    times = await over_http(session, url, requests)
                else:
                    times = await over_socket(session, url, requests)
                cpu[kind].append((cpu_seconds(pid) - before) / requests)
                wall[kind] += times
    return {kind: (cpu[kind], wall[kind]) for kind in cpu}


def report(results: dict[str, tuple[list, list]], args: argparse.Namespace) -> str:
    lines = [
        "# Streamed Responses answers: WebSocket against HTTP",
        "",
        f"`.venv/bin/python -m benchmarks.responses_socket --rounds {args.rounds} "
        f"--requests {args.requests}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. One "
        "Podium server process on its embedded defaults (uvicorn, uvloop, httptools) over the "
        f"fast mock upstream ({CHUNKS} SSE chunks, no delay); the same streamed request both "
        "ways from one client process, batches alternating.",
        "",
        "| transport | server CPU per answer (us): least of rounds (median) "
        "| wall per answer, median (ms) |",
        "|---|---|---|",
    ]
    best = {}
    for kind, (cpu, wall) in results.items():
        best[kind] = min(cpu)
        lines.append(
            f"| {kind} | {min(cpu) * 1e6:,.0f} ({statistics.median(cpu) * 1e6:,.0f}) | "
            f"{statistics.median(wall) * 1e3:.2f} |"
        )
    lines += [
        "",
        f"WebSocket / HTTP server CPU: {best['WebSocket'] / best['HTTP']:.2f}x.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    upstream_port, port = free_port(), free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.gateway.mock_upstream",
                "--port",
                str(upstream_port),
                "--chunks",
                str(CHUNKS),
                "--chunk-ms",
                "0",
            ],
            env=env,
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "podium.yaml"
        worker = {
            "name": "mock",
            "provider": "openai",
            "model": "mock",
            "base_url": f"http://127.0.0.1:{upstream_port}/v1",
        }
        config.write_text(yaml.safe_dump({"data_dir": f"{tmp}/data", "workers": [worker]}))
        try:
            wait_for(upstream_port)
            podium = Path(sys.executable).parent / "podium"  # the venv's console script
            server = subprocess.Popen(
                [
                    podium,
                    "serve",
                    "--config",
                    config,
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env=env,
            )
            processes.append(server)
            wait_for(port)
            results = asyncio.run(
                measure(f"http://127.0.0.1:{port}", server.pid, args.rounds, args.requests)
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait()
    text = report(results, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

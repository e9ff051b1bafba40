"""Does recording cost the hot path anything? Two Podium gateways over one fast mock upstream,
side by side in one run: one with everything observability adds (trace recording with its
rollup, metrics, feedback bookkeeping), one with none of it. Requests alternate between them
one by one (concurrency 1), and the p50 latencies are compared.

    .venv/bin/python -m benchmarks.tracing_overhead [--rounds 10] [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BODY = b'{"model": "mock", "messages": [{"role": "user", "content": "hello there"}]}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def serve(mode: str, port: int, upstream: str, data_dir: str) -> None:
    """Run one gateway (in its own process): ``on`` as configured, ``off`` without tracing."""
    import uvicorn

    from podium.app import create_podium
    from podium.config import parse_config
    from podium.plugins import BUILTIN_PLUGINS, load_plugins

    config = parse_config(
        {
            "data_dir": data_dir,
            "workers": [
                {"name": "mock", "provider": "openai", "model": "mock", "base_url": upstream}
            ],
        }
    )
    if mode == "on":
        podium = create_podium(config)
    else:
        config.store.record_traces = False  # no trace recording at all
        builtins = [name for name in BUILTIN_PLUGINS if not name.startswith("podium.observe")]
        podium = create_podium(config, plugins=load_plugins(builtins, third_party=False))
    uvicorn.run(
        podium.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


async def round_trip(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.post(url, data=BODY, headers={"content-type": "application/json"}) as r:
            await r.read()
            assert r.status == 200, r.status
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def measure(ports: dict[str, int], rounds: int, requests: int) -> dict[str, list[float]]:
    """Requests alternate between the gateways one by one (which goes first flips every
    round), so both see the same moment-to-moment load on a shared machine."""
    results: dict[str, list[float]] = {mode: [] for mode in ports}
    urls = {mode: f"http://127.0.0.1:{port}/v1/chat/completions" for mode, port in ports.items()}
    async with aiohttp.ClientSession() as session:
        for url in urls.values():  # warm-up: connections, caches, first trace batch
            await round_trip(session, url, 200)
        for i in range(rounds):
            order = list(urls) if i % 2 == 0 else list(reversed(urls))
            for _ in range(requests):
                for mode in order:
                    results[mode] += await round_trip(session, urls[mode], 1)
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=500, help="per round and gateway")
    parser.add_argument("--serve", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream, args.data_dir)
        return
    upstream_port = free_port()
    ports = {"on": free_port(), "off": free_port()}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.gateway.mock_upstream",
                "--port",
                str(upstream_port),
                "--delay-ms",
                "0",
            ],
            env=env,
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wait_for(upstream_port)
            for mode, port in ports.items():
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks.tracing_overhead",
                            "--serve",
                            mode,
                            "--port",
                            str(port),
                            "--upstream",
                            f"http://127.0.0.1:{upstream_port}/v1",
                            "--data-dir",
                            str(Path(tmp) / mode),
                        ],
                        env=env,
                    )
                )
            for port in ports.values():
                wait_for(port)
            results = asyncio.run(measure(ports, args.rounds, args.requests))
            traces = Path(tmp) / "on" / "podium.db"
            stored = traces.stat().st_size if traces.exists() else 0
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    on, off = results["on"], results["off"]
    p50_on, p50_off = statistics.median(on), statistics.median(off)
    print(f"{len(on)} requests per gateway, alternating one by one, concurrency 1")
    print(f"trace store written by the 'on' gateway: {stored / 1e6:.1f} MB\n")
    print("| gateway | p50 ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("tracing on", on), ("tracing off", off)):
        print(
            f"| {name} | {statistics.median(values):.3f} | {percentile(values, 0.9):.3f} "
            f"| {percentile(values, 0.99):.3f} |"
        )
    ratio = p50_on / p50_off
    print(f"\np50 ratio on/off: {ratio:.3f} (target: within 5%, <= 1.05): "
          f"{'met' if ratio <= 1.05 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()

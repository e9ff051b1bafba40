"""Does recording cost the hot path anything? Two Podium gateways over one fast mock upstream,
side by side in one run: one with everything observability adds (trace recording with its
rollup, metrics, feedback bookkeeping), one with none of it. Requests alternate between them
one by one (concurrency 1), and the p50 latencies are compared.

    .venv/bin/python -m benchmarks.tracing_overhead [--rounds 10] [--requests 500]

``--cpu`` measures CPU instead, in one process (the ASGI app called directly, governance on
as in the gateway benchmark, the same mock upstream): per request, the event loop's CPU in
the gateway's recording (``_finish``: building the trace and queueing it; the finish hooks),
and the CPU of the whole process (writer thread included) with trace recording on and off,
rounds alternating. ``--compare REV`` first measures a git revision the same way. It needs a
quiet machine: on a shared, loaded one the rounds' spread exceeds the difference measured
(the trace writer's own CPU is measured steadily by ``benchmarks/trace_writer.py``).

    .venv/bin/python -m benchmarks.tracing_overhead --cpu [--compare REV]
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
from typing import Any

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


async def cpu_rounds(upstream: int, data_dir: Path, rounds: int, requests: int) -> dict[str, float]:
    from benchmarks.gateway.profile import call
    from benchmarks.gateway.run import podium_config
    from podium.app import create_podium
    from podium.config import parse_config
    from podium.policy.keys import KeyStore, NewKey

    body = b'{"model":"mock","messages":[{"role":"user","content":"Say hello."}]}'
    apps: dict[str, tuple[Any, list[tuple[bytes, bytes]]]] = {}
    recording = {"finish": 0.0, "hooks": 0.0}
    for mode in ("on", "off"):
        config = podium_config(upstream, upstream, data_dir / mode, governance=True)
        config["store"]["record_traces"] = mode == "on"
        podium = create_podium(parse_config(config))
        for hook in podium.app.on_startup:
            await hook()
        _, key = await KeyStore(podium.store).create(  # type: ignore[arg-type]
            NewKey(owner="bench", budget_usd=1e6, rpm=10_000_000, tpm=1_000_000_000)
        )
        if mode == "on":
            _time_loop_cpu(podium.gateway, "_finish", recording, "finish")
            _time_loop_cpu(podium.gateway, "_run_finish_hooks", recording, "hooks")
        apps[mode] = (podium, [(b"authorization", f"Bearer {key}".encode())])
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    for round_number in range(rounds + 1):  # the first round warms up
        for mode in ("on", "off") if round_number % 2 else ("off", "on"):
            podium, headers = apps[mode]
            recording_before = dict(recording)
            started = time.process_time()
            for _ in range(requests):
                await call(podium.app, body, headers)
            await podium.gateway.drain_background()
            await podium.recorder.flush()  # the round pays for writing its own traces
            if round_number:
                cpu[mode].append((time.process_time() - started) / requests)
            elif mode == "on":
                recording.update(recording_before)  # the warm-up round does not count
    for podium, _ in apps.values():
        for hook in reversed(podium.app.on_shutdown):
            await hook()
    measured = rounds * requests
    return {
        "on_us": min(cpu["on"]) * 1e6,
        "off_us": min(cpu["off"]) * 1e6,
        "finish_us": recording["finish"] / measured * 1e6,
        "hooks_us": recording["hooks"] / measured * 1e6,
    }


def _time_loop_cpu(gateway: Any, name: str, totals: dict[str, float], key: str) -> None:
    """Wrap one of the gateway's methods to add up the event loop thread's CPU inside it."""
    original = getattr(gateway, name)
    if asyncio.iscoroutinefunction(original):

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            # Only this coroutine's own steps: time spent suspended runs other work.
            coroutine = original(*args, **kwargs)
            value: Any = None
            while True:
                started = time.thread_time()
                try:
                    awaited = coroutine.send(value)
                except StopIteration as done:
                    totals[key] += time.thread_time() - started
                    return done.value
                totals[key] += time.thread_time() - started
                value = await _Await(awaited)

        setattr(gateway, name, timed_async)
    else:

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                totals[key] += time.thread_time() - started

        setattr(gateway, name, timed)


class _Await:
    def __init__(self, awaited: Any) -> None:
        self.awaited = awaited

    def __await__(self) -> Any:
        return (yield self.awaited)


def cpu_main(args: argparse.Namespace) -> dict[str, float]:
    import uvloop

    from benchmarks.gateway.run import mock

    with mock(0) as upstream, tempfile.TemporaryDirectory() as tmp:
        return uvloop.run(cpu_rounds(upstream, Path(tmp), args.rounds, args.requests))


def cpu_report(args: argparse.Namespace) -> None:
    import json

    rows: list[tuple[str, dict[str, float]]] = []
    if args.compare:
        from benchmarks.revision import run_at_revision

        options = [
            "--cpu",
            "--json",
            "--rounds",
            str(args.rounds),
            "--requests",
            str(args.requests),
        ]
        out = run_at_revision(args.compare, Path(__file__), options)
        rows.append((args.compare, json.loads(out.splitlines()[-1])))
    rows.append(("this tree", cpu_main(args)))
    print(f"{args.rounds} rounds of {args.requests} requests per mode, least CPU per round; "
          f"governance on; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| code | gateway._finish us | finish hooks us | process CPU, recording on us "
          "| recording off us | on - off us |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for code, r in rows:
        print(
            f"| {code} | {r['finish_us']:.1f} | {r['hooks_us']:.1f} | {r['on_us']:.0f} "
            f"| {r['off_us']:.0f} | {r['on_us'] - r['off_us']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=500, help="per round and gateway")
    parser.add_argument("--cpu", action="store_true", help="CPU per request, in one process")
    parser.add_argument("--compare", metavar="REV", help="with --cpu: measure REV first")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu and args.json:
        import json

        print(json.dumps(cpu_main(args)))
        return
    if args.cpu:
        cpu_report(args)
        return
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

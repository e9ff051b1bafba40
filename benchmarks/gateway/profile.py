"""Profile Podium's request path in one process: the ASGI app called directly (no HTTP server
in front), the benchmark's mock upstream behind it, requests one after another.

    .venv/bin/python -m benchmarks.gateway.profile --governance on --requests 3000
    .venv/bin/python -m benchmarks.gateway.profile --stream --sort tottime
    .venv/bin/python -m benchmarks.gateway.profile --stream --chunks 64 --chunk-ms 20 \
        --concurrency 100 --requests 1000 --top 0     # CPU per chunk of paced streams

Prints microseconds of Podium CPU per request (per chunk for streams) and the top functions
by cumulative time (CPU time: other processes on the machine do not count).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gateway.bodies import chat_body
from benchmarks.gateway.run import ROOT, free_port, podium_config, wait_for_port


async def call(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8400),
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def lifespan(app: Any, kind: str) -> None:
    done = asyncio.Event()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": f"lifespan.{kind}"})

    async def send(message: dict[str, Any]) -> None:
        done.set()

    task = asyncio.ensure_future(app({"type": "lifespan"}, queue.get, send))
    await done.wait()
    task.cancel()


async def main_async(args: argparse.Namespace, upstream: int, data_dir: Path) -> None:
    import yaml

    from podium.app import create_podium
    from podium.config import parse_config
    from podium.policy.keys import KeyStore, NewKey

    raw = podium_config(upstream, upstream, data_dir, governance=args.governance == "on")
    for setting in args.set:  # e.g. --set store.record_traces=false: what one part costs
        dotted, _, value = setting.partition("=")
        *parents, leaf = dotted.split(".")
        node = raw
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    config = parse_config(raw)
    yaml.safe_dump  # noqa: B018 (imported for parity with the harness)
    podium = create_podium(config)
    app: Any = podium.app
    for hook in podium.app.on_startup:
        await hook()
    if args.passthrough:  # the same harness around the minimal pass-through, for comparison
        from benchmarks.gateway.passthrough import PassThrough

        app = PassThrough(f"http://127.0.0.1:{upstream}")
        await lifespan(app, "startup")
    headers: list[tuple[bytes, bytes]] = []
    if args.governance == "on":
        _, key = await KeyStore(podium.store).create(  # type: ignore[arg-type]
            NewKey(owner="bench", budget_usd=1e6, rpm=10_000_000, tpm=1_000_000_000)
        )
        headers.append((b"authorization", f"Bearer {key}".encode()))
    # A fixed system prompt and a new user message in every request, as every proxy gets in
    # the wrk runs (bodies.py); built before the clock starts.
    bodies = iter(
        [
            chat_body("mock", number, stream=args.stream).encode()
            for number in range(256 + 2 * args.requests)
        ]
    )

    async def batch(count: int) -> None:
        # ``--concurrency`` requests at a time: with paced stream chunks, every chunk then
        # arrives on its own, as it would from a real upstream.
        for start in range(0, count, args.concurrency):
            size = min(args.concurrency, count - start)
            await asyncio.gather(*(call(app, next(bodies), headers) for _ in range(size)))

    for _ in range(200 // args.concurrency + 1):  # warm up
        assert await call(app, next(bodies), headers) == 200
    # The least CPU of several rounds: other processes on the machine only ever add to it.
    rounds = []
    per_round = args.requests // args.rounds
    for _ in range(args.rounds):
        cpu0 = time.process_time()
        await batch(per_round)
        rounds.append((time.process_time() - cpu0) / per_round)
    least, median = min(rounds), sorted(rounds)[len(rounds) // 2]
    print(
        f"CPU per request (Podium and its egress): min {least * 1e6:.0f} us, "
        f"median {median * 1e6:.0f} us over {args.rounds} rounds"
    )
    if args.stream:
        # The mock sends the chunks, a usage event and the end marker.
        print(f"  per upstream chunk: min {least * 1e6 / (args.chunks + 2):.1f} us")
    if args.top:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        await batch(args.requests)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    if args.passthrough:
        await lifespan(app, "shutdown")
    for hook in reversed(podium.app.on_shutdown):
        await hook()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--governance", choices=["on", "off"], default="off")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--passthrough", action="store_true", help="drive the pass-through")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=4, help="stream chunks from the mock")
    parser.add_argument("--chunk-ms", type=float, default=0.0, help="pacing of the chunks")
    parser.add_argument("--concurrency", type=int, default=1, help="requests at a time")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting of Podium's config (dotted key, YAML value)",
    )
    args = parser.parse_args()
    port = free_port()
    mock = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gateway.mock_upstream", "--port", str(port),
         "--chunks", str(args.chunks), "--chunk-ms", str(args.chunk_ms)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        wait_for_port(port)
        with tempfile.TemporaryDirectory() as tmp:
            import uvloop

            uvloop.run(main_async(args, port, Path(tmp)))
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()

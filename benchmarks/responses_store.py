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
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gateway.profile import lifespan
from benchmarks.responses_harness import cpu_rows, interleaved, mock_config, mock_upstream, post
from podium.app import create_podium

KINDS = ("fresh, not kept", "fresh, kept", "turn N, sent whole", "turn N, continued")
QUESTION = "Summarise the last message in one line, please."


async def measure(upstream: int, data_dir: Path, rounds: int, requests: int, turns: int) -> Any:
    podium = create_podium(mock_config(upstream, data_dir))
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

    async def one(kind: str) -> None:
        await post(podium.app, bodies[kind])

    async def settle() -> None:
        await podium.gateway.drain_background()
        await podium.recorder.flush()  # each kind pays for writing its own traces

    cpu = await interleaved(KINDS, rounds, requests, one, settle)
    sizes = await podium.store.execute(  # type: ignore[attr-defined]
        "SELECT AVG(LENGTH(input_items) + LENGTH(response)), COUNT(*) FROM responses"
    )
    await lifespan(podium.app, "shutdown")
    return cpu, sizes[0]


def report(cpu: dict[str, list[float]], sizes: Any, args: argparse.Namespace) -> str:
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
    lines += cpu_rows(cpu, pairs)
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
    with mock_upstream() as port, tempfile.TemporaryDirectory() as tmp:
        cpu, sizes = asyncio.run(measure(port, Path(tmp), args.rounds, args.requests, args.turns))
    text = report(cpu, sizes, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

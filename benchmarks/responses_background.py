"""What answering in the background costs: CPU per kept ``POST /v1/responses`` request in one
Podium on its embedded defaults (SQLite store, content policy on, traces recorded), over the
fast mock upstream (a stream of ``--chunks`` text chunks, no delay), four kinds of request side
by side, rounds alternating their order (the harness of ``benchmarks.responses_store``):

- ``kept``: one question, answered as it comes (``store`` unset: kept);
- ``kept, background``: the same with ``background: true``: the request returns the response
  ``in_progress`` once it is routed and kept, and its run answers it and writes how it ended.
  Each request is followed to that end (its run's task awaited) before the next is sent, and
  the batch waits for the events writer to stop, so the run's work is in the figure;
- ``streamed, kept``: ``stream: true``, kept, the SSE read to its end;
- ``streamed, background``: ``stream: true`` with ``background: true``: the run frames every
  event into memory and writes them to the store (``response_events``); the request follows
  the run and its SSE is read to the end, by which time the events and the end are written;
- with ``--split``, ``streamed, background, events unwritten``: the same with the store's
  ``add_events`` a no-op for that kind, so the difference to the one before is what writing
  the events costs.

CPU is the whole process's (``time.process_time``: the event loop and SQLite's thread), per
request, the least of the rounds. Then what one streamed background answer leaves in
``response_events``: rows, the bytes of their columns, and the pages the table and its key's
index take on disk (SQLite's ``dbstat``), per answer.

    .venv/bin/python -m benchmarks.responses_background [--rounds 7] [--requests 200] \\
        [--chunks 20] [--split] [--out benchmarks/results/responses_background.md]
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
from benchmarks.responses_harness import (
    call,
    cpu_rows,
    interleaved,
    mock_config,
    mock_upstream,
    post,
)
from podium.app import create_podium

KINDS = ("kept", "kept, background", "streamed, kept", "streamed, background")
UNWRITTEN = "streamed, background, events unwritten"
PAIRS = {
    "kept, background": "kept",
    "streamed, background": "streamed, kept",
    UNWRITTEN: "streamed, kept",
}
QUESTION = "Summarise the last message in one line, please."
BODIES: dict[str, dict[str, Any]] = {
    "kept": {"model": "mock", "input": QUESTION},
    "kept, background": {"model": "mock", "input": QUESTION, "background": True},
    "streamed, kept": {"model": "mock", "input": QUESTION, "stream": True},
    "streamed, background": {
        "model": "mock",
        "input": QUESTION,
        "stream": True,
        "background": True,
    },
}


async def unwritten(response_id: str, first: int, events: Any) -> None:
    """``ResponseStore.add_events`` for ``--split``'s kind: the events are not written."""


async def measure(
    upstream: int, data_dir: Path, rounds: int, requests: int, kinds: tuple[str, ...]
) -> Any:
    podium = create_podium(mock_config(upstream, data_dir))
    await lifespan(podium.app, "startup")
    runs = podium.extras["responses_runs"]
    add_events = runs.store.add_events

    async def one(kind: str) -> None:
        runs.store.add_events = unwritten if kind == UNWRITTEN else add_events
        body = BODIES["streamed, background" if kind == UNWRITTEN else kind]
        if body.get("stream"):
            status, raw = await call(podium.app, body)
            assert status == 200 and b"event: response.completed" in raw, raw[-500:]
        else:
            answer = await post(podium.app, body)
            expected = "in_progress" if body.get("background") else "completed"
            assert answer["status"] == expected, answer
        for run in list(runs.runs.values()):  # a background one: to its end, written
            await run.task

    async def settle() -> None:
        if runs._writer is not None:  # it stops at its next tick once no run is left
            await runs._writer
        await podium.gateway.drain_background()
        await podium.recorder.flush()  # each kind pays for writing its own traces

    cpu = await interleaved(kinds, rounds, requests, one, settle)
    runs.store.add_events = add_events
    execute = podium.store.execute  # type: ignore[attr-defined]
    unfinished = await execute("SELECT COUNT(*) FROM responses WHERE heartbeat_at IS NOT NULL")
    assert unfinished[0][0] == 0, unfinished
    background = await execute(
        "SELECT COUNT(*) FROM responses WHERE response LIKE '%\"background\":true%' "
        'AND response LIKE \'%"status":"completed"%\''
    )
    asked = sum("background" in kind for kind in kinds) * (rounds + 1) * requests
    assert background[0][0] == asked, (background[0][0], asked)  # every one ended completed
    events = (
        await execute(
            "SELECT COUNT(DISTINCT response_id), COUNT(*), "
            "SUM(LENGTH(CAST(data AS BLOB))), "
            "SUM(LENGTH(CAST(response_id AS BLOB)) + LENGTH(CAST(kind AS BLOB)) + 8) "
            "FROM response_events"
        )
    )[0]
    pages = (
        await execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
            "('response_events', 'sqlite_autoindex_response_events_1')"
        )
    )[0][0]
    await lifespan(podium.app, "shutdown")
    answers, rows, data, keys = events
    return cpu, {
        "answers": answers,
        "rows": rows / answers,
        "data": data / answers,
        "keys": keys / answers,
        "disk": pages / answers,
    }


def report(cpu: dict[str, list[float]], events: dict[str, float], args: argparse.Namespace) -> str:
    best = {kind: min(values) for kind, values in cpu.items()}
    split = " --split" if args.split else ""
    lines = [
        "# Background responses: CPU per request",
        "",
        f"`.venv/bin/python -m benchmarks.responses_background --rounds {args.rounds} "
        f"--requests {args.requests} --chunks {args.chunks}{split}`, on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}. Podium on its embedded defaults over the fast mock "
        f"upstream ({args.chunks} text chunks a stream, no delay); the whole process's CPU per "
        "request, the least of the rounds (median in brackets); a background request measured "
        "until its run has ended and been written.",
        "",
        "| request | CPU per request (us) | against its pair |",
        "|---|---|---|",
        *cpu_rows(cpu, PAIRS),
        "",
    ]
    for kind, against in PAIRS.items():
        if kind not in cpu:
            continue
        lines.append(f"- {kind}: {best[kind] - best[against]:+,.0f} us against {against}.")
    lines += [
        "",
        f"Events of one streamed background answer in `response_events` (mean of "
        f"{events['answers']:,.0f}): {events['rows']:.0f} rows, {events['data']:,.0f} bytes of "
        f"event JSON, {events['data'] + events['keys']:,.0f} bytes with their keys (response "
        f"id, sequence number, kind); {events['disk']:,.0f} bytes of SQLite pages (the table "
        "and its key's index).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks a streamed answer")
    parser.add_argument("--split", action="store_true", help=f"add '{UNWRITTEN}'")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    kinds = (*KINDS, UNWRITTEN) if args.split else KINDS
    options = ("--chunks", str(args.chunks), "--chunk-ms", "0")
    with mock_upstream(*options) as port, tempfile.TemporaryDirectory() as tmp:
        cpu, events = asyncio.run(measure(port, Path(tmp), args.rounds, args.requests, kinds))
    text = report(cpu, events, args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

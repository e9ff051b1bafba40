"""What each part of governance costs a request, in instructions counted by valgrind.

CPU time on a shared machine moves by tens of percent between identical runs; instruction
counts do not. Every configuration runs ``benchmarks.gateway.profile`` (Podium's ASGI app in
one process, the mock upstream behind it, the realistic bodies) under cachegrind twice, with
two request counts, and the difference divided by the extra requests is the cost of one
request: start-up, imports and warm-up cancel out. The writer thread's work on the traces is
counted too (cachegrind counts every thread of the process).

    .venv/bin/python -m benchmarks.gateway.instructions       # ~15 minutes on 2 cores
    .venv/bin/python -m benchmarks.gateway.instructions \
        --out benchmarks/results/governance_instructions.md

"Governance on minus X" turns one part off in the governed configuration, so its row says
what that part costs with everything else on.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.gateway.run import ROOT, machine

SETTINGS: dict[str, list[str]] = {
    "pii": ["policy.pii.enabled=false"],
    "name tagger": ["policy.pii.engines=[patterns]"],
    "injection classifier": ["policy.injection.classifier=false"],
    "content policy (all of it)": ["policy.enabled=false"],
    "traces": ["store.record_traces=false"],
}


@dataclass(frozen=True)
class Configuration:
    name: str
    args: tuple[str, ...]


def configurations() -> list[Configuration]:
    rows = [
        Configuration("pass-through", ("--passthrough",)),
        Configuration("Podium, governance off", ("--governance", "off")),
        Configuration("Podium, governance on", ("--governance", "on")),
    ]
    for part, settings in SETTINGS.items():
        sets = tuple(arg for setting in settings for arg in ("--set", setting))
        rows.append(Configuration(f"governance on minus {part}", ("--governance", "on", *sets)))
    return rows


def instructions(args: tuple[str, ...], requests: int) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.gateway.profile",
        "--requests",
        str(requests),
        "--rounds",
        "1",
        "--top",
        "0",
        *args,
    ]
    # OpenBLAS's idle threads spin for a while after numpy's start-up work, and valgrind counts
    # that spinning (it moved a count by +-50k per request); the request path calls no BLAS.
    # A fixed hash seed: with a random one, dict and type-cache layouts moved one commit's count
    # by up to 3.4k a request between runs (about 0.3k with it fixed).
    environment = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
    }
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=True, env=environment
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_request(configuration: Configuration, base: int, extra: int) -> int:
    low = instructions(configuration.args, base)
    high = instructions(configuration.args, base + extra)
    return round((high - low) / extra)


def report(counts: dict[str, int], extra: int, seconds: float) -> str:
    passthrough = counts["pass-through"]
    off = counts["Podium, governance off"]
    on = counts["Podium, governance on"]
    lines = [
        "# Instructions per request, by part of governance",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()['cpu']}; "
        f"{extra} extra requests per count, {seconds / 60:.0f} min. Command: "
        "`.venv/bin/python -m benchmarks.gateway.instructions`.",
        "",
        "| configuration | instructions per request | vs pass-through | the part costs |",
        "|---|---:|---:|---:|",
    ]
    for name, count in counts.items():
        part = ""
        if name.startswith("governance on minus"):
            part = f"{on - count:,} ({(on - count) / on:.0%} of governed)"
        elif name == "Podium, governance on":
            part = f"{on - off:,} (all of governance)"
        lines.append(f"| {name} | {count:,} | {count / passthrough:.2f}x | {part} |")
    lines += [
        "",
        "The rows of single parts move by up to ~100k instructions between runs: work driven by "
        "the clock (the key cache's refresh, the trace writer's batches) happens more often per "
        "request under valgrind's slowdown. The parts overlap, so they do not add up exactly.",
        "",
        "Throughput at 50% of the pass-through's needs a governed request near 2x the "
        f"pass-through's instructions ({2 * passthrough:,}); it takes {on / passthrough:.2f}x.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="the smaller count")
    parser.add_argument("--extra", type=int, default=500, help="how many more the larger has")
    parser.add_argument("--jobs", type=int, default=2, help="valgrind runs at a time")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    started = time.monotonic()
    rows = configurations()
    with ThreadPoolExecutor(args.jobs) as pool:
        counts = list(pool.map(lambda row: per_request(row, args.requests, args.extra), rows))
    text = report(
        {row.name: count for row, count in zip(rows, counts, strict=True)},
        args.extra,
        time.monotonic() - started,
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

"""What attached PDFs cost, and what they do to the requests beside them.

One Podium on its embedded defaults (SQLite store, content policy on, traces recorded) over the
fast mock upstream (a process of its own), its worker text-only, so every PDF is read, searched
for PII, screened and sent as its text. Measured:

- one 100-page PDF (~250,000 characters of text): reading its text (pypdf), and the PII search
  of that text, each alone;
- the latency of small chat requests (4 at a time) alone, and beside a steady stream of
  100-page PDF requests (2 at a time): as shipped (each PDF read in a process of its own, the
  long PII search in a thread), with the reading in a thread instead, and with both on the
  event loop. Rounds alternate the four, side by side.

    .venv/bin/python -m benchmarks.documents [--rounds 3] [--requests 200] \\
        [--out benchmarks/results/documents.md]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from benchmarks.gateway.profile import lifespan
from benchmarks.responses_harness import call, mock_config, mock_upstream
from podium.app import create_podium
from podium.documents import PdfRead, PdfReaders
from podium.pdf_text import read_pdf
from podium.policy.detect import PiiDetector
from podium.testing.pdf import make_pdf

T = TypeVar("T")
PAGE = "The committee reviewed the budget line by line and approved it after a long debate. " * 30
SMALL = {"model": "mock", "messages": [{"role": "user", "content": "What is the capital of Peru?"}]}
MODES = (
    "alone",
    "beside PDFs: reading in a process (shipped)",
    "beside PDFs: reading in a thread",
    "beside PDFs: reading and searching on the loop",
)


def pdf_request(data: str) -> dict[str, Any]:
    content = [
        {"type": "text", "text": "Summarise the minutes."},
        {"type": "file", "file": {"filename": "minutes.pdf", "file_data": data}},
    ]
    return {"model": "mock", "messages": [{"role": "user", "content": content}]}


@contextmanager
def placed(mode: str) -> Iterator[None]:
    """Where PDFs are read (and long texts searched) while the block runs, for ``mode``."""
    shipped_read, shipped_thread = PdfReaders.read, asyncio.to_thread

    async def in_thread(self: PdfReaders, content: bytes, owner: str = "") -> PdfRead:
        text, pages = await shipped_thread(read_pdf, content, max_pages=self.settings.max_pages)
        return PdfRead(text, pages)

    async def inline_read(self: PdfReaders, content: bytes, owner: str = "") -> PdfRead:
        return PdfRead(*read_pdf(content, max_pages=self.settings.max_pages))

    async def inline(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return function(*args, **kwargs)

    if mode.endswith("in a thread"):
        PdfReaders.read = in_thread  # type: ignore[method-assign]
    elif mode.endswith("on the loop"):
        PdfReaders.read = inline_read  # type: ignore[method-assign]
        asyncio.to_thread = inline
    try:
        yield
    finally:
        PdfReaders.read = shipped_read  # type: ignore[method-assign]
        asyncio.to_thread = shipped_thread


async def small_latencies(app: Any, requests: int) -> list[float]:
    latencies: list[float] = []
    queue = list(range(requests))

    async def client() -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            status, body = await call(app, SMALL, path="/v1/chat/completions")
            assert status == 200, body[:300]
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(client() for _ in range(4)))
    return latencies


def letters(number: int) -> str:
    """A number in letters (0 a, 25 z, 26 ba), to mark each PDF apart in words the PII
    detectors read as nothing (digits beside a capitalised word can pass for an address)."""
    word = ""
    while True:
        number, digit = divmod(number, 26)
        word = chr(ord("a") + digit) + word
        if number == 0:
            return word


async def pdf_load(app: Any, marker: str, stop: asyncio.Event, done: list[float]) -> None:
    """100-page PDF requests one after another until ``stop``, each PDF new: what a PDF gave
    and what its text holds are remembered, and a PDF sent again would measure the memory."""
    sent = 0
    while not stop.is_set():
        sent += 1
        pdf = make_pdf([f"{PAGE}Filed as draft {marker}x{letters(sent)}."] * 100)
        body = pdf_request("data:application/pdf;base64," + base64.b64encode(pdf).decode())
        started = time.perf_counter()
        status, answer = await call(app, body, path="/v1/chat/completions")
        assert status == 200, answer[:300]
        done.append((time.perf_counter() - started) * 1000)


async def measure(upstream: int, data_dir: Path, rounds: int, requests: int) -> dict[str, Any]:
    pdf = make_pdf([PAGE] * 100)
    started = time.perf_counter()
    text, _ = read_pdf(pdf, max_pages=100)
    read_ms = (time.perf_counter() - started) * 1000
    assert text is not None
    detector = PiiDetector()
    started = time.perf_counter()
    list(detector.inspect(text))
    pii_ms = (time.perf_counter() - started) * 1000

    podium = create_podium(mock_config(upstream, data_dir))
    await lifespan(podium.app, "startup")
    await small_latencies(podium.app, 20)  # warm up
    small: dict[str, list[float]] = {mode: [] for mode in MODES}
    pdfs: dict[str, list[float]] = {mode: [] for mode in MODES[1:]}
    for round_ in range(rounds):
        order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            if mode == "alone":
                small[mode] += await small_latencies(podium.app, requests)
                continue
            with placed(mode):
                stop = asyncio.Event()
                # Each load's PDFs its own, in every round and mode: none read before.
                codes = [round_ * 100 + MODES.index(mode) * 10 + n for n in range(2)]
                loads = [
                    asyncio.create_task(pdf_load(podium.app, letters(code), stop, pdfs[mode]))
                    for code in codes
                ]
                await asyncio.sleep(0.2)
                small[mode] += await small_latencies(podium.app, requests)
                stop.set()
                await asyncio.gather(*loads)
    await lifespan(podium.app, "shutdown")
    return {
        "pdf_bytes": len(pdf),
        "text_chars": len(text),
        "read_ms": read_ms,
        "pii_ms": pii_ms,
        "small": small,
        "pdfs": pdfs,
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(result: dict[str, Any], rounds: int, requests: int) -> str:
    alone = result["small"]["alone"]
    base = statistics.median(alone), percentile(alone, 0.95)
    lines = [
        "# Documents: what a 100-page PDF costs, and the requests beside it",
        "",
        f"`.venv/bin/python -m benchmarks.documents --rounds {rounds} --requests {requests}`, "
        f"on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end), "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        f"One PDF of 100 pages ({result['pdf_bytes']:,} bytes, {result['text_chars']:,} "
        f"characters of text): reading its text {result['read_ms']:.0f} ms, the PII search "
        f"of that text {result['pii_ms']:.0f} ms, each alone on one core.",
        "",
        "Small chat requests, 4 at a time, alone and beside 2 PDF requests at a time (the worker "
        "text-only: each PDF read, searched, screened and sent as text), rounds alternating:",
        "",
        "| small requests | p50 ms | p95 ms | p95 vs alone | PDF requests done | PDF p50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        values = result["small"][mode]
        p50, p95 = statistics.median(values), percentile(values, 0.95)
        done = result["pdfs"].get(mode, [])
        pdf_p50 = f"{statistics.median(done):.0f}" if done else "-"
        lines.append(
            f"| {mode} | {p50:.1f} | {p95:.1f} | {p95 / base[1]:.1f}x | {len(done) or '-'} "
            f"| {pdf_p50} |"
        )
    lines += [
        "",
        "Reading a PDF and searching its text are pure Python: in a thread they still take "
        "turns with the event loop for the interpreter, so the small requests wait for a turn; "
        "on the loop they wait for whole PDFs, while the PDFs, never interrupted, finish more "
        "of their own in the same time. A process of its own holds no lock of the gateway's "
        "(and can be killed: a thread cannot), at the cost of the interpreter it starts, kept "
        "started ahead.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with mock_upstream() as upstream, tempfile.TemporaryDirectory() as data_dir:
        result = asyncio.run(measure(upstream, Path(data_dir), args.rounds, args.requests))
    text = report(result, args.rounds, args.requests)
    print(text)
    if args.out:
        args.out.write_text(text)
    print(orjson.dumps({k: v for k, v in result.items() if k not in ("small", "pdfs")}).decode())


if __name__ == "__main__":
    main()

"""What counting an image's tokens costs a request: reading its size from its header.

Podium reads an image's width and height from the few bytes of its header that hold them,
decoding only those bytes of the base64 (podium/image_tokens.py), and prices the request's
images for each worker an estimate considers (podium/media.py). Measured side by side, per
image, against decoding the whole base64 first (what reading the size with an imaging
library needs), for a small PNG and a large JPEG whose metadata comes before its frame
header; and one request's four images priced for five workers, as the budget, the cost
ceiling and the fit do.

    .venv/bin/python -m benchmarks.image_tokens [--repeat 7] \\
        [--out benchmarks/results/image_tokens.md]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from podium.config import WorkerConfig
from podium.image_tokens import image_size
from podium.media import request_media
from podium.types import ChatRequest, ImagePart, Message, TextPart


def encoded(image: Image.Image, image_format: str, **save: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **save)
    return base64.b64encode(buffer.getvalue()).decode()


def noise(width: int, height: int) -> Image.Image:
    return Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))


def whole_decode(data: str) -> tuple[int, int]:
    """The size as an imaging library reads it: the whole payload decoded first."""
    with Image.open(io.BytesIO(base64.b64decode(data))) as image:
        return image.size


def per_call(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Seconds one call takes, the median of rounds of about ``seconds`` each."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        took = time.perf_counter() - started
        if took >= seconds / 10:
            break
        calls *= 4
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - started) / calls)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="side-by-side rounds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    small = encoded(Image.new("RGB", (640, 480), (20, 90, 160)), "PNG")
    profile = os.urandom(200_000)  # a colour profile ahead of the frame header
    large = encoded(noise(1400, 1000), "JPEG", quality=95, icc_profile=profile)
    seeing = {"provider": "openai", "model": "m", "capabilities": ["streaming", "vision"]}
    workers = [WorkerConfig.model_validate({"name": f"w{i}", **seeing}) for i in range(5)]
    images = [ImagePart(data=data, media_type="image/png") for data in (small, large) * 2]
    request = ChatRequest("m", [Message("user", [TextPart("Compare them."), *images])])

    def priced() -> int:
        media = request_media(request)
        return sum(media.tokens(worker) for worker in workers)

    cases: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        (f"PNG 640x480 ({len(small) // 1024} KB base64)", lambda: image_size(small),
         lambda: whole_decode(small)),
        (f"JPEG 1400x1000 after 200 KB of metadata ({len(large) // 1024} KB base64)",
         lambda: image_size(large), lambda: whole_decode(large)),
        ("one request's 4 images priced for 5 workers", priced, None),
    ]  # fmt: skip
    assert image_size(large) is not None and whole_decode(large) == (1400, 1000)
    results: dict[str, list[tuple[float, float | None]]] = {name: [] for name, _, _ in cases}
    for _ in range(args.repeat):
        for name, ours, theirs in cases:
            results[name].append((per_call(ours), per_call(theirs) if theirs else None))

    lines = [
        "# Counting an image's tokens",
        "",
        f"`python -m benchmarks.image_tokens --repeat {args.repeat}` on {platform.machine()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs. Medians of "
        f"{args.repeat} side-by-side rounds (each the median of 5 timed loops).",
        "",
        "| case | header read (us) | whole payload decoded (us) | ratio |",
        "|---|---|---|---|",
    ]
    for name, _, _ in cases:
        ours = statistics.median(pair[0] for pair in results[name]) * 1e6
        whole = [pair[1] for pair in results[name] if pair[1] is not None]
        if whole:
            theirs = statistics.median(whole) * 1e6
            lines.append(f"| {name} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.0f}x |")
        else:
            lines.append(f"| {name} | {ours:.1f} | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

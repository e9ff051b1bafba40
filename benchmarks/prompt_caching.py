"""What prompt caching saves through Podium: one agent-like conversation (a long system prompt,
then turn after turn, each request carrying the whole conversation so far), asked through a
Podium gateway of one Anthropic worker, three ways, side by side in one run:

- ``unmarked``: the client marks no breakpoint and the worker caches nothing: what every
  client paid before Podium passed ``cache_control`` on, since it dropped the marks;
- ``client marks``: the client marks its system prompt and asks for the conversation to be
  cached up to its last block (top-level ``cache_control``), as agent tools do;
- ``worker caches``: the client marks nothing (an OpenAI SDK, say) and the worker has
  ``options.prompt_cache: 5m``.

The upstream is Podium's fake Anthropic server, which keeps Anthropic's prompt cache as
documented (minimum length, lifetimes, lookback); tokens are its count (words). Costs are what
Podium charged (``x-podium-cost-usd``) at Claude Sonnet 4's list prices. Deterministic: no
timing is measured, so the machine's load does not matter.

    .venv/bin/python -m benchmarks.prompt_caching [--turns 20] [--system-words 3000] \\
        [--out benchmarks/results/prompt_caching.md]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic

from podium.app import create_podium
from podium.config import parse_config
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.server import serve

PRICE = {"input": 3.0, "output": 15.0, "cached_input": 0.30, "cache_write": 3.75}
SETUPS = ("unmarked", "client marks", "worker caches")


@dataclass
class Tally:
    cost_usd: float = 0.0
    input_tokens: int = 0  # uncached
    read: int = 0
    written: int = 0
    output: int = 0


async def conversation(setup: str, turns: int, system_words: int, data_dir: Path) -> Tally:
    worker: dict[str, Any] = {
        "name": "claude",
        "provider": "anthropic",
        "model": "claude-sonnet-4",
        "price": PRICE,
        "profile": {"cleared": ["public", "internal", "confidential", "restricted"]},
    }
    tally = Tally()
    async with FakeAnthropic() as fake:
        worker["base_url"] = fake.base_url
        if setup == "worker caches":
            worker["options"] = {"prompt_cache": "5m"}
        config = parse_config({"data_dir": str(data_dir / setup), "workers": [worker]})
        podium = create_podium(config)
        manual = " ".join(f"rule{index % 97}" for index in range(system_words))
        system: Any = [{"type": "text", "text": manual}]
        extra: dict[str, Any] = {}
        if setup == "client marks":
            system = [{**system[0], "cache_control": {"type": "ephemeral"}}]
            extra["cache_control"] = {"type": "ephemeral"}
        async with (
            serve(podium.app) as url,
            anthropic.AsyncAnthropic(base_url=url, api_key="x") as client,
        ):
            messages: list[Any] = []
            for turn in range(turns):
                question = " ".join(f"step{turn}-{index}" for index in range(40))
                messages.append({"role": "user", "content": question})
                raw = await client.messages.with_raw_response.create(
                    model="claude", max_tokens=200, system=system, messages=messages, **extra
                )
                reply = await raw.parse()
                tally.cost_usd += float(raw.headers["x-podium-cost-usd"])
                tally.input_tokens += reply.usage.input_tokens
                tally.read += reply.usage.cache_read_input_tokens or 0
                tally.written += reply.usage.cache_creation_input_tokens or 0
                tally.output += reply.usage.output_tokens
                text = reply.content[0].text if reply.content[0].type == "text" else ""
                messages.append({"role": "assistant", "content": text})
    return tally


def report(tallies: dict[str, Tally], turns: int, system_words: int) -> str:
    base = tallies["unmarked"].cost_usd
    lines = [
        "# Prompt caching through Podium: one conversation, three ways",
        "",
        f"A {system_words:,}-token system prompt, then {turns} turns of a 40-token question",
        "and the answer, each request carrying the whole conversation; one Anthropic worker at",
        "Claude Sonnet 4's list prices (input $3, output $15, cache read $0.30, 5-minute cache",
        "write $3.75 per 1M tokens), Podium's fake Anthropic server keeping Anthropic's cache.",
        "Command: `.venv/bin/python -m benchmarks.prompt_caching "
        f"--turns {turns} --system-words {system_words}`.",
        "",
        "| setup | input (uncached) | cache reads | cache writes | output | cost (USD) "
        "| vs unmarked |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for setup in SETUPS:
        tally = tallies[setup]
        lines.append(
            f"| {setup} | {tally.input_tokens:,} | {tally.read:,} | {tally.written:,} | "
            f"{tally.output:,} | {tally.cost_usd:.4f} | {tally.cost_usd / base:.2f}x |"
        )
    return "\n".join(lines) + "\n"


async def main(turns: int, system_words: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        tallies = {
            setup: await conversation(setup, turns, system_words, Path(folder)) for setup in SETUPS
        }
    return report(tallies, turns, system_words)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--system-words", type=int, default=3000)
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    text = asyncio.run(main(args.turns, args.system_words))
    print(text, end="")
    if args.out:
        args.out.write_text(text)

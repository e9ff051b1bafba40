from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from podium.app import Podium, create_podium
from podium.config import PodiumConfig, parse_config
from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake  # type: ignore[misc]


async def ask_behind_a_cached_system_prompt(url: str, *questions: str) -> list[str]:
    """Ask worker ``claude`` each question, one at a time through the Anthropic SDK, behind one
    1,100-token system prompt marked for caching (past the fake's 1,024-token minimum): the
    first writes it, the rest read it. The trace id of each answer."""
    import anthropic

    manual = " ".join(["clause"] * 1100)
    system: Any = [{"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]
    trace_ids = []
    async with anthropic.AsyncAnthropic(base_url=url, api_key="x") as client:
        for question in questions:
            raw = await client.messages.with_raw_response.create(
                model="claude",
                max_tokens=20,
                system=system,
                messages=[{"role": "user", "content": question}],
            )
            trace_ids.append(raw.headers["x-podium-trace-id"])
    return trace_ids


def worker(name: str, provider: str, base_url: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "model": f"{name}-model",
        "base_url": base_url,
        "price": {"input": 1.0, "output": 2.0},
    }
    entry.update(extra)
    return entry


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., PodiumConfig]:
    def make(workers: list[dict[str, Any]], **settings: Any) -> PodiumConfig:
        return parse_config({"data_dir": str(tmp_path / "data"), "workers": workers, **settings})

    return make


HUMAN_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasks" / "human_eval"


def human_eval_rows() -> list[dict[str, str]]:
    """Every human_eval problem of the shared data (train, then dev)."""
    import json

    return [
        json.loads(line)
        for split in ("train", "dev")
        for line in (HUMAN_EVAL / f"{split}.jsonl").read_text().splitlines()
    ]


class Running:
    def __init__(self, podium: Podium, url: str) -> None:
        self.podium = podium
        self.url = url

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    async def ask(
        self, prompt: str, *, stream: bool, max_tokens: int | None = None
    ) -> tuple[str, dict[str, str], Any]:
        """One chat request to ``podium/auto`` through the OpenAI SDK: the answer's text (the
        stream's pieces joined), the response headers and the stored trace."""
        import openai

        async with openai.AsyncOpenAI(base_url=self.v1, api_key="unused", max_retries=0) as sdk:
            raw = await sdk.chat.completions.with_raw_response.create(
                model="podium/auto",
                messages=[{"role": "user", "content": prompt}],
                stream=stream,
                max_tokens=openai.NOT_GIVEN if max_tokens is None else max_tokens,
            )
            if stream:
                pieces = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]  # type: ignore[union-attr]
                text = "".join(pieces)
            else:
                text = raw.parse().choices[0].message.content or ""  # type: ignore[union-attr]
        headers = dict(raw.headers)
        await self.podium.gateway.drain_background()
        await self.podium.recorder.flush()
        return text, headers, await self.podium.store.get_trace(headers["x-podium-trace-id"])


@pytest.fixture
async def gateway(
    make_config: Callable[..., PodiumConfig],
) -> AsyncIterator[Callable[..., Any]]:
    """``async with gateway(workers, **settings) as running`` serves a Podium on loopback."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def run(workers: list[dict[str, Any]], **settings: Any) -> AsyncIterator[Running]:
        podium = create_podium(make_config(workers, **settings))
        async with serve(podium.app) as url:
            yield Running(podium, url)

    return run

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


class Running:
    def __init__(self, podium: Podium, url: str) -> None:
        self.podium = podium
        self.url = url

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


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

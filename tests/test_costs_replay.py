"""The target: on traffic replayed through the gateway, the projection of the architecture that
actually ran is within 5% of the cost Podium measured, and a projection onto another worker
is within 5% of what that worker then measured when the same traffic ran on it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.costs.prices import load_prices
from podium.costs.project import project
from podium.costs.workloads import read_traces, workloads_from_traces
from podium.store.traces import TraceRecord
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

TOLERANCE = 0.05


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI reads ./podium.yaml or $PODIUM_CONFIG when present: keep the tests' own."""
    monkeypatch.delenv("PODIUM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


WORDS = [
    "pump",
    "valve",
    "seal",
    "invoice",
    "order",
    "quote",
    "flange",
    "bearing",
    "motor",
    "sensor",
]


def _prompts(count: int) -> list[str]:
    rng = random.Random(8)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 120))) for _ in range(count)]


async def _replay(running: Any, prompts: list[str]) -> None:
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client:
        for index, prompt in enumerate(prompts):
            messages = [{"role": "user", "content": prompt}]
            if index % 3 == 0:
                stream = await client.chat.completions.create(
                    model="podium/auto",
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async for _ in stream:
                    pass
            else:
                await client.chat.completions.create(
                    model="podium/auto",
                    messages=messages,  # type: ignore[arg-type]
                )


def _traces(running: Any) -> list[TraceRecord]:
    return read_traces(running.podium.config.resolved_data_dir() / "podium.db")


def _within(projected: float | None, measured: float) -> None:
    assert projected is not None
    assert measured > 0
    assert abs(projected - measured) / measured <= TOLERANCE, (projected, measured)


async def test_projection_of_what_ran_matches_measured_cost(
    gateway: Any, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    workers = [
        worker("alpha", "openai", fake_openai.base_url, price={"input": 0.4, "output": 1.6}),
        worker("beta", "openai", fake_openai.base_url, price={"input": 3.0, "output": 15.0}),
    ]
    rules = {"rules": [{"name": "long", "match": {"min_tokens": 60}, "worker": "beta"}]}
    prompts = _prompts(45)
    async with gateway(workers, routing=rules) as running:
        await _replay(running, prompts)
        config = running.podium.config
    traces = _traces(running)
    assert len(traces) == len(prompts)
    assert {trace.worker for trace in traces} == {"alpha", "beta"}  # the rule split the traffic
    measured = sum(trace.cost_usd for trace in traces)

    table = load_prices([], config)
    workloads = workloads_from_traces(traces, group_by="route")
    assert {w.name for w in workloads.workloads} == {"rules:long", "direct"}
    result = project(workloads, table)
    as_run = result.get("as-run")
    assert as_run is not None and not as_run.priced.unpriced
    _within(as_run.priced.observed_usd, measured)

    # Project the same traffic onto beta alone, then run it on beta alone and measure.
    on_beta = project(workloads, table, frontier="beta").get("single-vendor")
    assert on_beta is not None
    async with gateway([workers[1]], data_dir=str(tmp_path / "beta")) as running_beta:
        await _replay(running_beta, prompts)
    measured_beta = sum(trace.cost_usd for trace in _traces(running_beta))
    _within(on_beta.priced.observed_usd, measured_beta)
    assert measured_beta > measured  # the cheaper worker mattered

    # The same store through the CLI, without the workers' prices: nothing is guessed.
    store = str(config.resolved_data_dir() / "podium.db")
    cli = CliRunner().invoke(
        main, ["costs", "project", "--workload", store, "--group-by", "route", "--json"]
    )
    assert cli.exit_code == 0, cli.output
    report = json.loads(cli.output)
    today = next(a for a in report["architectures"] if a["key"] == "as-run")
    assert set(today["unpriced_requests"]) == {"alpha", "beta"}
    assert any("no price for" in warning for warning in report["warnings"])

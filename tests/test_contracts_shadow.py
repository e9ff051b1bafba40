"""Shadow versions: run on live input off the hot path, recorded, never returned; promoted."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx

from podium.contracts.stats import contract_stats
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import GOOD, TICKET, fake_worker, running, write_contract


def two_versions(directory: Path) -> None:
    write_contract(directory, TICKET, filename="ticket@1.yaml")
    v2 = copy.deepcopy(TICKET)
    v2["version"] = "2"
    v2["instructions"] = "Version two. Decide the team for:\n{{ input.text }}"
    write_contract(directory, v2, filename="ticket@2.yaml")


async def test_a_shadow_version_runs_beside_the_current_one(tmp_path: Path) -> None:
    two_versions(tmp_path / "contracts")
    settings = {
        "contracts": {"dir": str(tmp_path / "contracts"), "shadow": {"versions": {"ticket": "2"}}}
    }
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with (
            running(tmp_path, workers, **settings) as (podium, url),
            httpx.AsyncClient() as client,
        ):
            reply = await client.post(
                f"{url}/v1/contracts/ticket", json={"input": {"text": "refund"}}
            )
            assert reply.status_code == 200
            assert reply.headers["x-podium-contract-version"] == "1"  # the caller sees v1 only
            shadow = podium.extras["contracts.shadow"]
            await shadow.drain()
            await shadow.calls.drain()
            await podium.recorder.flush()
            prompts = [r.body["messages"][-1]["content"] for r in fake.received]
            assert len(prompts) == 2 and any(p.startswith("Version two") for p in prompts)
            rows = {(r["version"], r["mode"]): r for r in await contract_stats(podium.store)}
            assert rows[("1", "live")]["calls"] == 1
            assert rows[("2", "shadow")]["calls"] == 1
            assert rows[("2", "shadow")]["agreement"] == 1.0  # same answer as the live call
            traces = await podium.store.list_traces(limit=10)
            assert sorted(t.ingress for t in traces) == ["contract", "contract-shadow"]


async def test_a_failing_shadow_never_reaches_the_caller(tmp_path: Path) -> None:
    two_versions(tmp_path / "contracts")
    settings = {
        "contracts": {"dir": str(tmp_path / "contracts"), "shadow": {"versions": {"ticket": "2"}}}
    }
    async with (
        FakeOpenAI(Behaviour(reply=GOOD)) as good,
        FakeOpenAI(Behaviour(reply="nope")) as bad,
    ):
        v2 = copy.deepcopy(TICKET)
        v2["version"] = "2"
        v2["policy"] = {"vendors": ["bad"]}
        write_contract(tmp_path / "contracts", v2, filename="ticket@2.yaml")
        workers = [
            fake_worker("w1", good.base_url),
            fake_worker(
                "w2",
                bad.base_url,
                profile={
                    "vendor": "bad",
                    "cleared": ["public", "internal", "confidential", "restricted"],
                },
            ),
        ]
        async with (
            running(tmp_path, workers, **settings) as (podium, url),
            httpx.AsyncClient() as client,
        ):
            reply = await client.post(f"{url}/v1/contracts/ticket", json={"input": {"text": "x"}})
            assert reply.status_code == 200 and reply.json()["worker"] == "w1"
            shadow = podium.extras["contracts.shadow"]
            await shadow.drain()
            await shadow.calls.drain()
            await podium.recorder.flush()
            rows = {(r["version"], r["mode"]): r for r in await contract_stats(podium.store)}
            assert rows[("2", "shadow")]["ok"] == 0

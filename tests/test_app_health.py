"""/health says the process serves; /ready says whether a worker can take a request now, so a
load balancer stops sending to a replica whose workers are all drained or failing."""

from __future__ import annotations

from typing import Any

import httpx

from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

CHECKER = {"name": "check", "provider": "examples", "model": "examples", "role": "check"}


async def test_ready_follows_draining_while_health_stays_up(gateway: Any) -> None:
    async with (
        FakeOpenAI() as fake,
        gateway([worker("alpha", "openai", fake.base_url), CHECKER]) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "workers": {"answering": 1, "serving": 1, "available": 1},
        }
        await client.post("/admin/workers/alpha/drain")
        # The checker cannot answer a request, so it does not make the replica ready.
        drained = await client.get("/ready")
        assert drained.status_code == 503
        assert drained.json()["reason"] == "every worker is draining or has been removed"
        assert (await client.get("/health")).status_code == 200
        await client.post("/admin/workers/alpha/undrain")
        assert (await client.get("/ready")).status_code == 200


async def test_ready_is_503_while_every_circuit_is_open(gateway: Any) -> None:
    failing = Behaviour()
    failing.fail(503, times=2)
    settings: dict[str, Any] = {
        "breaker": {"failures": 2, "reset_after": 60},
        "retry": {"attempts": 0},
    }
    async with (
        FakeOpenAI(failing) as fake,
        gateway([worker("alpha", "openai", fake.base_url, **settings)]) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        for _ in range(2):
            body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 503
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "every serving worker's circuit is open"
        assert ready.json()["workers"] == {"answering": 1, "serving": 1, "available": 0}

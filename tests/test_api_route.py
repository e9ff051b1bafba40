from __future__ import annotations

from typing import Any

import httpx
import openai

from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.routing_helpers import POOL

CLEARED = {"cleared": ["public", "internal", "confidential", "restricted"]}
ROUTING = {
    "chain": ["rules", "affinity", "semantic", "direct"],
    "rules": [{"name": "tools", "match": {"tools": True}, "worker": POOL[2]}],
    "semantic": {"use_default_routes": True},
}


def pool(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [worker(name, "openai", fake.base_url, profile=CLEARED) for name in POOL]


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "podium/auto", "messages": [{"role": "user", "content": text}], **extra}


async def test_route_returns_the_decision_and_runs_nothing(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(pool(fake_openai), routing=ROUTING) as running,
        httpx.AsyncClient(base_url=running.v1) as client,
    ):
        response = await client.post("/route", json=chat("What is 17 times 23?", stream=True))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "podium.route"
    decision = data["decision"]
    assert decision["route"] == "semantic:math" and decision["rule"] == "math"
    assert decision["router"] == "semantic"
    assert decision["workflow"]["steps"] == [
        {"worker": POOL[2], "role": "answer", "instruction": "", "access": "all"}
    ]
    assert decision["workflow"]["key"] is None  # one call: no workflow to name
    assert decision["candidates"][0] == {
        "worker": POOL[2],
        "score": decision["candidates"][0]["score"],
        "quality": None,
        "cost_usd": None,
        "label": "math",
    }
    assert "similarity" in decision["reason"]
    assert [(r["router"], r["outcome"]) for r in data["routers"]] == [
        ("rules", "no_opinion"),
        ("affinity", "no_opinion"),
        ("semantic", "decided"),
        ("direct", "not_asked"),
    ]
    assert data["eligible"] == POOL
    assert response.headers["x-podium-route"] == "semantic:math"
    assert fake_openai.received == []  # nothing was run, nothing spent


async def test_a_responses_api_body_is_routed_as_its_chat_twin(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    weather = {"type": "function", "name": "weather", "parameters": {"type": "object"}}
    async with (
        gateway(pool(fake_openai), routing=ROUTING) as running,
        httpx.AsyncClient(base_url=running.v1) as client,
    ):
        math = await client.post(
            "/route", json={"model": "podium/auto", "input": "What is 17 times 23?"}
        )
        tools = await client.post(
            "/route", json={"model": "podium/auto", "input": "hi", "tools": [weather]}
        )
        bad = await client.post("/route", json={"model": "podium/auto", "input": []})
    assert math.json()["decision"]["route"] == "semantic:math"
    assert tools.json()["decision"]["route"] == "rules:tools"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert fake_openai.received == []


async def test_explain_asks_every_router(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(pool(fake_openai), routing=ROUTING) as running,
        httpx.AsyncClient(base_url=running.v1) as client,
    ):
        response = await client.post(
            "/route?explain=true",
            json=chat("look this up", tools=[{"type": "function", "function": {"name": "f"}}]),
        )
    data = response.json()
    assert data["decision"]["route"] == "rules:tools"
    outcomes = {r["router"]: r["outcome"] for r in data["routers"]}
    assert outcomes["rules"] == "decided" and outcomes["direct"] == "decided"
    assert data["routers"][-1]["decision"]["workflow"]["steps"][0]["worker"] == POOL[0]


async def test_route_agrees_with_what_a_chat_request_gets(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    prompts = ["Write a SQL query for the top customers", "good morning!", "Who was Ada Lovelace?"]
    async with (
        gateway(pool(fake_openai), routing=ROUTING) as running,
        httpx.AsyncClient(base_url=running.v1) as http,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        for index, prompt in enumerate(prompts):
            headers = {"x-podium-session": f"s{index}"}
            planned = (await http.post("/route", json=chat(prompt), headers=headers)).json()
            raw = await client.chat.completions.with_raw_response.create(
                model="podium/auto",
                messages=[{"role": "user", "content": prompt}],
                extra_headers=headers,
            )
            assert raw.headers["x-podium-route"] == planned["decision"]["route"]
            assert (
                raw.headers["x-podium-worker"]
                == planned["decision"]["workflow"]["steps"][0]["worker"]
            )


async def test_bad_route_requests_get_openai_errors(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(pool(fake_openai), routing=ROUTING) as running,
        httpx.AsyncClient(base_url=running.v1) as client,
    ):
        not_json = await client.post("/route", content=b"{nope")
        no_messages = await client.post("/route", json={"model": "podium/auto"})
        unknown = await client.post("/route", json={**chat("hi"), "model": "no-such-model"})
        provider = await client.post("/route", json={**chat("hi"), "api_base": "http://evil"})
        wrong_method = await client.get("/route")
        image = [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://img.test/a.png"}},
        ]
        blind = await client.post(  # as the chat request would be: no worker here reads images
            "/route", json={"model": POOL[0], "messages": [{"role": "user", "content": image}]}
        )
    assert blind.json()["error"]["code"] == "unsupported_input"
    for response, status in (
        (not_json, 400),
        (no_messages, 400),
        (unknown, 404),
        (provider, 400),
        (wrong_method, 405),
        (blind, 400),
    ):
        assert response.status_code == status, response.text
        if status != 405:
            assert response.json()["error"]["message"]


async def test_huge_and_empty_prompts_route_within_budget(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(pool(fake_openai), routing=ROUTING) as running,
        httpx.AsyncClient(base_url=running.v1, timeout=30) as client,
    ):
        huge = await client.post("/route", json=chat("a" * 1_000_000))
        empty = await client.post("/route", json=chat(""))
    for response in (huge, empty):
        assert response.status_code == 200
        routers = response.json()["routers"]
        assert all(r["outcome"] in ("decided", "no_opinion", "not_asked") for r in routers)
    assert empty.json()["decision"]["router"] == "direct"

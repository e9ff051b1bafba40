"""A contract's routing hint: a named rule, a named router or a workflow template decides
who answers its calls; a hint that cannot serve a call hands it to the router chain and the
trace says why; a hint that names nothing stops Podium from starting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.app import Podium
from podium.config import ConfigError
from podium.store.traces import TraceRecord
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import GOOD, TICKET, build, fake_worker, running, write_contract

# A rule whose conditions no contract call meets: only a hint naming it uses it.
NEVER = {"name": "never", "match": {"keywords": ["no ticket says this"]}, "worker": "strong"}
US_ONLY = {"vendor": "fake", "region": "us", "cleared": ["public", "internal", "confidential"]}


@dataclass
class Pool:
    podium: Podium
    url: str
    weak: FakeOpenAI
    strong: FakeOpenAI

    async def call(self) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(
                f"{self.url}/v1/contracts/ticket", json={"input": {"text": "charged twice"}}
            )

    async def trace(self, reply: httpx.Response) -> TraceRecord:
        await self.podium.recorder.flush()
        trace = await self.podium.store.get_trace(reply.json()["trace_id"])
        assert trace is not None
        return trace


@asynccontextmanager
async def pool(
    tmp_path: Path,
    policy: dict[str, Any],
    *,
    weak_fails: bool = False,
    strong: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Pool]:
    """Two workers, ``weak`` (the default) and ``strong``, behind a contract with ``policy``."""
    write_contract(tmp_path / "contracts", {**TICKET, "policy": policy})
    first = Behaviour(reply=GOOD)
    if weak_fails:
        first.fail(503)
    async with FakeOpenAI(first) as weak, FakeOpenAI(Behaviour(reply=GOOD)) as good:
        workers = [
            fake_worker("weak", weak.base_url, quality_prior=0.3),
            fake_worker("strong", good.base_url, quality_prior=0.9, **(strong or {})),
        ]
        async with running(tmp_path, workers, default_worker="weak", **settings) as served:
            yield Pool(served[0], served[1], weak, good)


async def test_a_rule_hint_uses_its_target_whatever_its_conditions(tmp_path: Path) -> None:
    routing = {"rules": [NEVER]}
    async with pool(tmp_path, {"routing": {"rule": "never"}}, routing=routing) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "strong"
        assert p.weak.received == [] and len(p.strong.received) == 1
        trace = await p.trace(reply)
        assert trace.route == "rules:never"
        assert trace.reason == "contract ticket@1 names rule 'never'"


async def test_a_rule_hint_whose_worker_is_not_eligible_hands_over_and_says_why(
    tmp_path: Path,
) -> None:
    policy = {"routing": {"rule": "never"}, "regions": ["eu"]}
    async with pool(tmp_path, policy, strong={"profile": US_ONLY}, routing={"rules": [NEVER]}) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "weak" and p.strong.received == []
        trace = await p.trace(reply)
        assert trace.reason.startswith(
            "contract ticket@1: rule 'never' passed over "
            "(worker 'strong' is not eligible for this request); "
        )


async def test_a_router_hint_asks_that_router_first(tmp_path: Path) -> None:
    vip = {"type": "rules", "rules": [{"name": "all", "worker": "strong"}]}
    routing = {"routers": {"vip": vip}}
    async with pool(tmp_path, {"routing": {"router": "vip"}}, routing=routing) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "strong"
        assert (await p.trace(reply)).route == "vip:all"


async def test_a_router_hint_without_an_opinion_leaves_the_call_to_the_chain(
    tmp_path: Path,
) -> None:
    vip = {"type": "rules", "rules": [{**NEVER, "name": "rare"}]}
    routing = {"routers": {"vip": vip}}
    async with pool(tmp_path, {"routing": {"router": "vip"}}, routing=routing) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "weak"  # podium/auto: the default worker
        assert p.strong.received == []


async def test_a_workflow_hint_runs_its_template_over_the_named_workers(tmp_path: Path) -> None:
    policy = {"routing": {"workflow": {"template": "single", "workers": ["strong", "weak"]}}}
    async with pool(tmp_path, policy) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "strong" and p.weak.received == []
        trace = await p.trace(reply)
        assert trace.route == "contract"
        assert trace.reason == "contract ticket@1: workflow 'single' over strong, weak"


async def test_a_workflow_hint_escalates_from_its_worker_when_it_fails(tmp_path: Path) -> None:
    policy = {"routing": {"workflow": {"template": "single", "workers": ["weak"]}}}
    async with pool(tmp_path, policy, weak_fails=True) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "strong" and reply.json()["attempts"] == 2
        assert len(p.weak.received) == 1


async def test_a_workflow_hint_without_workers_uses_the_eligible_ones_weakest_first(
    tmp_path: Path,
) -> None:
    policy = {"routing": {"workflow": {"template": "cascade", "options": {"verify": False}}}}
    async with pool(tmp_path, policy) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        # The weak worker drafts; its draft is valid JSON of the right shape, so it stands.
        assert reply.json()["worker"] == "weak" and p.strong.received == []
        trace = await p.trace(reply)
        assert trace.reason == "contract ticket@1: workflow template 'cascade'"


async def test_a_template_the_eligible_workers_cannot_fill_hands_over(tmp_path: Path) -> None:
    policy = {"routing": {"workflow": {"template": "cascade"}}, "regions": ["eu"]}
    async with pool(tmp_path, policy, strong={"profile": US_ONLY}) as p:
        reply = await p.call()
        assert reply.status_code == 200, reply.text
        assert reply.json()["worker"] == "weak"
        trace = await p.trace(reply)
        assert "workflow 'cascade' passed over (template 'cascade' cannot be built" in trace.reason


CHECKER = {"name": "check", "provider": "examples", "model": "examples", "role": "check"}


@pytest.mark.parametrize(
    ("hint", "routing", "named"),
    [
        ({"rule": "nope"}, {"rules": [NEVER]}, "rule 'nope', which routing.rules does not have"),
        ({"rule": "never"}, {}, "(rules: none)"),
        ({"router": "nope"}, {}, "unknown router 'nope'"),
        ({"workflow": {"template": "nope"}}, {}, "workflow template 'nope' (known: "),
        (
            {"workflow": {"template": "single", "workers": ["nobody"]}},
            {},
            "'nobody' is not a configured worker",
        ),
        (
            {"workflow": {"template": "cascade", "workers": ["weak", "strong", "check"]}},
            {},
            "worker 'check' only checks drafts",
        ),
    ],
)
def test_a_hint_that_names_nothing_usable_stops_podium_from_starting(
    tmp_path: Path, hint: dict[str, Any], routing: dict[str, Any], named: str
) -> None:
    write_contract(tmp_path / "contracts", {**TICKET, "policy": {"routing": hint}})
    workers = [
        fake_worker("weak", "http://127.0.0.1:9"),
        fake_worker("strong", "http://127.0.0.1:9"),
        CHECKER,
    ]
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, workers, routing=routing)
    assert str(caught.value).startswith("contract ticket@1: policy.routing")
    assert named in str(caught.value)


async def test_the_route_endpoint_explains_a_contract_call_without_running_it(
    tmp_path: Path,
) -> None:
    policy = {"routing": {"rule": "never"}, "regions": ["eu"]}
    routing = {"rules": [NEVER]}
    strong = {"profile": US_ONLY}
    async with pool(tmp_path, policy, strong=strong, routing=routing) as p:
        async with httpx.AsyncClient() as client:
            body = {
                "model": "contract/ticket",
                "messages": [{"role": "user", "content": '{"text": "charged twice"}'}],
            }
            reply = await client.post(f"{p.url}/v1/route", json=body)
            assert reply.status_code == 200, reply.text
            explained = reply.json()
            assert explained["contract"] == "ticket@1"
            assert explained["eligible"] == ["weak"]
            assert explained["excluded"] == {"strong": "region 'us' is not allowed"}
            assert explained["decision"]["workflow"]["steps"][0]["worker"] == "weak"
            assert "rule 'never' passed over" in explained["decision"]["reason"]
            assert explained["planned_cost_usd"] > 0
            assert reply.headers["x-podium-route"] == explained["decision"]["route"]
            # Its errors are the call's: an input the schema refuses, an unknown contract.
            bad = await client.post(
                f"{p.url}/v1/route",
                json={**body, "messages": [{"role": "user", "content": '{"text": 3}'}]},
            )
            assert bad.status_code == 422
            assert bad.json()["error"]["code"] == "contract_input_invalid"
            unknown = await client.post(f"{p.url}/v1/route", json={**body, "model": "contract/x"})
            assert unknown.status_code == 404
            # Ordinary models still get the ordinary explanation.
            plain = await client.post(f"{p.url}/v1/route", json={**body, "model": "weak"})
            assert plain.status_code == 200 and "contract" not in plain.json()
        assert p.weak.received == [] and p.strong.received == []


def test_a_rule_matching_a_contract_that_is_not_loaded_stops_podium_from_starting(
    tmp_path: Path,
) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    workers = [fake_worker("weak", "http://127.0.0.1:9")]
    typo = {"name": "tickets", "match": {"contract": ["tickte"]}, "worker": "weak"}
    with pytest.raises(ConfigError, match="rule 'tickets' matches contract 'tickte'"):
        build(tmp_path, workers, routing={"rules": [typo]})
    vip = {"type": "rules", "rules": [typo]}
    with pytest.raises(
        ConfigError, match=r"contract 'tickte', which is not loaded \(contracts: ticket\)"
    ):
        build(tmp_path, workers, routing={"routers": {"vip": vip}})
    right = {**typo, "match": {"contract": ["ticket"]}}
    build(tmp_path, workers, routing={"rules": [right]})

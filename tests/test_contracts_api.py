"""POST /v1/contracts/{name}: input validation before spending, errors, listing, statistics."""

from __future__ import annotations

from pathlib import Path

import httpx

from podium.contracts.stats import contract_stats
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import GOOD, TICKET, fake_worker, running, write_contract


async def test_input_that_breaks_the_schema_is_422_with_its_path(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (podium, url), httpx.AsyncClient() as client:
            reply = await client.post(
                f"{url}/v1/contracts/ticket", json={"input": {"text": "hi", "priority": "high"}}
            )
            assert reply.status_code == 422
            error = reply.json()["error"]
            assert error["code"] == "contract_input_invalid"
            assert error["param"] == "input.priority"
            assert "$.priority: 'high' is not of type 'integer'" in error["message"]
            missing = await client.post(f"{url}/v1/contracts/ticket", json={"input": {}})
            assert (
                missing.status_code == 422
                and "'text' is a required property" in (missing.json()["error"]["message"])
            )
            assert fake.received == []  # nothing spent
            await podium.recorder.flush()
            trace = await podium.store.get_trace(error["trace_id"])
            assert trace is not None and trace.http_status == 422 and trace.contract == "ticket"


async def test_bad_requests_get_clear_errors(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (_, url), httpx.AsyncClient() as client:
            cases = [
                ("/v1/contracts/nope", {"input": {"text": "x"}}, 404, "contract_not_found"),
                (
                    "/v1/contracts/ticket",
                    {"input": {"text": "x"}, "version": "9"},
                    404,
                    "contract_version_not_found",
                ),
                ("/v1/contracts/ticket", {"text": "x"}, 400, None),
                ("/v1/contracts/ticket", {"input": "x"}, 422, "contract_input_invalid"),
                (
                    "/v1/contracts/ticket",
                    {"input": {"text": "x"}, "base_url": "http://evil"},
                    400,
                    "provider_fields_refused",
                ),
            ]
            for path, body, status, code in cases:
                reply = await client.post(f"{url}{path}", json=body)
                assert reply.status_code == status, (path, body, reply.text)
                assert reply.json()["error"].get("code") == code
            not_json = await client.post(f"{url}/v1/contracts/ticket", content=b"{")
            assert not_json.status_code == 400
            assert fake.received == []


async def test_listing_showing_and_statistics(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (podium, url), httpx.AsyncClient() as client:
            listed = (await client.get(f"{url}/v1/contracts")).json()["data"]
            assert [c["name"] for c in listed] == ["ticket"] and listed[0]["current"] == "1"
            shown = (await client.get(f"{url}/v1/contracts/ticket")).json()
            assert shown["output_schema"] == TICKET["output_schema"]
            for text in ("one", "two"):
                ok = await client.post(f"{url}/v1/contracts/ticket", json={"input": {"text": text}})
                assert ok.status_code == 200
                assert ok.headers["x-podium-contract-version"] == "1"
            await client.post(f"{url}/v1/contracts/ticket", json={"input": {}})
            await podium.recorder.flush()
            await podium.extras["contracts.shadow"].calls.drain()
            rows = await contract_stats(podium.store, contract="ticket")
            by_worker = {r["worker"]: r for r in rows}
            assert by_worker["w1"]["calls"] == 2 and by_worker["w1"]["ok"] == 2
            assert by_worker["w1"]["mean_cost_usd"] > 0
            assert by_worker[None]["ok"] == 0  # the refused input: a call with no worker
            stats = await client.get(f"{url}/admin/contracts/stats")
            assert stats.status_code == 200 and len(stats.json()["data"]) == 2


async def test_keys_scoped_to_contracts(tmp_path: Path) -> None:
    from tests.test_policy_keys import new_key

    write_contract(tmp_path / "contracts", TICKET)
    write_contract(tmp_path / "contracts", {**TICKET, "name": "other"})
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (podium, url), httpx.AsyncClient() as client:
            _, key = await new_key(podium, scopes=["contract:tick*"], rpm=10, budget_usd=5.0)
            auth = {"authorization": f"Bearer {key}"}
            body = {"input": {"text": "x"}}
            allowed = await client.post(f"{url}/v1/contracts/ticket", json=body, headers=auth)
            assert allowed.status_code == 200, allowed.text
            # The key's limits speak on a contract call as on a chat request.
            assert allowed.headers["x-ratelimit-remaining-requests"] == "9"
            assert 0 < float(allowed.headers["x-podium-budget-remaining-usd"]) < 5.0
            denied = await client.post(f"{url}/v1/contracts/other", json=body, headers=auth)
            assert denied.status_code == 403
            assert denied.json()["error"]["code"] == "scope_denied"
            anonymous = await client.post(f"{url}/v1/contracts/ticket", json=body)
            assert anonymous.status_code == 401  # keys exist now: one is required
            assert len(fake.received) == 1

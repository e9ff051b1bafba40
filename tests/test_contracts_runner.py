"""The contract call path: validated outputs, repair, escalation, policy and the trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import GOOD, TICKET, fake_worker, running, write_contract


async def trace_of(podium, trace_id):  # type: ignore[no-untyped-def]
    await podium.recorder.flush()
    return await podium.store.get_trace(trace_id)


async def test_a_valid_output_comes_back_with_its_trace(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (podium, url), httpx.AsyncClient() as client:
            reply = await client.post(
                f"{url}/v1/contracts/ticket", json={"input": {"text": "charged twice"}}
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["output"] == {"team": "billing", "confidence": 0.8}
            assert body["worker"] == "w1" and body["attempts"] == 1 and body["cost_usd"] > 0
            sent = fake.received[-1].body
            assert sent["response_format"]["type"] == "json_schema"
            assert sent["response_format"]["json_schema"]["schema"] == TICKET["output_schema"]
            assert "charged twice" in sent["messages"][-1]["content"]
            trace = await trace_of(podium, body["trace_id"])
            assert trace is not None and trace.contract == "ticket" and trace.status == "ok"
            assert trace.requested_model == "contract/ticket"


async def test_invalid_json_is_repaired_then_escalated_then_refused(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with (
        FakeOpenAI(Behaviour(reply="not json")) as weak,
        FakeOpenAI(Behaviour(reply='{"team": "sales"}')) as strong,
    ):
        workers = [
            fake_worker("weak", weak.base_url, quality_prior=0.3),
            fake_worker("strong", strong.base_url, quality_prior=0.9),
        ]
        async with running(tmp_path, workers, default_worker="weak") as (podium, url):
            async with httpx.AsyncClient() as client:
                reply = await client.post(
                    f"{url}/v1/contracts/ticket", json={"input": {"text": "hello"}}
                )
            assert reply.status_code == 502
            error = reply.json()["error"]
            assert error["code"] == "contract_output_invalid"
            attempts = error["attempts"]
            assert [a["worker"] for a in attempts] == ["weak", "weak", "strong", "strong"]
            assert "not JSON" in attempts[0]["problem"]
            assert "confidence" in attempts[2]["problem"]  # schema failure named
            # The repair carried the validation error back to the same worker.
            repair = weak.received[1].body["messages"]
            assert repair[-2]["role"] == "assistant" and "rejected" in repair[-1]["content"]
            trace = await trace_of(podium, error["trace_id"])
            assert trace is not None and trace.http_status == 502
            assert [s["role"] for s in trace.steps] == ["answer", "repair", "escalate", "repair"]
            assert all(s["status"] == "invalid" for s in trace.steps)


async def test_escalation_reaches_a_stronger_worker_that_answers(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with (
        FakeOpenAI(Behaviour(reply="not json")) as weak,
        FakeOpenAI(Behaviour(reply=GOOD)) as strong,
    ):
        workers = [
            fake_worker("weak", weak.base_url, quality_prior=0.3),
            fake_worker("strong", strong.base_url, quality_prior=0.9),
        ]
        async with running(tmp_path, workers, default_worker="weak") as (podium, url):
            async with httpx.AsyncClient() as client:
                reply = await client.post(
                    f"{url}/v1/contracts/ticket", json={"input": {"text": "hello"}}
                )
            body = reply.json()
            assert reply.status_code == 200 and body["worker"] == "strong"
            assert body["attempts"] == 3
            trace = await trace_of(podium, body["trace_id"])
            assert trace.worker == "strong"
            assert [s["status"] for s in trace.steps] == ["invalid", "invalid", "ok"]


async def test_a_policy_no_worker_satisfies_is_refused_before_spending(tmp_path: Path) -> None:
    contract = {**TICKET, "policy": {"vendors": ["nobody"], "regions": ["eu"]}}
    write_contract(tmp_path / "contracts", contract)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with running(tmp_path, workers) as (podium, url), httpx.AsyncClient() as client:
            reply = await client.post(
                f"{url}/v1/contracts/ticket", json={"input": {"text": "hello"}}
            )
            assert reply.status_code == 422
            error = reply.json()["error"]
            assert error["code"] == "contract_policy_unsatisfiable"
            assert "vendor 'fake' is not allowed" in error["message"]
            assert fake.received == []
            trace = await trace_of(podium, error["trace_id"])
            assert trace is not None and trace.http_status == 422 and trace.contract == "ticket"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"max_cost_usd": 0.0000001}, "above the maximum"),
        ({"quality_floor": 0.95}, "below the floor"),
    ],
)
async def test_cost_and_quality_limits_exclude_workers(
    tmp_path: Path, policy: dict[str, float], expected: str
) -> None:
    write_contract(tmp_path / "contracts", {**TICKET, "policy": policy})
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url, quality_prior=0.5)]
        async with running(tmp_path, workers) as (_, url):
            async with httpx.AsyncClient() as client:
                reply = await client.post(
                    f"{url}/v1/contracts/ticket", json={"input": {"text": "hello"}}
                )
            assert reply.status_code == 422
            assert expected in reply.json()["error"]["message"]
            assert fake.received == []


async def test_escalation_stops_at_the_cost_limit(tmp_path: Path) -> None:
    # One attempt on w1 fits the limit; a second (the repair) would not.
    write_contract(
        tmp_path / "contracts",
        {**TICKET, "policy": {"max_cost_usd": 0.015}},
    )
    async with FakeOpenAI(Behaviour(reply="not json")) as fake:
        workers = [fake_worker("w1", fake.base_url, price={"input": 100.0, "output": 0.0})]
        async with running(tmp_path, workers) as (_, url):
            async with httpx.AsyncClient() as client:
                reply = await client.post(
                    f"{url}/v1/contracts/ticket", json={"input": {"text": "hello"}}
                )
            error = reply.json()["error"]
            assert reply.status_code == 502 and "past its maximum" in error["message"]
            assert len(fake.received) == 1


async def test_the_evaluator_verdict_is_a_quality_signal(tmp_path: Path) -> None:
    contract = {**TICKET, "evaluator": {"kind": "regex", "field": "team", "pattern": "^bill"}}
    write_contract(tmp_path / "contracts", contract)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        settings = {"observe": {"capture_content": True}}
        async with running(tmp_path, [fake_worker("w1", fake.base_url)], **settings) as (
            podium,
            url,
        ):
            async with httpx.AsyncClient() as client:
                reply = await client.post(
                    f"{url}/v1/contracts/ticket", json={"input": {"text": "charged twice"}}
                )
            trace_id = reply.json()["trace_id"]
            await podium.recorder.flush()
            await podium.extras["feedback"].flush()
            from podium.routing.training import iter_training_examples

            examples = [e async for e in iter_training_examples(podium.store)]
            assert [(e.trace_id, e.worker, e.quality) for e in examples] == [(trace_id, "w1", 1.0)]


async def test_the_contracts_own_preamble_is_not_classified_but_its_input_is(
    tmp_path: Path,
) -> None:
    # The tagger reads "JSON Schema" in the preamble as a street address; that once made
    # every contract call confidential.
    write_contract(tmp_path / "contracts", TICKET)
    async with (
        FakeOpenAI(Behaviour(reply=GOOD)) as fake,
        running(tmp_path, [fake_worker("w1", fake.base_url)]) as (podium, url),
    ):
        async with httpx.AsyncClient() as client:
            plain, private = [
                await client.post(f"{url}/v1/contracts/ticket", json={"input": {"text": t}})
                for t in ("charged twice", "charged twice, write to ana@example.com")
            ]
        plain_trace = await trace_of(podium, plain.json()["trace_id"])
        private_trace = await trace_of(podium, private.json()["trace_id"])
        assert plain_trace.data_class == "public"
        assert not any("pii=" in action for action in plain_trace.policy_actions)
        assert private_trace.data_class == "confidential"
        assert any("pii=EMAIL" in action for action in private_trace.policy_actions)
        # The schema reached the worker as written.
        assert "JSON Schema" in fake.received[0].body["messages"][0]["content"]


async def test_the_quality_floor_reads_the_learned_routers_prediction_for_the_input(
    tmp_path: Path,
) -> None:
    from podium.routing.artifacts import ArtifactStore
    from tests.learned_helpers import hard_prompt, measured_cascade

    # The artifact's cheap worker is good on easy prompts only; its prior claims otherwise.
    store = ArtifactStore(tmp_path / "data" / "routers")
    store.promote(store.save(measured_cascade()).number)
    contract = {
        **TICKET,
        "instructions": "{{ input.text }}",
        "policy": {"quality_floor": 0.5},
        "examples": [],
    }
    write_contract(tmp_path / "contracts", contract)
    hard = {"input": {"text": hard_prompt(3)}}
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("cheap", fake.base_url, quality_prior=0.99)]
        for chain in (["learned", "direct"], ["direct"]):
            async with (
                running(tmp_path, workers, routing={"chain": chain}) as (_, url),
                httpx.AsyncClient() as client,
            ):
                reply = await client.post(f"{url}/v1/contracts/ticket", json=hard)
            if "learned" in chain:
                assert reply.status_code == 422
                assert "predicted quality 0.1" in reply.json()["error"]["message"]
                assert "below the floor 0.5" in reply.json()["error"]["message"]
            else:  # no learned router: the prior stands
                assert reply.status_code == 200, reply.text
        assert len(fake.received) == 1


@pytest.mark.parametrize(
    ("schema", "reply", "text", "status", "output"),
    [
        # A pattern the value meets and its placeholder does not: accepted, as the caller gets it.
        (
            {"type": "string", "pattern": "@"},
            '{"field": "<EMAIL_1>"}',
            "Please contact jane.doe@example.com about the order.",
            200,
            {"field": "jane.doe@example.com"},
        ),
        # A length the placeholder keeps and the value breaks: refused, without the value.
        (
            {"type": "string", "maxLength": 12},
            '{"field": "<PERSON_1>"}',
            "The account holder is Bartholomew Richardson.",
            502,
            None,
        ),
        # A value with a line break, back in a JSON string: escaped, so the output parses.
        (
            {"type": "string"},
            '{"field": "<ADDRESS_1>"}',
            "Ship it to 221 Baker Street\nLondon NW1 6XE please.",
            200,
            {"field": "221 Baker Street\nLondon NW1 6XE"},
        ),
    ],
)
async def test_a_pseudonymised_call_is_judged_by_the_output_the_caller_gets(
    tmp_path: Path, schema: Any, reply: str, text: str, status: int, output: Any
) -> None:
    contract = {
        **TICKET,
        "name": "extract",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "output_schema": {
            "type": "object",
            "properties": {"field": schema},
            "required": ["field"],
            "additionalProperties": False,
        },
        "instructions": "Extract.\n{{ input.text }}",
        "examples": [],
        "evaluator": {"kind": "schema"},
        "policy": {"max_attempts": 2},
    }
    write_contract(tmp_path / "contracts", contract)
    cleared = {"vendor": "fake", "cleared": ["public"], "pseudonymised": ["confidential"]}
    async with (
        FakeOpenAI(Behaviour(reply=reply)) as fake,
        running(tmp_path, [fake_worker("vendor", fake.base_url, profile=cleared)]) as (_, url),
        httpx.AsyncClient(timeout=30) as client,
    ):
        answer = await client.post(f"{url}/v1/contracts/extract", json={"input": {"text": text}})
    assert answer.status_code == status, answer.text
    if output is not None:
        assert answer.json()["output"] == output
    else:  # the refusal names the path, never the value
        assert "$.field" in answer.text and "Richardson" not in answer.text
    assert all("Richardson" not in json.dumps(r.body) for r in fake.received)

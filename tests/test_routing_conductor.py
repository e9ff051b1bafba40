"""The Conductor socket: a planner worker writes the workflow; Podium validates it, runs it, and
falls back (saying why) when the plan is unusable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from podium.config import ConfigError, WorkerConfig
from podium.context import Caller
from podium.routing.base import RouteContext
from podium.routing.conductor import parse_plan, refuse_steps_that_cannot_answer
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.types import ChatRequest, ImagePart, Message, TextPart
from podium.workflow import WorkflowError
from tests.conftest import worker
from tests.routing_helpers import routing_for

VALID = json.dumps(
    {
        "steps": [
            {"worker": "solver", "instruction": "Work out the answer.", "access": "none"},
            {"worker": "writer", "instruction": "Write the final answer.", "access": [0]},
        ]
    }
)
STEP = {"worker": "solver", "instruction": "x", "access": "all"}
INVALID = {
    "six steps": json.dumps({"steps": [STEP] * 6}),
    "unknown worker": json.dumps({"steps": [{**STEP, "worker": "gpt-17"}]}),
    "not JSON": "Sure! Here is my plan: ask the solver.",
    "forward access": json.dumps({"steps": [{**STEP, "access": [1]}, STEP]}),
    "no steps": json.dumps({"steps": []}),
}


def test_parse_plan_accepts_the_conductor_format() -> None:
    workflow = parse_plan(VALID, {"solver", "writer"})
    assert workflow.workers == ["solver", "writer"]
    assert workflow.steps[1].access == [0] and workflow.steps[1].role == "answer"
    assert workflow.template == "conductor"


@pytest.mark.parametrize("name", sorted(INVALID))
def test_parse_plan_refuses_bad_plans(name: str) -> None:
    with pytest.raises(WorkflowError):
        parse_plan(INVALID[name], {"solver", "writer"})


async def conduct(
    gateway: Callable[..., Any], plan: str, *, stream: bool = False
) -> tuple[str, dict[str, str], Any, FakeOpenAI]:
    async with (
        FakeOpenAI(Behaviour(reply=plan)) as planner,
        FakeOpenAI(Behaviour(reply="solver's notes")) as solver,
        FakeOpenAI(Behaviour(reply="the final answer")) as writer,
    ):
        workers = [
            worker("planner", "openai", planner.base_url),
            worker("solver", "openai", solver.base_url),
            worker("writer", "openai", writer.base_url),
        ]
        routing = {
            "chain": ["conductor", "direct"],
            "timeout_ms": 20_000,
            "routers": {"conductor": {"planner": "planner", "notes": {"writer": "good prose"}}},
        }
        async with gateway(workers, routing=routing, default_worker="writer") as running:
            text, headers, trace = await running.ask(
                "why is the sky blue? answer briefly.", stream=stream
            )
        return text, headers, trace, planner


@pytest.mark.parametrize("stream", [False, True])
async def test_a_valid_plan_runs_and_every_step_is_traced(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, planner = await conduct(gateway, VALID, stream=stream)
    assert text == "the final answer"
    assert headers["x-podium-route"] == "conductor"
    body = planner.received[0].body
    schema = body["response_format"]["json_schema"]["schema"]
    enum = schema["properties"]["steps"]["items"]["properties"]["worker"]["enum"]
    assert set(enum) == {"planner", "solver", "writer"}
    prompt = str(body["messages"])
    assert "why is the sky blue? answer briefly." in prompt and "good prose" in prompt
    assert [(s["role"], s["worker"]) for s in trace.steps] == [
        ("plan", "planner"),
        ("propose", "solver"),
        ("answer", "writer"),
    ]
    assert trace.steps[0]["cost_usd"] > 0  # the planner's call is paid for and recorded
    assert "planned by 'planner'" in (trace.reason or "")


@pytest.mark.parametrize("name", ["six steps", "unknown worker", "not JSON"])
async def test_an_invalid_plan_falls_back_and_says_why(
    gateway: Callable[..., Any], name: str
) -> None:
    text, headers, trace, _ = await conduct(gateway, INVALID[name])
    assert text == "the final answer"  # the default worker answered
    assert "invalid plan" in (trace.reason or "")
    # no learned artifact is trained here: the learned fallback fails and that is said too
    assert "fallback router failed" in (trace.reason or "")
    assert headers["x-podium-worker"] == "writer"
    assert trace.steps[0]["role"] == "plan"


@pytest.mark.slow
async def test_the_embedded_smollm2_plans_and_the_decision_is_valid(
    gateway: Callable[..., Any],
) -> None:
    async with FakeOpenAI(Behaviour(reply="fake answer")) as fake:
        workers = [
            {
                "name": "smollm2-135m",
                "provider": "local",
                "model": "SmolLM2-135M-Instruct",
                "options": {"model": "smollm2-135m"},
                "context_window": 2048,
                "timeouts": {"first_byte": 300, "total": 600},
            },
            worker("helper", "openai", fake.base_url),
        ]
        routing = {
            "chain": ["conductor", "direct"],
            "timeout_ms": 120_000,
            "routers": {"conductor": {"planner": "smollm2-135m", "max_tokens": 200}},
        }
        async with gateway(workers, routing=routing, default_worker="helper") as running:
            from podium.context import Caller
            from podium.routing.base import RouteContext
            from podium.types import ChatRequest, Message, TextPart

            request = ChatRequest(
                model="podium/auto", messages=[Message("user", [TextPart("What is 17 x 23?")])]
            )
            context = RouteContext(caller=Caller(), eligible=list(running.podium.config.workers))
            decision = await running.podium.routing.decide(request, context)
            decision.workflow.validate({"smollm2-135m", "helper"})
            if decision.router == "conductor":
                assert decision.attempts and decision.attempts[0].role == "plan"
                assert "planned by" in decision.reason or "invalid plan" in decision.reason
            else:
                # On a starved CPU the planner can overrun the routing budget: the decision is
                # still valid, and it says why the Conductor did not decide.
                assert "conductor" in decision.reason


def test_a_plan_giving_a_step_to_a_worker_that_cannot_answer_is_invalid() -> None:
    pool = [
        WorkerConfig.model_validate(
            {
                "name": name,
                "provider": "openai",
                "model": name,
                "base_url": "http://127.0.0.1:9/v1",
                "context_window": window,
                "capabilities": ["streaming", *extra],
            }
        )
        for name, window, extra in (("solver", 1000, ()), ("writer", 100_000, ("vision",)))
    ]
    context = RouteContext(caller=Caller(), eligible=pool)
    workflow = parse_plan(VALID, {"solver", "writer"})
    short = ChatRequest(model="podium/auto", messages=[Message("user", [TextPart("hi")])])
    refuse_steps_that_cannot_answer(workflow, short, context)  # both can answer: a valid plan
    long = ChatRequest(model="podium/auto", messages=[Message("user", [TextPart("x" * 60_000)])])
    with pytest.raises(WorkflowError, match="step 0: worker 'solver' has a 1000-token context"):
        refuse_steps_that_cannot_answer(workflow, long, context)
    image = ChatRequest(
        model="podium/auto",
        messages=[
            Message("user", [TextPart("hi"), ImagePart(data="AAAA", media_type="image/png")])
        ],
    )
    with pytest.raises(WorkflowError, match="step 0: worker 'solver' reads no images"):
        refuse_steps_that_cannot_answer(workflow, image, context)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"planner": "ghost"}, "conductor: planner 'ghost' is not a configured worker"),
        ({"fallback": "ghost"}, "conductor: fallback: unknown router 'ghost'"),
        ({"max_steps": 9}, "conductor: max_steps: "),
    ],
)
def test_a_conductor_that_names_nothing_stops_podium_from_starting(
    section: dict[str, Any], message: str
) -> None:
    # Before, these started: every plan fell back to the default worker, request by request.
    routing = {"chain": ["conductor", "direct"], "routers": {"conductor": section}}
    with pytest.raises(ConfigError, match=re.escape(message)):
        routing_for(routing)

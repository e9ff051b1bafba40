"""Workflow templates, cascade escalation in the executor (the final step streams either way,
the trace records every step), and the workflow router's choice among templates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from podium.config import parse_config
from podium.context import Caller
from podium.eval.data import read_csv
from podium.plugins import load_plugins
from podium.routing.artifacts import ArtifactStore
from podium.routing.base import RouteContext
from podium.routing.chain import build_routing
from podium.routing.learned import fit
from podium.routing.learned_router import Estimate
from podium.routing.templates import TEMPLATES
from podium.routing.workflow_router import SCORED, WorkflowConfig, options_for
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.types import ChatRequest, Message, TextPart
from podium.workflow import MAX_STEPS, WorkflowError
from tests.conftest import worker
from tests.learned_helpers import easy_prompt, hard_prompt, write_csv


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_is_a_valid_conductor_workflow(name: str) -> None:
    workers = ["a", "b", "c"]
    workflow = TEMPLATES[name](workers, {})
    workflow.validate(set(workers))
    assert 1 <= len(workflow.steps) <= MAX_STEPS
    assert workflow.template == name


def test_template_shapes() -> None:
    cascade = TEMPLATES["cascade"](["cheap", "strong"], {})
    assert [s.role for s in cascade.steps] == ["draft", "check", "escalate"]
    assert cascade.steps[1].access == [0] and cascade.steps[2].access == "none"
    assert [s.role for s in TEMPLATES["cascade"](["a", "b"], {"verify": False}).steps] == [
        "draft",
        "escalate",
    ]
    repair = TEMPLATES["cascade"](["cheap", "strong", "checker"], {"repair": True})
    assert [(s.role, s.worker) for s in repair.steps] == [
        ("draft", "cheap"),
        ("check", "checker"),
        ("escalate", "strong"),
        ("check", "checker"),
        ("repair", "strong"),
    ]
    assert repair.steps[3].access == [2] and repair.steps[4].access == [2, 3]
    with pytest.raises(WorkflowError, match="repair needs the check"):
        TEMPLATES["cascade"](["a", "b"], {"repair": True, "verify": False})
    fan = TEMPLATES["fanout"](["a", "b", "c", "d", "s"], {})
    assert [s.role for s in fan.steps] == ["propose"] * 4 + ["synthesise"]
    assert len(TEMPLATES["fanout"](["a"], {"k": 3}).steps) == 4
    with pytest.raises(WorkflowError):
        TEMPLATES["fanout"](["a", "b", "c", "d", "e", "s"], {})
    with pytest.raises(WorkflowError):
        TEMPLATES["cascade"](["only-one"], {})


async def run_cascade(
    gateway: Callable[..., Any], verdict: str, draft: str = "the cheap draft", *, stream: bool
) -> tuple[str, dict[str, str], Any, list[FakeOpenAI]]:
    async with (
        FakeOpenAI(Behaviour(reply=draft)) as cheap,
        FakeOpenAI(Behaviour(reply="the strong answer")) as strong,
        FakeOpenAI(Behaviour(reply=verdict)) as checker,
    ):
        fakes = [cheap, strong, checker]
        workers = [
            worker("cheap", "openai", cheap.base_url, price={"input": 0.1, "output": 0.1}),
            worker("strong", "openai", strong.base_url, price={"input": 10.0, "output": 30.0}),
            worker("checker", "openai", checker.base_url, price={"input": 0.1, "output": 0.1}),
        ]
        routing = {
            "rules": [
                {
                    "name": "everything",
                    "workflow": {"template": "cascade", "workers": ["cheap", "strong", "checker"]},
                }
            ]
        }
        async with gateway(workers, routing=routing) as running:
            text, headers, trace = await running.ask("What is 2 + 2?", stream=stream)
        return text, headers, trace, fakes


@pytest.mark.parametrize("stream", [False, True])
async def test_an_accepted_draft_is_the_answer(gateway: Callable[..., Any], stream: bool) -> None:
    text, headers, trace, (_cheap, strong, checker) = await run_cascade(
        gateway, '{"verdict": "accept"}', stream=stream
    )
    assert text == "the cheap draft"
    assert headers["x-podium-worker"] == "cheap"
    assert len(strong.received) == 0  # never escalated
    check_body = checker.received[0].body
    assert check_body["response_format"]["type"] == "json_schema"  # constrained verdict
    assert "the cheap draft" in str(check_body["messages"])
    roles = [(s["role"], s["worker"]) for s in trace.steps]
    assert roles == [("draft", "cheap"), ("check", "checker"), ("accept", "cheap")]
    assert trace.steps[0]["cost_usd"] > 0 and trace.steps[2]["cost_usd"] == 0
    assert trace.worker == "cheap"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_rejected_draft_escalates_and_the_strong_answer_streams(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, (_cheap, strong, _checker) = await run_cascade(
        gateway, '{"verdict": "reject", "reason": "wrong"}', stream=stream
    )
    assert text == "the strong answer"
    assert headers["x-podium-worker"] == "strong"
    assert len(strong.received) == 1
    # the strong worker answers the request itself, not the draft
    assert "the cheap draft" not in str(strong.received[0].body["messages"])
    roles = [(s["role"], s["worker"]) for s in trace.steps]
    assert roles == [("draft", "cheap"), ("check", "checker"), ("escalate", "strong")]
    assert all(s["input_tokens"] > 0 and s["cost_usd"] > 0 for s in trace.steps)
    assert trace.cost_usd == pytest.approx(sum(s["cost_usd"] for s in trace.steps))


async def test_an_unreadable_verdict_or_a_refusal_escalates(gateway: Callable[..., Any]) -> None:
    text, *_ = await run_cascade(gateway, "hmm, not sure", stream=False)
    assert text == "the strong answer"
    text, *_ = await run_cascade(
        gateway, '{"verdict": "accept"}', draft="I'm sorry, I cannot help.", stream=False
    )
    assert text == "the strong answer"


def estimate(name: str, quality: float, cost: float) -> Estimate:
    from podium.config import WorkerConfig

    return Estimate(WorkerConfig(name=name, provider="openai", model=name), quality, cost, True)


def test_template_scores_follow_the_documented_formulas() -> None:
    cheap, strong = estimate("cheap", 0.6, 0.001), estimate("strong", 0.9, 0.01)
    config = WorkflowConfig(templates=["single", "cascade"], check_reliability=1.0, check_cost=0.0)
    options = {(o.template, tuple(o.workers)): o for o in options_for([cheap, strong], config)}
    cascade = options[("cascade", ("cheap", "strong"))]
    assert cascade.quality == pytest.approx(1 - 0.4 * 0.1)  # a perfect check
    assert cascade.cost == pytest.approx(0.001 + 0.4 * 0.01)  # escalates only the bad drafts
    assert options[("single", ("strong",))].quality == 0.9
    everything = WorkflowConfig(templates=list(SCORED))
    kinds = {o.template for o in options_for([cheap, strong], everything)}
    assert kinds == set(SCORED)


async def test_the_workflow_router_picks_a_template_per_request(tmp_path: Path) -> None:
    data = read_csv(write_csv(tmp_path / "train.csv", rows=200))
    model = fit(data.prompts, data.quality, data.cost, data.models)
    store = ArtifactStore(tmp_path / "routers")
    store.promote(store.save(model).number)
    workers = [
        {"name": n, "provider": "openai", "model": n, "base_url": "http://127.0.0.1:9"}
        for n in ("cheap", "strong", "middling")
    ]
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "workers": workers,
            "routing": {
                "chain": ["workflow"],
                "routers": {"workflow": {"templates": ["single", "cascade"], "lam": 10}},
            },
        }
    )
    routing = build_routing(config, load_plugins(third_party=False))
    context = RouteContext(caller=Caller(), eligible=list(config.workers))
    seen = set()
    for text in (easy_prompt(3), hard_prompt(4)):
        request = ChatRequest(model="podium/auto", messages=[Message("user", [TextPart(text)])])
        decision = await routing.decide(request, context)
        assert decision.router == "workflow"
        decision.workflow.validate({"cheap", "strong", "middling"})
        assert decision.workflow.template in decision.reason
        seen.add(decision.workflow.template)
    easy = await routing.decide(
        ChatRequest(model="podium/auto", messages=[Message("user", [TextPart(easy_prompt(3))])]),
        context,
    )
    assert easy.workflow.workers[0] == "cheap"
    assert seen <= {"single", "cascade"}


@pytest.mark.parametrize(("template", "why"), [("program", "it has no prior"), ("nope", "unknown")])
def test_the_workflow_router_refuses_a_template_it_cannot_score(template: str, why: str) -> None:
    from podium.routing.config import RoutingConfigError
    from podium.routing.workflow_router import workflow_config

    with pytest.raises(
        RoutingConfigError, match=f"'{template}' cannot be scored from priors \\({why}"
    ):
        workflow_config({"templates": ["single", template]})


def test_a_cascade_draft_may_carry_its_own_subtask() -> None:
    from podium.routing.templates import cascade
    from podium.workflow import WorkflowError

    terse = "Reply with the code only."
    workflow = cascade(["cheap", "strong", "judge"], {"draft_instruction": terse})
    assert (workflow.steps[0].role, workflow.steps[0].instruction) == ("draft", terse)
    assert workflow.steps[2].instruction == ""  # the escalation answers the request as asked
    with pytest.raises(WorkflowError, match="draft_instruction must be text"):
        cascade(["cheap", "strong"], {"draft_instruction": 3})

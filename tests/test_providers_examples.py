"""The ``examples`` checker: a cascade's check step that runs the draft against the docstring
examples of the request, and a worker no router or caller can ask for an answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from podium.config import ConfigError, parse_config
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.workflow import Step, Workflow, WorkflowError
from tests.conftest import worker
from tests.test_code_examples import PROMPT, RIGHT, WRONG

CHECKER = {
    "name": "examples",
    "provider": "examples",
    "model": "docstring-examples",
    "role": "check",
    "price": {"input": 0.0, "output": 0.0},
    "options": {"timeout_s": 10},
}
CODE_RULE = {
    "name": "code-with-examples",
    "match": {"model": ["podium/auto"], "regex": [r"(?m)^\s*>>> "]},
    "workflow": {"template": "cascade", "workers": ["cheap", "strong", "examples"]},
}


async def ask(
    gateway: Callable[..., Any],
    draft: str,
    prompt: str,
    *,
    stream: bool,
    strong_answer: str = "the strong answer",
    repair: bool = False,
) -> tuple[str, dict[str, str], Any, FakeOpenAI]:
    rule = CODE_RULE
    if repair:
        rule = {**CODE_RULE, "workflow": {**CODE_RULE["workflow"], "options": {"repair": True}}}
    async with (
        FakeOpenAI(Behaviour(reply=draft)) as cheap,
        FakeOpenAI(Behaviour(reply=strong_answer)) as strong,
    ):
        workers = [
            worker("cheap", "openai", cheap.base_url, price={"input": 0.1, "output": 0.1}),
            worker("strong", "openai", strong.base_url, price={"input": 10.0, "output": 30.0}),
            CHECKER,
        ]
        async with gateway(workers, routing={"rules": [rule]}) as running:
            text, headers, trace = await running.ask(prompt, stream=stream)
        return text, headers, trace, strong


@pytest.mark.parametrize("stream", [False, True])
async def test_a_draft_that_passes_its_examples_is_the_answer(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, strong = await ask(gateway, RIGHT, PROMPT, stream=stream)
    assert text == RIGHT and headers["x-podium-worker"] == "cheap"
    assert not strong.received  # never escalated
    steps = [(s["role"], s["worker"]) for s in trace.steps]
    assert steps == [("draft", "cheap"), ("check", "examples"), ("accept", "cheap")]
    check = trace.steps[1]
    assert check["cost_usd"] == 0 and check["input_tokens"] == 0 and check["status"] == "ok"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_draft_that_fails_its_examples_escalates(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, strong = await ask(gateway, WRONG, PROMPT, stream=stream)
    assert text == "the strong answer" and headers["x-podium-worker"] == "strong"
    assert len(strong.received) == 1
    assert "sum(operations)" not in str(strong.received[0].body["messages"])  # not the draft
    steps = [(s["role"], s["worker"]) for s in trace.steps]
    assert steps == [("draft", "cheap"), ("check", "examples"), ("escalate", "strong")]


@pytest.mark.parametrize("stream", [False, True])
async def test_with_repair_a_strong_answer_that_passes_is_the_answer(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, strong = await ask(
        gateway, WRONG, PROMPT, stream=stream, strong_answer=RIGHT, repair=True
    )
    assert text == RIGHT and headers["x-podium-worker"] == "strong"
    assert len(strong.received) == 1  # no repair needed
    steps = [(s["role"], s["worker"]) for s in trace.steps]
    assert steps == [
        ("draft", "cheap"),
        ("check", "examples"),
        ("escalate", "strong"),
        ("check", "examples"),
        ("accept", "strong"),
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_with_repair_a_failing_strong_answer_is_answered_again_with_the_reason(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, strong = await ask(
        gateway, WRONG, PROMPT, stream=stream, strong_answer=WRONG, repair=True
    )
    assert text == WRONG and headers["x-podium-worker"] == "strong"
    assert len(strong.received) == 2
    repair_request = str(strong.received[1].body["messages"])
    assert "sum(operations) < 0" in repair_request  # its own answer
    assert "below_zero([1, 2, -4, 5]) gave False; expected True" in repair_request  # and why
    assert [s["role"] for s in trace.steps] == ["draft", "check", "escalate", "check", "repair"]


async def test_requests_without_examples_are_not_sent_to_the_cascade(
    gateway: Callable[..., Any],
) -> None:
    text, headers, trace, _ = await ask(gateway, "Paris.", "Capital of France?", stream=False)
    assert text == "Paris." and headers["x-podium-worker"] == "cheap"
    assert [s["role"] for s in trace.steps] == ["answer"]


async def test_no_caller_and_no_router_can_ask_the_checker_for_an_answer(
    gateway: Callable[..., Any],
) -> None:
    async with FakeOpenAI(Behaviour(reply="ok")) as only:
        workers = [worker("answerer", "openai", only.base_url), CHECKER]
        async with (
            gateway(workers) as running,
            openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
        ):
            listed = [model.id for model in (await client.models.list()).data]
            assert "examples" not in listed and "answerer" in listed
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(
                    model="examples", messages=[{"role": "user", "content": "hi"}]
                )
            auto = await client.chat.completions.with_raw_response.create(
                model="podium/auto", messages=[{"role": "user", "content": "hi"}]
            )
            assert auto.headers["x-podium-worker"] == "answerer"
            assert running.podium.config.default_worker == "answerer"


def test_only_a_check_step_may_name_a_checker() -> None:
    check = Workflow([Step("a", role="draft"), Step("examples", role="check"), Step("b")])
    check.validate({"a", "b"}, frozenset({"examples"}))
    answer = Workflow([Step("examples", role="answer")])
    with pytest.raises(WorkflowError, match="not eligible"):
        answer.validate({"a", "b"}, frozenset({"examples"}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"default_worker": "examples"}, "default_worker: 'examples' only checks"),
        ({"aliases": {"judge": "examples"}}, "aliases.judge: 'examples' only checks"),
    ],
)
def test_a_checker_cannot_be_the_default_or_an_alias(
    settings: dict[str, Any], message: str
) -> None:
    workers = [worker("a", "openai", "http://127.0.0.1:9"), CHECKER]
    with pytest.raises(ConfigError, match=message):
        parse_config({"workers": workers, **settings})
    with pytest.raises(ConfigError, match="none can answer"):
        parse_config({"workers": [CHECKER]})


async def test_a_cost_ceiling_never_downgrades_a_plan_to_the_checker(
    gateway: Callable[..., Any],
) -> None:
    async with (
        FakeOpenAI(Behaviour(reply=RIGHT)) as cheap,
        FakeOpenAI(Behaviour(reply="the strong answer")) as strong,
    ):
        workers = [
            worker("cheap", "openai", cheap.base_url, price={"input": 0.1, "output": 0.2}),
            worker("strong", "openai", strong.base_url, price={"input": 100.0, "output": 400.0}),
            CHECKER,
        ]
        settings = {"routing": {"rules": [CODE_RULE]}, "policy": {"cost": {"max_cost_usd": 0.01}}}
        async with gateway(workers, **settings) as running:
            text, headers, trace = await running.ask(PROMPT, stream=False)
    assert headers["x-podium-worker"] == "cheap" and text == RIGHT
    assert [(s["role"], s["worker"]) for s in trace.steps] == [("answer", "cheap")]


def test_the_route_command_shows_the_checker_apart(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from podium.cli import main

    config = tmp_path / "podium.yaml"
    workers = [worker("cheap", "openai", "http://127.0.0.1:9"), CHECKER]
    workers.insert(1, worker("strong", "openai", "http://127.0.0.1:9"))
    config.write_text(yaml.safe_dump({"workers": workers, "routing": {"rules": [CODE_RULE]}}))
    runner = CliRunner()
    explained = runner.invoke(main, ["route", PROMPT, "--config", str(config), "--explain"])
    assert explained.exit_code == 0, explained.output
    assert "eligible workers: cheap, strong (" in explained.output
    assert "checkers (role: check, for check steps only): examples" in explained.output
    assert "[draft] cheap; [check] examples; [escalate] strong" in explained.output
    as_json = runner.invoke(main, ["route", "hi", "--config", str(config), "--json"])
    data = json.loads(as_json.output)
    assert (data["eligible"], data["checkers"]) == (["cheap", "strong"], ["examples"])
    assert data["decision"]["workflow"]["steps"][0]["worker"] == "cheap"

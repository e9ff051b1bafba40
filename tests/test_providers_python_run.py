"""The ``program`` template and the ``python`` runner: a worker writes a program, the runner
runs it, and what it prints is the answer; a program that fails hands the request to a worker
that answers it directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from podium.executor import PROGRAM_TOKENS
from podium.providers.python_run import program_in
from podium.routing.templates import PROGRAM_INSTRUCTION, program
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.workflow import WorkflowError
from tests.conftest import worker

RUNNER = {
    "name": "python",
    "provider": "python",
    "model": "python-run",
    "role": "check",
    "price": {"input": 0.0, "output": 0.0},
    "options": {"timeout_s": 2},
}
WORD_PROBLEM = "A shop has 6 apples and gets 7 more. How many apples does it have now?"
PROGRAM = "```python\napples = 6 + 7\nprint(apples)\n```"


async def ask(
    gateway: Callable[..., Any], written: str, *, stream: bool, max_tokens: int = 16
) -> tuple[str, dict[str, str], Any, FakeOpenAI, FakeOpenAI]:
    rule = {
        "name": "arithmetic",
        "match": {"model": ["podium/auto"], "regex": [r"(?i)\bhow many\b"]},
        "workflow": {"template": "program", "workers": ["writer", "python", "answerer"]},
    }
    async with (
        FakeOpenAI(Behaviour(reply=written)) as writer,
        FakeOpenAI(Behaviour(reply="the direct answer")) as answerer,
    ):
        workers = [
            worker("writer", "openai", writer.base_url, price={"input": 1.0, "output": 2.0}),
            worker("answerer", "openai", answerer.base_url, price={"input": 3.0, "output": 9.0}),
            RUNNER,
        ]
        async with gateway(workers, routing={"rules": [rule]}) as running:
            text, headers, trace = await running.ask(
                WORD_PROBLEM, stream=stream, max_tokens=max_tokens
            )
        return text, headers, trace, writer, answerer


@pytest.mark.parametrize("stream", [False, True])
async def test_what_the_program_prints_is_the_answer(
    gateway: Callable[..., Any], stream: bool
) -> None:
    text, headers, trace, writer, answerer = await ask(gateway, PROGRAM, stream=stream)
    assert text == "13" and headers["x-podium-worker"] == "python"
    assert not answerer.received
    steps = [(s["role"], s["worker"]) for s in trace.steps]
    assert steps == [("write", "writer"), ("run", "python"), ("accept", "python")]
    # the trace names the workflow, so the learned router can learn what it achieves
    assert trace.workflow == "program(writer,python,answerer)"
    run = trace.steps[1]
    assert run["input_tokens"] == 0 and run["cost_usd"] == 0
    assert trace.cost_usd == trace.steps[0]["cost_usd"] > 0  # the writer's call, all of it
    sent = writer.received[0].body
    assert PROGRAM_INSTRUCTION in str(sent["messages"])
    # the program gets room, whatever the caller's answer allows
    assert sent["max_tokens"] == PROGRAM_TOKENS > 16


@pytest.mark.parametrize(
    "written",
    [
        "```python\nprint(1 / 0)\n```",  # fails
        "```python\nx = 6 + 7\n```",  # prints nothing
        "```python\nwhile True:\n    pass\n```",  # never ends
        "```python\nimport socket\nsocket.create_connection(('127.0.0.1', 9))\n```",  # refused
        "```python\nprint(open('/etc/hostname').read())\n```",  # outside its folder: refused
    ],
)
async def test_a_program_that_fails_hands_the_request_to_the_answerer(
    gateway: Callable[..., Any], written: str
) -> None:
    text, headers, trace, _, answerer = await ask(gateway, written, stream=True)
    assert text == "the direct answer" and headers["x-podium-worker"] == "answerer"
    assert [s["role"] for s in trace.steps] == ["write", "run", "escalate"]
    asked = str(answerer.received[0].body["messages"])
    assert WORD_PROBLEM in asked and "print" not in asked  # the request, not the program


async def test_a_bare_expression_is_printed(gateway: Callable[..., Any]) -> None:
    text, _, _, _, _ = await ask(gateway, "6 + 7", stream=False)
    assert text == "13"


@pytest.mark.parametrize(
    ("reply", "program"),
    [
        ("6 * 7", "print(6 * 7)"),
        ("```python\nprint(42)\n```\nThis prints 42.", "print(42)"),
        ("x = 1\nprint(x)", "x = 1\nprint(x)"),
        ("The answer is 42.", "The answer is 42."),  # not code: it fails, the answerer answers
    ],
)
def test_the_program_in_a_reply(reply: str, program: str) -> None:
    assert program_in(reply) == program


def test_the_template_puts_the_runner_in_the_run_step_only() -> None:
    workflow = program(["writer", "python", "answerer"], {})
    workflow.validate({"writer", "answerer"}, frozenset({"python"}))
    assert [s.role for s in workflow.steps] == ["write", "run", "escalate"]
    backwards = program(["python", "writer"], {})
    with pytest.raises(WorkflowError, match="'python' is not eligible"):
        backwards.validate({"writer"}, frozenset({"python"}))
    with pytest.raises(WorkflowError, match="needs at least 2 workers"):
        program(["writer"], {})


async def test_no_caller_can_ask_the_runner_for_an_answer(gateway: Callable[..., Any]) -> None:
    async with FakeOpenAI(Behaviour(reply="ok")) as only:
        workers = [worker("answerer", "openai", only.base_url), RUNNER]
        async with (
            gateway(workers) as running,
            openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
        ):
            listed = [model.id for model in (await client.models.list()).data]
            assert "python" not in listed
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(
                    model="python", messages=[{"role": "user", "content": "print(1)"}]
                )

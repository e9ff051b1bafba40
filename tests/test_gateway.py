"""The gateway's finish hooks: run as the request ends, in order, with those that wait going on
in the background; a failing hook is reported and never fails the request."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from types import SimpleNamespace
from typing import Any

import httpx

from podium.context import RequestContext
from podium.gateway import ExtraHooks, Stages, _candidate_dict, total_cost, total_usage
from podium.hooks import Hook
from podium.routing.base import Candidate
from podium.store.traces import TraceRecord
from podium.testing.openai_fake import FakeOpenAI
from podium.types import Usage
from tests.conftest import worker

CHAT: dict[str, Any] = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}


class Seen(Hook):
    def __init__(self, name: str, log: list[str], wait: float | None = None) -> None:
        self.name, self.log, self.wait = name, log, wait

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        if self.wait is not None:
            await asyncio.sleep(self.wait)
        self.log.append(f"{self.name}:{trace.trace_id}")


class Failing(Hook):
    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        raise ValueError("hook broke")


async def ask(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200
    return answer.headers["x-podium-trace-id"]


async def test_hooks_that_never_wait_have_run_when_the_answer_is_back(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    log: list[str] = []
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        running.podium.hooks.extend([Seen("first", log), Seen("second", log)])
        trace_id = await ask(running.url)
        assert log == [f"first:{trace_id}", f"second:{trace_id}"]
        assert not running.podium.gateway._background  # no task was needed


async def test_a_hook_that_waits_goes_on_in_the_background_in_order(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    log: list[str] = []
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        running.podium.hooks.extend([Seen("slow", log, wait=0.05), Seen("after", log)])
        trace_id = await ask(running.url)
        assert log == []
        await running.podium.gateway.drain_background()
        assert log == [f"slow:{trace_id}", f"after:{trace_id}"]
        assert not running.podium.gateway._background


async def test_a_failing_hook_is_reported_and_the_request_still_answers(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    reported: list[dict[str, Any]] = []
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, report: reported.append(report))
        try:
            running.podium.hooks.append(Failing())
            await ask(running.url)
        finally:
            loop.set_exception_handler(None)
    assert [str(report["exception"]) for report in reported] == ["hook broke"]


class Kept(Hook):
    def __init__(self) -> None:
        self.traces: list[TraceRecord] = []

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        self.traces.append(trace)


async def test_a_recorded_trace_carries_each_value_in_its_own_field(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """The gateway builds the trace by position: every field is checked here by name."""
    kept = Kept()
    settings = {"observe": {"capture_content": True}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], **settings) as running:
        running.podium.hooks.append(kept)
        trace_id = await ask(running.url)
        fake_openai.behaviour.fail(400, "no such thing")
        async with httpx.AsyncClient(base_url=running.url) as http:
            failed = await http.post("/v1/chat/completions", json=CHAT)
    assert failed.status_code == 400
    ok, error = kept.traces
    assert ok.trace_id == trace_id and error.trace_id == failed.headers["x-podium-trace-id"]
    assert 0 < ok.created_at < error.created_at and ok.ingress == "openai"
    assert (ok.caller, ok.owner, ok.requested_model) == ("anonymous", "anonymous", "alpha")
    assert (ok.route, ok.status, ok.http_status, ok.router) == ("direct", "ok", 200, "direct")
    assert ok.rule is None and ok.reason and "alpha" in ok.reason
    assert (ok.worker, ok.workers) == ("alpha", "alpha")
    assert (ok.input_tokens, ok.output_tokens) == (1, 4)
    assert ok.cost_usd == (1 * 1.0 + 4 * 2.0) / 1_000_000
    assert ok.latency_ms > 0 and ok.ttft_ms is not None and 0 < ok.ttft_ms <= ok.latency_ms
    assert (ok.error, ok.error_kind, ok.stream, ok.contract) == (None, None, False, None)
    assert ok.data_class == "public"
    assert [step["worker"] for step in ok.steps] == ["alpha"]
    assert [candidate["worker"] for candidate in ok.candidates] == ["alpha"]
    assert isinstance(ok.policy_actions, list)
    assert (ok.prompt, ok.answer) == ("hi", "fake answer to: hi")
    assert ok.workflow is None  # one call: the worker is what was measured
    assert (error.status, error.http_status, error.worker) == ("error", 400, "alpha")
    assert error.error is not None and "no such thing" in error.error
    assert error.error_kind == "invalid_request"
    assert error.answer is None and error.prompt == "hi"


def test_stages_are_current_only_for_the_same_hooks_in_the_same_order() -> None:
    first, second = Hook(), Hook()
    stages = Stages([first, second])
    assert stages.current([first, second])
    assert not stages.current([second, first])
    assert not stages.current([first, Hook()])  # another hook of the same kind
    assert not stages.current([first])
    assert not stages.current([first, second, first])


def test_totals_of_one_attempt_are_what_the_sums_give() -> None:
    # total_cost and total_usage answer a lone attempt without their loops: the same value
    # and type as sum() and Usage() + usage, -0.0, NaN and integers included.
    rng = random.Random(5)
    costs = [0.0, -0.0, 0, 1, 3.5e-9, 1e300, float("nan"), float("inf"), -2.5]
    for _ in range(2000):
        attempts: Any = [
            SimpleNamespace(
                cost_usd=rng.choice([*costs, rng.random()]),
                usage=Usage(rng.randrange(9), rng.randrange(9), rng.randrange(3)),
            )
            for _ in range(rng.choice([0, 1, 1, 2, 3]))
        ]
        summed = sum(attempt.cost_usd for attempt in attempts)
        assert repr(total_cost(attempts)) == repr(summed)
        assert type(total_cost(attempts)) is type(summed)
        usage = Usage()
        for attempt in attempts:
            usage = usage + attempt.usage
        assert total_usage(attempts) == usage


def test_a_candidate_is_traced_as_dataclasses_asdict_gives_it() -> None:
    candidate = Candidate("w1", 0.75, quality=0.5, cost_usd=0.001, label="route-a")
    traced = _candidate_dict(candidate)
    assert traced == dataclasses.asdict(candidate)
    assert list(traced) == [field.name for field in dataclasses.fields(Candidate)]


def test_an_ingress_s_extra_hooks_come_after_the_gateway_s_and_follow_its_changes() -> None:
    class Deciding(Hook):
        async def decided(self, request: Any, decision: Any, context: Any) -> None:
            return None

    first, second, extra = Deciding(), Deciding(), Deciding()
    extras = ExtraHooks([extra])
    base = [first]
    stages = extras.stages(base)
    assert stages.decided == [first, extra] and stages.admit == []
    assert extras.stages(base) is stages  # unchanged: built once
    base.append(second)  # a plugin adds a hook after start-up
    assert extras.stages(base).decided == [first, second, extra]

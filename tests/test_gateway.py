"""The gateway's finish hooks: run as the request ends, in order, with those that wait going on
in the background; a failing hook is reported and never fails the request."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from podium.context import RequestContext
from podium.hooks import Hook
from podium.store.traces import TraceRecord
from podium.testing.openai_fake import FakeOpenAI
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

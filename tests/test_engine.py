"""The engine's retry, backoff, fallback and breaker decisions, with scripted providers (no HTTP)
and a recorded sleep, so every wait is asserted exactly rather than timed."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from podium.breaker import CircuitBreaker
from podium.config import BreakerPolicy, WorkerConfig
from podium.engine import Attempt, Engine, _tokens_asked
from podium.errors import ProviderError
from podium.providers.base import ProviderContext, ProviderRegistry
from podium.providers.egress import Egress
from podium.secrets import EnvironmentSecrets
from podium.types import (
    ChatRequest,
    ChatResponse,
    DocumentPart,
    EventStream,
    Finish,
    Message,
    TextDelta,
    TextPart,
    Usage,
    UsageReport,
)
from podium.workers import WorkerPool

Script = deque[Any]  # each item: a ChatResponse, an exception, or a list of events / exception


def rate_limited(retry_after: float | None = None) -> ProviderError:
    return ProviderError("rate_limit", "slow down", retryable=True, retry_after=retry_after)


def server_error() -> ProviderError:
    return ProviderError("upstream", "boom", retryable=True, status=502)


def bad_request() -> ProviderError:
    return ProviderError("invalid_request", "bad input", status=400)


def answer(text: str = "ok") -> ChatResponse:
    return ChatResponse(id="r", model="m", text=text, usage=Usage(10, 5))


class Scripted:
    """Plays its worker's script, one item per call."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.calls = 0
        self.hang: asyncio.Event | None = None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.hang is not None:
            await self.hang.wait()
        item = self.script.popleft() if self.script else answer()
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, ChatResponse)
        return item

    async def stream(self, request: ChatRequest) -> EventStream:
        self.calls += 1
        item = self.script.popleft() if self.script else [TextDelta("ok"), Finish("stop")]
        if isinstance(item, BaseException):
            raise item
        for event in item:
            if isinstance(event, BaseException):
                raise event
            yield event


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, tmp_path: Path, scripts: dict[str, Script], **worker: Any) -> None:
        self.providers: dict[str, Scripted] = {}
        self.clock = Clock()
        self.sleeps: list[float] = []
        registry = ProviderRegistry()

        def factory(context: ProviderContext) -> Scripted:
            provider = Scripted(scripts[context.worker.name])
            self.providers[context.worker.name] = provider
            return provider

        registry.register("scripted", factory)
        self.pool = WorkerPool(
            registry,
            http=Egress(),
            secrets=EnvironmentSecrets({}),
            data_dir=tmp_path,
            breakers=lambda config: CircuitBreaker(config.breaker, clock=self.clock),
        )
        settings: dict[str, Any] = {
            "retry": {"attempts": 2, "backoff_base": 0.25, "backoff_max": 8},
            "breaker": {"failures": 3, "reset_after": 30},
        }
        settings.update(worker)
        self.pool.load(
            [
                WorkerConfig.model_validate(
                    {"name": name, "provider": "scripted", "model": name, **settings}
                )
                for name in scripts
            ]
        )

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.engine = Engine(self.pool, sleep=sleep, jitter=lambda: 0.5)


REQUEST = ChatRequest(model="x", messages=[Message("user", [TextPart("hello there")])])


async def test_retryable_errors_back_off_exponentially(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error(), server_error(), answer("third")])})
    attempts: list[Attempt] = []
    worker, response = await h.engine.complete(REQUEST, ["a"], attempts)
    assert response.text == "third"
    # base * 2**retry, times (0.5 + jitter) with the jitter pinned at 0.5
    assert h.sleeps == [0.25, 0.5]
    assert [a.status for a in attempts] == ["error", "error", "ok"]
    assert attempts[-1].cost_usd == worker.cost(Usage(10, 5))


async def test_jitter_spreads_the_waits(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error()])})
    h.engine = Engine(h.pool, sleep=h.engine._sleep, jitter=lambda: 0.0)
    await h.engine.complete(REQUEST, ["a"], [])
    assert h.sleeps == [0.125]  # half the nominal wait at the low end of the jitter


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([rate_limited(3.0)])})
    await h.engine.complete(REQUEST, ["a"], [])
    assert h.sleeps == [3.0]


async def test_a_retry_after_longer_than_we_would_wait_moves_on(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([rate_limited(120.0)]), "b": deque()})
    worker, _ = await h.engine.complete(REQUEST, ["a", "b"], [])
    assert worker.name == "b" and h.sleeps == []


async def test_retries_stop_at_the_policy_then_fall_back(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error()] * 5), "b": deque()})
    attempts: list[Attempt] = []
    worker, _ = await h.engine.complete(REQUEST, ["a", "b"], attempts)
    assert worker.name == "b"
    assert h.providers["a"].calls == 3  # first try + 2 retries
    assert [a.worker for a in attempts] == ["a", "a", "a", "b"]


async def test_all_workers_failing_raises_the_last_error(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error()] * 3)}, retry={"attempts": 0})
    with pytest.raises(ProviderError) as caught:
        await h.engine.complete(REQUEST, ["a"], [])
    assert caught.value.message == "boom"


async def test_a_bad_request_is_not_retried_nor_sent_elsewhere(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([bad_request()]), "b": deque()})
    with pytest.raises(ProviderError) as caught:
        await h.engine.complete(REQUEST, ["a", "b"], [])
    assert caught.value.status == 400
    assert h.providers["a"].calls == 1 and h.providers["b"].calls == 0 and h.sleeps == []
    assert h.pool.get("a").breaker.state == "closed"  # type: ignore[union-attr]


async def test_a_removed_worker_is_skipped(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque(), "b": deque()})
    await h.pool.remove("a")
    attempts: list[Attempt] = []
    worker, _ = await h.engine.complete(REQUEST, ["a", "b"], attempts)
    assert worker.name == "b"
    assert (attempts[0].worker, attempts[0].status) == ("a", "skipped")


# -- the breaker ---------------------------------------------------------------------------------


async def test_breaker_opens_after_n_failures_and_skips_the_worker(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error()] * 3), "b": deque()}, retry={"attempts": 0})
    for _ in range(3):
        await h.engine.complete(REQUEST, ["a", "b"], [])
    a = h.pool.get("a")
    assert a is not None and a.breaker.state == "open"
    attempts: list[Attempt] = []
    await h.engine.complete(REQUEST, ["a", "b"], attempts)
    assert h.providers["a"].calls == 3
    assert (attempts[0].status, attempts[0].error) == ("skipped", "circuit open")


async def test_half_open_lets_one_probe_through(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error()] * 4), "b": deque()}, retry={"attempts": 0})
    for _ in range(3):
        await h.engine.complete(REQUEST, ["a", "b"], [])
    a = h.pool.get("a")
    assert a is not None
    h.clock.now += 31
    assert a.breaker.state == "half_open"
    await h.engine.complete(REQUEST, ["a", "b"], [])  # the probe fails: open again
    assert h.providers["a"].calls == 4 and a.breaker.state == "open"
    h.clock.now += 31
    worker, _ = await h.engine.complete(REQUEST, ["a", "b"], [])  # this probe succeeds
    assert worker.name == "a" and a.breaker.state == "closed"


async def test_a_cancelled_probe_does_not_wedge_the_breaker(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"a": deque([server_error()] * 3)}, retry={"attempts": 0})
    for _ in range(3):
        with pytest.raises(ProviderError):
            await h.engine.complete(REQUEST, ["a"], [])
    a = h.pool.get("a")
    assert a is not None
    h.clock.now += 31
    h.providers["a"].hang = asyncio.Event()
    probe = asyncio.ensure_future(h.engine.complete(REQUEST, ["a"], []))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    probe.cancel()  # the client went away during the probe
    with pytest.raises(asyncio.CancelledError):
        await probe
    h.providers["a"].hang = None
    h.clock.now += 31
    worker, _ = await h.engine.complete(REQUEST, ["a"], [])
    assert worker.name == "a" and a.breaker.state == "closed" and a.in_flight == 0


def test_breaker_policy_in_isolation() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(failures=2, reset_after=10), clock=clock)
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_success()  # consecutive failures only
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_success()
    assert breaker.state == "closed"


# -- streams -------------------------------------------------------------------------------------


async def test_a_stream_is_retried_only_before_its_first_event(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        {
            "a": deque(
                [
                    server_error(),  # fails before any event: retried
                    [TextDelta("par"), server_error()],  # fails after one: not retried
                ]
            ),
            "b": deque(),
        },
    )
    attempts: list[Attempt] = []
    metered = await h.engine.stream(REQUEST, ["a", "b"], attempts)
    received: list[str] = []

    async def read() -> None:
        async for event in metered.events():
            if isinstance(event, TextDelta):
                received.append(event.text)

    with pytest.raises(ProviderError):
        await read()
    assert received == ["par"]
    assert h.providers["a"].calls == 2 and h.providers["b"].calls == 0
    assert attempts[-1].status == "error" and attempts[-1].error == "boom"
    assert h.pool.get("a").in_flight == 0  # type: ignore[union-attr]


async def test_a_finished_stream_settles_usage_and_cost(tmp_path: Path) -> None:
    events = [TextDelta("hi"), Finish("stop"), UsageReport(Usage(100, 50))]
    h = Harness(tmp_path, {"a": deque([events])}, price={"input": 1.0, "output": 2.0})
    attempts: list[Attempt] = []
    metered = await h.engine.stream(REQUEST, ["a"], attempts)
    assert [e async for e in metered.events()] == events
    assert attempts[0].usage == Usage(100, 50)
    assert attempts[0].cost_usd == pytest.approx((100 * 1.0 + 50 * 2.0) / 1_000_000)
    assert attempts[0].ttft_ms is not None and attempts[0].status == "ok"


async def test_a_stream_waiting_for_its_first_event_counts_as_in_flight(tmp_path: Path) -> None:
    gate = asyncio.Event()

    class Slow(Scripted):
        async def stream(self, request: ChatRequest) -> EventStream:
            await gate.wait()
            yield TextDelta("late")

    h = Harness(tmp_path, {"a": deque()})
    a = h.pool.get("a")
    assert a is not None
    a.provider = Slow(deque())
    opening = asyncio.ensure_future(h.engine.stream(REQUEST, ["a"], []))
    for _ in range(5):
        await asyncio.sleep(0)
    assert a.in_flight == 1  # a drain or removal waits for it
    gate.set()
    metered = await opening
    assert [e async for e in metered.events()] == [TextDelta("late")]
    assert a.in_flight == 0


async def test_a_refused_credential_moves_on_without_repeating(tmp_path: Path) -> None:
    refused = ProviderError(
        "upstream", "key refused", retryable=True, status=502, code="upstream_credential_refused"
    )
    h = Harness(tmp_path, {"a": deque([refused]), "b": deque()})
    worker, _ = await h.engine.complete(REQUEST, ["a", "b"], [])
    assert worker.name == "b"
    assert h.providers["a"].calls == 1 and h.sleeps == []


def about_a_pdf(pages: int) -> ChatRequest:
    document = DocumentPart(data="JVBERi0=", text="The board met. " * 40, pages=pages)
    question = Message("user", [TextPart("Summarise it."), document])
    return ChatRequest(model="x", messages=[question], attachments=True)


async def test_a_pdf_is_estimated_as_each_worker_reads_it_when_the_upstream_does_not_say(
    tmp_path: Path,
) -> None:
    """An upstream that reports no usage: the input is estimated from what the worker was
    sent, a PDF's 10 pages at 258 tokens each beside its text for one that reads PDFs; the
    tokens a call asks of a worker's ``limits.tpm`` count them the same way."""
    used: dict[str, int] = {}
    asked: dict[str, int] = {}
    for capabilities in (["streaming"], ["streaming", "documents"]):
        silent = ChatResponse(id="r", model="m", text="ok", usage=Usage())
        h = Harness(tmp_path, {"a": deque([silent])}, capabilities=capabilities)
        attempts: list[Attempt] = []
        await h.engine.complete(about_a_pdf(10), ["a"], attempts)
        assert attempts[0].usage is not None
        used[capabilities[-1]] = attempts[0].usage.input_tokens
        worker = h.pool.get("a")
        assert worker is not None
        asked[capabilities[-1]] = _tokens_asked(worker, about_a_pdf(10))
    assert used["streaming"] > 150  # the text the worker was sent instead (~600 characters)
    assert used["documents"] == pytest.approx(used["streaming"] + 10 * 258, abs=1)
    assert asked["documents"] == pytest.approx(asked["streaming"] + 10 * 258, abs=1)

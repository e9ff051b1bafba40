"""POST /v1/feedback and automatic quality signals, stored against traces."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import openai
import pytest

from podium.app import Podium
from podium.errors import PodiumError
from podium.observe.feedback import Feedback, TokenBuckets, feedback_of, make_signal, record
from podium.policy.keys import KeyCache, NewKey
from podium.store.traces import TraceRecord
from podium.testing.fakes import words
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


async def ask(
    running: Any,
    model: str = "alpha",
    content: str = "hello",
    data_class: str | None = None,
    **headers: str,
) -> str:
    declared = {"x-podium-data-class": data_class} if data_class else None
    async with openai.AsyncOpenAI(
        base_url=running.v1, api_key=headers.pop("key", "unused"), max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": content}], extra_headers=declared
        )
    return str(raw.headers["x-podium-trace-id"])


async def stored(podium: Podium, trace_id: str) -> list[tuple[Any, ...]]:
    rows = await podium.store.execute(  # type: ignore[attr-defined]
        "SELECT name, source, kind, value, label, score, comment, caller FROM feedback "
        "WHERE trace_id = ? ORDER BY created_at",
        (trace_id,),
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize(
    ("score", "kind", "value", "label", "normalised"),
    [
        (True, "boolean", 1.0, None, 1.0),
        (False, "boolean", 0.0, None, 0.0),
        (0.75, "number", 0.75, None, 0.75),
        (4, "number", 4.0, None, None),  # no scale given: kept, but not on the 0..1 scale
        ("good", "label", None, "good", 1.0),
        ("needs-citation", "label", None, "needs-citation", None),
    ],
)
async def test_scores_of_every_type_are_stored_against_the_trace(
    gateway: Any,
    fake_openai: FakeOpenAI,
    score: Any,
    kind: str,
    value: float | None,
    label: str | None,
    normalised: float | None,
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        trace_id = await ask(running)
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await http.post(
                "/v1/feedback",
                json={"trace_id": trace_id, "score": score, "comment": "from a person",
                      "source": "human"},
            )  # fmt: skip
        assert response.status_code == 201, response.text
        assert response.json()["stored"] is True
        rows = await stored(running.podium, trace_id)
    assert rows == [("user", "human", kind, value, label, normalised, "from a person", "anonymous")]


async def test_a_scale_puts_numbers_on_the_quality_scale(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        trace_id = await ask(running)
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await http.post(
                "/v1/feedback", json={"trace_id": trace_id, "score": 4, "scale": [1, 5]}
            )
        assert response.json()["score"] == 0.75


async def test_unknown_trace_is_404_and_nothing_is_stored(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await http.post("/v1/feedback", json={"trace_id": "f" * 32, "score": 1})
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "trace_not_found" and error["param"] == "trace_id"
        rows = await running.podium.store.execute("SELECT COUNT(*) FROM feedback")  # type: ignore[attr-defined]
        assert rows[0][0] == 0


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"score": True}, "'trace_id' is required"),
        ({"trace_id": "x"}, "'score' is required"),
        ({"trace_id": "x", "score": None}, "got null"),
        ({"trace_id": "x", "score": [1, 2]}, "got list"),
        ({"trace_id": "x", "score": {"stars": 5}}, "got dict"),
        ({"trace_id": "x", "score": ""}, "label score must be"),
        ({"trace_id": "x", "score": 1, "stars": 5}, "unknown field 'stars'"),
        ({"trace_id": "x", "score": 1, "source": "judge"}, "reserved"),
        ({"trace_id": "x", "score": 1, "comment": 7}, "'comment' must be a string"),
        ({"trace_id": "x", "score": 1, "scale": [5, 1]}, "low < high"),
        ([1, 2], "JSON object"),
    ],
)
async def test_wrong_shapes_are_400_with_a_clear_message(
    gateway: Any, fake_openai: FakeOpenAI, body: Any, needle: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        response = await http.post("/v1/feedback", json=body)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


async def test_not_json_is_400(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        response = await http.post("/v1/feedback", content=b"{nope")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_a_flood_is_refused_with_429_and_accepted_feedback_is_all_kept(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    settings = {"observe": {"feedback": {"rate_per_second": 1, "burst": 5}}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], **settings) as running:
        trace_id = await ask(running)
        async with httpx.AsyncClient(base_url=running.url) as http:
            responses = await asyncio.gather(
                *(
                    http.post("/v1/feedback", json={"trace_id": trace_id, "score": i % 2 == 0})
                    for i in range(40)
                )
            )
        statuses = [response.status_code for response in responses]
        assert statuses.count(201) == 5
        assert statuses.count(429) == 35
        refused = next(r for r in responses if r.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "feedback_rate_limited"
        assert len(await stored(running.podium, trace_id)) == 5


def test_token_buckets_refill_and_stay_bounded() -> None:
    buckets = TokenBuckets(rate=2.0, burst=2, max_callers=3)
    assert buckets.take("a", now=0.0) == 0 and buckets.take("a", now=0.0) == 0
    assert buckets.take("a", now=0.0) == pytest.approx(0.5)
    assert buckets.take("a", now=0.5) == 0  # one token back after half a second
    for caller in "bcdef":
        buckets.take(caller, now=1.0)
    assert len(buckets._buckets) == 3


async def test_too_many_writes_in_flight_is_429() -> None:
    class Slow:
        async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
            await asyncio.sleep(0.05)
            return [("id",)]

    from podium.observe.settings import FeedbackConfig

    feedback = Feedback(Slow(), FeedbackConfig(max_pending=1, burst=100))
    first = asyncio.ensure_future(feedback.submit(make_signal("t", "user", True, source="app")))
    await asyncio.sleep(0)
    with pytest.raises(PodiumError) as caught:
        feedback.admit("someone")
    assert caught.value.status == 429 and caught.value.code == "feedback_busy"
    assert await first is True


async def test_feedback_needs_a_valid_key_when_keys_are_required(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    settings = {"access": {"auth": {"required": True}}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], **settings) as running:
        cache = running.podium.extras["keys"]
        assert isinstance(cache, KeyCache)
        record_, key = await cache.store.create(NewKey(owner="team-a"))
        cache.invalidate()
        trace_id = await ask(running, key=key)
        async with httpx.AsyncClient(base_url=running.url) as http:
            anonymous = await http.post("/v1/feedback", json={"trace_id": trace_id, "score": 1})
            bad = await http.post(
                "/v1/feedback",
                json={"trace_id": trace_id, "score": 1},
                headers={"authorization": "Bearer pk-nope"},
            )
            good = await http.post(
                "/v1/feedback",
                json={"trace_id": trace_id, "score": 1},
                headers={"authorization": f"Bearer {key}"},
            )
        assert anonymous.status_code == 401 and bad.status_code == 401
        assert good.status_code == 201
        rows = await stored(running.podium, trace_id)
        assert [row[-1] for row in rows] == [record_.key_id]


async def test_automatic_signals_from_contracts_and_verifiers_are_written(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        trace_id = await ask(running)
        record(running.podium, trace_id, "json_schema", True, source="contract")
        record(running.podium, trace_id, "length", 0.4, source="contract", comment="too short")
        feedback = feedback_of(running.podium)
        assert feedback is not None
        assert await feedback.flush()
        rows = await stored(running.podium, trace_id)
    assert [(r[0], r[1], r[5]) for r in rows] == [
        ("json_schema", "contract", 1.0),
        ("length", "contract", 0.4),
    ]


async def test_a_verifier_verdict_in_a_step_becomes_a_signal() -> None:
    from podium.context import RequestContext
    from podium.observe.plugin import SignalsHook
    from podium.observe.settings import FeedbackConfig
    from tests.test_commands_traces import trace

    class Memory:
        rows: list[tuple[Any, ...]] = []  # noqa: RUF012

        async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
            self.rows.append(params)
            return []

    db = Memory()
    feedback = Feedback(db, FeedbackConfig())
    record_ = trace("t1", 0.0, "small")
    record_.steps.append({"step": 1, "role": "verify", "worker": "checker", "verdict": False})
    await SignalsHook(feedback).finish(record_, RequestContext(ingress="openai", headers={}))
    await feedback.flush()
    assert [(row[1], row[3], row[4], row[8]) for row in db.rows] == [
        ("t1", "verify", "verifier", 0.0)
    ]


async def test_queued_signals_are_written_at_shutdown(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        trace_id = await ask(running)
        podium = running.podium
        record(podium, trace_id, "late", "pass", source="contract")
    # The gateway has shut down and closed its store: read the file again.
    from podium.store.sqlite import SQLiteStore

    store = SQLiteStore(podium.config.resolved_data_dir() / "podium.db")
    await store.open()
    try:
        rows = await store.execute(
            "SELECT name, score FROM feedback WHERE trace_id = ?", (trace_id,)
        )
    finally:
        await store.close()
    assert [tuple(row) for row in rows] == [("late", 1.0)]


async def test_the_judge_grades_a_sample_off_the_hot_path(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    from podium.observe.judge import JudgeHook, parse_grade

    fake_openai.behaviour.reply = "4"  # the worker's answer, and the judge's grade of it
    settings = {
        "observe": {"capture_content": True, "judge": {"worker": "judge", "sample_rate": 1.0}}
    }
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker("judge", "openai", fake_openai.base_url),
    ]
    async with gateway(workers, **settings) as running:
        trace_id = await ask(running)
        await running.podium.gateway.drain_background()
        judge = next(h for h in running.podium.hooks if isinstance(h, JudgeHook))
        await judge.close()
        feedback = feedback_of(running.podium)
        assert feedback is not None and await feedback.flush()
        rows = await stored(running.podium, trace_id)
        judge_prompt = fake_openai.received[-1].body["messages"][0]["content"]
    assert rows == [("judge", "judge", "number", 4.0, None, 0.75, "judge", None)]
    assert "[Question]\nhello" in judge_prompt and "[Answer]\n4" in judge_prompt
    assert parse_grade("Grade: 5.") == 5 and parse_grade("none") is None


JUDGED = {"observe": {"capture_content": True, "judge": {"worker": "judge", "sample_rate": 1.0}}}


async def judged(running: Any, **asked: str) -> tuple[str, list[TraceRecord]]:
    """Ask once, let the judge grade the answer, and read back the judge's own traces."""
    from podium.observe.judge import JudgeHook

    trace_id = await ask(running, **asked)
    await running.podium.gateway.drain_background()
    judge = next(h for h in running.podium.hooks if isinstance(h, JudgeHook))
    await judge.close()
    await running.podium.recorder.flush()
    return trace_id, await running.podium.store.list_traces(caller="podium:judge")


async def test_the_judges_own_call_is_traced_and_counted_in_spend(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.reply = "4"
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker("judge", "openai", fake_openai.base_url, price={"input": 3.0, "output": 15.0}),
    ]
    async with gateway(workers, **JUDGED) as running:
        trace_id, traces = await judged(running)
        async with httpx.AsyncClient(base_url=running.url) as http:
            metrics = (await http.get("/metrics")).text
            spend = (await http.get("/admin/stats/spend", params={"by": "caller"})).json()
        judge_prompt = fake_openai.received[-1].body["messages"][0]["content"]
    [trace] = traces
    assert (trace.ingress, trace.caller, trace.owner) == ("judge", "podium:judge", "podium")
    assert (trace.worker, trace.route, trace.status) == ("judge", "judge", "ok")
    assert trace.reason == f"grades trace {trace_id}"  # which answer it graded
    assert (trace.input_tokens, trace.output_tokens) == (words(judge_prompt), 1)
    # Priced at the judge worker's own prices, per million tokens.
    assert trace.cost_usd == pytest.approx((trace.input_tokens * 3.0 + 15.0) / 1e6)
    assert trace.latency_ms > 0 and trace.answer == "4"
    assert [step["role"] for step in trace.steps] == ["judge"]
    labels = 'worker="judge",route="judge",caller="podium:judge",contract="none"'
    assert f"podium_cost_usd_total{{{labels}}} {trace.cost_usd!r}" in metrics
    assert f'podium_tokens_total{{{labels},direction="output"}} 1' in metrics
    callers = {series["key"] for series in spend["data"]["series"]}
    assert "podium:judge" in callers


async def test_a_failed_judge_call_leaves_an_error_trace(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with FakeOpenAI() as judge_upstream:
        judge_upstream.behaviour.fail(500, "the judge is down")
        workers = [
            worker("alpha", "openai", fake_openai.base_url),
            worker("judge", "openai", judge_upstream.base_url, retry={"attempts": 0}),
        ]
        async with gateway(workers, **JUDGED) as running:
            trace_id, traces = await judged(running)
            rows = await stored(running.podium, trace_id)
    [trace] = traces
    assert (trace.worker, trace.status, trace.http_status) == ("judge", "error", 502)
    assert trace.error_kind == "upstream" and "the judge is down" in (trace.error or "")
    assert trace.reason == f"grades trace {trace_id}"
    assert (trace.input_tokens, trace.output_tokens, trace.cost_usd) == (0, 0, 0.0)
    assert rows == []  # no grade stored for the answer it was to judge


async def test_the_judge_costs_the_applications_key_nothing(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    from podium.policy.limits import period_of, usd

    fake_openai.behaviour.reply = "4"
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker("judge", "openai", fake_openai.base_url),
    ]
    async with gateway(workers, **JUDGED) as running:
        cache = running.podium.extras["keys"]
        assert isinstance(cache, KeyCache)
        record_, key = await cache.store.create(NewKey(owner="team-a", budget_usd=10.0))
        cache.invalidate()
        trace_id, traces = await judged(running, key=key)
        answered = await running.podium.store.get_trace(trace_id)
        period, _ = period_of(record_.budget_period, time.time())
        settled, held = await running.podium.extras["limits"].usage(record_.key_id, period)
    assert answered is not None and answered.caller == record_.key_id
    [trace] = traces
    assert trace.cost_usd > 0  # the judge did spend, on its own account
    assert (usd(settled), held) == (pytest.approx(answered.cost_usd), 0)


async def test_the_judge_is_sent_no_data_class_it_is_not_cleared_for(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """An on-premises worker may answer a confidential request; a judge cleared for public
    data only must not be shown it. A public request is still judged."""
    from podium.observe.judge import JudgeHook

    async with FakeOpenAI() as judge_upstream:
        judge_upstream.behaviour.reply = "4"
        workers = [
            worker("alpha", "openai", fake_openai.base_url, profile={"cleared": ["confidential"]}),
            worker("judge", "openai", judge_upstream.base_url),  # cleared for public only
        ]
        async with gateway(workers, **JUDGED) as running:
            secret_id, traces = await judged(running, data_class="confidential")
            secret_rows = await stored(running.podium, secret_id)
            assert judge_upstream.received == [] and traces == [] and secret_rows == []
            public_id, traces = await judged(running)
            public_rows = await stored(running.podium, public_id)
            judge = next(h for h in running.podium.hooks if isinstance(h, JudgeHook))
    assert len(judge_upstream.received) == 1
    [trace] = traces
    assert trace.reason == f"grades trace {public_id}" and trace.data_class == "public"
    assert public_rows == [("judge", "judge", "number", 4.0, None, 0.75, "judge", None)]
    assert (judge.judged, judge.not_cleared) == (1, 1)


@pytest.mark.parametrize(
    ("judge_profile", "sent"),
    [
        ({"cleared": ["public"]}, False),
        # Cleared once pseudonymised is not enough: the captured answer has the values back.
        ({"cleared": ["public"], "pseudonymised": ["confidential"]}, False),
        ({"cleared": ["confidential"]}, True),
    ],
)
async def test_the_judge_sees_pseudonymised_requests_only_if_plainly_cleared(
    gateway: Any, fake_openai: FakeOpenAI, judge_profile: dict[str, Any], sent: bool
) -> None:
    email = "jane.doe@example.com"
    async with FakeOpenAI() as judge_upstream:
        judge_upstream.behaviour.reply = "4"
        vendor = {"cleared": ["public"], "pseudonymised": ["confidential"]}
        workers = [
            worker("alpha", "openai", fake_openai.base_url, profile=vendor),
            worker("judge", "openai", judge_upstream.base_url, profile=judge_profile),
        ]
        async with gateway(workers, **JUDGED) as running:
            trace_id, traces = await judged(running, content=f"Please email {email}")
            answered = await running.podium.store.get_trace(trace_id)
            rows = await stored(running.podium, trace_id)
    assert answered is not None and answered.data_class == "confidential"
    assert email not in json.dumps(fake_openai.received[0].body)  # the vendor saw <EMAIL_1>
    if not sent:
        assert judge_upstream.received == [] and traces == [] and rows == []
        return
    # What a plainly cleared judge is shown: the question as the worker saw it, and the
    # answer as the caller got it, values restored.
    judge_prompt = judge_upstream.received[0].body["messages"][0]["content"]
    assert "[Question]\nPlease email <EMAIL_1>" in judge_prompt
    assert f"[Answer]\nfake answer to: Please email {email}" in judge_prompt
    assert [trace.data_class for trace in traces] == ["confidential"]
    assert [row[3] for row in rows] == [4.0]


async def test_no_judge_without_captured_content(gateway: Any, fake_openai: FakeOpenAI) -> None:
    settings = {"observe": {"judge": {"worker": "judge", "sample_rate": 1.0}}}
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker("judge", "openai", fake_openai.base_url),
    ]
    async with gateway(workers, **settings) as running:
        await ask(running)
        await running.podium.gateway.drain_background()
    assert len(fake_openai.received) == 1  # only the request itself


async def test_feedback_for_a_trace_not_yet_stored_is_accepted_and_unknown_ids_refused() -> None:
    from podium.context import new_trace_id
    from podium.observe.settings import FeedbackConfig

    class NothingStoredYet:
        rows: list[tuple[Any, ...]] = []  # noqa: RUF012

        async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
            if "RETURNING" in sql:
                return []  # the trace is not in the store
            self.rows.append(params)
            return []

    db = NothingStoredYet()
    feedback = Feedback(db, FeedbackConfig(), recent=2)
    finished = [new_trace_id() for _ in range(5)]
    for trace_id in finished:
        feedback.saw_trace(trace_id, "mock", "direct")
    assert await feedback.submit(make_signal(finished[-1], "user", True, source="app"))
    assert not await feedback.submit(make_signal(new_trace_id(), "user", True, source="app"))
    # Beyond the window and not in the store either: unknown, like any other id.
    assert not await feedback.submit(make_signal(finished[0], "user", True, source="app"))
    assert [(row[1], row[-4], row[-2]) for row in db.rows] == [(finished[-1], "mock", "direct")]

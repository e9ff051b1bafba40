"""The dashboard's JSON under /admin/stats: the numbers match the traffic, long ranges read
the rollup and agree with the raw traces, huge ranges are clamped, bad parameters are 400s,
and the admin key guards it all."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from podium.observe import stats
from podium.observe.rollup import rollup_rows, upsert_statements
from podium.store.sqlite import SQLiteStore
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_commands_traces import trace

WORKERS = [
    ("alpha", {"input": 1.0, "output": 2.0}),
    ("beta", {"input": 10.0, "output": 30.0}),
]


async def traffic(running: Any) -> list[str]:
    ids = []
    async with openai.AsyncOpenAI(base_url=running.v1, api_key="x") as client:
        for model in ("alpha", "alpha", "alpha", "beta"):
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "question"}]
            )
            ids.append(raw.headers["x-podium-trace-id"])
    async with httpx.AsyncClient(base_url=running.url) as http:
        await http.post("/v1/feedback", json={"trace_id": ids[0], "score": True})
        await http.post("/v1/feedback", json={"trace_id": ids[3], "score": False})
    await running.podium.recorder.flush()
    return ids


def workers(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [worker(name, "openai", fake.base_url, price=price) for name, price in WORKERS]


async def test_every_endpoint_reports_the_traffic(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway(workers(fake_openai)) as running:
        ids = await traffic(running)
        async with httpx.AsyncClient(base_url=running.url) as http:
            for since in ("1h", "7d"):  # raw traces, then the rollup
                query = {"since": since}
                overview = (await http.get("/admin/stats/overview", params=query)).json()
                assert overview["data"]["requests"] == 4
                assert overview["data"]["signals"] == 2
                assert overview["data"]["avg_quality"] == 0.5
                spend = (await http.get("/admin/stats/spend", params=query)).json()["data"]
                keys = [series["key"] for series in spend["series"]]
                assert keys == ["beta", "alpha"]  # the dearer worker first
                routing = (await http.get("/admin/stats/routing", params=query)).json()["data"]
                assert {(r["route"], r["worker"], r["requests"]) for r in routing} == {
                    ("direct", "alpha", 3),
                    ("direct", "beta", 1),
                }
                quality = (await http.get("/admin/stats/quality", params=query)).json()["data"]
                assert {(q["worker"], q["avg_score"]) for q in quality} == {
                    ("alpha", 1.0),
                    ("beta", 0.0),
                }
                latency = (await http.get("/admin/stats/latency", params=query)).json()["data"]
                assert [row["worker"] for row in latency] == ["alpha", "beta"]
                assert all(row["p50_ms"] > 0 for row in latency)
                savings = (
                    await http.get("/admin/stats/savings", params={**query, "baseline": "beta"})
                ).json()["data"]
                assert savings["baseline_usd"] > savings["actual_usd"] > 0
                assert savings["saved_ratio"] == pytest.approx(
                    1 - savings["actual_usd"] / savings["baseline_usd"]
                )
            listed = (await http.get("/admin/stats/traces", params={"worker": "alpha"})).json()
            assert {row["trace_id"] for row in listed["data"]} == set(ids[:3])
            detail = (await http.get(f"/admin/stats/traces/{ids[3]}")).json()
            assert detail["trace"]["worker"] == "beta"
            assert detail["trace"]["steps"][0]["worker"] == "beta"
            assert detail["trace"]["candidates"][0]["worker"] == "beta"
            assert [s["score"] for s in detail["signals"]] == [0.0]
            meta = (await http.get("/admin/stats/meta")).json()
            assert meta["baseline"] == "beta"  # the dearest worker by default
            page = (await http.get("/dashboard")).text
            assert "<title>Podium dashboard</title>" in page


async def test_huge_ranges_are_clamped_and_say_so(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(workers(fake_openai)) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        response = await http.get("/admin/stats/spend", params={"since": "0"})
    body = response.json()
    assert response.status_code == 200
    assert body["window"]["clamped"] is True
    assert body["window"]["until"] - body["window"]["since"] <= 90 * 86400 + 7 * 86400
    span = body["window"]["until"] - body["window"]["since"]
    assert span / body["window"]["bucket_seconds"] <= 121


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/admin/stats/overview", {"since": "last tuesday"}, "not a time"),
        ("/admin/stats/overview", {"since": "2d", "until": "3d"}, "before 'until'"),
        ("/admin/stats/spend", {"by": "prompt"}, "'by' must be one of"),
        ("/admin/stats/savings", {"baseline": "gpt-9"}, "not a configured worker"),
        ("/admin/stats/traces", {"limit": "many"}, "whole number"),
        ("/admin/stats/traces", {"before": "soon"}, "not a time"),
    ],
)
async def test_bad_parameters_are_400(
    gateway: Any, fake_openai: FakeOpenAI, path: str, params: dict[str, str], needle: str
) -> None:
    async with (
        gateway(workers(fake_openai)) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        response = await http.get(path, params=params)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


async def test_unknown_trace_is_404(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway(workers(fake_openai)) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        response = await http.get("/admin/stats/traces/nope")
    assert response.status_code == 404


async def test_list_limit_is_capped(gateway: Any, fake_openai: FakeOpenAI) -> None:
    settings = {"observe": {"dashboard": {"max_rows": 2}}}
    async with gateway(workers(fake_openai), **settings) as running:
        await traffic(running)
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await http.get("/admin/stats/traces", params={"limit": "10000"})
    assert len(response.json()["data"]) == 2


async def test_stats_need_the_admin_key_when_one_is_set(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DASH_ADMIN", "dash-secret-0123")
    async with (
        gateway(workers(fake_openai), server={"admin_key_env": "TEST_DASH_ADMIN"}) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        missing = await http.get("/admin/stats/overview")
        right = await http.get(
            "/admin/stats/overview", headers={"authorization": "Bearer dash-secret-0123"}
        )
        page = await http.get("/dashboard")  # the page itself holds no data
    assert missing.status_code == 401
    assert right.status_code == 200
    assert page.status_code == 200


async def test_rollup_agrees_with_the_raw_traces(tmp_path: Any) -> None:
    now = time.time()
    records = [
        trace(f"t{i}", now - i * 700, "small" if i % 3 else "big", caller=f"c{i % 4}",
              cost_usd=0.001 * i, latency_ms=50.0 + i, status="error" if i % 5 == 0 else "ok")
        for i in range(200)
    ]  # fmt: skip
    store = SQLiteStore(tmp_path / "p.db")
    await store.open()
    try:
        await store.write_traces(records)
        for sql, params in upsert_statements(rollup_rows(records[:120])):
            await store.execute(sql, params)
        for sql, params in upsert_statements(rollup_rows(records[120:])):
            await store.execute(sql, params)
        long = stats.window(now - 3 * 86400, now + 1, max_range_days=90, max_buckets=120)
        assert long.bucket >= 300
        raw = stats.Window(long.since, long.until, 299)  # same range, forced onto raw traces
        assert await stats.overview(store, long) == pytest.approx(await stats.overview(store, raw))

        def rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{**row, "cost_usd": round(row["cost_usd"], 9)} for row in rows]

        rolled = await stats.routing(store, long, 100)
        assert rounded(rolled) == rounded(await stats.routing(store, raw, 100))
        by_caller = await stats.spend(store, long, "caller")
        totals = {s["key"]: sum(p["cost_usd"] for p in s["points"]) for s in by_caller["series"]}
        expected: dict[str, float] = {}
        for record in records:
            if record.created_at >= long.since:
                expected[record.caller] = expected.get(record.caller, 0.0) + record.cost_usd
        assert totals == pytest.approx(expected)
    finally:
        await store.close()


def test_percentiles_from_histogram_buckets() -> None:
    histogram = [(float(ms), 1) for ms in range(1, 100)]
    p50, p99 = stats.percentiles(histogram, (0.5, 0.99))
    assert p50 == pytest.approx(50.5) and p99 == pytest.approx(99.5)
    assert stats.percentiles([], (0.5,)) == [None]


async def test_quality_reads_copied_routes_and_looks_up_the_rest(tmp_path: Any) -> None:
    from podium.observe.feedback import INSERT, make_signal

    now = time.time()
    store = SQLiteStore(tmp_path / "q.db")
    await store.open()
    try:
        await store.write_traces([trace("a", now - 60, "small"), trace("b", now - 60, "big")])
        feedback = stats_feedback(store)
        assert await feedback.submit(make_signal("a", "u", True, source="app"))
        # A row written without Podium's copy of worker and route (another tool, say).
        await store.execute(INSERT, make_signal("b", "u", False, source="app").row())
        copied = await store.execute("SELECT trace_id, worker, route FROM feedback ORDER BY 1")
        assert [tuple(row) for row in copied] == [
            ("a", "small", "rules:short"),
            ("b", None, None),
        ]
        w = stats.window(now - 3600, now + 1, max_range_days=90, max_buckets=120)
        rows = await stats.quality(store, w, 10)
        assert {(r["worker"], r["route"], r["avg_score"]) for r in rows} == {
            ("small", "rules:short", 1.0),
            ("big", "rules:short", 0.0),
        }
    finally:
        await store.close()


def stats_feedback(store: SQLiteStore) -> Any:
    from podium.observe.feedback import Feedback
    from podium.observe.settings import FeedbackConfig

    return Feedback(store, FeedbackConfig())

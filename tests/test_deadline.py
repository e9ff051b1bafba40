"""The caller's deadline: where its seconds come from, and what the engine does with them."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from podium.deadline import deadline, request_seconds
from podium.errors import PodiumError
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_reliability import HELLO, direct, fast, traces


def test_podiums_header_then_the_sdks_then_the_default() -> None:
    sdk = {"x-stainless-read-timeout": "30", "x-stainless-timeout": "600"}
    assert request_seconds({"x-podium-timeout": "2.5", **sdk}, 60) == 2.5
    assert request_seconds(sdk, 60) == 30
    assert request_seconds({"x-stainless-timeout": "600"}, 60) == 600
    assert request_seconds({}, 60) == 60
    assert request_seconds({}, None) is None


def test_an_sdk_header_that_is_not_seconds_is_ignored() -> None:
    assert request_seconds({"x-stainless-read-timeout": "None"}, None) is None
    assert request_seconds({"x-stainless-timeout": "-1"}, 9) == 9


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan", "inf"])
def test_a_malformed_podium_timeout_is_the_callers_error(value: str) -> None:
    with pytest.raises(PodiumError) as caught:
        request_seconds({"x-podium-timeout": value}, None)
    assert caught.value.status == 400 and caught.value.param == "x-podium-timeout"


def test_a_little_is_kept_back_so_the_client_hears_the_error() -> None:
    now = time.perf_counter()
    short, long = deadline(2.0, since=now), deadline(600.0, since=now)
    assert short is not None and long is not None
    assert short == pytest.approx(now + 1.8)  # 10% of a short wait
    assert long == pytest.approx(now + 599.0)  # at most a second
    assert deadline(None) is None


async def test_an_answer_not_started_by_the_deadline_is_a_504_and_no_fallback_is_tried(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with FakeOpenAI() as beta:
        pool = [fast("alpha", fake_openai.base_url), fast("beta", beta.base_url)]
        async with (
            gateway(pool, default_worker="alpha") as running,
            openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
        ):
            direct(running)
            # A first request warms the gateway up: its first admission may take longer than
            # a short deadline on a busy machine, and then no attempt would start at all.
            await client.chat.completions.create(model="podium/auto", messages=HELLO)
            fake_openai.behaviour.latency = 6.0
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(
                    model="podium/auto",
                    messages=HELLO,
                    extra_headers={"x-podium-timeout": "2"},
                )
            waited = time.monotonic() - started
            [trace] = [t for t in await traces(running) if t.status == "error"]
    assert caught.value.status_code == 504
    assert "deadline" in caught.value.message
    assert waited < 5  # not the upstream's 6 s: the deadline ended the wait
    assert [step["worker"] for step in trace.steps] == ["alpha"]
    assert trace.steps[0]["error_kind"] == "timeout"
    assert beta.received == []


async def test_a_back_off_past_the_deadline_is_skipped_for_the_next_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """The upstream asks for 5 s before a retry; the caller will wait 2: the next worker is
    asked at once instead of after a wait that outlasts the caller."""
    async with FakeOpenAI() as beta:
        fake_openai.behaviour.fail(429, "slow down", retry_after=5)
        pool = [
            worker(
                "alpha", "openai", fake_openai.base_url, retry={"attempts": 2, "backoff_max": 8}
            ),
            fast("beta", beta.base_url),
        ]
        async with (
            gateway(pool, default_worker="alpha") as running,
            openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
        ):
            direct(running)
            started = time.monotonic()
            raw = await client.chat.completions.with_raw_response.create(
                model="podium/auto", messages=HELLO, extra_headers={"x-podium-timeout": "2"}
            )
            waited = time.monotonic() - started
    assert raw.headers["x-podium-worker"] == "beta"
    assert waited < 4  # not the 5 s the upstream asked for


async def test_without_a_deadline_the_back_off_is_honoured(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(429, "slow down", retry_after=0.3)
    pool = [worker("alpha", "openai", fake_openai.base_url, retry={"attempts": 2})]
    async with (
        gateway(pool) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="alpha", messages=HELLO, extra_headers={"x-stainless-read-timeout": "None"}
        )
    assert raw.headers["x-podium-worker"] == "alpha"
    assert len(fake_openai.received) == 2  # the 429, then the retry on the same worker


async def test_the_sdks_own_timeout_is_the_deadline(gateway: Any, fake_openai: FakeOpenAI) -> None:
    """The OpenAI SDK announces its read timeout on every request; Podium answers before the
    SDK gives up, with an error it can read, instead of working on for no one."""
    fake_openai.behaviour.latency = 5.0
    async with (
        gateway([fast("alpha", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0, timeout=2.0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="alpha", messages=HELLO)
    assert caught.value.status_code == 504


async def test_server_request_timeout_is_the_default_deadline(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.latency = 3.0
    async with (
        gateway([fast("alpha", fake_openai.base_url)], server={"request_timeout": 0.5}) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="-", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.with_raw_response.create(
                model="alpha", messages=HELLO, extra_headers={"x-stainless-read-timeout": "x"}
            )
    assert caught.value.status_code == 504

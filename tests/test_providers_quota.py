"""Reading what vendors say of a worker's quota: OpenAI's ``x-ratelimit-*`` durations and
Anthropic's ``anthropic-ratelimit-*`` moments, into one shape; nothing from other headers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from podium.providers.quota import VendorQuota, duration_seconds, quota_from_headers

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC).timestamp()


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("0s", 0.0)],
)
def test_openai_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5", "1x", "1s and more"])
def test_what_is_not_a_duration(text: str) -> None:
    assert duration_seconds(text) is None


def test_openai_headers() -> None:
    quota = quota_from_headers(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "29000",
            "x-ratelimit-reset-tokens": "2s",
        },
        clock,
    )
    assert quota == VendorQuota(0, 0.12, 29000, 2.0, 500, 30000)
    # The bucket refills evenly: one request is back in a 500th of its reset.
    assert quota.exhausted_for() == pytest.approx(0.12 / 500)


def test_anthropic_headers() -> None:
    quota = quota_from_headers(
        {
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2026-12-07T12:00:01Z",
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2026-12-07T12:00:30Z",
        },
        clock,
    )
    assert quota == VendorQuota(49, 1.0, 0, 30.0)
    assert quota.exhausted_for() == 30.0  # the limit's size not said: the whole reset


def test_an_exhausted_token_limit_waits_for_a_calls_worth() -> None:
    assert VendorQuota(
        tokens_remaining=0, tokens_reset=60.0, tokens_limit=10_240
    ).exhausted_for() == (pytest.approx(6.0))
    small = VendorQuota(tokens_remaining=0, tokens_reset=60.0, tokens_limit=500)
    assert small.exhausted_for() == 60.0  # a call's worth is more than the whole limit


def test_a_quota_with_something_left_pauses_nothing() -> None:
    assert VendorQuota(3, 1.0, 100, 1.0).exhausted_for() is None
    assert VendorQuota(0, None).exhausted_for() is None  # no reset said: nothing to wait for


def test_answers_without_quota_headers_say_nothing() -> None:
    assert quota_from_headers({"content-type": "application/json"}, clock) is None


def test_garbled_values_are_unknown_not_errors() -> None:
    quota = quota_from_headers(
        {"x-ratelimit-remaining-requests": "many", "x-ratelimit-reset-requests": "later"}, clock
    )
    assert quota == VendorQuota(None, None, None, None)
    anthropic = quota_from_headers(
        {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "?"},
        clock,
    )
    assert anthropic == VendorQuota(0, None, None, None)

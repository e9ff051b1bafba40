"""What a vendor says of a worker's quota with every answer: OpenAI's ``x-ratelimit-*`` and
Anthropic's ``anthropic-ratelimit-*`` headers, read into one shape. A quota that reaches zero
pauses the worker until a call's worth is back (podium/capacity.py), so the next call is not
sent only to be told 429; the admin API shows what is left.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

# "6m0s", "1s", "20ms", "1h2m3.5s": OpenAI's reset durations.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


# What a call is taken to need of a token limit when it is exhausted: the pause lasts until
# about this much is back (a call that needs more is told 429, with its own Retry-After).
CALL_TOKENS = 1024


@dataclass(frozen=True, slots=True)
class VendorQuota:
    """What is left of the vendor's limits (None: not said), each limit's size, and the
    seconds until each is full again."""

    requests_remaining: int | None = None
    requests_reset: float | None = None
    tokens_remaining: int | None = None
    tokens_reset: float | None = None
    requests_limit: int | None = None
    tokens_limit: int | None = None

    def exhausted_for(self) -> float | None:
        """Seconds until a call may be sent again, when a limit has nothing left; else None.
        The vendors' limits refill evenly until full at their reset, so the wait is until a
        call's worth is back (a request; ``CALL_TOKENS`` tokens), or the whole reset when the
        limit's size is not said."""
        waits = [
            reset if not limit else reset * min(1.0, need / limit)
            for remaining, reset, limit, need in (
                (self.requests_remaining, self.requests_reset, self.requests_limit, 1),
                (self.tokens_remaining, self.tokens_reset, self.tokens_limit, CALL_TOKENS),
            )
            if remaining is not None and remaining <= 0 and reset is not None
        ]
        return max(waits) if waits else None


QuotaObserver = Callable[[VendorQuota], None]


def duration_seconds(text: str) -> float | None:
    """OpenAI's reset duration ("6m0s", "20ms") in seconds; None when it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text.strip():
        return None
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)


def _until(text: str, now: float) -> float | None:
    """Anthropic's reset time (RFC 3339) as seconds from ``now``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - now)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text))
    except ValueError:
        return None


def quota_from_headers(
    headers: Mapping[str, str], clock: Callable[[], float] = time.time
) -> VendorQuota | None:
    """The quota an answer's headers (lower-case names) state, or None when they state none.
    ``clock`` is the wall clock, read only for Anthropic's reset moments."""
    remaining = headers.get("x-ratelimit-remaining-requests")
    tokens = headers.get("x-ratelimit-remaining-tokens")
    if remaining is not None or tokens is not None:
        reset_requests = headers.get("x-ratelimit-reset-requests")
        reset_tokens = headers.get("x-ratelimit-reset-tokens")
        return VendorQuota(
            _int(remaining),
            None if reset_requests is None else duration_seconds(reset_requests),
            _int(tokens),
            None if reset_tokens is None else duration_seconds(reset_tokens),
            _int(headers.get("x-ratelimit-limit-requests")),
            _int(headers.get("x-ratelimit-limit-tokens")),
        )
    remaining = headers.get("anthropic-ratelimit-requests-remaining")
    tokens = headers.get("anthropic-ratelimit-tokens-remaining")
    if remaining is not None or tokens is not None:
        now = clock()
        reset_requests = headers.get("anthropic-ratelimit-requests-reset")
        reset_tokens = headers.get("anthropic-ratelimit-tokens-reset")
        return VendorQuota(
            _int(remaining),
            None if reset_requests is None else _until(reset_requests, now),
            _int(tokens),
            None if reset_tokens is None else _until(reset_tokens, now),
            _int(headers.get("anthropic-ratelimit-requests-limit")),
            _int(headers.get("anthropic-ratelimit-tokens-limit")),
        )
    return None

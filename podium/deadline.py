"""How long the caller will wait for an answer.

A client that gives up after 30 seconds gains nothing from a gateway that spends another
minute on retries and fallbacks: the answer is paid for and read by no one. So a request
carries a deadline, and the engine spends no attempt, back-off or fallback past it.

The seconds come from, in order: Podium's own ``x-podium-timeout`` header; the read timeout
the official OpenAI and Anthropic SDKs announce with every request
(``x-stainless-read-timeout``, ``x-stainless-timeout``); ``server.request_timeout``. A little
is kept back (10%, at most a second) so the client hears Podium's 504 before it gives up.
"""

from __future__ import annotations

import math
import time

from podium.errors import PodiumError

HEADER = "x-podium-timeout"
SDK_HEADERS = ("x-stainless-read-timeout", "x-stainless-timeout")
DEADLINE_HEADERS = (HEADER, *SDK_HEADERS)  # a request naming none has only the default
MARGIN_SHARE = 0.1  # of the wait, kept back for the error to reach the client...
MAX_MARGIN = 1.0  # ...but at most a second


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 and math.isfinite(seconds) else None


def request_seconds(headers: dict[str, str], default: float | None) -> float | None:
    """The seconds the caller will wait, or None for no limit. A malformed ``x-podium-timeout``
    is the caller's mistake (400); an SDK's header that does not read as seconds is ignored."""
    given = headers.get(HEADER)
    if given is not None:
        seconds = _seconds(given)
        if seconds is None:
            raise PodiumError(
                "invalid_request",
                f"{HEADER} must be a positive number of seconds, not {given[:40]!r}",
                param=HEADER,
            )
        return seconds
    for name in SDK_HEADERS:
        announced = headers.get(name)
        if announced is not None:
            seconds = _seconds(announced)
            if seconds is not None:
                return seconds
    return default


def deadline(seconds: float | None, since: float | None = None) -> float | None:
    """The time (``time.perf_counter``'s) by which an answer must have started: ``seconds``
    after ``since`` (the request's arrival; default: now)."""
    if seconds is None:
        return None
    start = time.perf_counter() if since is None else since
    return start + seconds - min(MAX_MARGIN, seconds * MARGIN_SHARE)
